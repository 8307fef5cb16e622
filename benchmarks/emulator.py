"""The Pub/Sub emulator for a run: the one named by PUBSUB_EMULATOR_HOST, else one we start.

Starting and stopping ``gcloud beta emulators pubsub start`` is the test suite's
launcher (``tests/emulator.py``), so there is one place that knows how.
"""

from __future__ import annotations

import os
from types import TracebackType

from tests.emulator import Emulator as Launcher

ENV = "PUBSUB_EMULATOR_HOST"


class Emulator:
    """Context manager that makes sure an emulator is reachable and PUBSUB_EMULATOR_HOST is set.

    If the variable is already set, that emulator is used and left alone.
    Otherwise one is started on a free port (in its own process group) and
    stopped on exit.
    """

    def __init__(self) -> None:
        self.host = os.environ.get(ENV, "")
        self.owned = False
        self._launcher: Launcher | None = None

    def __enter__(self) -> Emulator:
        if self.host:
            return self
        self._launcher = Launcher().start()  # RuntimeError saying what to install if it cannot
        self.owned = True
        self.host = self._launcher.host
        os.environ[ENV] = self.host
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._launcher is not None:
            self._launcher.stop()
            self._launcher = None
            os.environ.pop(ENV, None)
        self.owned = False
