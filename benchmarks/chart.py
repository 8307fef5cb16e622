"""The PNG next to the results JSON: throughput and latency of kombu_pubsub, gcpubsub and the ceilings.

matplotlib is optional (``pip install -e '.[bench]'``): without it the chart is
skipped with a note, so the test extra and CI never need it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .report import kind_of, median, one_queue_row
from .systems import CELERY_MEMORY, GCPUBSUB, KOMBU_PUBSUB

Row = dict[str, Any]

#: One colour per system, the same in every panel.
COLOURS = {KOMBU_PUBSUB: "#1f77b4", GCPUBSUB: "#ff7f0e", "ceiling": "#7f7f7f"}
#: A reference line this many times above the tallest bar is written as text, not drawn.
OFF_SCALE = 1.6


def write(rows: Sequence[Row], header: dict[str, Any], path: Path, log: Callable[[str], None]) -> bool:
    """Draw the chart to `path`; False (with a logged note) when matplotlib is missing or nothing to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: write files only
        import matplotlib.pyplot as plt
    except ImportError:
        log("chart skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return False
    panels = [panel for panel in (_enqueue(rows), _drain(rows), _latency(rows), _crash(rows),
                                  _many_queues(rows)) if panel["bars"]]
    if not panels:
        log("chart skipped: no figures to draw")
        return False
    figure, axes = plt.subplots(1, len(panels), figsize=(max(9.0, 5.2 * len(panels)), 5.4), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        _draw(axis, panel)
    title = (f"kombu_pubsub vs Kombu's gcpubsub vs the ceilings, Pub/Sub emulator, {header['cpus']} CPUs\n"
             f"{header['date']} at {header['git']['rev']}; {header['repeats']} repeat(s): "
             "bar = median, whisker = min–max")
    if header.get("smoke"):
        title += " — SMOKE RUN, not meaningful"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _bar(label: str, row: Row | None, key: str, colour: str, hatch: str = "") -> dict[str, Any] | None:
    fig = row["figures"].get(key) if row else None
    if not fig:
        return None
    return {"label": label, "median": fig["median"], "min": fig["min"], "max": fig["max"],
            "colour": colour, "hatch": hatch}


def _row(rows: Sequence[Row], scenario: str, key: str) -> Row | None:
    return next((row for row in rows if row["scenario"] == scenario and row["key"] == key), None)


def _enqueue(rows: Sequence[Row]) -> dict[str, Any]:
    bars = [
        _bar("kombu_pubsub\nawaited", _row(rows, "enqueue", "kp"), "calls_per_s", COLOURS[KOMBU_PUBSUB]),
        _bar("kombu_pubsub\nfast", _row(rows, "enqueue", "kpf"), "calls_per_s", COLOURS[KOMBU_PUBSUB], "//"),
        _bar("gcpubsub", _row(rows, "enqueue", "gc"), "calls_per_s", COLOURS[GCPUBSUB]),
        _bar("raw: 1 RPC\neach (ceiling)", _row(rows, "enqueue", "rg"), "calls_per_s", COLOURS["ceiling"]),
    ]
    threaded = next((row["scenario"] for row in rows if row["scenario"].startswith("enqueue, ")), "")
    threads = threaded.removeprefix("enqueue, ").replace(" threads", " thr.")
    bars += [
        _bar(f"kombu_pubsub\nawaited, {threads}", _row(rows, threaded, "kpt"), "calls_per_s",
             COLOURS[KOMBU_PUBSUB], ".."),
        _bar(f"gcpubsub\n{threads}", _row(rows, threaded, "gct"), "calls_per_s", COLOURS[GCPUBSUB], ".."),
        _bar(f"raw: {threads}\n(ceiling)", _row(rows, threaded, "rgt"), "calls_per_s", COLOURS["ceiling"],
             ".."),
    ]
    return {"title": "enqueue: delay() calls/s (higher is better)", "unit": "calls/s",
            "bars": [bar for bar in bars if bar], "lines": []}


def _drain(rows: Sequence[Row]) -> dict[str, Any]:
    bars = []
    scenarios = [row["scenario"] for row in rows if kind_of(row["scenario"]) == "drain"
                 and row["system"] == KOMBU_PUBSUB]
    for scenario in scenarios:
        pool = scenario.removeprefix("drain ")
        bars.extend([
            _bar(f"kombu_pubsub\n{pool}", _row(rows, scenario, "kp"), "tasks_per_s", COLOURS[KOMBU_PUBSUB]),
            _bar(f"gcpubsub\n{pool}", _row(rows, scenario, "gc"), "tasks_per_s", COLOURS[GCPUBSUB]),
            _bar(f"Celery ceiling\n{pool}", next((row for row in rows if row["scenario"] == scenario
                                                  and row["system"] == CELERY_MEMORY), None),
                 "tasks_per_s", COLOURS["ceiling"]),
        ])
    raw = _row(rows, "drain (raw client)", "rd")
    lines = [("Pub/Sub ceiling (raw pull + ack)", raw["figures"]["tasks_per_s"]["median"])] \
        if raw and "tasks_per_s" in raw["figures"] else []
    return {"title": "drain: tasks/s (higher is better)", "unit": "tasks/s",
            "bars": [bar for bar in bars if bar], "lines": lines}


def _latency(rows: Sequence[Row]) -> dict[str, Any]:
    scenario = next((row["scenario"] for row in rows if row["scenario"].startswith("idle latency (")
                     and row["system"] == KOMBU_PUBSUB), "")
    bars = []
    for key, unit in (("p50_ms", "p50"), ("p99_ms", "p99")):
        bars.extend([
            _bar(f"kombu_pubsub\n{unit}", _row(rows, scenario, "kp"), key, COLOURS[KOMBU_PUBSUB]),
            _bar(f"gcpubsub\n{unit}", _row(rows, scenario, "gc"), key, COLOURS[GCPUBSUB]),
            _bar(f"raw publish\n→ pull {unit}", _row(rows, "idle latency (raw client)", "rl"), key,
                 COLOURS["ceiling"]),
        ])
    return {"title": f"{scenario or 'idle latency'}: publish → task start, ms (lower is better)",
            "unit": "ms", "bars": [bar for bar in bars if bar], "lines": []}


def _crash(rows: Sequence[Row]) -> dict[str, Any]:
    bars = []
    for row in rows:
        if kind_of(row["scenario"]) != "crash redelivery":
            continue
        colour = COLOURS.get(row["system"], COLOURS["ceiling"])
        if row.get("over_cap_repeats") and "cap_s" in row["figures"]:
            bar = _bar(f"{row['label']}\n(gave up: > cap)", row, "cap_s", colour, "xx")
        else:
            bar = _bar(row["label"], row, "redelivery_s", colour)
        if bar:
            bars.append(bar)
    return {"title": "crash redelivery: kill → task runs again, s (lower is better)", "unit": "s",
            "bars": bars, "lines": [("target 60 s", 60.0)] if bars else []}


def _many_queues(rows: Sequence[Row]) -> dict[str, Any]:
    """p99 send → start per queue count, on a log scale (gcpubsub's can be 100× kombu_pubsub's);
    hatched where some task never started."""
    bars, one = [], None
    for row in rows:
        if kind_of(row["scenario"]) != "many queues" or row["system"] not in (KOMBU_PUBSUB, GCPUBSUB):
            continue
        missing, sent = (row["figures"].get(key, {}).get("max", 0) for key in ("missing", "sent"))  # worst
        label = f"{row['label']}\nQ={median(row, 'queues') or 0:.0f}"
        label += f" ({sent - missing:.0f}/{sent:.0f} started)" if missing else ""
        bar = _bar(label, row, "p99_ms", COLOURS[row["system"]], "xx" if missing else "")
        bars.extend([bar] if bar else [])
        one = one or (one_queue_row(row, rows) if row["system"] == KOMBU_PUBSUB else None)
    one_p99 = median(one, "p99_ms")
    return {"title": "many queues: p99 send → task start, ms (lower is better; log scale)", "unit": "ms",
            "bars": bars, "lines": [("3× kombu_pubsub's one-queue p99", 3 * one_p99)] if one_p99 else [],
            "log": True}


def _draw(axis: Any, panel: dict[str, Any]) -> None:
    bars = panel["bars"]
    positions = range(len(bars))
    medians = [bar["median"] for bar in bars]
    errors = [[bar["median"] - bar["min"] for bar in bars], [bar["max"] - bar["median"] for bar in bars]]
    drawn = axis.bar(positions, medians, yerr=errors, capsize=3,
                     color=[bar["colour"] for bar in bars], edgecolor="black", linewidth=0.5)
    for patch, bar in zip(drawn, bars, strict=True):
        patch.set_hatch(bar["hatch"])
    axis.bar_label(drawn, labels=[f"{m:,.0f}" if m >= 100 else f"{m:.1f}" for m in medians], fontsize=7,
                   padding=2)
    top = max(bar["max"] for bar in bars)
    for label, value in panel["lines"]:
        if value > OFF_SCALE * top:  # would squash every bar: say it instead of drawing it
            axis.text(0.02, 0.97, f"{label}: {value:,.0f} (off the scale)", transform=axis.transAxes,
                      fontsize=7, va="top")
            continue
        axis.axhline(value, linestyle="--", color="black", linewidth=0.8)
        axis.annotate(f"{label}: {value:,.0f}", (0, value), xytext=(2, 3), textcoords="offset points",
                      fontsize=7)
    axis.set_xticks(list(positions), [bar["label"] for bar in bars], fontsize=7, rotation=35, ha="right")
    axis.set_ylabel(panel["unit"])
    if panel.get("log"):
        axis.set_yscale("log")
    axis.set_title(panel["title"], fontsize=9)
    axis.grid(axis="y", alpha=0.3)
