"""Pure logic: names, options, URLs, wire format (no I/O)."""

from __future__ import annotations

import json
import re

import pytest

from kombu_pubsub import ConfigurationError, MessageTooLargeError, NamingError, TransportOptions
from kombu_pubsub.naming import queue_name, resource_id
from kombu_pubsub.options import parse_url
from kombu_pubsub.wire import UndecodableMessage, decode, encode

VALID_ID = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")


@pytest.mark.parametrize(("name", "expected"), [
    ("default", "default"),
    ("celery", "celery"),
    ("morgue", "morgue"),
    ("celery.pidbox", "celery.pidbox"),
    ("celery@host.celery.pidbox", "celery%40host.celery.pidbox"),
    ("4b5c.reply.celery.pidbox", "q~4b5c.reply.celery.pidbox"),
    ("q", "q~q"),
    ("ab", "q~ab"),
    ("google-queue", "q~google-queue"),
    ("a b", "a%20b"),
    ("a%b", "a%25b"),
    ("a~b", "a%7Eb"),
    ("é-x", "q~%C3%A9-x"),
])
def test_queue_names_map_to_pubsub_ids(name, expected):
    assert resource_id(name) == expected
    assert VALID_ID.match(resource_id(name))


@pytest.mark.parametrize("name", ["", "x" * 256, "@" * 90])
def test_names_that_cannot_fit_are_refused(name):
    with pytest.raises(NamingError):
        resource_id(name)


@pytest.mark.parametrize(("pubsub_id", "name"), [
    ("default", "default"),
    ("q~1jobs", "1jobs"),  # what a dead-lettered message names as its source subscription
    ("celery%40host.celery.pidbox", "celery@host.celery.pidbox"),
    ("q~4b5c.reply.celery.pidbox", "4b5c.reply.celery.pidbox"),
    ("q~ab", "ab"),
    ("q~google-queue", "google-queue"),
    ("a%7Eb", "a~b"),
    ("a%25b", "a%b"),
    ("q~%C3%A9-x", "é-x"),
])
def test_pubsub_ids_map_back_to_their_queue_names(pubsub_id, name):
    assert queue_name(pubsub_id) == name


@pytest.mark.parametrize(("pubsub_id", "why"), [
    ("", "is empty"),
    ("1jobs", "has the id 'q~1jobs'"),  # needs the prefix
    ("ab", "has the id 'q~ab'"),  # too short without it
    ("goog-x", "has the id 'q~goog-x'"),
    ("q~abc", "has the id 'abc'"),  # a prefix the name does not need
    ("q~", "has no id"),
    ("a~b", "'~'"),  # escaped as %7E
    ("a b", "' '"),
    ("a%7eb", "two upper-case hex digits"),
    ("abc%4", "two upper-case hex digits"),
    ("a%41b", "has the id 'aAb'"),  # a character that is never escaped
    ("abc%C3", "not UTF-8"),
    ("q~" + "a" * 254, "has the id 'aaa"),
    ("a" * 256, "has no id"),  # longer than Pub/Sub allows
])
def test_ids_resource_id_never_makes_are_refused_with_the_reason(pubsub_id, why):
    with pytest.raises(NamingError, match=re.escape(why)):
        queue_name(pubsub_id)


def test_the_mapping_never_sends_two_names_to_one_id():
    names = ["q~ab", "ab", "a%7Eb", "a~b", "a%25b", "a%b", "1ab", "q~1ab", "goog", "q~goog", "a b", "a%20b"]
    ids = [resource_id(name) for name in names]
    assert len(set(ids)) == len(names)


@pytest.mark.parametrize(("raw", "field", "expected"), [
    ({"ack_deadline": "45"}, "ack_deadline", 45.0),
    ({"create_missing": "false"}, "create_missing", False),
    ({"create_missing": "1"}, "create_missing", True),
    ({"fast_publish": True}, "fast_publish", True),
    ({"pull_max_messages": "250"}, "pull_max_messages", 250),
    ({"publish_timeout": 0.5}, "rpc_timeout", 0.5),  # its other name
    ({"rpc_timeout": "2.5"}, "rpc_timeout", 2.5),
    ({"subscription_ttl": "0"}, "subscription_ttl", 0.0),
    ({"polling_interval": 1}, "ack_deadline", 30.0),  # Kombu's own options are ignored
])
def test_options_accept_strings_and_values(raw, field, expected):
    assert getattr(TransportOptions.from_mapping(raw), field) == expected


