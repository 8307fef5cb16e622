"""The morgue: where messages that cannot be processed go, with the reason.

A queue like any other (topic + subscription named ``morgue``, created
together so nothing published there is dropped). A message is acked on its
own queue only after the morgue accepted it.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING

from .admin import MORGUE_QUEUE
from .errors import PubSubError

if TYPE_CHECKING:
    from .channel import Channel

logger = logging.getLogger(__name__)



def bury(channel: Channel, data: bytes, attributes: dict[str, str], reason: str, queue: str) -> bool:
    """Publish a message to the morgue with why it is there; return False if that failed."""
    marked = dict(attributes)
    marked.update(
        morgue_reason=reason[:1024],
        morgue_queue=queue[:1024],
        morgue_at=datetime.datetime.now(datetime.UTC).isoformat(),
    )
    try:
        topic_path = channel.ensure_queue(MORGUE_QUEUE).topic_path
        channel.connection.publisher.publish(topic_path, data, marked)
    except PubSubError as exc:
        logger.error("Could not move a message from %r to the morgue (%s): %s. It stays on "
                     "its queue and will be redelivered.", queue, reason, exc)
        return False
    logger.warning("Moved a message from %r to the morgue: %s.", queue, reason)
    return True
