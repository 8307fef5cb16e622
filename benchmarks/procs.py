"""Starting and always stopping the subprocesses a benchmark runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: ours, the repo on PYTHONPATH, plus `extra`."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0, whole_group: bool = False,
                 sig: int = signal.SIGTERM) -> None:
    """Stop `proc`: `sig` (SIGTERM), wait up to `grace` s, then SIGKILL its process group. Never raises.

    Every child here is started with start_new_session=True, so its pid is its
    process group id. SIGTERM goes to the leader only (a Celery worker then does
    a warm shutdown and stops its own pool) unless `whole_group`; the final
    SIGKILL goes to the whole group so no pool child or helper outlives us.
    """
    if proc.poll() is None:
        if whole_group:
            _signal_group(proc, sig)
        else:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    # The leader may be gone while pool children linger: kill the group regardless.
    _signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(5.0)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_python_module(module: str, args: list[str], env: dict[str, str], timeout: float,
                      log_path: Path) -> dict[str, Any]:
    """Run ``python -m module args`` to completion; return the JSON object it printed last.

    stderr goes to `log_path`. Raises RuntimeError (with the log's tail) on a
    non-zero exit, a timeout or missing output.
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc, grace=2.0)
            raise RuntimeError(f"{module} {' '.join(args)} timed out after {timeout:.0f}s; "
                               f"log tail:\n{tail(log_path)}") from None
        finally:
            stop_process(proc, grace=2.0)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} exited {proc.returncode}; log tail:\n{tail(log_path)}")
    lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{module} {' '.join(args)} printed no result; log tail:\n{tail(log_path)}")
    return json.loads(lines[-1])


def tail(path: Path, lines: int = 25) -> str:
    """The last `lines` lines of a log file ('' if missing)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM, ...); None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def thread_count(pid: int) -> int | None:
    """Threads of a live process (/proc/PID/status ``Threads``); None if it is gone."""
    return status_kib(pid, "Threads")  # the same "Name: value" line, holding a count rather than kB


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (/proc/PID/task/*/children, else a scan of /proc)."""
    children: set[int] = set()
    if os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as listing:
                    children.update(int(child) for child in listing.read().split())
            except OSError:
                continue  # that thread ended meanwhile
        return sorted(children)
    for entry in os.listdir("/proc"):  # kernel without CONFIG_PROC_CHILDREN
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                    # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                children.add(int(entry))
    return sorted(children)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a live process used so far (/proc/PID/stat); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # pid (comm) state ppid ... utime stime: fields 14 and 15, counted after the last ')'.
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of `pid` plus its live direct children (a worker and its pool); None if gone."""
    main = cpu_seconds(pid)
    if main is None:
        return None
    return main + sum(cpu_seconds(child) or 0.0 for child in child_pids(pid))
