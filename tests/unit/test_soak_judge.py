"""The soak's verdict (benchmarks/soak/judge.py) and its seeded plan, on hand-made ledgers."""

from __future__ import annotations

from benchmarks.soak import judge, plan
from benchmarks.soak.fleet import Window
from benchmarks.soak.ledger import Contents, Run, Sent

CONTEXT = judge.Context(ack_deadline=30.0, rpc_timeout=20.0)


def sent(job: str, at: float = 100.0, eta: float = 0.0, outcome: str = plan.OK) -> Sent:
    return Sent(job, int(job[1:]), at, eta, outcome)


def verdict(contents: Contents, morgue: list[str] = (), windows: list[Window] = ()) -> dict:
    return judge.judge(contents, list(morgue), list(windows), CONTEXT)


def test_a_job_that_never_finished_nor_reached_the_morgue_is_lost_and_fails_the_soak():
    contents = Contents([sent("j0"), sent("j1")], [Run("j0", 0, 101.0, 0.0, "w0g1", "finish", 101.5),
                                                  Run("j1", 0, 101.0, 0.0, "w0g1")])
    result = verdict(contents)
    assert result["figures"]["lost"] == 1 and result["problems"]["lost"] == ["j1"]
    assert result["failed"] == ["1 jobs lost"]


def test_outcomes_count_the_morgue_from_its_entries_and_check_the_plan():
    contents = Contents(
        [sent("j0"), sent("j1", outcome=plan.MORGUE), sent("j2", outcome=plan.RETRY)],
        [Run("j0", 0, 101.0, 0.0, "w0g1", "finish", 101.1),
         Run("j1", 0, 101.0, 0.0, "w0g1", "retry", 102.0),
         Run("j1", 1, 104.0, 104.0, "w0g1", "retry", 105.0),
         Run("j1", 2, 107.0, 107.0, "w0g1", "fail", 108.0),
         Run("j2", 0, 101.0, 0.0, "w0g1", "retry", 101.2)])
    result = verdict(contents, morgue=["j1", "j2"])
    figures = result["figures"]
    assert (figures["succeeded"], figures["in_morgue"], figures["lost"]) == (1, 2, 0)
    assert result["problems"]["unexpected_outcome"] == [
        {"job": "j2", "planned": plan.RETRY, "succeeded": False, "in_morgue": True}]


def test_a_second_run_after_its_worker_was_killed_is_explained_by_the_kill():
    contents = Contents([sent("j0")], [Run("j0", 0, 101.0, 0.0, "w0g1"),
                                       Run("j0", 0, 140.0, 0.0, "w1g1", "finish", 140.2)])
    kill = Window(plan.KILL, 102.0, 110.0, "w0", nodes=["w0g1"])
    result = verdict(contents, windows=[kill])
    assert result["figures"]["duplicates_by_cause"] == {plan.KILL: 1}
    assert result["failed"] == []


def test_a_second_run_with_no_fault_around_it_is_unexplained():
    contents = Contents([sent("j0")], [Run("j0", 0, 101.0, 0.0, "w0g1", "finish", 101.1),
                                       Run("j0", 0, 140.0, 0.0, "w1g1", "finish", 140.2)])
    other_worker_killed = Window(plan.KILL, 102.0, 110.0, "w2", nodes=["w2g1"])
    result = verdict(contents, windows=[other_worker_killed])
    assert result["figures"]["unexplained_duplicates"] == 1
    assert result["failed"] == ["1 duplicate runs no fault explains"]


def test_a_run_that_ended_long_before_its_worker_was_killed_explains_nothing():
    contents = Contents([sent("j0")], [Run("j0", 0, 101.0, 0.0, "w0g1", "finish", 101.1),
                                       Run("j0", 0, 140.0, 0.0, "w1g1", "finish", 140.2)])
    late_kill = Window(plan.KILL, 101.1 + judge.ACK_SLACK + 1, 130.0, "w0", nodes=["w0g1"])
    assert verdict(contents, windows=[late_kill])["figures"]["unexplained_duplicates"] == 1


def test_duplicates_of_the_job_in_flight_at_a_producer_kill_or_in_an_outage_are_explained():
    contents = Contents([sent("j5"), sent("j6", at=300.0)],
                        [Run("j5", 0, 101.0, 0.0, "w0g1", "finish", 101.1),
                         Run("j5", 0, 102.0, 0.0, "w1g1", "finish", 102.1),
                         Run("j6", 0, 301.0, 0.0, "w0g1", "finish", 303.0),
                         Run("j6", 0, 330.0, 0.0, "w1g1", "finish", 330.1)])
    windows = [Window(plan.PRODUCER_KILL, 100.5, 101.5, "producer", detail={"in_flight": 5}),
               Window(plan.OUTAGE, 302.0, 312.0, "emulator")]
    assert verdict(contents, windows=windows)["figures"]["duplicates_by_cause"] == {
        plan.PRODUCER_KILL: 1, plan.OUTAGE: 1}


def test_a_run_before_its_eta_is_early_and_fails_the_soak():
    contents = Contents([sent("j0", eta=130.0)], [Run("j0", 0, 129.5, 130.0, "w0g1", "finish", 129.6)])
    result = verdict(contents)
    assert result["figures"]["early_runs"] == 1
    assert result["failed"] == ["1 runs started before their ETA"]


