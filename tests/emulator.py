"""Start and stop a Pub/Sub emulator for the test session (or reuse PUBSUB_EMULATOR_HOST)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Emulator:
    """One `gcloud beta emulators pubsub start` process on a local port."""

    def __init__(self, port: int | None = None) -> None:
        self._port_chosen_here = port is None
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Emulator:
        """Start the emulator and wait until *it* listens.

        Another process may take the port between free_port() and the emulator's bind
        (the suite runs in several processes, each starting emulators); the emulator
        then logs a BindException and keeps running while the other process answers on
        the port. So readiness is read from this emulator's own log, and a port picked
        here is picked again after a lost race.
        """
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise RuntimeError(
                "no Pub/Sub emulator: set PUBSUB_EMULATOR_HOST to a running one, or install the "
                "Google Cloud CLI with 'gcloud components install pubsub-emulator' (Java 17+ needed)")
        for _ in range(5):
            if self._start_once(gcloud):
                return self
            if not self._port_chosen_here:
                raise RuntimeError(f"the Pub/Sub emulator cannot listen on {self.host}: port taken")
            self.port = free_port()
            self.host = f"127.0.0.1:{self.port}"
        raise RuntimeError("the Pub/Sub emulator lost the race for a free port five times")

    def _start_once(self, gcloud: str) -> bool:
        """Start one emulator process: True once it listens, False if its port was taken."""
        log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={self.host}", "--quiet"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                log.seek(0)
                output = log.read().decode(errors="replace")
                if f"listening on {self.port}" in output:
                    return True
                if "BindException" in output:
                    self.stop(wait_for_port=False)
                    return False
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop(wait_for_port=False)
                    raise RuntimeError(
                        f"the Pub/Sub emulator did not start on {self.host}:\n{output[-2000:]}")
                time.sleep(0.2)
        finally:
            log.close()

    def pause(self) -> None:
        """Make Pub/Sub unreachable without losing its state (SIGSTOP the emulator's processes).

        Returns once the kernel shows every process of the emulator stopped: a test that
        publishes right after must find it unreachable.
        """
        self._signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5.0
        while not self._all_stopped():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the emulator on {self.host} did not stop within 5 s of SIGSTOP")
            time.sleep(0.02)

    def _all_stopped(self) -> bool:
        """True when every live process in the emulator's process group is stopped (state T)."""
        if self.process is None:
            return True
        group = self.process.pid
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            state, pgid = fields[0], int(fields[2])
            if pgid == group and state not in ("T", "t", "Z", "X"):
                return False
        return True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, wait_for_port: bool = True) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process = None
        if not wait_for_port:
            return
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
