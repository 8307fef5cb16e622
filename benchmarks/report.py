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
from .stats import summary
from .systems import GCPUBSUB, KOMBU_PUBSUB

#: Figures shown in the table per scenario kind: (key, unit, higher is better).
HEADLINE = {
    "enqueue": [("calls_per_s", "calls/s", True)],
    "drain": [("tasks_per_s", "tasks/s", True)],
    "idle latency": [("p50_ms", "ms p50", False), ("p99_ms", "ms p99", False)],
    "countdown lateness": [("p50_ms", "ms p50", False), ("p99_ms", "ms p99", False),
                           ("max_ms", "ms max", False)],
    "countdown memory": [("idle_rss_mib", "MiB idle", False), ("pending_rss_mib", "MiB pending", False),
                         ("growth_mib", "MiB growth", False)],
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


def _kind(scenario: str) -> str:
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
        rows.append({
            "scenario": scenario, "label": label, "system": group[0].system, "key": group[0].key,
            "baseline": group[0].baseline, "repeats": len(group),
            "errors": [m.error for m in group if m.error],
            "figures": {key: value for key, value in figures.items() if value is not None},
        })
    return rows


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (a .tmp file renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(fig: dict[str, float] | None, unit: str) -> str:
    if not fig:
        return "—"
    if fig["n"] == 1:
        return f"{_fmt(fig['median'])} {unit}"
    return f"{_fmt(fig['median'])} {unit} ({_fmt(fig['min'])}–{_fmt(fig['max'])})"


def markdown(rows: Sequence[dict[str, Any]], header: dict[str, Any]) -> str:
    """The README table: system, scenario, figure, ratio kombu_pubsub/gcpubsub."""
    lines = [
        f"Benchmark {header['date']} at `{header['git']['rev']}`"
        f"{' (uncommitted changes)' if header['git']['dirty'] else ''}; "
        f"{header['repeats']} repeat(s), median (min–max); Pub/Sub emulator, {header['cpus']} CPUs; "
        f"celery {header['celery']}, kombu {header['kombu']}."
        + (" **Smoke run: sizes far too small for meaningful figures.**" if header.get("smoke") else ""),
        "",
        "| System | Scenario | Figure | kombu_pubsub / gcpubsub |",
        "| --- | --- | --- | --- |",
    ]
    notes = []
    baselines = {row["scenario"]: row for row in rows if row["baseline"]}
    for row in rows:
        kind = _kind(row["scenario"])
        parts, ratios = [], []
        for key, unit, _higher in HEADLINE.get(kind, []):
            fig = row["figures"].get(key)
            parts.append(_cell(fig, unit))
            base = baselines.get(row["scenario"], {}).get("figures", {}).get(key)
            if row["system"] == KOMBU_PUBSUB and fig and base and base["median"]:
                ratios.append(f"{fig['median'] / base['median']:.2f}×")
            elif row["system"] == GCPUBSUB:
                ratios.append("1 (reference)")
        if kind == "enqueue" and "arrived" in row["figures"]:
            arrived, sent = row["figures"]["arrived"], row["figures"].get("sent")
            worst = int(arrived["min"])
            total = int(sent["max"]) if sent else worst
            parts.append(f"arrived {worst}/{total}" + (" (worst repeat)" if row["repeats"] > 1 else ""))
        parts.extend(_countdown_parts(kind, row))
        if row["errors"]:
            parts.append(f"**{len(row['errors'])} failed repeat(s)**")
            notes.extend(f"{row['label']} / {row['scenario']}: {error.splitlines()[0]}"
                         for error in row["errors"])
        # One "1 (reference)" for the gcpubsub row; every ratio (even equal ones) for kombu_pubsub.
        ratio = ", ".join(dict.fromkeys(ratios) if row["system"] == GCPUBSUB else ratios)
        lines.append(f"| {row['label']} | {row['scenario']} | {'; '.join(parts)} | {ratio} |")
    lines.append("")
    lines.append("Ratios divide medians: above 1 is better for calls/s and tasks/s, "
                 "below 1 is better for latency and memory.")
    notes[:0] = _enqueue_notes(rows)
    for note in notes:
        lines.append(f"- {note}")
    return "\n".join(lines)


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


def _enqueue_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Awaited kombu_pubsub against the raw ceiling, and messages lost at producer exit."""
    enqueue = [row for row in rows if row["scenario"] == "enqueue"]
    notes = []
    awaited = next((row for row in enqueue if row["key"] == "kp"), None)
    ceiling = next((row for row in enqueue if row["key"] == "rg"), None)
    if awaited and ceiling and "calls_per_s" in awaited["figures"] and "calls_per_s" in ceiling["figures"]:
        share = awaited["figures"]["calls_per_s"]["median"] / ceiling["figures"]["calls_per_s"]["median"]
        notes.append(f"kombu_pubsub's awaited delay() runs at {share:.0%} of the raw one-RPC-per-message "
                     "publish rate (the ceiling for any publish that waits for Pub/Sub).")
    for row in enqueue:
        lost = row["figures"].get("lost_at_exit")
        sent = row["figures"].get("sent")
        if lost and sent and lost["max"] > 0:
            notes.append(f"{row['label']}: up to {int(lost['max'])} of {int(sent['max'])} messages "
                         "never reached Pub/Sub when the producer process exited right after its last call.")
    return notes


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
