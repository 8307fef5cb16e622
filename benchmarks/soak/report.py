"""The soak's report: text for people, JSON for machines, a PNG timeline when matplotlib is installed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import plan


def text(result: dict[str, Any]) -> str:
    """The report as lines of text: counts, duplicates by cause, delays, RSS, faults, verdict."""
    s, f = result["settings"], result["figures"]
    pools = ", ".join(f"{pool}:{concurrency}" for pool, concurrency in s["pools"])
    lines = [
        f"soak: {s['rate']:g} jobs/s for {s['duration']:g}s, seed {s['seed']}, workers {pools}, "
        f"ack_deadline {s['ack_deadline']:g}s",
        "faults: " + ", ".join(f"{kind} {f['faults'].get(kind, 0)}" for kind in plan.FAULT_KINDS)
        + (f" (skipped {len(result['faults_skipped'])})" if result["faults_skipped"] else "")
        + (f"; FAULT ERRORS: {result['fault_errors']}" if result["fault_errors"] else ""),
        f"drain: {result['drain']['how']} in {result['drain']['seconds']}s",
        "",
        f"jobs sent          {f['sent']}",
        f"  succeeded        {f['succeeded']}",
        f"  in the morgue    {f['in_morgue']}",
        f"  LOST             {f['lost']}",
        f"  both outcomes    {f['both_outcomes']}",
        f"  unexpected       {f['unexpected_outcome']}   (outcome other than planned)",
        f"runs               {f['runs']}",
        f"duplicates         {f['duplicates']}   " + _causes(f["duplicates_by_cause"]),
        f"runs never sent    {f['runs_of_jobs_never_sent']}",
        f"countdowns sent    {f['countdowns_sent']}; runs started before their ETA: {f['early_runs']}",
        f"countdown lateness {_spread(f['countdown_lateness_s'])}",
        f"start delay        outside faults {_spread(f['start_delay_s']['outside_faults'])}",
        f"                   inside faults  {_spread(f['start_delay_s']['inside_faults'])}",
        "worker RSS (MiB, worker + pool, first minute → last minute):",
    ]
    for slot, rss in result["rss"].items():
        lines.append(f"  {slot}: {rss['first_minute_mib']} → {rss['last_minute_mib']}")
    lines.append("")
    lines.append("PASSED" if not result["failed"] else "FAILED: " + "; ".join(result["failed"]))
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The report as a Markdown section for the documentation, with the commit and date of the run."""
    s, f = result["settings"], result["figures"]
    pools = ", ".join(f"{pool} -c {concurrency}" for pool, concurrency in s["pools"])
    git = result.get("git") or {}
    faults = ", ".join(f"{f['faults'].get(kind, 0)} × {kind}" for kind in plan.FAULT_KINDS)
    rows = [
        ("jobs sent (`delay()` returned)", f"{f['sent']:,}"),
        ("succeeded", f"{f['succeeded']:,}"),
        ("in the morgue (all planned to fail for good)", f"{f['in_morgue']:,}"
         + (f" ({f['unexpected_outcome']} with an outcome other than planned)" if f["unexpected_outcome"]
            else "")),
        ("**lost**", f"**{f['lost']}**"),
        ("runs (every start of every attempt)", f"{f['runs']:,}"),
        ("duplicates (runs beyond one per attempt)",
         f"{f['duplicates']} {_causes(f['duplicates_by_cause'])}"),
        ("**unexplained duplicates**", f"**{f['unexplained_duplicates']}**"),
        ("countdowns sent; started before their ETA", f"{f['countdowns_sent']:,}; **{f['early_runs']}**"),
        ("countdown lateness against the ETA", _spread(f["countdown_lateness_s"])),
        ("start delay outside fault windows", _spread(f["start_delay_s"]["outside_faults"])),
        ("start delay inside fault windows", _spread(f["start_delay_s"]["inside_faults"])),
    ]
    for slot, rss in result["rss"].items():
        rows.append((f"RSS of worker {slot} (worker + pool), first → last minute",
                     f"{rss['first_minute_mib']} → {rss['last_minute_mib']} MiB"
                     + (f"; each process, at most {rss['peak_per_process_mib']} MiB, grew "
                        f"{rss['largest_growth_mib']} MiB at most over its life"
                        if "largest_growth_mib" in rss else "")
                     + (f" (the worker process alone, without its pool: "
                        f"{rss['largest_worker_process_growth_mib']} MiB)"
                        if "largest_worker_process_growth_mib" in rss else "")))
    lines = [
        f"Soak {result.get('date', '')} at `{git.get('rev', '?')}`"
        f"{' (uncommitted changes)' if git.get('dirty') else ''}: {s['rate']:g} jobs/s for "
        f"{s['duration'] / 60:g} minutes, seed {s['seed']}, workers {pools} (`task_acks_late`, "
        f"ack_deadline {s['ack_deadline']:g} s); faults: {faults}; drain: {result['drain']['how']} in "
        f"{result['drain']['seconds']} s. Verdict: "
        + ("**passed**." if not result["failed"] else "**failed**: " + "; ".join(result["failed"]) + "."),
        "",
        "| figure | value |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    return "\n".join(lines) + "\n"


def _causes(by_cause: dict[str, int]) -> str:
    order = [plan.KILL, plan.PRODUCER_KILL, plan.OUTAGE, "unexplained"]
    return "(" + ", ".join(f"{cause} {by_cause.get(cause, 0)}" for cause in order) + ")"


def _spread(spread: dict[str, Any]) -> str:
    if not spread["n"]:
        return "n=0"
    return f"p50 {spread['p50']:.3f}s  p99 {spread['p99']:.3f}s  max {spread['max']:.3f}s  (n={spread['n']})"


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")


#: Fault colours on the timeline.
COLOURS = {plan.KILL: "#d62728", plan.WARM_STOP: "#ff7f0e", plan.OUTAGE: "#9467bd",
           plan.PRODUCER_KILL: "#8c564b"}


def chart(result: dict[str, Any], path: Path, log: Callable[[str], None]) -> bool:
    """Timeline PNG: sent/started per second, backlog, start delays, RSS, fault windows shaded.

    False (with a logged note) when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: write files only
        import matplotlib.pyplot as plt
    except ImportError:
        log("chart skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return False
    timeline, t0 = result["timeline"], result["t0"]
    seconds = list(range(len(timeline["sent"])))
    figure, (rate, backlog, lateness, memory) = plt.subplots(4, 1, figsize=(12, 10), sharex=True)
    rate.plot(seconds, timeline["sent"], label="sent/s", linewidth=0.8)
    rate.plot(seconds, timeline["started"], label="first starts/s", linewidth=0.8)
    rate.set_ylabel("jobs/s")
    backlog.plot(seconds, timeline["backlog"], color="black", linewidth=0.8, label="backlog (sent − started)")
    backlog.set_ylabel("jobs")
    lateness.plot(seconds, timeline["max_start_delay"], color="#2ca02c", linewidth=0.8,
                  label="largest start delay (after send or ETA)")
    lateness.set_ylabel("s")
    for slot in sorted({sample[1] for sample in result["rss_samples"]}):
        rows = [(sample[0] - t0, sample[3] / 1024) for sample in result["rss_samples"] if sample[1] == slot]
        memory.plot([r[0] for r in rows], [r[1] for r in rows], label=f"w{slot} RSS", linewidth=0.8)
    memory.set_ylabel("MiB")
    memory.set_xlabel("seconds since the load began")
    seen: set[str] = set()
    for window in result["faults"]:
        start, end = window["start"] - t0, (window["end"] or window["start"]) - t0
        for axis in (rate, backlog, lateness, memory):
            axis.axvspan(start, max(end, start + 0.5), color=COLOURS[window["kind"]], alpha=0.2,
                         label=window["kind"] if axis is rate and window["kind"] not in seen else None)
        seen.add(window["kind"])
    for axis in (rate, backlog, lateness, memory):
        axis.legend(loc="upper right", fontsize=7)
    s, f = result["settings"], result["figures"]
    figure.suptitle(f"soak {s['rate']:g} jobs/s × {s['duration']:g}s, seed {s['seed']}: sent {f['sent']}, "
                    f"lost {f['lost']}, duplicates {f['duplicates']} "
                    f"(unexplained {f['unexplained_duplicates']}), "
                    f"early {f['early_runs']}", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
