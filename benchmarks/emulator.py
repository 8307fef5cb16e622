"""The Pub/Sub emulator: use the one named by PUBSUB_EMULATOR_HOST, else start our own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .procs import stop_process

ENV = "PUBSUB_EMULATOR_HOST"
START_TIMEOUT = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Emulator:
    """Context manager that makes sure an emulator is reachable and PUBSUB_EMULATOR_HOST is set.

    If the variable is already set, that emulator is used and left alone.
    Otherwise ``gcloud beta emulators pubsub start`` is run on a free port (in its
    own process group, with a throw-away data dir) and stopped on exit.
    """

    def __init__(self) -> None:
        self.host = os.environ.get(ENV, "")
        self.owned = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    def __enter__(self) -> Emulator:
        if self.host:
            return self
        if shutil.which("gcloud") is None:
            raise RuntimeError(f"{ENV} is not set and gcloud is not on PATH to start an emulator")
        port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="bench-emulator-"))
        (self._dir / "data").mkdir()
        log = open(self._dir / "emulator.log", "wb")  # noqa: SIM115 - closed with the process
        try:
            self._proc = subprocess.Popen(
                ["gcloud", "beta", "emulators", "pubsub", "start",
                 f"--host-port=127.0.0.1:{port}", f"--data-dir={self._dir / 'data'}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()
        self.owned = True
        self.host = f"127.0.0.1:{port}"
        os.environ[ENV] = self.host
        try:
            self._wait_ready(port)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, port: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"emulator exited with {self._proc.returncode}; see {self.log_path}")
            if port_open("127.0.0.1", port):
                return
            time.sleep(0.25)
        raise RuntimeError(f"emulator did not open port {port} within {START_TIMEOUT:.0f}s; "
                           f"see {self.log_path}")

    @property
    def log_path(self) -> Path | None:
        return self._dir / "emulator.log" if self._dir else None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.owned:
            return
        if self._proc is not None:
            stop_process(self._proc, grace=10.0, whole_group=True)
            self._proc = None
        os.environ.pop(ENV, None)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.owned = False
