"""Temporary queues (auto-delete or exclusive): reply queues, worker mailboxes, event receivers.

A connection deletes, when it closes, only the temporary queues it created. One it
found already there belongs to another process (two workers with one node name
share a mailbox) or to a killed one, whose leftover expires after temporary_ttl.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import PubSubError

if TYPE_CHECKING:
    from .engine.settling import Settler
    from .pubsub.admin import SubscriptionInfo
    from .transport import Transport

logger = logging.getLogger(__name__)


class TemporaryQueues:
    """The temporary queues one channel owns (its consuming thread only)."""

    def __init__(self) -> None:
        self._owned: dict[str, SubscriptionInfo] = {}

    def found(self, queue: str, info: SubscriptionInfo) -> None:
        """Note a temporary queue just ensured: ours to delete if this call created it."""
        if info.created:
            self._owned[queue] = info
            return
        logger.warning("Temporary queue %r already existed (another process uses the same name, "
                       "e.g. two workers with one -n node name, or one was killed); it is left "
                       "in place when this connection closes.", queue)

    def delete_all(self, transport: Transport, settler: Settler) -> None:
        """Delete every owned queue; a failure is left to the temporary_ttl expiry."""
        for queue, info in self._owned.items():
            transport.subscriptions.pop(queue, None)
            settler.forget(info.path)  # settles still queued for it are moot
            try:
                transport.admin.delete_queue(queue, info)
            except PubSubError as exc:
                logger.warning("Could not delete temporary queue %r (%s); its subscription "
                               "expires on its own after temporary_ttl.", queue, exc)
        self._owned.clear()
