"""Property tests of naming.py: each queue name maps to a valid Pub/Sub id or NamingError, one-to-one,
and queue_name undoes resource_id exactly."""

from __future__ import annotations

import re
import urllib.parse

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kombu_pubsub import NamingError
from kombu_pubsub.naming import MAX_ID_LENGTH, PREFIX, queue_name, resource_id

#: Pub/Sub's rule for topic and subscription ids.
VALID_ID = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")

#: Names Celery makes (pidbox, reply queues, UUIDs), the characters the mapping treats
#: specially, and any text at all, up to past the length limit.
TRICKY = "q~%goGO.-_+@ :/é0123456789"
names = st.one_of(
    st.text(alphabet=TRICKY, max_size=12),
    st.text(max_size=300),
    st.uuids().map(lambda u: f"{u}.reply.celery.pidbox"),
    st.from_regex(r"[a-z]{1,20}@[a-z0-9.-]{1,40}\.celery\.pidbox", fullmatch=True),
)


def unmap(pubsub_id: str) -> str:
    """The inverse of resource_id: drop the prefix, undo the %XX escapes."""
    return urllib.parse.unquote(pubsub_id.removeprefix(PREFIX), errors="strict")


@settings(max_examples=1000)
@given(names)
@example("goog")
@example("GOOG-x")
@example("q~")
@example("%")
@example("é")
@example("a" * 255)
@example("a" * 256)
def test_every_name_maps_to_a_valid_id_or_raises_naming_error(name):
    try:
        pubsub_id = resource_id(name)
    except NamingError:
        escaped = sum(1 if c.isascii() and (c.isalnum() or c in "-_.+") else 3 * len(c.encode())
                      for c in name)
        assert name == "" or escaped + len(PREFIX) > MAX_ID_LENGTH  # refused only when too long
        return
    assert VALID_ID.fullmatch(pubsub_id), pubsub_id
    assert not pubsub_id.lower().startswith("goog")
    assert len(pubsub_id) <= MAX_ID_LENGTH


@settings(max_examples=1000)
@given(names)
def test_the_mapping_can_be_undone_so_no_two_names_share_a_topic(name):
    try:
        pubsub_id = resource_id(name)
    except NamingError:
        return
    assert unmap(pubsub_id) == name


@settings(max_examples=500)
@given(names, st.sampled_from([lambda n: PREFIX + n, lambda n: resource_id(n), lambda n: n + "~",
                               lambda n: n.replace("%", "%25"), lambda n: n.upper(), lambda n: "q" + n]))
def test_names_built_to_collide_get_ids_of_their_own(name, twist):
    try:
        other = twist(name)
        first, second = resource_id(name), resource_id(other)
    except NamingError:
        return
    assert (first == second) == (name == other)


@settings(max_examples=1000)
@given(names)
@example("1jobs")
@example("q~1jobs")
@example("goog")
@example("~")
def test_queue_name_undoes_resource_id(name):
    try:
        pubsub_id = resource_id(name)
    except NamingError:
        return
    assert queue_name(pubsub_id) == name


#: Text that looks like ids: the id alphabet, escapes in both cases, the prefix.
ids = st.one_of(
    st.text(alphabet="aZ09-_.+~%q", max_size=12),
    st.lists(st.sampled_from(["a", "Z", "1", "q~", "~", "%", "%7E", "%7e", "%41", "%C3", "%A9",
                              "%25", "goog", "."]), max_size=8).map("".join),
    st.text(max_size=40),
)


@settings(max_examples=1000)
@given(ids)
@example("q~abc")
@example("a%41b")
@example("%C3%A9")
def test_queue_name_accepts_exactly_the_ids_resource_id_makes(pubsub_id):
    try:
        name = queue_name(pubsub_id)
    except NamingError:
        # Refused: then no name has this id (the name it would spell, if any, maps elsewhere).
        try:
            spelled = unmap(pubsub_id)
        except UnicodeDecodeError:
            return
        try:
            assert resource_id(spelled) != pubsub_id
        except NamingError:
            pass
        return
    assert resource_id(name) == pubsub_id
