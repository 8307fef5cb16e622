"""The conformance table: one row per behaviour, one column per system, what each observed."""

from __future__ import annotations

import pytest

from tests.conformance_table import Result, behaviour, render


@pytest.mark.parametrize(("name", "params", "expected"), [
    ("test_a_requeued_message_comes_back", {}, "a requeued message comes back"),
    ("test_a_message_past_its_time_to_live_is_not_delivered", {"how": "expiration"},
     "a message past its time to live is not delivered (expiration)"),
])
def test_a_behaviour_is_the_test_name_in_words_with_its_other_parameters(name, params, expected):
    assert behaviour(name, params) == expected


def test_the_table_has_a_column_per_system_in_order_and_says_what_was_observed():
    results = {
        "priorities order what a consumer receives": {
            "memory": Result("pass", "3 9 0 6 3"),
            "redis": Result("pass", "0 3 3 6 9"),
            "pubsub": Result("fail", "9 6 3 0 3"),
        },
        "connecting fails": {
            "pubsub": Result("pass"),
            "redis": Result("pass"),
            "memory": Result("skip", reason="memory:// runs in this process"),
        },
        "a pipe | in a cell": {"pubsub": Result("pass", "a|b")},
    }
    assert render(results, ["Measured on commit abc."]).splitlines() == [
        "Measured on commit abc.",
        "",
        "| behaviour | pubsub | redis | memory |",
        "|---|---|---|---|",
        "| priorities order what a consumer receives | **FAIL**: 9 6 3 0 3 | pass: 0 3 3 6 9 "
        "| pass: 3 9 0 6 3 |",
        "| connecting fails | pass | pass | skip: memory:// runs in this process |",
        "| a pipe \\| in a cell | pass: a\\|b | not run | not run |",
    ]
