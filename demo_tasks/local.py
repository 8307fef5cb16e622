"""The whole demo without Docker: `python -m demo_tasks.local`.

Starts a Pub/Sub emulator (unless PUBSUB_EMULATOR_HOST points at one), a worker on
QUEUE_NAME and the spawner at 5 jobs/s; Ctrl-C stops all three, worker first with a
warm shutdown so running jobs finish and prefetched ones are released.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

EMULATOR_PORT = 8085
START_TIMEOUT = 60.0


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_emulator(port: int) -> subprocess.Popen:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        sys.exit("gcloud not found: install the Google Cloud CLI and its pubsub-emulator component, "
                 "or set PUBSUB_EMULATOR_HOST to a running emulator")
    if _port_open(port):
        sys.exit(f"port {port} is taken; pass --port or set PUBSUB_EMULATOR_HOST")
    emulator = subprocess.Popen([gcloud, "beta", "emulators", "pubsub", "start",
                                 f"--host-port=127.0.0.1:{port}", "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not _port_open(port):
        if emulator.poll() is not None or time.monotonic() > deadline:
            sys.exit("the Pub/Sub emulator did not start (is Java 17+ installed?)")
        time.sleep(0.2)
    return emulator


def stop(process: subprocess.Popen, timeout: float, group: bool = False) -> None:
    if process.poll() is not None:
        return
    try:
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL) if group else process.kill()
        process.wait()
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_tasks.local", description=__doc__)
    parser.add_argument("--port", type=int, default=EMULATOR_PORT, help="emulator port (default 8085)")
    parser.add_argument("--rate", type=float, default=5.0, help="jobs per second (default 5)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    emulator = None
    if not env.get("PUBSUB_EMULATOR_HOST"):
        emulator = start_emulator(args.port)
        env["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{args.port}"
        print(f"emulator on {env['PUBSUB_EMULATOR_HOST']}", flush=True)
    queue = env.get("QUEUE_NAME", "default")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "demo_tasks", "worker",
                               "-Q", queue, "-l", "info"], env=env, start_new_session=True)
    spawner = subprocess.Popen([sys.executable, "-m", "demo_tasks.spawner", "--rate", str(args.rate)],
                               env=env, start_new_session=True)
    try:
        while worker.poll() is None and spawner.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping: spawner, worker (warm shutdown), emulator", flush=True)
        stop(spawner, 10)
        stop(worker, 60)  # main process only: it stops its own pool
        if emulator is not None:
            stop(emulator, 10, group=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
