"""Temporary queues (auto-delete or exclusive): reply queues, worker mailboxes, event receivers.

A temporary queue belongs to the process that created it, as on AMQP, where the
broker drops it with its connection. Every connection of the process that
declares it shares it; the last one to close deletes it, and the transport
closes its open connections at interpreter exit (transport.py), so a script
that never calls ``app.close()`` leaves nothing behind either.

What we create carries its owner in labels (host, pid, process start time). A
process that finds one already there reads them: its own (another connection
of it got there first) is shared quietly; one left by a process of this host
that is gone (a worker SIGKILLed and restarted under the same node name, a
container restarted) is replaced quietly, as a broker would have dropped it;
one held by a live process, one from another host or one without labels is
used as it is, left in place at close, with a WARNING (two processes share one
name: e.g. two workers with one ``-n`` node name). A killed process's queues
expire after ``temporary_ttl`` (Pub/Sub's expiration policy, one day at least).
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .errors import PubSubError

if TYPE_CHECKING:
    from .pubsub.admin import Admin, SubscriptionInfo

logger = logging.getLogger(__name__)

#: Label keys naming the process that created a temporary topic or subscription.
HOST_LABEL = "kombu-pubsub-host"
PID_LABEL = "kombu-pubsub-pid"
START_LABEL = "kombu-pubsub-start"


class Owner(enum.Enum):
    """Who holds a temporary queue found already there, as its labels tell."""

    THIS_PROCESS = "this process"
    GONE = "a process of this host that is gone"
    ALIVE = "another live process of this host"
    OTHER_HOST = "a process on another host"
    UNKNOWN = "an unknown process (no owner labels)"


def _host_id() -> str:
    """This host's name, hashed into a label value (lowercase hex, 16 characters)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:16]


