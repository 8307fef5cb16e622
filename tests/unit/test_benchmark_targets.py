"""The benchmark report judges each target from the summary rows it is given."""

from __future__ import annotations

from typing import Any

from benchmarks import report, targets
from benchmarks.systems import CELERY_MEMORY, GCPUBSUB, KOMBU_PUBSUB


def row(scenario: str, system: str, key: str = "", **figures: float) -> dict[str, Any]:
    return {"scenario": scenario, "label": system, "system": system, "key": key,
            "baseline": system == GCPUBSUB, "repeats": 3, "errors": [],
            "figures": {name: {"median": value, "min": value, "max": value, "n": 3}
                        for name, value in figures.items()}}


def judged(rows: list[dict[str, Any]], starts: str) -> dict[str, str]:
    return next(target for target in targets.targets(rows) if target["target"].startswith(starts))


def drain_rows(pool: str, ours: float, ceiling: float, theirs: float) -> list[dict[str, Any]]:
    scenario = f"drain {pool} -c 2"
    return [row(scenario, KOMBU_PUBSUB, tasks_per_s=ours), row(scenario, CELERY_MEMORY, tasks_per_s=ceiling),
            row(scenario, GCPUBSUB, tasks_per_s=theirs)]


def test_prefork_drain_needs_60_percent_of_celerys_ceiling_and_twice_gcpubsub():
    assert judged(drain_rows("prefork", 1900, 3000, 900), "drain prefork")["status"] == "met"
    assert judged(drain_rows("prefork", 1700, 3000, 800), "drain prefork")["status"] == "**missed**"  # 57 %
    assert judged(drain_rows("prefork", 1900, 3000, 1000), "drain prefork")["status"] == "**missed**"  # 1.9×
    target = judged(drain_rows("prefork", 1900, 3000, 900), "drain prefork")
    assert "63% of Celery's ceiling" in target["measured"] and "2.11× gcpubsub" in target["measured"]


def test_threads_drain_needs_75_percent_of_the_ceiling_whatever_gcpubsub_does():
    assert judged(drain_rows("threads", 4500, 6000, 4400), "drain threads")["status"] == "met"
    assert judged(drain_rows("threads", 4400, 6000, 100), "drain threads")["status"] == "**missed**"


def latency_rows(ours: tuple[float, float], raw: tuple[float, float]) -> list[dict[str, Any]]:
    mine = row("idle latency (prefork -c 2)", KOMBU_PUBSUB, p50_ms=99.0, p99_ms=99.0)
    floor = row("idle latency (raw client)", "raw", key="rl", p50_ms=1.0, p99_ms=1.0)
    mine["pooled"] = {"p50_ms": ours[0], "p99_ms": ours[1], "samples": 1500}
    floor["pooled"] = {"p50_ms": raw[0], "p99_ms": raw[1], "samples": 1500}
    return [mine, floor]


def test_idle_latency_is_judged_on_the_pooled_samples_against_the_raw_client():
    met = judged(latency_rows((27.0, 60.0), (24.0, 51.0)), "idle latency")
    assert met["status"] == "met" and "p50 1.12×" in met["measured"]
    assert "1500 and 1500 samples" in met["measured"]
    slow_p50 = judged(latency_rows((28.0, 60.0), (24.0, 51.0)), "idle latency")  # 1.17×
    slow_p99 = judged(latency_rows((27.0, 62.0), (24.0, 51.0)), "idle latency")  # 1.22×
    assert slow_p50["status"] == slow_p99["status"] == "**missed**"
    assert judged(latency_rows((27.0, 60.0), (24.0, 51.0))[:1], "idle latency")["status"] == "not measured"


def test_the_report_compares_headline_figures_with_an_earlier_run():
    now = [row("drain prefork -c 2", KOMBU_PUBSUB, tasks_per_s=2000),
           row("idle latency (prefork -c 2)", KOMBU_PUBSUB, p50_ms=26.0, p99_ms=80.0)]
    then = {"git": {"rev": "abc1234"}, "date": "2026-11-30T05:21:00+00:00",
            "summary": [row("drain prefork -c 2", KOMBU_PUBSUB, tasks_per_s=1000),
                        row("idle latency (prefork -c 2)", KOMBU_PUBSUB, p50_ms=25.0, p99_ms=50.0)]}
    lines = report.against(now, then)
    assert "`abc1234`" in lines[0]
    assert any("tasks/s | 1,000 | 2,000 | +100% better" in line for line in lines)
    assert any("ms p50 | 25.0 | 26.0 | +4% same within noise" in line for line in lines)
    assert any("ms p99 | 50.0 | 80.0 | +60% **worse**" in line for line in lines)
    assert report.against(now, {"summary": []}) == []
