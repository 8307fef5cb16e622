"""Kombu's QoS with acks, rejects and restores reaching Pub/Sub.

Kombu's virtual QoS re-publishes a copy on reject(requeue=True) and never tells
the broker; here each verb becomes the Pub/Sub call that keeps one message.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import virtual


class QoS(virtual.QoS):
    """Kombu's QoS, with ack/reject/restore reaching Pub/Sub instead of re-publishing."""

    def ack(self, delivery_tag: Any) -> None:
        self.channel.settle(delivery_tag, ack=True)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        # requeue → nack (Pub/Sub redelivers the same message, no copy is made);
        # no requeue → off the queue, by way of the morgue.
        self.channel.settle(delivery_tag, ack=not requeue, bury=not requeue)
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list:
        """Nack every delivered-but-unacked message so another worker gets it at once."""
        self._flush()
        for delivery_tag in list(self._delivered):
            self.channel.settle(delivery_tag, ack=False)
        self._delivered.clear()
        return []
