"""morgue.failure_record: the record of a failed job, whatever form Celery hands the failure in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from billiard.einfo import ExceptionInfo
from celery import Celery

from kombu_pubsub.morgue import failure_record

app = Celery("records", broker="memory://")
app.conf.task_default_queue = "jobs"


@app.task(name="records.job")
def job() -> None:
    """Stands in for the task that failed."""


class JobError(Exception):
    """What the task raised."""


def raise_job_error() -> None:
    raise JobError("boom")


def raised() -> JobError:
    """A JobError with a traceback through raise_job_error."""
    try:
        raise_job_error()
    except JobError as exc:
        return exc
    raise AssertionError("raise_job_error did not raise")


def record(exception: Any, traceback: Any) -> dict[str, Any]:
    made = failure_record(job, "task-1", exception, ["a"], {"k": 1}, traceback)
    json.dumps(made)  # it is published as JSON: every form gives a JSON-able record
    return made


def test_a_traceback_object_gives_the_frames_and_the_exception():
    error = raised()
    failed = record(error, error.__traceback__)
    assert failed["exception"]["type"] == "JobError" and failed["exception"]["message"] == "boom"
    text = failed["exception"]["traceback"]
    assert text.startswith("Traceback (most recent call last):")
    assert "in raise_job_error" in text and text.endswith("JobError: boom\n")
    assert failed["reason"] == "task failed after its last retry: JobError: boom"
    assert (failed["task"], failed["id"], failed["args"], failed["kwargs"], failed["queue"],
            failed["executions"]) == ("records.job", "task-1", ["a"], {"k": 1}, "jobs", 1)


def test_billiards_picklable_traceback_from_a_prefork_pool_is_formatted():
    try:
        raise_job_error()
    except JobError:
        info = ExceptionInfo()
    text = record(info.exception, info.tb)["exception"]["traceback"]
    assert "in raise_job_error" in text and "JobError: boom" in text


def test_a_traceback_given_as_text_is_kept_as_it_is():
    text = 'Traceback (most recent call last):\n  File "job.py", line 3, in run\nJobError: boom\n'
    failed = record(raised(), text)
    assert failed["exception"]["traceback"] == text
    assert failed["reason"] == "task failed after its last retry: JobError: boom"


def test_without_a_traceback_the_exception_gives_its_own():
    assert "in raise_job_error" in record(raised(), None)["exception"]["traceback"]
    never_raised = JobError("boom")
    assert record(never_raised, None)["exception"]["traceback"] == f"{__name__}.JobError: boom\n"


def test_an_exception_given_as_text_is_the_message():
    failed = record("JobError('boom')", None)
    assert failed["exception"] == {"type": None, "message": "JobError('boom')",
                                   "traceback": "JobError('boom')\n"}
    assert failed["reason"] == "task failed after its last retry: JobError('boom')"
    error = raised()
    text = record("JobError('boom')", error.__traceback__)["exception"]["traceback"]
    assert text.startswith("Traceback (most recent call last):") and "in raise_job_error" in text
    assert text.endswith("JobError('boom')\n")


def test_no_exception_at_all_still_gives_a_record_that_says_so():
    failed = record(None, None)
    assert failed["exception"] == {"type": None, "message": "", "traceback": ""}
    assert failed["reason"] == "task failed after its last retry: no exception given"


@pytest.mark.parametrize("traceback", [42, object()])
def test_a_traceback_that_is_no_traceback_keeps_the_job_and_says_so(traceback, caplog):
    failed = record(raised(), traceback)
    assert failed["exception"]["traceback"].endswith("JobError: boom\n")
    assert "cannot be formatted; its morgue record has the exception only" in caplog.text
