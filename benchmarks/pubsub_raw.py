"""Raw google-cloud-pubsub helpers for setup, counting and cleanup (never timed)."""

from __future__ import annotations

import threading
import time

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher import PublisherClient as GapicPublisher

#: Suffix of the subscription the benchmark itself pulls to count arrivals.
COUNT_SUFFIX = "-bench-count"
RPC_TIMEOUT = 30.0


class Raw:
    """A publisher + subscriber pair on the emulator named by PUBSUB_EMULATOR_HOST."""

    def __init__(self) -> None:
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def close(self) -> None:
        self.subscriber.close()
        self.publisher.stop()

    def ensure_topic(self, project: str, topic: str) -> str:
        path = f"projects/{project}/topics/{topic}"
        try:
            self.publisher.create_topic(request={"name": path}, timeout=RPC_TIMEOUT)
        except gexc.AlreadyExists:
            pass
        return path

    def ensure_count_subscription(self, project: str, topic: str) -> str:
        """A filter-less subscription on `topic` that receives a copy of every message."""
        topic_path = self.ensure_topic(project, topic)
        path = f"projects/{project}/subscriptions/{topic}{COUNT_SUFFIX}"
        try:
            self.subscriber.create_subscription(
                request={"name": path, "topic": topic_path, "ack_deadline_seconds": 60},
                timeout=RPC_TIMEOUT)
        except gexc.AlreadyExists:
            pass
        return path

    def count(self, subscription: str, expected: int, quiet: float = 2.0,
              limit: float = 120.0) -> tuple[int, int]:
        """Pull and ack everything on `subscription`; return (messages, data bytes).

        Stops when `expected` messages were seen, or nothing came for `quiet`
        seconds, or after `limit` seconds.
        """
        seen: set[str] = set()
        size = 0
        start = last = time.monotonic()
        while len(seen) < expected and time.monotonic() - last < quiet and time.monotonic() - start < limit:
            try:
                response = self.subscriber.pull(
                    request={"subscription": subscription, "max_messages": 1000,
                             "return_immediately": True}, timeout=RPC_TIMEOUT)
            except gexc.DeadlineExceeded:
                continue
            received = list(response.received_messages)
            if not received:
                time.sleep(0.05)
                continue
            last = time.monotonic()
            for item in received:
                if item.message.message_id not in seen:
                    seen.add(item.message.message_id)
                    size += len(item.message.data)
            self.subscriber.acknowledge(
                request={"subscription": subscription, "ack_ids": [item.ack_id for item in received]},
                timeout=RPC_TIMEOUT)
        return len(seen), size

    def wait_count(self, subscription: str, expected: int, limit: float) -> int:
        """Count arrivals on `subscription` until `expected` or `limit` seconds (used after preloading)."""
        total = 0
        deadline = time.monotonic() + limit
        while total < expected and time.monotonic() < deadline:
            got, _ = self.count(subscription, expected - total, quiet=1.0,
                                limit=max(0.1, deadline - time.monotonic()))
            total += got
        return total

    def topic_subscriptions(self, project: str, topic: str) -> list[str]:
        """The subscriptions on `topic` except the benchmark's own counting one."""
        names = self.publisher.list_topic_subscriptions(
            request={"topic": f"projects/{project}/topics/{topic}"}, timeout=RPC_TIMEOUT)
        return [name for name in names if not name.endswith(COUNT_SUFFIX)]

    def deliverable(self, subscription: str) -> bool:
        """Whether `subscription` has a message no consumer holds right now (probe, untimed).

        Pulls at most one message without waiting and hands it straight back
        (ack deadline 0), so a consumer can take it again at once. A message
        a consumer holds unacked (or has deferred) is not deliverable.
        """
        try:
            response = self.subscriber.pull(
                request={"subscription": subscription, "max_messages": 1, "return_immediately": True},
                timeout=RPC_TIMEOUT)
        except gexc.DeadlineExceeded:
            return True  # unknown: assume not drained yet
        ack_ids = [item.ack_id for item in response.received_messages]
        if ack_ids:
            self.subscriber.modify_ack_deadline(
                request={"subscription": subscription, "ack_ids": ack_ids, "ack_deadline_seconds": 0},
                timeout=RPC_TIMEOUT)
        return bool(ack_ids)

    def publish_sync(self, topic_path: str, data: bytes) -> None:
        """One Publish RPC for one message (what an awaited publish does)."""
        GapicPublisher.publish(self.publisher, request={"topic": topic_path, "messages": [{"data": data}]},
                               timeout=RPC_TIMEOUT)

    def preload(self, topic_path: str, n: int, size: int = 800) -> int:
        """Publish `n` messages of `size` bytes through the client's batcher; return how many got in."""
        futures = [self.publisher.publish(topic_path, b"x" * size) for _ in range(n)]
        return sum(1 for future in futures if future.result(timeout=RPC_TIMEOUT))

    def warm_up(self, project: str, n: int = 2000) -> None:
        """Exercise create/publish/pull/ack/delete so the emulator's JVM is warm (untimed).

        `n` one-message Publish RPCs (the awaited path), `n` batched publishes,
        then pulls and acks of all of them.
        """
        subscription = self.ensure_count_subscription(project, "warm-up")
        topic_path = f"projects/{project}/topics/warm-up"
        try:
            for _ in range(n):
                self.publish_sync(topic_path, b"x" * 800)
            futures = [self.publisher.publish(topic_path, b"x" * 800) for _ in range(n)]
            for future in futures:
                future.result(timeout=RPC_TIMEOUT)
            self.count(subscription, 2 * n, quiet=1.0)
        finally:
            self.delete_project(project)

    def latency_floor(self, project: str, count: int, interval: float) -> list[float]:
        """Publish→pull latencies (s) with the raw client alone: the emulator's own share.

        A thread keeps one unary pull waiting, as a transport's puller would; the
        main thread publishes one message (its send time as data) every `interval` s.
        """
        subscription = self.ensure_count_subscription(project, "floor")
        topic_path = f"projects/{project}/topics/floor"
        latencies: list[float] = []
        stop = threading.Event()

        def pull() -> None:
            while not stop.is_set():
                try:
                    response = self.subscriber.pull(
                        request={"subscription": subscription, "max_messages": 10}, timeout=2.0)
                except gexc.GoogleAPICallError:
                    continue  # DeadlineExceeded when idle; anything else shows as missing samples
                now = time.time()
                received = list(response.received_messages)
                latencies.extend(now - float(item.message.data) for item in received)
                if received:
                    self.subscriber.acknowledge(
                        request={"subscription": subscription, "ack_ids": [i.ack_id for i in received]},
                        timeout=RPC_TIMEOUT)

        thread = threading.Thread(target=pull, name="bench-floor-puller", daemon=True)
        thread.start()
        try:
            time.sleep(max(0.5, interval))
            start = time.monotonic()
            for index in range(count):
                delay = start + index * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.publish_sync(topic_path, f"{time.time():.6f}".encode("ascii"))
            deadline = time.monotonic() + 10.0
            while len(latencies) < count and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(3.0)
            self.delete_project(project)
        return latencies

    def delete_project(self, project: str) -> None:
        """Delete every subscription and topic of `project` (best effort)."""
        try:
            subscriptions = list(self.subscriber.list_subscriptions(
                request={"project": f"projects/{project}"}, timeout=RPC_TIMEOUT))
            for sub in subscriptions:
                try:
                    self.subscriber.delete_subscription(request={"subscription": sub.name},
                                                        timeout=RPC_TIMEOUT)
                except gexc.NotFound:
                    pass
            topics = list(self.publisher.list_topics(request={"project": f"projects/{project}"},
                                                     timeout=RPC_TIMEOUT))
            for topic in topics:
                try:
                    self.publisher.delete_topic(request={"topic": topic.name}, timeout=RPC_TIMEOUT)
                except gexc.NotFound:
                    pass
        except gexc.GoogleAPICallError:
            pass
