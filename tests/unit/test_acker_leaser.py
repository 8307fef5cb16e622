"""Batching acks by bytes, and the lease policy (no I/O: the acker is an autospec fake)."""

from __future__ import annotations

from unittest import mock

from kombu_pubsub.acker import MAX_IDS_PER_REQUEST, Acker, _chunks
from kombu_pubsub.leaser import Leaser
from kombu_pubsub.options import TransportOptions


def test_ack_ids_are_split_under_the_byte_limit():
    ack_ids = [f"{i:0200d}" for i in range(5000)]  # 200-byte ids: ~1 MB in all
    chunks = _chunks(ack_ids, 400_000)
    assert [id_ for chunk in chunks for id_ in chunk] == ack_ids
    assert all(sum(len(i) + 3 for i in chunk) <= 400_000 for chunk in chunks)
    assert len(chunks) == 3


def test_ack_ids_are_split_under_the_count_limit():
    chunks = _chunks([str(i) for i in range(6000)], 400_000)
    assert [len(chunk) for chunk in chunks] == [MAX_IDS_PER_REQUEST, MAX_IDS_PER_REQUEST, 1000]


def _leaser(**options) -> tuple[Leaser, mock.MagicMock]:
    acker = mock.create_autospec(Acker, instance=True)
    return Leaser(acker, TransportOptions(**options)), acker


def test_leases_are_extended_when_half_the_deadline_has_passed():
    leaser, acker = _leaser(ack_deadline=30)
    leaser.add("sub", ["a", "b"], deadline=10)
    start = leaser._leases["a"].leased_at
    leaser.extend_due(start + 4.9)
    acker.modify.assert_not_called()
    leaser.extend_due(start + 5.1)
    acker.modify.assert_called_once_with("sub", ["a", "b"], 30)
    leaser.extend_due(start + 19.0)  # next one due at 5.1 + 15
    assert acker.modify.call_count == 1
    leaser.extend_due(start + 20.2)
    assert acker.modify.call_count == 2


def test_settled_messages_are_not_extended():
    leaser, acker = _leaser()
    leaser.add("sub", ["a", "b"], deadline=10)
    leaser.remove("a")
    leaser.extend_due(leaser._leases["b"].leased_at + 6)
    acker.modify.assert_called_once_with("sub", ["b"], 30)


def test_a_lease_held_past_max_lease_is_let_go_with_a_warning(caplog):
    leaser, acker = _leaser(max_lease=60)
    leaser.add("sub", ["old"], deadline=10)
    leaser.extend_due(leaser._leases["old"].leased_at + 61)
    acker.modify.assert_not_called()
    assert len(leaser) == 0
    assert "over max_lease=60s" in caplog.text
