from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.emulator import Emulator, port_open

# -- measured figures --------------------------------------------------------------------
# Tests record what they measure with record_property(name, value). With
# `--figures PATH` the session writes them as a Markdown table, with the commit and
# the date, for the documentation to include (docs/results/guarantees.md).


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--figures", metavar="PATH", default=None,
                     help="write the figures the passing tests recorded (record_property) to PATH "
                          "as a Markdown table with the commit and date")


_figures: list[tuple[str, str, object]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Runs where the reports arrive: in the one process, or in xdist's controller.
    if report.when == "call" and report.passed:
        _figures.extend((report.nodeid, name, value) for name, value in report.user_properties)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--figures")
    if not path or hasattr(session.config, "workerinput"):  # xdist workers leave it to the controller
        return
    from tests.figures import write_markdown

    write_markdown(path, _figures, session.config.invocation_params.args)


@pytest.fixture(scope="session")
def emulator_host() -> Iterator[str]:
    """PUBSUB_EMULATOR_HOST for the session: the one set, or one we start."""
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if host:
        name, _, port = host.rpartition(":")
        if not port_open(name or "127.0.0.1", int(port)):
            pytest.fail(f"PUBSUB_EMULATOR_HOST={host} is set but nothing listens there; start the "
                        "emulator or unset the variable so the tests start their own")
        yield host
        return
    try:
        emulator = Emulator().start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    try:
        yield emulator.host
    finally:
        emulator.stop()
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)


@pytest.fixture
def no_installed_apps() -> Iterator[None]:
    """Hide the checks apps installed in this process (kombu_pubsub.morgue.install registers
    them process-wide); restore them after the test."""
    import kombu_pubsub.morgue as morgue

    registries = (morgue._reject_reasons, morgue._refusals, morgue._task_checks)
    saved = [list(registry) for registry in registries]
    for registry in registries:
        registry.clear()
    yield
    for registry, items in zip(registries, saved, strict=True):
        registry[:] = items
