"""The one-line translation of errors on the celery command line (kombu_pubsub.ops.cli_errors)."""

from __future__ import annotations

import sys
from unittest import mock

import click
import google.auth.exceptions
import pytest
from celery import Celery
from click.testing import CliRunner
from google.api_core import exceptions as gexc
from kombu.exceptions import OperationalError

import kombu_pubsub  # noqa: F401  registers pubsub://
from kombu_pubsub.errors import BrokerUnavailableError, ConfigurationError, NamingError
from kombu_pubsub.ops import cli_errors
from kombu_pubsub.ops.queue_tools import pubsub_connection

UNREACHABLE = ("Pub/Sub did not answer while connecting to project 'p': 503 failed to connect. "
               "Check that Pub/Sub is reachable (PUBSUB_EMULATOR_HOST for the emulator, ...).")


def wrapped_by_kombu(exc: BaseException) -> OperationalError:
    """What Kombu's Connection raises for a connection error of ours (str of ours, from ours)."""
    try:
        raise OperationalError(str(exc)) from exc
    except OperationalError as wrapper:
        return wrapper


@pytest.mark.parametrize(("error", "expected"), [
    (ConfigurationError("transport option ack_deadline=5.0 is out of range; accepted: 10 to 600"),
     "transport option ack_deadline=5.0 is out of range; accepted: 10 to 600"),
    (NamingError("queue/exchange name 'xx…' maps to a Pub/Sub id of 300 characters"),
     "queue/exchange name 'xx…' maps to a Pub/Sub id of 300 characters"),
    (wrapped_by_kombu(BrokerUnavailableError(UNREACHABLE)), UNREACHABLE),
    (ConfigurationError("first line\n  second\tline\n"), "first line second line"),
])
def test_our_errors_read_as_their_own_message_on_one_line(error, expected):
    assert cli_errors.explain(error) == expected


@pytest.mark.parametrize(("error", "hints"), [
    (google.auth.exceptions.DefaultCredentialsError("Your default credentials were not found."),
     ["no Google Cloud credentials", "gcloud auth application-default login",
      "GOOGLE_APPLICATION_CREDENTIALS", "PUBSUB_EMULATOR_HOST"]),
    (google.auth.exceptions.RefreshError("invalid_grant: Token has been expired or revoked."),
     ["credentials could not be used", "Token has been expired", "gcloud auth application-default login"]),
    (gexc.ServiceUnavailable("failed to connect to all addresses"),
     ["did not answer while running the command", "PUBSUB_EMULATOR_HOST"]),
    (gexc.PermissionDenied("User not authorized to perform this action."),
     ["refused running the command", "roles/pubsub.subscriber"]),
])
def test_google_errors_read_as_what_is_wrong_and_what_to_do(error, hints, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    line = cli_errors.explain(error)
    assert line is not None and "\n" not in line
    for hint in hints:
        assert hint in line


def test_a_credentials_file_that_cannot_be_used_is_named_in_the_fix(monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/keys/missing.json")
    line = cli_errors.explain(google.auth.exceptions.DefaultCredentialsError(
        "File /keys/missing.json was not found."))
    assert "fix GOOGLE_APPLICATION_CREDENTIALS (it names '/keys/missing.json')" in line


def raised_while_handling(ours: BaseException, bug: BaseException) -> BaseException:
    try:
        try:
            raise ours
        except type(ours):
            raise bug  # noqa: B904 - the implicit context is what this case is about
    except type(bug) as exc:
        return exc


@pytest.mark.parametrize("error", [
    ValueError("a bug"),
    KeyError("x"),
    KeyboardInterrupt(),
    OperationalError("Error 111 connecting to localhost:6379. Connection refused."),  # Redis's
    raised_while_handling(ConfigurationError("ours"), TypeError("a bug in the handler")),
], ids=["bug", "key-error", "interrupt", "another-broker", "bug-while-handling-ours"])
def test_other_errors_are_not_explained_so_they_keep_their_traceback(error):
    assert cli_errors.explain(error) is None


def test_a_cycle_of_causes_ends():
    first, second = OperationalError("a"), OperationalError("b")
    first.__cause__, second.__cause__ = second, first
    assert cli_errors.explain(first) is None


# -- the click group -------------------------------------------------------------------
def group_raising(error: BaseException) -> click.Group:
    """A group like `celery pubsub`, whose sub-group's command raises `error`."""

    @click.group(cls=cli_errors.OneLineErrors)
    def top() -> None:
        pass

    @top.group()
    def sub() -> None:
        pass

    @sub.command()
    def run() -> None:
        raise error

    return top


def test_a_command_in_a_sub_group_reports_our_error_as_one_line_and_exit_status_1():
    result = CliRunner().invoke(group_raising(wrapped_by_kombu(BrokerUnavailableError(UNREACHABLE))),
                                ["sub", "run"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: {UNREACHABLE}"]
    assert "Traceback" not in result.output


def test_a_command_s_bug_keeps_its_traceback():
    result = CliRunner().invoke(group_raising(ValueError("a bug")), ["sub", "run"])
    assert isinstance(result.exception, ValueError)


def test_the_traceback_variable_shows_the_error_itself(monkeypatch):
    monkeypatch.setenv(cli_errors.TRACEBACK_ENV, "1")
    result = CliRunner().invoke(group_raising(ConfigurationError("bad option")), ["sub", "run"])
    assert isinstance(result.exception, ConfigurationError)


# -- the excepthook (Celery's own commands) ------------------------------------------------
def test_the_hook_prints_our_error_as_one_line_and_hands_others_on(capsys):
    previous = mock.Mock()
    hook = cli_errors.one_line_hook(previous)
    ours = wrapped_by_kombu(BrokerUnavailableError(UNREACHABLE))
    hook(type(ours), ours, None)
    assert capsys.readouterr().err == f"Error: {UNREACHABLE}\n"
    previous.assert_not_called()

    bug = ValueError("a bug")
    hook(ValueError, bug, None)
    previous.assert_called_once_with(ValueError, bug, None)
    assert capsys.readouterr().err == ""


def test_installing_the_hook_twice_wraps_once(monkeypatch):
    original = mock.Mock()
    monkeypatch.setattr("sys.excepthook", original)
    cli_errors.install()
    installed = sys.excepthook
    cli_errors.install()
    assert sys.excepthook is installed and installed is not original
    bug = ValueError("a bug")
    installed(ValueError, bug, None)
    original.assert_called_once_with(ValueError, bug, None)


# -- the broker check of the pubsub commands ---------------------------------------------------
def test_the_pubsub_commands_refuse_another_broker_with_the_setting_to_change():
    with pytest.raises(ConfigurationError, match=r"not pubsub://.*broker_url='pubsub://<project-id>'"):
        pubsub_connection(Celery("other", broker="memory://"))


def test_the_pubsub_commands_check_the_transport_options_before_any_call():
    app = Celery("bad", broker="pubsub://p", broker_transport_options={"ack_deadline": 5})
    with pytest.raises(ConfigurationError, match="ack_deadline=5.0 is out of range"):
        pubsub_connection(app)
