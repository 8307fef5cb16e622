"""Judging a soak from its ledger, its morgue and its fault windows (pure: no I/O).

Each job sent is exactly one of succeeded, in the morgue, or LOST. A run beyond
one per attempt is a duplicate; at-least-once allows one only where a fault
explains it (the first that fits, in this order):

* kill: an earlier run of the job (this attempt or before) was on a worker
  SIGKILLed (or a warm stop escalated to SIGKILL) after the run started and
  before its ack could have gone out (ended no more than ACK_SLACK s before);
* producer-kill: the job was the one in flight when its producer was killed
  (it is sent again on restart);
* outage: an earlier run of the job, or the job waiting leased, overlapped a
  window when Pub/Sub was unreachable (a lease or an ack could not reach it),
  or delay() raised during one so the producer sent it again.

Anything else is unexplained, and so are early starts (before the ETA).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable
from typing import Any

from ..stats import percentile
from . import plan
from .fleet import Window
from .ledger import Contents, Run

#: Acks go out in batches after a run ends; a kill this soon after may still lose the ack, seconds.
ACK_SLACK = 5.0
#: Slack for float formatting of start and ETA times, seconds.
EARLY_TOLERANCE = 0.001


@dataclasses.dataclass(frozen=True)
class Context:
    ack_deadline: float
    rpc_timeout: float


def judge(contents: Contents, morgue_jobs: Iterable[str], windows: list[Window],
          context: Context) -> dict[str, Any]:
    """Every figure the report shows, and the lists behind each failure."""
    sent = {row.job: row for row in sorted(contents.sent, key=lambda row: row.time)}
    morgue = collections.Counter(morgue_jobs)
    runs_by_job: dict[str, list[Run]] = collections.defaultdict(list)
    for run in contents.runs:
        runs_by_job[run.job].append(run)
    outcomes = _outcomes(sent, runs_by_job, morgue)
    duplicates = _duplicates(runs_by_job, windows, contents, context)
    early = [run for run in contents.runs if run.eta > 0 and run.start < run.eta - EARLY_TOLERANCE]
    never_sent = sorted(set(runs_by_job) - set(sent))
    delays = _start_delays(sent, runs_by_job, windows)
    countdown_late = [run.start - run.eta for job, row in sent.items() if row.eta > 0
                      for run in _first_runs(runs_by_job[job]).values() if run.attempt == 0 and run.eta > 0]
    figures = {
        "sent": len(sent),
        "succeeded": len(outcomes["succeeded"]),
        "in_morgue": len(outcomes["morgue"]),
        "lost": len(outcomes["lost"]),
        "both_outcomes": len(outcomes["both"]),
        "unexpected_outcome": len(outcomes["unexpected"]),
        "morgue_entries_per_job_max": max(morgue.values(), default=0),
        "runs": len(contents.runs),
        "duplicates": sum(duplicates["by_cause"].values()),
        "duplicates_by_cause": dict(duplicates["by_cause"]),
        "unexplained_duplicates": duplicates["by_cause"].get("unexplained", 0),
        "runs_of_jobs_never_sent": len(never_sent),
        "countdowns_sent": sum(1 for row in sent.values() if row.eta > 0),
        "early_runs": len(early),
        "countdown_lateness_s": _spread(countdown_late),
        "start_delay_s": {"outside_faults": _spread(delays["outside"]),
                          "inside_faults": _spread(delays["inside"])},
        "faults": dict(collections.Counter(window.kind for window in windows)),
    }
    problems = {
        "lost": outcomes["lost"][:50],
        "both_outcomes": outcomes["both"][:50],
        "unexpected_outcome": outcomes["unexpected"][:50],
        "early_runs": [dataclasses.asdict(run) for run in early[:50]],
        "unexplained_duplicates": duplicates["unexplained"][:50],
        "runs_of_jobs_never_sent": never_sent[:50],
    }
    return {"figures": figures, "problems": problems, "failed": failures(figures)}


def failures(figures: dict[str, Any]) -> list[str]:
    """What makes the soak fail, in words; empty when it passed."""
    checks = [
        ("lost", "jobs lost"), ("early_runs", "runs started before their ETA"),
        ("unexplained_duplicates", "duplicate runs no fault explains"),
        ("both_outcomes", "jobs both succeeded and in the morgue"),
        ("unexpected_outcome", "jobs whose outcome is not the planned one"),
        ("runs_of_jobs_never_sent", "jobs run that no producer sent"),
    ]
    return [f"{figures[key]} {words}" for key, words in checks if figures[key]]


def _outcomes(sent: dict, runs_by_job: dict[str, list[Run]], morgue: collections.Counter) -> dict[str, list]:
    result: dict[str, list] = {"succeeded": [], "morgue": [], "lost": [], "both": [], "unexpected": []}
    for job, row in sent.items():
        succeeded = any(run.end_kind == "finish" for run in runs_by_job.get(job, ()))
        buried = morgue[job] > 0
        if succeeded and buried:
            result["both"].append(job)
        elif succeeded:
            result["succeeded"].append(job)
        elif buried:
            result["morgue"].append(job)
        else:
            result["lost"].append(job)
            continue
        planned_morgue = row.outcome == plan.MORGUE
        if buried != planned_morgue or succeeded == planned_morgue:
            result["unexpected"].append({"job": job, "planned": row.outcome, "succeeded": succeeded,
                                         "in_morgue": buried})
    return result


def _first_runs(runs: list[Run]) -> dict[int, Run]:
    first: dict[int, Run] = {}
    for run in sorted(runs, key=lambda run: run.start):
        first.setdefault(run.attempt, run)
    return first


def _duplicates(runs_by_job: dict[str, list[Run]], windows: list[Window], contents: Contents,
                context: Context) -> dict[str, Any]:
    kills = [w for w in windows if w.kind == plan.KILL or w.detail.get("escalated_to_kill")]
    outages = [w for w in windows if w.kind == plan.OUTAGE]
    in_flight = {f"j{w.detail['in_flight']}" for w in windows
                 if w.kind == plan.PRODUCER_KILL and "in_flight" in w.detail}
    unsure = collections.defaultdict(list)
    for job, at in contents.unsure:
        unsure[job].append(at)
    by_cause: collections.Counter[str] = collections.Counter()
    unexplained: list[dict[str, Any]] = []
    for job, runs in runs_by_job.items():
        per_attempt = collections.Counter(run.attempt for run in runs)
        for attempt, count in sorted(per_attempt.items()):
            if count < 2:
                continue
            earlier = [run for run in runs if run.attempt <= attempt]
            cause = _cause(job, earlier, kills, outages, in_flight, unsure[job], context)
            by_cause[cause or "unexplained"] += count - 1
            if cause is None:
                unexplained.append({"job": job, "attempt": attempt, "runs": [
                    dataclasses.asdict(run) for run in sorted(runs, key=lambda run: run.start)]})
    return {"by_cause": by_cause, "unexplained": unexplained}


def _cause(job: str, runs: list[Run], kills: list[Window], outages: list[Window], in_flight: set[str],
           unsure: list[float], context: Context) -> str | None:
    for run in runs:
        for window in kills:
            unacked = not run.end_kind or run.end >= window.start - ACK_SLACK
            if run.node in window.nodes and run.start <= window.start and unacked:
                return plan.KILL
    if job in in_flight:
        return plan.PRODUCER_KILL
    for window in outages:
        end = window.end or window.start
        if any(window.start - context.rpc_timeout <= at <= end for at in unsure):
            return plan.OUTAGE
        for run in runs:
            settled = (run.end if run.end_kind else run.start) + ACK_SLACK
            if run.start <= end + context.ack_deadline and settled >= window.start:
                return plan.OUTAGE
    return None


def _start_delays(sent: dict, runs_by_job: dict[str, list[Run]],
                  windows: list[Window]) -> dict[str, list[float]]:
    """Seconds from when each attempt was due (its ETA, else the send) to its first start,
    split by whether its message was waiting during a fault window (from the send, or from
    the previous attempt's end for a retry, to the start): a countdown held by a killed
    worker comes back only after an ack deadline, however far its ETA is from the kill."""
    spans = [(w.start, w.end or w.start) for w in windows]
    delays: dict[str, list[float]] = {"outside": [], "inside": []}
    for job, row in sent.items():
        first = _first_runs(runs_by_job.get(job, []))
        for attempt, run in first.items():
            due = run.eta if run.eta > 0 else row.time if attempt == 0 else 0.0
            if due <= 0:
                continue
            previous = first.get(attempt - 1)
            waiting_from = row.time if attempt == 0 else previous.end or previous.start if previous else due
            hit = any(start <= run.start and waiting_from <= end for start, end in spans)
            delays["inside" if hit else "outside"].append(run.start - due)
    return delays


def _spread(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(values), "p50": round(percentile(values, 50), 3),
            "p99": round(percentile(values, 99), 3), "max": round(max(values), 3)}


def timeline(contents: Contents, t0: float, end: float) -> dict[str, list[float]]:
    """Per second since t0: jobs sent, first starts, the backlog (sent minus started so far),
    and the largest start delay (s) among attempts first started in that second."""
    seconds = max(1, int(end - t0) + 1)

    def bucket(at: float) -> int:
        return min(seconds - 1, max(0, int(at - t0)))

    sent = [0] * seconds
    started = [0] * seconds
    delay = [0.0] * seconds
    for row in contents.sent:
        sent[bucket(row.time)] += 1
    sent_at = {row.job: row.time for row in contents.sent}
    runs_by_job: dict[str, list[Run]] = collections.defaultdict(list)
    for run in contents.runs:
        runs_by_job[run.job].append(run)
    for job, runs in runs_by_job.items():
        for attempt, run in _first_runs(runs).items():
            if attempt == 0:
                started[bucket(run.start)] += 1
            due = run.eta if run.eta > 0 else sent_at.get(job, 0.0) if attempt == 0 else 0.0
            if due > 0:
                delay[bucket(run.start)] = max(delay[bucket(run.start)], round(run.start - due, 3))
    backlog, total = [], 0
    for sent_now, started_now in zip(sent, started, strict=True):
        total += sent_now - started_now
        backlog.append(total)
    return {"sent": sent, "started": started, "backlog": backlog, "max_start_delay": delay}
