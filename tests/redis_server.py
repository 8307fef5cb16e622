"""Start and stop a private redis-server for tests: the reference broker and a result backend.

Nothing is persisted (no RDB snapshots, no append-only file); the server listens on
127.0.0.1 only, on a free port, and lives as long as the object that started it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

from tests.emulator import free_port

START_TIMEOUT = 10.0
#: What redis-server 5–7 logs once it accepts connections, and when its port is taken.
READY = "Ready to accept connections"
PORT_TAKEN = "Address already in use"


class RedisServer:
    """One `redis-server` process on a free local port, without persistence."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="kombu-pubsub-redis-")

    @property
    def url(self) -> str:
        """A Kombu/Celery URL of database 0 on this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start redis-server and wait until it says it accepts connections.

        Another process may take the port between free_port() and redis-server's bind
        (the suite runs in several processes); redis-server then exits saying so, and
        another port is tried.
        """
        server = shutil.which("redis-server")
        if server is None:
            raise FileNotFoundError("no redis-server on this machine (apt-get install redis-server)")
        for _ in range(5):
            self.port = free_port()
            if self._start_once(server):
                return self
        raise RuntimeError("redis-server lost the race for a free port five times")

    def _start_once(self, server: str) -> bool:
        """Start one redis-server: True once it is ready, False if its port was taken."""
        log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir.name, "--logfile", ""],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                log.seek(0)
                output = log.read().decode(errors="replace")
                if READY in output:
                    return True
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    if PORT_TAKEN in output:
                        return False
                    raise RuntimeError(f"redis-server did not start on port {self.port}:\n"
                                       f"{output[-2000:]}")
                time.sleep(0.05)
        finally:
            log.close()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        self._dir.cleanup()


def redis_version() -> str | None:
    """The installed redis-server's version (e.g. '7.0.15'); None when none is installed."""
    server = shutil.which("redis-server")
    if server is None:
        return None
    output = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
    for word in output.split():
        if word.startswith("v="):
            return word[2:]
    return output.strip()
