"""The soak's ledger: what producers sent and what workers ran, durable across SIGKILL.

Each process appends to a file of its own (``ROLE-PID.ledger`` in SOAK_LEDGER_DIR),
each line written with one ``os.write`` on an ``O_APPEND`` descriptor: once the
call returns the line is in the kernel's page cache, so killing the process
loses nothing it recorded. Lines are space-separated fields, the event first:

``sent JOB INDEX TIME ETA OUTCOME``   producer, once delay() returned; TIME when it was called
                                     (ETA 0: none)
``unsure JOB INDEX TIME``             producer, delay() raised: Pub/Sub may have the job anyway
``start JOB ATTEMPT TIME ETA NODE``   worker, a run begins (ETA the message's, 0: none)
``finish|retry|fail JOB ATTEMPT TIME NODE``  worker, how the run ended
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

ENV = "SOAK_LEDGER_DIR"


class Ledger:
    """Appends lines to this process's ledger file; reopened in a forked child (prefork pool)."""

    def __init__(self, directory: str, role: str) -> None:
        self._directory = directory
        self._role = role
        self._lock = threading.Lock()  # guards _fd and _pid: threads pools write from many threads
        self._fd: int | None = None
        self._pid = 0

    @classmethod
    def from_env(cls, role: str) -> Ledger:
        return cls(os.environ.get(ENV, ""), role)

    def write(self, *fields: object) -> None:
        """Append one line of `fields`; does nothing when no ledger directory is set."""
        if not self._directory:
            return
        line = (" ".join(str(field) for field in fields) + "\n").encode("ascii")
        with self._lock:
            if self._fd is None or self._pid != os.getpid():
                self._pid = os.getpid()
                path = os.path.join(self._directory, f"{self._role}-{self._pid}.ledger")
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            fd = self._fd
        os.write(fd, line)


@dataclasses.dataclass(frozen=True)
class Sent:
    job: str
    index: int
    time: float
    eta: float
    outcome: str


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of one attempt of a job: its start and how it ended (kind '' and end 0 if never)."""

    job: str
    attempt: int
    start: float
    eta: float
    node: str
    end_kind: str = ""
    end: float = 0.0


@dataclasses.dataclass
class Contents:
    sent: list[Sent]
    runs: list[Run]
    unsure: list[tuple[str, float]] = dataclasses.field(default_factory=list)  # (job, time)


def read(directory: Path) -> Contents:
    """Every complete line of every ledger file in `directory` (a torn last line is skipped)."""
    sent: list[Sent] = []
    unsure: list[tuple[str, float]] = []
    starts: list[tuple[str, int, float, float, str]] = []
    ends: dict[tuple[str, int, str], list[tuple[str, float]]] = {}
    for path in sorted(directory.glob("*.ledger")):
        text = path.read_text(encoding="ascii", errors="replace")
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            fields = line.split()
            try:
                if fields[0] == "sent" and len(fields) == 6:
                    sent.append(Sent(fields[1], int(fields[2]), float(fields[3]), float(fields[4]),
                                     fields[5]))
                elif fields[0] == "unsure" and len(fields) == 4:
                    unsure.append((fields[1], float(fields[3])))
                elif fields[0] == "start" and len(fields) == 6:
                    starts.append((fields[1], int(fields[2]), float(fields[3]), float(fields[4]), fields[5]))
                elif fields[0] in ("finish", "retry", "fail") and len(fields) == 5:
                    key = (fields[1], int(fields[2]), fields[4])
                    ends.setdefault(key, []).append((fields[0], float(fields[3])))
            except (ValueError, IndexError):
                continue
    runs = []
    # A run's end is the earliest end on the same node for the same attempt after its start.
    for job, attempt, start, eta, node in sorted(starts, key=lambda row: row[2]):
        candidates = ends.get((job, attempt, node), [])
        after = [end for end in candidates if end[1] >= start]
        if after:
            end = min(after, key=lambda item: item[1])
            candidates.remove(end)
            runs.append(Run(job, attempt, start, eta, node, end[0], end[1]))
        else:
            runs.append(Run(job, attempt, start, eta, node))
    return Contents(sent, runs, unsure)
