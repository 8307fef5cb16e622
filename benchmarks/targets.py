"""The benchmark targets, each judged from the summary rows: met, missed, or not measured.

Apart from report.py because the targets are a policy (thresholds, which repeat
counts) while report.py only formats what was measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .report import ceiling_row, fmt, kind_of, median, one_queue_row, over_cap_count
from .systems import GCPUBSUB, KOMBU_PUBSUB

#: Drain rate against Celery's own ceiling (the same worker on memory://), at least, per pool.
DRAIN_CEILING_SHARE = {"prefork": 0.60, "threads": 0.75}
#: Drain rate against Kombu's gcpubsub, at least, per pool (pools not named: no such target).
DRAIN_VS_GCPUBSUB = {"prefork": 2.0}
#: Idle publish → task start against the raw client's publish → waiting pull, at most,
#: judged on every repeat's samples pooled (the emulator wakes a waiting pull on a ~50 ms
#: cycle, so one repeat's p50 scatters by several ms).
LATENCY_P50_RATIO = 1.15
LATENCY_P99_RATIO = 1.2
AWAITED_SHARE = 0.6  # awaited delay() against the raw client's one Publish RPC per message, at least
THREADED_SHARE = 0.7  # the same from several threads of one process, against the raw client's threads
MEMORY_FLAT_MIB = 2.0  # main RSS growth with every countdown pending, at most (gcpubsub: ~90 MiB)
CRASH_SECONDS = 60.0  # kill → the task starts again on a fresh worker, at most
MANY_QUEUES_P99_RATIO = 3.0  # kombu_pubsub's p99 on Q queues against its own one-queue p99, at most

Row = dict[str, Any]
Add = Callable[[str, "str | None", bool], None]


def targets(rows: Sequence[Row]) -> list[dict[str, str]]:
    """Each target with the figures behind it and 'met' / '**missed**' / 'not measured'.

    Ratios are judged on medians; losses, memory growth and crash redelivery on the worst repeat.
    """
    found: list[dict[str, str]] = []

    def add(target: str, measured: str | None, met: bool) -> None:
        status = "not measured" if measured is None else "met" if met else "**missed**"
        found.append({"target": target, "measured": measured or "—", "status": status})

    _drain(rows, add)
    _latency(rows, add)
    _enqueue(rows, add)
    _enqueue_threads(rows, add)
    _memory(rows, add)
    _crash(rows, add)
    _many_queues(rows, add)
    return found


def _find(rows: Sequence[Row], kind: str, system: str | None = None, key: str | None = None,
          scenario: str | None = None) -> Row | None:
    return next((row for row in rows if kind_of(row["scenario"]) == kind
                 and (system is None or row["system"] == system) and (key is None or row["key"] == key)
                 and (scenario is None or row["scenario"] == scenario)), None)


def _drain(rows: Sequence[Row], add: Add) -> None:
    for row in rows:
        if kind_of(row["scenario"]) != "drain" or row["system"] != KOMBU_PUBSUB:
            continue
        pool = row["scenario"].split()[1]
        share_target, base_target = DRAIN_CEILING_SHARE.get(pool), DRAIN_VS_GCPUBSUB.get(pool)
        base = _find(rows, "drain", GCPUBSUB, scenario=row["scenario"])
        ours, theirs = median(row, "tasks_per_s"), median(base, "tasks_per_s")
        top = median(ceiling_row(row, rows), "tasks_per_s")
        parts, met, measured = [], True, None
        if ours and top:
            parts.append(f"{ours / top:.0%} of Celery's ceiling ({fmt(ours)} vs {fmt(top)} tasks/s)")
            met = met and (share_target is None or ours >= share_target * top)
        elif share_target is not None:
            met = False
        if ours and theirs:
            parts.append(f"{ours / theirs:.2f}× gcpubsub ({fmt(theirs)} tasks/s, "
                         f"{theirs / top:.0%} of the ceiling)" if top else
                         f"{ours / theirs:.2f}× gcpubsub ({fmt(theirs)} tasks/s)")
            met = met and (base_target is None or ours >= base_target * theirs)
        elif base_target is not None:
            met = False
        if parts:
            measured = "; ".join(parts)
        wanted = [f"≥ {share_target:.0%} of Celery's ceiling"] if share_target is not None else []
        wanted += [f"≥ {base_target:g}× gcpubsub"] if base_target is not None else []
        add(f"{row['scenario']}: {' and '.join(wanted) or 'measured'}", measured, met and bool(parts))


def _latency(rows: Sequence[Row], add: Add) -> None:
    raw = _find(rows, "idle latency", key="rl")
    floor = (raw or {}).get("pooled")
    for row in rows:
        if not row["scenario"].startswith("idle latency (") or row["system"] != KOMBU_PUBSUB:
            continue
        ours = row.get("pooled")
        measured, met = None, False
        if ours and floor:
            p50, p99 = ours["p50_ms"] / floor["p50_ms"], ours["p99_ms"] / floor["p99_ms"]
            measured = (f"p50 {p50:.2f}× ({fmt(ours['p50_ms'])} vs {fmt(floor['p50_ms'])} ms), "
                        f"p99 {p99:.2f}× ({fmt(ours['p99_ms'])} vs {fmt(floor['p99_ms'])} ms); "
                        f"{ours['samples']} and {floor['samples']} samples pooled over the repeats")
            theirs = _find(rows, "idle latency", GCPUBSUB, scenario=row["scenario"])
            if theirs and theirs.get("pooled"):
                measured += f"; gcpubsub p50 {fmt(theirs['pooled']['p50_ms'])} ms"
            met = p50 <= LATENCY_P50_RATIO and p99 <= LATENCY_P99_RATIO
        add(f"{row['scenario']}: p50 ≤ {LATENCY_P50_RATIO:g}× and p99 ≤ {LATENCY_P99_RATIO:g}× the raw "
            "client's publish → waiting pull", measured, met)


def _enqueue(rows: Sequence[Row], add: Add) -> None:
    ours = median(_find(rows, "enqueue", key="kp"), "calls_per_s")
    ceiling = median(_find(rows, "enqueue", key="rg"), "calls_per_s")
    one = median(_find(rows, "enqueue", key="rf"), "calls_per_s")
    measured = None
    if ours and ceiling:
        measured = f"{ours / ceiling:.2f}× ({fmt(ours)} vs {fmt(ceiling)} calls/s: raw, one Publish RPC each)"
        if one:
            measured += f"; {ours / one:.2f}× the raw publish().result() loop ({fmt(one)} calls/s)"
    add(f"awaited enqueue, one thread ≥ {AWAITED_SHARE:g}× the raw client's one-at-a-time publish", measured,
        bool(ours and ceiling and ours >= AWAITED_SHARE * ceiling))

    fast, base = _find(rows, "enqueue", key="kpf"), _find(rows, "enqueue", key="gc")
    ours, theirs = median(fast, "calls_per_s"), median(base, "calls_per_s")
    lost, theirs_lost = _worst(fast, "lost_at_exit"), _worst(base, "lost_at_exit")
    measured = None
    if ours and theirs and lost is not None:
        measured = (f"{ours / theirs:.2f}× ({fmt(ours)} vs {fmt(theirs)} calls/s); lost at exit: {lost:.0f}"
                    f" (gcpubsub: up to {theirs_lost or 0:.0f})")
    add("fast enqueue ≥ gcpubsub's rate, nothing lost", measured,
        bool(ours and theirs and ours >= theirs and lost == 0))


def _enqueue_threads(rows: Sequence[Row], add: Add) -> None:
    """Awaited delay() from T threads against T raw threads sharing one client; nothing lost at exit."""
    row = _find(rows, "enqueue", key="kpt")
    ours, ceiling = median(row, "calls_per_s"), median(_find(rows, "enqueue", key="rgt"), "calls_per_s")
    threads = median(row, "threads") or median(_find(rows, "enqueue", key="rgt"), "threads")
    lost = _worst(row, "lost_at_exit")
    measured = None
    if ours and ceiling and lost is not None:
        measured = (f"{ours / ceiling:.2f}× ({fmt(ours)} vs {fmt(ceiling)} calls/s: raw, one client, "
                    f"one Publish RPC each); lost at exit: {lost:.0f}")
        one = median(_find(rows, "enqueue", key="kp"), "calls_per_s")
        if one:
            measured += f"; {ours / one:.2f}× kombu_pubsub from one thread"
        theirs = median(_find(rows, "enqueue", key="gct"), "calls_per_s")
        if theirs:
            measured += f"; gcpubsub {fmt(theirs)} calls/s"
    count = f"{threads:.0f}" if threads else "T"
    add(f"awaited enqueue from {count} threads ≥ {THREADED_SHARE:g}× the raw client's {count} threads, "
        "nothing lost", measured, bool(ours and ceiling and ours >= THREADED_SHARE * ceiling and lost == 0))


def _worst(row: Row | None, key: str) -> float | None:
    fig = row["figures"].get(key) if row else None
    return fig["max"] if fig else None


def _memory(rows: Sequence[Row], add: Add) -> None:
    row = _find(rows, "countdown memory", KOMBU_PUBSUB)
    growth, received = _worst(row, "growth_mib"), _worst(row, "received_by_celery")
    sent = _worst(row, "sent")
    measured = None
    if growth is not None:
        measured = f"{growth:+.2f} MiB (worst repeat); Celery received {received or 0:,.0f}"
        theirs = median(_find(rows, "countdown memory", GCPUBSUB), "growth_mib")
        if theirs is not None:
            measured += f"; gcpubsub {theirs:+.1f} MiB"
    pending = f"{sent:,.0f}" if sent else "N"
    add(f"countdown memory flat: main RSS grows ≤ {MEMORY_FLAT_MIB:g} MiB with {pending} pending", measured,
        growth is not None and growth <= MEMORY_FLAT_MIB and not received)


def _crash(rows: Sequence[Row], add: Add) -> None:
    row, base = _find(rows, "crash redelivery", KOMBU_PUBSUB), _find(rows, "crash redelivery", GCPUBSUB)
    measured = None
    met = False
    if row and row["figures"].get("cap_s"):
        seconds, cap = row["figures"].get("redelivery_s"), row["figures"]["cap_s"]["max"]
        over = over_cap_count(row)
        measured = f"> {cap:g} s in {over} repeat(s)" if over else f"{fmt(seconds['max'])} s worst repeat"
        if seconds:
            measured += f" (median {fmt(seconds['median'])} s)"
        met = not over and seconds is not None and seconds["max"] <= CRASH_SECONDS
        if base and base["figures"].get("cap_s"):
            theirs = base["figures"].get("redelivery_s")
            measured += "; gcpubsub " + (f"> {base['figures']['cap_s']['max']:g} s" if over_cap_count(base)
                                         else f"{fmt(theirs['median'])} s" if theirs else "—")
    add(f"crash redelivery ≤ {CRASH_SECONDS:g} s (acks_late, worker SIGKILLed)", measured, met)



def _many_queues(rows: Sequence[Row], add: Add) -> None:
    """Per queue count Q > 1: every task started (on Q queues and on one) and p99 ≤ 3× the one-queue p99."""
    target = f"every task started, p99 ≤ {MANY_QUEUES_P99_RATIO:g}× the one-queue p99"
    ours = [row for row in rows if kind_of(row["scenario"]) == "many queues" and row["system"] == KOMBU_PUBSUB
            and median(row, "queues") != 1]
    if not ours:
        add(f"many queues: {target}", None, False)
    for row in ours:
        one = one_queue_row(row, rows)
        p99, one_p99 = median(row, "p99_ms"), median(one, "p99_ms")
        missing, one_missing = _worst(row, "missing"), _worst(one, "missing")
        measured = None
        if p99 and one_p99 and missing is not None and one_missing is not None:
            measured = (f"{p99 / one_p99:.2f}× ({fmt(p99)} vs {fmt(one_p99)} ms p99); "
                        f"{_started(row)} started (one queue: {_started(one)})")
            measured += _gcpubsub_p99(rows, row["scenario"])
        add(f"{row['scenario']}: {target}", measured, bool(
            measured and missing == 0 and one_missing == 0 and p99 <= MANY_QUEUES_P99_RATIO * one_p99))


def _gcpubsub_p99(rows: Sequence[Row], scenario: str) -> str:
    """'; gcpubsub P ms p99 (R× its one-queue p99), X/Y started' for the same queue count, or ''."""
    base = _find(rows, "many queues", GCPUBSUB, scenario=scenario)
    theirs = median(base, "p99_ms")
    if not base or not theirs:
        return ""
    their_one = median(one_queue_row(base, rows), "p99_ms")
    against_one = f" ({fmt(theirs / their_one)}× its one-queue p99)" if their_one else ""
    return f"; gcpubsub {fmt(theirs)} ms p99{against_one}, {_started(base)} started"


def _started(row: Row | None) -> str:
    """Tasks started of those sent, worst repeat: 'X/Y'."""
    sent, missing = _worst(row, "sent"), _worst(row, "missing")
    return f"{sent - missing:.0f}/{sent:.0f}" if sent is not None and missing is not None else "—"
