from __future__ import annotations

import pytest

from kombu_pubsub.stats import COUNTERS, LATENCY_BUCKETS, Stats


def test_counters_start_at_zero_and_add_up():
    stats = Stats()
    assert stats.counts() == dict.fromkeys(COUNTERS, 0)
    stats.add("acked", 3)
    stats.add("acked")
    assert stats.counts()["acked"] == 4


def test_unknown_counter_names_are_refused():
    with pytest.raises(KeyError):
        Stats().add("acks")


@pytest.mark.parametrize(("seconds", "first_bucket"), [
    (0.0005, 0.001), (0.001, 0.001), (0.003, 0.005), (7.0, 10.0), (60.0, float("inf")),
])
def test_publish_latency_lands_in_the_first_bucket_at_or_above_it(seconds, first_bucket):
    stats = Stats()
    stats.observe_publish(seconds)
    cumulative, total = stats.publish_latency()
    assert total == seconds
    assert [bound for bound, _ in cumulative] == [*LATENCY_BUCKETS, float("inf")]
    assert [count for bound, count in cumulative] == [int(bound >= first_bucket) for bound, _ in cumulative]
