"""Expiry: which deadline applies to a message, and the morgue reason when it is past."""

from __future__ import annotations

import datetime

import pytest

from kombu_pubsub import ConfigurationError, expiry

NOW = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC)


def ago(seconds: float) -> datetime.datetime:
    return NOW - datetime.timedelta(seconds=seconds)


def payload(expiration_ms: str | None = None) -> dict:
    properties = {} if expiration_ms is None else {"expiration": expiration_ms}
    return {"body": "", "headers": {}, "properties": properties}


@pytest.mark.parametrize(("arguments", "seconds"), [
    (None, None), ({}, None), ({"x-expires": 1000}, None),
    ({"x-message-ttl": 5000}, 5.0), ({"x-message-ttl": "2500"}, 2.5), ({"x-message-ttl": 0}, 0.0),
])
def test_queue_ttl_is_read_from_the_declare_arguments_in_milliseconds(arguments, seconds):
    assert expiry.queue_ttl("q", arguments) == seconds


@pytest.mark.parametrize("raw", [-1, "soon", True, float("nan"), [5000]])
def test_a_queue_ttl_that_is_not_milliseconds_fails_the_declare_naming_queue_and_value(raw):
    with pytest.raises(ConfigurationError, match=r"queue 'q' declared with x-message-ttl=.*milliseconds"):
        expiry.queue_ttl("q", {"x-message-ttl": raw})


@pytest.mark.parametrize(("raw", "seconds"), [
    ("5000", 5.0), (1500, 1.5), ("0", 0.0), (None, None), ("soon", None), ("-5", None), (True, None),
])
def test_the_message_expiration_is_kombus_milliseconds_and_nonsense_means_none(raw, seconds):
    message = payload() if raw is None else {"properties": {"expiration": raw}}
    assert expiry.expiration(message) == seconds


def test_publishing_stamps_the_earliest_deadline_and_which_limit_set_it():
    assert expiry.stamp(payload(), None, NOW) == {}
    assert expiry.stamp(payload("5000"), None, NOW) == {
        "expires_at": "2026-01-01T12:00:05.000+00:00", "expiry": "expiration of 5s"}
    assert expiry.stamp(payload("5000"), 2.5, NOW) == {
        "expires_at": "2026-01-01T12:00:02.500+00:00", "expiry": "queue message TTL of 2.5s"}


@pytest.mark.parametrize(("message", "attributes", "published", "ttl", "reason"), [
    (payload(), {}, ago(3600), None, None),
    (payload("5000"), {}, ago(3), None, None),
    (payload("5000"), {}, ago(7), None, "expired: 7.0s old, over its expiration of 5s"),
    (payload(), {}, ago(6), 5.0, "expired: 6.0s old, over its queue message TTL of 5s"),
    (payload("10000"), {}, ago(6), 5.0, "expired: 6.0s old, over its queue message TTL of 5s"),
    (payload("5000"), {}, ago(6), 60.0, "expired: 6.0s old, over its expiration of 5s"),
    # The publisher's stamp: it knew a TTL this consumer was not told about.
    (payload(), {"expires_at": ago(1).isoformat(), "expiry": "queue message TTL of 5s"}, ago(6), None,
     "expired: 6.0s old, over its queue message TTL of 5s"),
    (payload(), {"expires_at": ago(-1).isoformat(), "expiry": "queue message TTL of 5s"}, ago(4), None,
     None),
    # No publish time known: only the stamp counts, and the reason says how late.
    (payload("5000"), {"expires_at": ago(2).isoformat(), "expiry": "expiration of 5s"}, None, None,
     "expired: 2.0s past its expiration of 5s"),
    # A re-published countdown copy: its age counts from the original's publish time.
    (payload(), {"published_at": ago(10).isoformat()}, ago(1), 5.0,
     "expired: 10.0s old, over its queue message TTL of 5s"),
    (payload(), {"expires_at": "not a time"}, ago(100), None, None),
])
def test_a_message_is_expired_once_past_its_earliest_deadline(message, attributes, published, ttl,
                                                              reason):
    assert expiry.check(message, attributes, published, ttl, NOW) == reason


def test_a_countdown_is_judged_at_its_eta_not_now():
    published = ago(1)
    eta = NOW + datetime.timedelta(seconds=60)
    assert expiry.check(payload("5000"), {}, published, None, NOW) is None
    assert expiry.check(payload("5000"), {}, published, None, eta, at_eta=True) == \
        "expired: 61.0s old at its ETA, over its expiration of 5s"
    assert expiry.check(payload("120000"), {}, published, None, eta, at_eta=True) is None


def test_a_republished_copy_keeps_its_originals_publish_time_once():
    first = expiry.carried({"task": "t"}, ago(30))
    assert first == {"task": "t", "published_at": "2026-01-01T11:59:30.000+00:00"}
    assert expiry.carried(first, ago(5)) == first  # a copy of a copy: still the original's
    assert expiry.carried({"task": "t"}, None) == {"task": "t"}
