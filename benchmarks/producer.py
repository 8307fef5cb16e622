"""Producer subprocess: ``python -m benchmarks.producer MODE ...``; prints one JSON line.

Each run is a fresh process that returns from main() right after its last
call, so what a process exit does to messages still in flight is part of the
measurement. Celery modes take their broker from the environment (bench_app).

enqueue-celery N [--threads T]
                            warm-up delay(), then N timed delay() calls; with T threads, one
                            warm-up per pooled producer, then the T threads share the N calls
enqueue-raw-gapic TOPIC N [--threads T]
                            N synchronous GAPIC Publish RPCs (one message each); T threads share
                            one PublisherClient
enqueue-raw-future TOPIC N  N publish(...).result() with BatchSettings(max_latency=0)
preload N                   N delay() calls, untimed (drain scenario)
latency COUNT INTERVAL      warm-up, then COUNT delay(time.time()) calls INTERVAL s apart
countdown COUNT SECONDS INTERVAL
                            warm-up countdown.delay() (no ETA), then COUNT
                            countdown.apply_async(countdown=SECONDS) calls INTERVAL s apart
                            (INTERVAL 0: back to back)
many-queues COUNT INTERVAL QUEUES SEED GO_FILE
                            one warm-up task to each of mq0..mq{QUEUES-1}, then wait until GO_FILE
                            says "go", then COUNT delay(time.time()) calls INTERVAL s apart, each
                            to a queue drawn with random.Random(SEED)
hold                        one bench.hold task (crash redelivery)
drain-raw SUBSCRIPTION N    no Celery: pull (up to 1,000 a pull) and ack in batches on a second
                            thread until N messages are acked; the Pub/Sub drain ceiling
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import resource
import threading
import time
from typing import Any

#: Size of the raw-client payload, close to a Celery message for bench.record().
RAW_PAYLOAD_BYTES = 800
#: Pause before exiting in the untimed modes (preload, latency), seconds.
LINGER = 1.0
#: many-queues: how long to wait for the runner's go file before giving up, seconds.
GO_WAIT = 600.0


def _celery_task() -> Any:
    from .bench_app import record

    return record


def _countdown_task() -> Any:
    from .bench_app import countdown

    return countdown


def enqueue_celery(n: int, threads: int = 1) -> dict[str, Any]:
    record = _celery_task()
    if threads == 1:
        record.delay()  # connect and declare outside the timed part
        sent = 1
    else:
        sent = _warm_producers(record, threads)
    seconds, cpu = _timed(threads, n, record.delay)
    return {"sent": n + sent, "timed_calls": n, "seconds": seconds, "cpu_s": cpu, "threads": threads,
            "end_wall": time.time()}


def _warm_producers(task: Any, count: int) -> int:
    """Open `count` pooled producers at once, each sending one task (connect, declare); return `count`.

    Celery opens a pooled connection the first time more producers are in use at
    once than it has: held together here, outside the timed part, as in a web
    app whose workers have run for a while.
    """
    pool = task.app.producer_pool
    producers = [pool.acquire(block=True) for _ in range(count)]
    try:
        for producer in producers:
            task.apply_async(producer=producer)
    finally:
        for producer in producers:
            producer.release()
    return count


def _timed(threads: int, n: int, call: Any) -> tuple[float, float]:
    """Seconds for `threads` threads to make `n` calls of `call()` between them, started together,
    and the CPU seconds the process used meanwhile (every thread, the client library's too).

    A failed call in any thread fails the whole run (raised here).
    """
    if threads == 1:
        cpu = _cpu_seconds()
        start = time.perf_counter()
        for _ in range(n):
            call()
        return time.perf_counter() - start, _cpu_seconds() - cpu
    shares = [n // threads + (1 if index < n % threads else 0) for index in range(threads)]
    start_line = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(count: int) -> None:
        start_line.wait()
        try:
            for _ in range(count):
                call()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(share,), name=f"bench-enqueue-{index}")
               for index, share in enumerate(shares)]
    for worker in workers:
        worker.start()
    cpu = _cpu_seconds()
    start_line.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    if errors:
        raise RuntimeError(f"{len(errors)} of {threads} threads failed; first: {errors[0]!r}") from errors[0]
    return seconds, cpu


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _raw_client(batch: bool) -> Any:
    from google.cloud import pubsub_v1

    if batch:
        return pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(max_latency=0))
    return pubsub_v1.PublisherClient()


def enqueue_raw(topic: str, n: int, batch: bool, threads: int = 1) -> dict[str, Any]:
    """N publishes with the raw client; with `threads`, the threads share one PublisherClient."""
    from google.pubsub_v1.services.publisher import PublisherClient as GapicPublisher

    client = _raw_client(batch)
    data = b"x" * RAW_PAYLOAD_BYTES

    def publish_gapic() -> None:
        # The high-level client's GAPIC method: one Publish RPC, no batching thread.
        GapicPublisher.publish(client, request={"topic": topic, "messages": [{"data": data}]}, timeout=30)

    def publish_future() -> None:
        client.publish(topic, data).result(timeout=30)

    publish = publish_future if batch else publish_gapic
    publish()  # open the channel outside the timed part
    seconds, cpu = _timed(threads, n, publish)
    return {"sent": n + 1, "timed_calls": n, "seconds": seconds, "cpu_s": cpu, "threads": threads,
            "end_wall": time.time()}


def preload(n: int) -> dict[str, Any]:
    record = _celery_task()
    start = time.perf_counter()
    for _ in range(n):
        record.delay()
    seconds = time.perf_counter() - start
    time.sleep(LINGER)  # not an exit-loss test: let fire-and-forget publishers flush
    return {"sent": n, "seconds": seconds, "end_wall": time.time()}


def latency(count: int, interval: float, warmup: int) -> dict[str, Any]:
    record = _celery_task()
    for _ in range(warmup):
        record.delay(0.0)  # sent=0 marks a warm-up; the runner ignores it
    time.sleep(max(0.5, interval))
    start = time.monotonic()
    publish_seconds = []
    for index in range(count):
        delay = start + index * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.time()
        record.delay(sent)
        publish_seconds.append(time.time() - sent)
    # Not an exit-loss test: give fire-and-forget publishers time to flush.
    time.sleep(LINGER)
    return {"sent": count, "publish_seconds": publish_seconds, "end_wall": time.time()}


def countdown(count: int, seconds: float, interval: float, warmup: int) -> dict[str, Any]:
    task = _countdown_task()
    for _ in range(warmup):
        task.delay()  # no ETA: runs at once and records ETA 0, which the runner ignores
    if warmup:
        time.sleep(max(0.5, interval))
    start = time.monotonic()
    first_wall = time.time()
    for index in range(count):
        delay = start + index * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        task.apply_async(countdown=seconds)
    seconds_taken = time.monotonic() - start
    # Not an exit-loss test: give fire-and-forget publishers time to flush.
    time.sleep(LINGER)
    return {"sent": count, "warmup": warmup, "seconds": seconds_taken, "first_wall": first_wall,
            "end_wall": time.time()}


def queue_names(count: int) -> list[str]:
    """The queues of the many-queues scenario: mq0 ... mq{count-1}.

    At least 3 characters: gcpubsub names its topic after the exchange (Celery's is
    the queue's name) as it is, and Pub/Sub refuses ids under 3 characters (``q0``).
    """
    return [f"mq{index}" for index in range(count)]


def many_queues(count: int, interval: float, queues: int, seed: int, go_file: str) -> dict[str, Any]:
    """Warm up every queue, wait for the runner's word, then send COUNT tasks to random queues.

    The warm-ups (sent=0, ignored by the runner) declare each queue in this process,
    so no timed send pays for a declaration, and wake each of the worker's consumers.
    The runner measures the idle worker between the warm-ups and the go.
    """
    record = _celery_task()
    names = queue_names(queues)
    for name in names:
        record.apply_async((0.0,), queue=name)
    if not _wait_go(go_file):
        return {"sent": 0, "sends": [], "publish_seconds": [], "aborted": True}
    pick = random.Random(seed)
    sends: list[tuple[float, str]] = []
    publish_seconds = []
    start = time.monotonic()
    for index in range(count):
        delay = start + index * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        name = pick.choice(names)
        sent = time.time()
        record.apply_async((sent,), queue=name)
        publish_seconds.append(time.time() - sent)
        sends.append((sent, name))
    # Not an exit-loss test: give fire-and-forget publishers time to flush.
    time.sleep(LINGER)
    return {"sent": count, "sends": sends, "publish_seconds": publish_seconds, "end_wall": time.time()}


def _wait_go(go_file: str) -> bool:
    """Wait until `go_file` holds "go" (True) or anything else, e.g. "stop" (False)."""
    deadline = time.monotonic() + GO_WAIT
    while time.monotonic() < deadline:
        try:
            with open(go_file, encoding="ascii") as go:
                word = go.read().strip()
        except FileNotFoundError:
            word = ""
        if word:
            return word == "go"
        time.sleep(0.02)
    raise TimeoutError(f"no word in {go_file} within {GO_WAIT:.0f}s")


def hold() -> dict[str, Any]:
    from .bench_app import hold as hold_task

    hold_task.delay()
    time.sleep(LINGER)  # not an exit-loss test: let fire-and-forget publishers flush
    return {"sent": 1, "end_wall": time.time()}


def drain_raw(subscription: str, n: int) -> dict[str, Any]:
    """Pull and ack N messages with google-cloud-pubsub alone: what any Pub/Sub consumer can reach.

    The main thread keeps pulling (1,000 at most, the API's cap per pull); an
    acker thread sends whatever ack ids piled up meanwhile in one request
    (at most 2,500 ids each), so pulls and acks overlap as in a transport.
    Timed from the first pull to the last ack's response.
    """
    from google.cloud import pubsub_v1

    client = pubsub_v1.SubscriberClient()
    pending: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
    acked = [0]

    def ack_loop() -> None:
        while True:
            first = pending.get()
            if first is None:
                return
            ids, stop = list(first), False
            while len(ids) < 2500:
                try:
                    more = pending.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                ids.extend(more)
            for start in range(0, len(ids), 2500):
                client.acknowledge(request={"subscription": subscription, "ack_ids": ids[start:start + 2500]},
                                   timeout=30)
            acked[0] += len(ids)
            if stop:
                return

    acker = threading.Thread(target=ack_loop, name="bench-raw-acker", daemon=True)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    acker.start()
    seen: set[str] = set()
    while len(seen) < n and time.perf_counter() - start < 120:
        response = client.pull(request={"subscription": subscription, "max_messages": 1000}, timeout=30)
        received = list(response.received_messages)
        seen.update(item.message.message_id for item in received)
        if received:
            pending.put([item.ack_id for item in received])
    pending.put(None)
    acker.join(60)
    seconds = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"received": len(seen), "acked": acked[0], "seconds": seconds, "cpu_s": cpu,
            "max_rss_kib": cpu_after.ru_maxrss}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.producer")
    sub = parser.add_subparsers(dest="mode", required=True)
    celery_enqueue = sub.add_parser("enqueue-celery")
    celery_enqueue.add_argument("n", type=int)
    celery_enqueue.add_argument("--threads", type=int, default=1)
    for name in ("enqueue-raw-gapic", "enqueue-raw-future"):
        raw = sub.add_parser(name)
        raw.add_argument("topic")
        raw.add_argument("n", type=int)
        raw.add_argument("--threads", type=int, default=1)
    sub.add_parser("preload").add_argument("n", type=int)
    lat = sub.add_parser("latency")
    lat.add_argument("count", type=int)
    lat.add_argument("interval", type=float)
    lat.add_argument("--warmup", type=int, default=3)
    cd = sub.add_parser("countdown")
    cd.add_argument("count", type=int)
    cd.add_argument("seconds", type=float)
    cd.add_argument("interval", type=float)
    cd.add_argument("--warmup", type=int, default=3)
    many = sub.add_parser("many-queues")
    many.add_argument("count", type=int)
    many.add_argument("interval", type=float)
    many.add_argument("queues", type=int)
    many.add_argument("seed", type=int)
    many.add_argument("go_file")
    sub.add_parser("hold")
    raw_drain = sub.add_parser("drain-raw")
    raw_drain.add_argument("subscription")
    raw_drain.add_argument("n", type=int)
    args = parser.parse_args(argv)

    if args.mode == "enqueue-celery":
        result = enqueue_celery(args.n, args.threads)
    elif args.mode == "enqueue-raw-gapic":
        result = enqueue_raw(args.topic, args.n, batch=False, threads=args.threads)
    elif args.mode == "enqueue-raw-future":
        result = enqueue_raw(args.topic, args.n, batch=True, threads=args.threads)
    elif args.mode == "preload":
        result = preload(args.n)
    elif args.mode == "countdown":
        result = countdown(args.count, args.seconds, args.interval, args.warmup)
    elif args.mode == "many-queues":
        result = many_queues(args.count, args.interval, args.queues, args.seed, args.go_file)
    elif args.mode == "hold":
        result = hold()
    elif args.mode == "drain-raw":
        result = drain_raw(args.subscription, args.n)
    else:
        result = latency(args.count, args.interval, args.warmup)
    print(json.dumps(result), flush=True)
    # Return normally: the interpreter exits right after the last call (atexit hooks run).


if __name__ == "__main__":
    main()