def test_start_delays_are_split_by_fault_windows_and_countdowns_measured_against_their_eta():
    contents = Contents([sent("j0", at=100.0), sent("j1", at=200.0, eta=230.0)],
                        [Run("j0", 0, 100.5, 0.0, "w0g1", "finish", 100.6),
                         Run("j1", 0, 238.0, 230.0, "w0g1", "finish", 238.1)])
    outage = Window(plan.OUTAGE, 229.0, 237.0, "emulator")
    figures = verdict(contents, windows=[outage])["figures"]
    assert figures["start_delay_s"]["outside_faults"]["max"] == 0.5
    assert figures["start_delay_s"]["inside_faults"]["max"] == 8.0
    assert figures["countdown_lateness_s"]["max"] == 8.0


def test_the_timeline_counts_the_backlog_as_sent_minus_first_starts():
    contents = Contents([sent("j0", at=100.2), sent("j1", at=100.4), sent("j2", at=101.1)],
                        [Run("j0", 0, 100.5, 0.0, "w0g1"), Run("j0", 0, 102.5, 0.0, "w0g1"),
                         Run("j1", 0, 102.0, 0.0, "w0g1")])
    line = judge.timeline(contents, 100.0, 103.0)
    assert line["sent"] == [2, 1, 0, 0] and line["started"] == [1, 0, 1, 0]
    assert line["backlog"] == [1, 2, 1, 1]


def test_the_plan_is_the_same_for_the_same_seed_and_faults_stay_inside_the_load():
    settings = plan.Settings(seed=7, rate=10, duration=120, kill_every=30, warm_stop_every=40,
                             outage_every=50, producer_kill_every=45, max_countdown=60)
    assert [plan.job(settings, i) for i in range(50)] == [plan.job(settings, i) for i in range(50)]
    assert plan.faults(settings) == plan.faults(settings)
    other = plan.faults(plan.Settings(**{**settings.__dict__, "seed": 8}))
    assert other != plan.faults(settings)
    faults = plan.faults(settings)
    assert {fault.kind for fault in faults} == set(plan.FAULT_KINDS)
    assert all(0 < fault.at < settings.duration for fault in faults)
    jobs = [plan.job(settings, i) for i in range(settings.jobs)]
    assert all(job.due + job.countdown <= settings.duration for job in jobs if job.countdown)
    assert {job.outcome for job in jobs} == {plan.OK, plan.RETRY, plan.MORGUE}


def test_a_countdown_waiting_across_a_kill_counts_inside_faults_even_when_due_after_it():
    contents = Contents([sent("j0", at=100.0, eta=160.0)],
                        [Run("j0", 0, 190.0, 160.0, "w0g2", "finish", 190.1)])
    kill = Window(plan.KILL, 120.0, 125.0, "w0", nodes=["w0g1"])
    figures = verdict(contents, windows=[kill])["figures"]
    assert figures["start_delay_s"]["inside_faults"]["n"] == 1
    assert figures["start_delay_s"]["outside_faults"]["n"] == 0


def test_memory_is_judged_per_worker_process_past_its_first_minute():
    from benchmarks.soak.runner import _rss_summary

    mib = 1024
    samples = [(0.0, 0, "w0g1", 100 * mib), (60.0, 0, "w0g1", 150 * mib), (120.0, 0, "w0g1", 160 * mib),
               # a restart: the new process starts small; it grows 5 MiB after its first minute
               (130.0, 0, "w0g2", 90 * mib), (190.0, 0, "w0g2", 140 * mib), (250.0, 0, "w0g2", 145 * mib)]
    summary = _rss_summary(samples)["w0"]
    assert summary["peak_per_process_mib"] == 160.0
    assert summary["largest_growth_mib"] == 10.0  # w0g1: 150 → 160 after its start-up minute
    assert "largest_worker_process_growth_mib" not in summary  # no worker-alone figures sampled
    # With the worker process alone sampled too: its pool grows, the worker does not.
    with_main = [(at, slot, node, kib, 100 * mib) for at, slot, node, kib in samples]
    assert _rss_summary(with_main)["w0"]["largest_worker_process_growth_mib"] == 0.0


def test_the_markdown_report_names_the_commit_and_shows_lost_early_and_unexplained():
    from benchmarks.soak import report

    contents = Contents([sent("j0"), sent("j1")], [Run("j0", 0, 101.0, 0.0, "w0g1", "finish", 101.5)])
    result = {
        **verdict(contents), "git": {"rev": "abc1234", "dirty": False}, "date": "2026-11-30 08:00 UTC",
        "settings": {"rate": 20, "duration": 1800, "seed": 1, "pools": [["threads", 8]], "ack_deadline": 30},
        "drain": {"how": "all settled", "seconds": 12.0},
        "rss": {"w0": {"first_minute_mib": 100.0, "last_minute_mib": 101.0}},
    }
    text = report.markdown(result)
    assert "at `abc1234`" in text and "30 minutes" in text
    assert "| **lost** | **1** |" in text and "**failed**: 1 jobs lost" in text
