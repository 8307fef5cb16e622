"""A pull's answer read straight from the protobuf response (kombu_pubsub/pubsub/pulls.py)."""

from __future__ import annotations

import datetime
from unittest import mock

from google.pubsub_v1 import types

from kombu_pubsub.pubsub.pulls import PullCall


def _response() -> bytes:
    response = types.PullResponse.pb()()
    item = response.received_messages.add()
    item.ack_id, item.delivery_attempt = "ack-1", 3
    item.message.data, item.message.message_id = b'{"body": "x"}', "m-1"
    item.message.attributes.update({"kp": "1", "expires_at": "1796000000.5"})
    item.message.publish_time.FromDatetime(datetime.datetime(2026, 11, 30, 8, 0, 1, 250000))
    bare = response.received_messages.add()  # no publish time, no attributes (a minimal message)
    bare.ack_id, bare.message.data = "ack-2", b"{}"
    return response.SerializeToString()


def test_a_pull_hands_over_each_message_as_the_client_library_names_its_fields():
    future = mock.Mock()
    future.result.return_value = types.PullResponse.pb().FromString(_response())
    first, bare = PullCall(future).received()
    # The same names and values the generated client's ReceivedMessage gives.
    expected = types.PullResponse.deserialize(_response()).received_messages[0]
    assert (first.ack_id, first.delivery_attempt) == (expected.ack_id, expected.delivery_attempt)
    assert first.message.data == expected.message.data
    assert first.message.attributes == dict(expected.message.attributes)
    assert first.message.publish_time == expected.message.publish_time
    assert first.message.publish_time.tzinfo is not None
    assert (bare.ack_id, bare.delivery_attempt, bare.message.attributes, bare.message.publish_time) == \
        ("ack-2", 0, {}, None)
