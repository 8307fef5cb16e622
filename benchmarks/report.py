"""Summaries over repeats, the JSON results file and the Markdown table."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .procs import REPO_ROOT
from .scenarios import Measurement
from .stats import percentile, summary
from .systems import CELERY_MEMORY, GCPUBSUB, KOMBU_PUBSUB

#: Figures shown in the table per scenario kind: (key, unit, higher is better).
HEADLINE = {
    "enqueue": [("calls_per_s", "calls/s", True)],
    "drain": [("tasks_per_s", "tasks/s", True)],
    "crash redelivery": [("redelivery_s", "s", False)],
    "idle latency": [("p50_ms", "ms p50", False), ("p99_ms", "ms p99", False)],
    "countdown lateness": [("p50_ms", "ms p50", False), ("p99_ms", "ms p99", False),
                           ("max_ms", "ms max", False)],
    "countdown memory": [("idle_rss_mib", "MiB idle", False), ("pending_rss_mib", "MiB pending", False),
                         ("growth_mib", "MiB growth", False)],
    "many queues": [("p50_ms", "ms p50", False), ("p99_ms", "ms p99", False), ("max_ms", "ms max", False),
                    ("idle_cpu_ms_per_s", "ms CPU/s idle", False)],
}


def git_info() -> dict[str, Any]:
    """Short HEAD and whether the work tree had changes (read-only git calls)."""
    def run(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"rev": run("rev-parse", "--short", "HEAD") or "unknown",
            "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (as ``uptime`` shows them)."""
    return [round(load, 2) for load in os.getloadavg()]


def environment(emulator_host: str, emulator_owned: bool, placeholder: bool) -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "celery": version("celery"),
        "kombu": version("kombu"),
        "google-cloud-pubsub": version("google-cloud-pubsub"),
        "google-cloud-monitoring": version("google-cloud-monitoring"),
        "gcpubsub_monitoring_placeholder": placeholder,
        "emulator": emulator_host,
        "emulator_started_by_benchmark": emulator_owned,
    }


def kind_of(scenario: str) -> str:
    return next((kind for kind in HEADLINE if scenario.startswith(kind)), scenario)