@pytest.mark.parametrize(("raw", "message"), [
    ({"ack_deadline": 5}, r"ack_deadline=5.0 is out of range; accepted: 10 to 600"),
    ({"ack_deadline": "soon"}, r"ack_deadline='soon' is not a valid float"),
    ({"create_missing": "maybe"}, r"create_missing='maybe' is not a valid true/false"),
    ({"pull_max_messages": "2.5"}, r"pull_max_messages='2.5' is not a valid int"),
    ({"message_retention": 60}, r"message_retention=60.0 is out of range"),
    ({"subscription_ttl": 3600}, r"subscription_ttl=3600.0 is out of range; accepted: 86400"),
    ({"ack_batch_bytes": 600_000}, r"ack_batch_bytes=600000 is out of range"),
])
def test_bad_options_name_the_option_the_value_and_the_range(raw, message):
    with pytest.raises(ConfigurationError, match=message):
        TransportOptions.from_mapping(raw)


@pytest.mark.parametrize(("parts", "env", "expected"), [
    (dict(hostname="my-project"), None, "my-project"),
    (dict(hostname=None), None, "job_queue"),
    (dict(hostname=None), "from-env", "from-env"),
    (dict(hostname="p1-x", virtual_host="/"), None, "p1-x"),
])
def test_project_comes_from_url_then_environment_then_default(monkeypatch, parts, env, expected):
    if env:
        monkeypatch.setenv("PUBSUB_JOB_QUEUE_PROJECT_ID", env)
    else:
        monkeypatch.delenv("PUBSUB_JOB_QUEUE_PROJECT_ID", raising=False)
    assert parse_url(**parts).project == expected
    assert parse_url(**parts).target is None  # a project only: no endpoint


@pytest.mark.parametrize("parts", [
    dict(hostname="proj", port=8085),
    dict(hostname="proj", userid="me", password="secret"),
    dict(hostname="proj", virtual_host="extra/path"),
    dict(hostname="My Project"),
    dict(hostname="-leading"),
])
def test_malformed_urls_say_what_is_expected(parts):
    with pytest.raises(ConfigurationError, match="pubsub://"):
        parse_url(**parts)


def test_kombu_connection_url_reaches_the_project(monkeypatch):
    from kombu import Connection

    import kombu_pubsub  # noqa: F401
    monkeypatch.delenv("PUBSUB_JOB_QUEUE_PROJECT_ID", raising=False)
    assert Connection("pubsub://").transport.project == "job_queue"
    assert Connection("pubsub://proj-a").transport.project == "proj-a"
    with pytest.raises(ConfigurationError):
        Connection("pubsub://proj-a:99").transport  # noqa: B018


ENVELOPE = {"body": "e30=", "content-type": "application/json", "content-encoding": "utf-8",
            "headers": {"task": "demo_tasks.mock_job", "id": "abc"},
            "properties": {"delivery_info": {"exchange": "default", "routing_key": "default"}}}


def test_wire_round_trip_keeps_the_envelope_and_tags_the_task():
    data, attributes = encode(ENVELOPE)
    assert decode(data) == ENVELOPE
    assert attributes == {"kombu_pubsub": "1", "task": "demo_tasks.mock_job", "id": "abc"}


def test_wire_clips_long_attributes_to_pubsub_limit():
    envelope = dict(ENVELOPE, headers={"task": "t" * 5000})
    _, attributes = encode(envelope)
    assert len(attributes["task"].encode()) == 1024


def test_wire_refuses_oversized_messages():
    with pytest.raises(MessageTooLargeError, match="10 MB"):
        encode(dict(ENVELOPE, body="x" * 10_000_000))


def circular() -> dict:
    loop: dict = {}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize(("part", "values", "message"), [
    ("headers", {"ok": 1, "bad": object()}, r"header 'bad' cannot be encoded as JSON \(object: "),
    ("headers", {"when": {1, 2}}, r"header 'when' cannot be encoded as JSON \(set: "),
    ("headers", {"loop": circular()}, r"header 'loop' cannot be encoded as JSON \(dict: "),
    ("headers", {(1, 2): "tuple key"}, r"header \(1, 2\) cannot be encoded as JSON"),
    ("properties", {"custom": b"bytes"}, r"message property 'custom' cannot be encoded as JSON"),
])
def test_a_value_json_cannot_encode_raises_kombus_encode_error_naming_it(part, values, message):
    from kombu.exceptions import EncodeError

    with pytest.raises(EncodeError, match=message + ".*send JSON types only"):
        encode(dict(ENVELOPE, **{part: values}))


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"\xff\xfe\x00garbage", "not UTF-8 JSON"),
    (b"not json", "not UTF-8 JSON"),
    (b"[1, 2]", "not an object"),
    (json.dumps({"body": "x"}).encode(), "lacks the Kombu envelope"),
    (json.dumps({"body": "x", "properties": {"delivery_info": 3}}).encode(), "delivery_info"),
    (json.dumps({"body": "x", "properties": {}, "headers": [1]}).encode(), "headers"),
])
def test_undecodable_messages_say_why(data, reason):
    with pytest.raises(UndecodableMessage, match=reason):
        decode(data)