def process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from /proc), or "" if unknown.

    With the pid it tells a live owner from a later process that got the same pid
    (a restarted container often runs its worker as pid 1 again).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # field 22 of stat(5); fields here start at field 3
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str) -> bool:
    """True if process `pid` on this host is the one that started at `start`."""
    if start:
        return process_start(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by another user
    return pid != os.getpid()  # without /proc: our own pid can only be a leftover's reuse


def owner_labels() -> dict[str, str]:
    """The labels naming this process (computed per call: a forked child differs)."""
    pid = os.getpid()
    return {HOST_LABEL: _host_id(), PID_LABEL: str(pid), START_LABEL: process_start(pid)}


def owner_of(labels: Mapping[str, str],
             alive: Callable[[int, str], bool] = _alive) -> Owner:
    """Who holds a temporary queue carrying `labels`, judged from this process."""
    host, pid = labels.get(HOST_LABEL), labels.get(PID_LABEL, "")
    if not host or not pid.isdigit():
        return Owner.UNKNOWN
    if host != _host_id():
        return Owner.OTHER_HOST
    start = labels.get(START_LABEL, "")
    if int(pid) == os.getpid() and start == process_start(int(pid)):
        return Owner.THIS_PROCESS
    return Owner.ALIVE if alive(int(pid), start) else Owner.GONE


class _Registry:
    """The temporary queues this process owns, and which channels use each."""

    def __init__(self) -> None:
        # Guards _held, and is held across each queue's creation and deletion so that
        # two connections of this process never race on one name.
        self.lock = threading.RLock()
        #: (project, queue) → (its subscription, ids of the TemporaryQueues using it).
        self._held: dict[tuple[str, str], tuple[SubscriptionInfo, set[int]]] = {}

    def get(self, key: tuple[str, str], user: int) -> SubscriptionInfo | None:
        entry = self._held.get(key)
        if entry is None:
            return None
        entry[1].add(user)
        return entry[0]

    def add(self, key: tuple[str, str], info: SubscriptionInfo, user: int) -> None:
        self._held.setdefault(key, (info, set()))[1].add(user)

    def drop(self, key: tuple[str, str], user: int) -> SubscriptionInfo | None:
        """Forget `user` of a queue; return the queue when it was the last one."""
        entry = self._held.get(key)
        if entry is None:
            return None
        entry[1].discard(user)
        if entry[1]:
            return None
        del self._held[key]
        return entry[0]

    def forget(self, key: tuple[str, str]) -> None:
        """The queue was deleted outright: its next user creates it again."""
        self._held.pop(key, None)

    def clear(self) -> None:
        """In a forked child: the parent's queues are not the child's to delete."""
        self.lock = threading.RLock()
        self._held.clear()


registry = _Registry()
os.register_at_fork(after_in_child=registry.clear)
_users = itertools.count(1)


class TemporaryQueues:
    """The temporary queues one channel uses (its consuming thread only)."""

    def __init__(self, admin: Admin) -> None:
        self._admin = admin
        self._user = next(_users)
        #: queue → its subscription, for those this process owns and this channel uses.
        self._owned: dict[str, SubscriptionInfo] = {}
        #: queue → its subscription, for those another process holds (never deleted here).
        self._foreign: dict[str, SubscriptionInfo] = {}

    def ensure(self, queue: str, topic: str) -> SubscriptionInfo:
        """The subscription behind temporary `queue` (on topic `topic`), made or taken over."""
        info = self._foreign.get(queue)
        if info is not None:
            return info
        key = (self._admin.project, queue)
        with registry.lock:  # the registry, not _owned, says whether it still exists
            info = registry.get(key, self._user)
            if info is None:
                info, ours = self._create(queue, topic)
                if not ours:
                    self._foreign[queue] = info
                    return info
                registry.add(key, info, self._user)
        self._owned[queue] = info
        return info

    def _create(self, queue: str, topic: str) -> tuple[SubscriptionInfo, bool]:
        """Create `queue`, or take over this process's or a gone one's; True if it is ours."""
        info = self._admin.ensure_subscription(queue, topic, temporary=True, labels=owner_labels())
        if info.created:
            return info, True
        owner = owner_of(info.labels)
        if owner is Owner.THIS_PROCESS:
            return info, True
        if owner is Owner.GONE:
            logger.info("Temporary queue %r was left by process %s of this host, which is gone "
                        "(killed, or restarted under the same name); replacing it.",
                        queue, info.labels.get(PID_LABEL))
            self._admin.delete_subscription(info.path)
            info = self._admin.ensure_subscription(queue, topic, temporary=True, labels=owner_labels())
            if info.created:
                return info, True
            owner = owner_of(info.labels)  # another process replaced it first
        logger.warning("Temporary queue %r is also used by %s (pid %s): two processes share one "
                       "name, e.g. two workers with one -n node name, so messages to it are split "
                       "between them. Give each process its own name. It is left in place when "
                       "this connection closes.", queue, owner.value, info.labels.get(PID_LABEL, "?"))
        return info, False

    def deleted(self, queue: str) -> None:
        """`queue` was deleted on purpose (Kombu deletes a pidbox reply queue after each
        reply it collected): no one in this process holds it any more."""
        self._owned.pop(queue, None)
        self._foreign.pop(queue, None)
        with registry.lock:
            registry.forget((self._admin.project, queue))

    def release_all(self, delete_settles: Callable[[str], None]) -> list[str]:
        """This channel closes: delete each queue it was the last user of in this process.

        `delete_settles(path)` drops settles still queued for a deleted subscription.
        A failed delete is left to the temporary_ttl expiry. Returns the queues released.
        """
        released = [*self._owned, *self._foreign]
        self._foreign.clear()
        with registry.lock:
            for queue in list(self._owned):
                info = registry.drop((self._admin.project, queue), self._user)
                self._owned.pop(queue)
                if info is None:
                    continue
                delete_settles(info.path)
                try:
                    self._admin.delete_queue(queue, info)
                except PubSubError as exc:
                    logger.warning("Could not delete temporary queue %r (%s); its subscription "
                                   "expires on its own after temporary_ttl.", queue, exc)
        return released