def summarize(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """One row per (scenario, label): every figure's min/median/max over the repeats."""
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for measurement in measurements:
        groups.setdefault((measurement.scenario, measurement.label), []).append(measurement)
    rows = []
    for (scenario, label), group in groups.items():
        keys = sorted({key for m in group for key in m.figures})
        figures = {key: summary([m.figures[key] for m in group
                                 if m.error is None and isinstance(m.figures.get(key), int | float)])
                   for key in keys}
        row = {
            "scenario": scenario, "label": label, "system": group[0].system, "key": group[0].key,
            "baseline": group[0].baseline, "repeats": len(group),
            "errors": [m.error for m in group if m.error],
            "figures": {key: value for key, value in figures.items() if value is not None},
        }
        pooled = sorted(sample for m in group if m.error is None
                        for sample in m.figures.get("latencies_ms") or ())
        if pooled:  # every repeat's samples together: one repeat's p50 scatters by several ms
            row["pooled"] = {"p50_ms": percentile(pooled, 50), "p99_ms": percentile(pooled, 99),
                             "samples": len(pooled)}
        if any("over_cap" in m.figures for m in group):
            row["over_cap_repeats"] = sum(1 for m in group if m.error is None and m.figures.get("over_cap"))
        rows.append(row)
    return rows


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (a .tmp file renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(fig: dict[str, float] | None, unit: str) -> str:
    if not fig:
        return "—"
    if fig["n"] == 1:
        return f"{fmt(fig['median'])} {unit}"
    return f"{fmt(fig['median'])} {unit} ({fmt(fig['min'])}–{fmt(fig['max'])})"


def markdown(rows: Sequence[dict[str, Any]], header: dict[str, Any],
             target_rows: Sequence[dict[str, str]] = (), previous: dict[str, Any] | None = None) -> str:
    """The Markdown tables (docs/results/benchmarks.md): targets met/missed, then system,
    scenario, figure, ratio kombu_pubsub/gcpubsub; then, given an earlier results file,
    kombu_pubsub's headline figures against it."""
    load = header.get("load_before"), header.get("load_after")
    lines = [
        f"Benchmark {header['date']} at `{header['git']['rev']}`"
        f"{' (uncommitted changes)' if header['git']['dirty'] else ''}; "
        f"{header['repeats']} repeat(s), median (min–max); Pub/Sub emulator, {header['cpus']} CPUs; "
        f"celery {header['celery']}, kombu {header['kombu']}."
        + (f" Load average (1/5/15 min) {_load(load[0])} before, {_load(load[1])} after."
           if all(load) else "")
        + (" **Smoke run: sizes far too small for meaningful figures.**" if header.get("smoke") else ""),
        "",
    ]
    if target_rows:
        lines.extend(["| Target | Where we stand | |", "| --- | --- | --- |"])
        lines.extend(f"| {t['target']} | {t['measured']} | {t['status']} |" for t in target_rows)
        lines.extend(["", "Targets on ratios are judged on medians; losses, memory, crash "
                      "redelivery and tasks started on the worst repeat.", ""])
    lines.extend([
        "| System | Scenario | Figure | kombu_pubsub / gcpubsub |",
        "| --- | --- | --- | --- |",
    ])
    notes = []
    baselines = {row["scenario"]: row for row in rows if row["baseline"]}
    for row in rows:
        kind = kind_of(row["scenario"])
        if kind == "crash redelivery":
            parts, ratios = _crash_parts(row, baselines.get(row["scenario"]))
        else:
            parts, ratios = [], []
        base_row = baselines.get(row["scenario"])
        for key, unit, _higher in HEADLINE.get(kind, []) if kind != "crash redelivery" else []:
            fig = row["figures"].get(key)
            parts.append(_cell(fig, unit))
            base = base_row["figures"].get(key) if base_row else None
            if row["system"] == KOMBU_PUBSUB and fig and base and base["median"]:
                ratios.append(f"{fig['median'] / base['median']:.2f}×")
            elif row["system"] == KOMBU_PUBSUB and fig and base_row:
                ratios.append("—")  # gcpubsub's figure is missing or 0: keeps the ratios in step
            elif row["system"] == GCPUBSUB:
                ratios.append("1 (reference)")
        if kind == "drain":
            parts.extend(_drain_parts(row, rows))
        if kind == "enqueue" and "arrived" in row["figures"]:
            arrived, sent = row["figures"]["arrived"], row["figures"].get("sent")
            worst = int(arrived["min"])
            total = int(sent["max"]) if sent else worst
            parts.append(f"arrived {worst}/{total}" + (" (worst repeat)" if row["repeats"] > 1 else ""))
            if "cpu_ms_per_call" in row["figures"]:
                parts.append(_cell(row["figures"]["cpu_ms_per_call"], "ms CPU/call"))
            parts.extend(_raw_share(row, rows))
        parts.extend(_countdown_parts(kind, row))
        if kind == "many queues":
            more, more_ratios = _many_queues_parts(row, rows, base_row)
            parts.extend(more)
            ratios.extend(more_ratios)
        if row["errors"]:
            parts.append(f"**{len(row['errors'])} failed repeat(s)**")
            notes.extend(f"{row['label']} / {row['scenario']}: {error.splitlines()[0]}"
                         for error in row["errors"])
        # One "1 (reference)" for the gcpubsub row; every ratio (even equal ones) for kombu_pubsub.
        ratio = ", ".join(dict.fromkeys(ratios) if row["system"] == GCPUBSUB else ratios)
        lines.append(f"| {row['label']} | {row['scenario']} | {'; '.join(parts)} | {ratio} |")
    lines.append("")
    lines.append("Ratios divide medians: above 1 is better for calls/s and tasks/s, "
                 "below 1 is better for latency, memory, idle CPU and threads.")
    notes[:0] = _enqueue_notes(rows)
    for note in notes:
        lines.append(f"- {note}")
    if previous:
        lines.extend(["", *against(rows, previous)])
    return "\n".join(lines)


#: A change smaller than this, either way, is read as noise on this machine.
NOISE = 0.10


def against(rows: Sequence[dict[str, Any]], previous: dict[str, Any]) -> list[str]:
    """Markdown: each kombu_pubsub headline figure of `rows` next to the same figure in
    `previous` (an earlier results JSON), with the change; [] if none is in both."""
    then = {(row["scenario"], row["label"]): row for row in previous.get("summary", [])}
    table = []
    for row in rows:
        old = then.get((row["scenario"], row["label"]))
        if row["system"] != KOMBU_PUBSUB or old is None:
            continue
        for key, unit, higher in HEADLINE.get(kind_of(row["scenario"]), []):
            before, now = median(old, key), median(row, key)
            if not before or now is None:
                continue
            change = now / before - 1
            verdict = ("same within noise" if abs(change) < NOISE
                       else "better" if (change > 0) == higher else "**worse**")
            table.append(f"| {row['label']} | {row['scenario']} | {unit} | {fmt(before)} | {fmt(now)} | "
                         f"{change:+.0%} {verdict} |")
    if not table:
        return []
    git = previous.get("git", {})
    return [f"Against the run at `{git.get('rev', '?')}` ({str(previous.get('date', '?'))[:16]}), "
            f"medians; a change under {NOISE:.0%} either way is read as noise:", "",
            "| System | Scenario | Figure | then | now | change |", "| --- | --- | --- | --- | --- | --- |",
            *table]


def _load(load: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def ceiling_row(row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The Celery-ceiling (memory://) row of the same drain scenario as `row`."""
    return next((other for other in rows if other["scenario"] == row["scenario"]
                 and other["system"] == CELERY_MEMORY), None)


def median(row: dict[str, Any] | None, key: str) -> float | None:
    fig = row["figures"].get(key) if row else None
    return fig["median"] if fig else None


def _drain_parts(row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    """CPU seconds, peak RSS and, for the transports, the share of Celery's own ceiling."""
    figures = row["figures"]
    parts = []
    if "cpu_s" in figures:
        per_task = figures.get("cpu_ms_per_task")
        parts.append(_cell(figures["cpu_s"], "CPU s")
                     + (f", {fmt(per_task['median'])} ms/task" if per_task else ""))
    if "peak_rss_mib" in figures:
        parts.append(_cell(figures["peak_rss_mib"], "MiB peak RSS"))
    rate, ceiling = median(row, "tasks_per_s"), median(ceiling_row(row, rows), "tasks_per_s")
    if row["system"] in (KOMBU_PUBSUB, GCPUBSUB) and rate and ceiling:
        parts.append(f"{rate / ceiling:.0%} of Celery's ceiling")
    return parts


def _crash_parts(row: dict[str, Any], base: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """Seconds from the kill to the task's restart; '> CAP s' for repeats that gave up."""
    figures = row["figures"]
    over = over_cap_count(row)
    cap = figures.get("cap_s", {}).get("max", 0.0)
    parts = []
    if "redelivery_s" in figures:
        parts.append(_cell(figures["redelivery_s"], "s"))
    if over:
        parts.append(f"> {cap:g} s in {over}/{row['repeats']} repeat(s) (gave up)")
    ratios = []
    if row["system"] == GCPUBSUB:
        ratios.append("1 (reference)")
    elif row["system"] == KOMBU_PUBSUB and base and "redelivery_s" in figures:
        ours = figures["redelivery_s"]["median"]
        theirs = median(base, "redelivery_s")
        if theirs and not over_cap_count(base):
            ratios.append(f"{ours / theirs:.2f}×")
        elif cap:
            ratios.append(f"< {ours / cap:.2f}×")
    return parts, ratios


def over_cap_count(row: dict[str, Any]) -> int:
    """Repeats of a crash row that gave up at the cap."""
    return int(row.get("over_cap_repeats", 0))


def _countdown_parts(kind: str, row: dict[str, Any]) -> list[str]:
    """Extra cells for the countdown rows: early runs, lost tasks, peak memory, what Celery received."""
    figures = row["figures"]
    worst = " (worst repeat)" if row["repeats"] > 1 else ""

    def most(key: str) -> int:
        return int(figures[key]["max"]) if key in figures else 0

    parts = []
    if kind == "countdown lateness" and "early" in figures:
        parts.append(f"early {most('early')}/{most('sent')}{worst}")
        if most("lost") or most("duplicates"):
            parts.append(f"lost {most('lost')}, duplicates {most('duplicates')}{worst}")
    if kind == "countdown memory" and "peak_rss_mib" in figures:
        parts.append(_cell(figures["peak_rss_mib"], "MiB peak"))
        sent = most("sent")
        received = figures.get("received_by_celery")
        if received:
            parts.append(f"Celery received {int(received['median']):,}/{sent:,}")
        if "arrived" in figures and int(figures["arrived"]["min"]) < sent:
            parts.append(f"arrived {int(figures['arrived']['min']):,}/{sent:,}{worst}")
        if most("ran"):
            parts.append(f"**{most('ran')} ran early**")
        if "steady" in figures and figures["steady"]["min"] < 1:
            parts.append("**not settled within the wait in some repeat**")
    return parts


def one_queue_row(row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The Q=1 row of the same system and pool as the many-queues `row`."""
    pool = row["scenario"].rpartition(" (")[2]
    return next((other for other in rows if kind_of(other["scenario"]) == "many queues"
                 and other["system"] == row["system"] and other["scenario"].endswith(f" ({pool}")
                 and median(other, "queues") == 1), None)


def _many_queues_parts(row: dict[str, Any], rows: Sequence[dict[str, Any]],
                       base: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """Threads (with its ratio), tasks started of those sent, and p99 against the one-queue p99."""
    figures, parts, ratios = row["figures"], [], []
    threads, theirs = median(row, "threads"), median(base, "threads")
    if threads is not None:
        parts.append(f"{threads:.0f} threads")
        if row["system"] == KOMBU_PUBSUB and theirs:
            ratios.append(f"{threads / theirs:.2f}×")
    if "sent" in figures and "missing" in figures:
        sent, missing = int(figures["sent"]["max"]), int(figures["missing"]["max"])
        started = f"started {sent - missing}/{sent}" + (" (worst repeat)" if row["repeats"] > 1 else "")
        parts.append(f"**{started}**" if missing else started)
    p99, one_p99 = median(row, "p99_ms"), median(one_queue_row(row, rows), "p99_ms")
    if p99 and one_p99 and median(row, "queues") != 1:
        parts.append(f"p99 {fmt(p99 / one_p99)}× Q=1's")
    return parts, ratios


def _raw_share(row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    """For a transport's enqueue row: its rate as a share of the raw one-RPC-per-message rate of
    the same scenario (one thread, or the same threads sharing one client)."""
    if row["system"] not in (KOMBU_PUBSUB, GCPUBSUB):
        return []
    raw = next((other for other in rows if other["scenario"] == row["scenario"]
                and other["key"] in ("rg", "rgt")), None)
    rate, ceiling = median(row, "calls_per_s"), median(raw, "calls_per_s")
    return [f"{rate / ceiling:.2f}× raw"] if rate and ceiling else []


def _enqueue_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Awaited kombu_pubsub against the raw ceiling, and messages lost at producer exit."""
    enqueue = [row for row in rows if kind_of(row["scenario"]) == "enqueue"]
    notes = []
    for ours, raw, who in (("kp", "rg", ""), ("kpt", "rgt", " from several threads")):
        awaited = next((row for row in enqueue if row["key"] == ours), None)
        ceiling = next((row for row in enqueue if row["key"] == raw), None)
        ours_rate, raw_rate = median(awaited, "calls_per_s"), median(ceiling, "calls_per_s")
        if ours_rate and raw_rate:
            share = ours_rate / raw_rate
            notes.append(f"kombu_pubsub's awaited delay(){who} runs at {share:.0%} of the raw "
                         f"one-RPC-per-message publish rate{who} (the ceiling for any publish that waits "
                         "for Pub/Sub).")
    for row in enqueue:
        lost = row["figures"].get("lost_at_exit")
        sent = row["figures"].get("sent")
        if lost and sent and lost["max"] > 0:
            where = "" if row["scenario"] == "enqueue" else f" ({row['scenario']})"
            notes.append(f"{row['label']}{where}: up to {int(lost['max'])} of {int(sent['max'])} messages "
                         "never reached Pub/Sub when the producer process exited right after its last call.")
    return notes


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

