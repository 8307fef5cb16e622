"""What is compared: the two transports, Celery's own ceiling, the enqueue modes, the run settings."""

from __future__ import annotations

import dataclasses
import json

KOMBU_PUBSUB = "kombu_pubsub"
GCPUBSUB = "gcpubsub"
#: Celery's own ceiling: the same worker on Kombu's in-memory transport (drain only).
CELERY_MEMORY = "celery_memory"
QUEUE = "bench"


@dataclasses.dataclass(frozen=True)
class System:
    """One transport under test."""

    key: str  # KOMBU_PUBSUB, GCPUBSUB or CELERY_MEMORY
    short: str  # used in project ids
    label: str = ""  # shown in the table instead of the key

    def broker_url(self, project: str) -> str:
        if self.key == KOMBU_PUBSUB:
            return f"pubsub://{project}"
        if self.key == CELERY_MEMORY:
            return "memory://"  # its queues live in the worker process: no project
        return f"gcpubsub://projects/{project}"

    @property
    def name(self) -> str:
        return self.label or self.key

    def env(self, project: str, transport_options: dict[str, object] | None = None) -> dict[str, str]:
        """Environment for bench_app in a child process."""
        return {
            "BENCH_BROKER_URL": self.broker_url(project),
            "BENCH_QUEUE": QUEUE,
            "BENCH_TRANSPORT_OPTIONS": json.dumps(transport_options or {}),
            # gcpubsub's clients may look for a default project; harmless for kombu_pubsub.
            "GOOGLE_CLOUD_PROJECT": project,
        }

    def topic(self) -> str:
        """The topic both transports publish QUEUE's messages to.

        kombu_pubsub: one topic per queue, named after it. gcpubsub: one topic
        per exchange, and Celery's default exchange is named after the queue.
        """
        return QUEUE


SYSTEMS = (System(KOMBU_PUBSUB, "kp"), System(GCPUBSUB, "gc"))
#: The drain worker on memory://, fed in-process (BENCH_SELF_PUBLISH): what Celery itself can do.
CEILING = System(CELERY_MEMORY, "mem", "Celery ceiling (memory://, published in-process)")


@dataclasses.dataclass(frozen=True)
class EnqueueMode:
    """One way of sending N messages from a fresh producer process."""

    label: str
    system: str  # which system's column it belongs to (KOMBU_PUBSUB, GCPUBSUB or "raw")
    short: str
    producer_mode: str  # benchmarks.producer sub-command
    transport_options: dict[str, object] = dataclasses.field(default_factory=dict)
    baseline: bool = False  # the gcpubsub reference row for ratios
    threaded: bool = False  # the calls come from Settings.enqueue_threads threads of one process

    def scenario(self, threads: int) -> str:
        """The scenario's name in the results: "enqueue", or "enqueue, T threads"."""
        return f"enqueue, {threads} threads" if self.threaded else "enqueue"


ENQUEUE_MODES = (
    EnqueueMode("kombu_pubsub (awaited, default)", KOMBU_PUBSUB, "kp", "enqueue-celery"),
    EnqueueMode("kombu_pubsub fast_publish", KOMBU_PUBSUB, "kpf", "enqueue-celery", {"fast_publish": True}),
    EnqueueMode("gcpubsub", GCPUBSUB, "gc", "enqueue-celery", baseline=True),
    EnqueueMode("raw client, GAPIC publish (ceiling)", "raw", "rg", "enqueue-raw-gapic"),
    EnqueueMode("raw client, publish().result(), max_latency=0", "raw", "rf", "enqueue-raw-future"),
)
#: The same calls from several threads of one process (a web app's workers); the raw
#: client's threads share one PublisherClient.
ENQUEUE_THREAD_MODES = (
    EnqueueMode("kombu_pubsub (awaited, default)", KOMBU_PUBSUB, "kpt", "enqueue-celery", threaded=True),
    EnqueueMode("gcpubsub", GCPUBSUB, "gct", "enqueue-celery", baseline=True, threaded=True),
    EnqueueMode("raw client, GAPIC publish, one client (ceiling)", "raw", "rgt", "enqueue-raw-gapic",
                threaded=True),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one run. The defaults take about 35 minutes on 2 cores (crash redelivery: ~14 of them)."""

    repeats: int = 3
    enqueue_n: int = 10_000
    enqueue_threads: int = 8  # threads of the "enqueue, T threads" scenario
    drain_n: int = 6000
    latency_count: int = 50
    latency_interval: float = 0.1
    pools: tuple[tuple[str, int], ...] = (("prefork", 2), ("threads", 8))
    worker_loglevel: str = "WARNING"
    stop_grace: float = 15.0
    # countdown lateness: COUNT tasks with countdown=SECONDS, INTERVAL s apart, to an idle worker
    countdown_count: int = 50
    countdown_seconds: float = 5.0
    countdown_interval: float = 0.1
    # countdown memory: N tasks with a countdown that never comes due during the run
    pending_n: int = 10_000
    pending_countdown: float = 3600.0
    pending_wait: float = 90.0  # longest wait, after the last send, for the worker to settle
    pending_steady: float = 5.0  # settled: nothing left to pull and RSS/received unchanged this long
    countdown_pool: tuple[str, int] = ("prefork", 2)
    # Celery ceiling: Kombu's memory transport sleeps polling_interval (default 1 s) whenever
    # Celery's prefetch window is full, which caps threads -c 8 at ~32 tasks/s; 1 ms removes
    # that stall without a busy loop stealing a core from the pool (see benchmarks/README.md).
    ceiling_polling_interval: float = 0.001
    # crash redelivery: a task runs CRASH_AFTER s on an acks_late worker, which is then SIGKILLed
    # with its pool; a fresh worker starts at once; give up CRASH_CAP s after the kill
    crash_pool: tuple[str, int] = ("prefork", 2)
    crash_after: float = 1.0
    crash_cap: float = 300.0
    crash_hold: float = 3600.0  # how long the task would run on the killed worker
    # many queues: a worker consuming Q queues (for each Q of QUEUE_COUNTS) gets TASKS tasks,
    # INTERVAL s apart, each to a queue drawn with SEED; after IDLE s of an idle worker (CPU, threads)
    queue_counts: tuple[int, ...] = (1, 10, 50)
    many_queues_pool: tuple[str, int] = ("threads", 4)
    many_queues_tasks: int = 60
    many_queues_interval: float = 0.25
    many_queues_idle: float = 5.0
    many_queues_grace: float = 30.0  # wait for tasks not started yet, after the last send
    many_queues_seed: int = 6

    @classmethod
    def smoke(cls) -> Settings:
        return cls(repeats=1, enqueue_n=20, drain_n=20, latency_count=10, stop_grace=3.0,
                   countdown_count=5, countdown_seconds=3.0, pending_n=200, pending_wait=30.0,
                   pending_steady=3.0, crash_after=0.2, crash_cap=3.0, many_queues_tasks=10,
                   many_queues_idle=2.0, many_queues_grace=10.0)

    def to_json(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["pools"] = [f"{pool} -c {concurrency}" for pool, concurrency in self.pools]
        data["countdown_pool"] = "{} -c {}".format(*self.countdown_pool)
        data["crash_pool"] = "{} -c {}".format(*self.crash_pool)
        data["many_queues_pool"] = "{} -c {}".format(*self.many_queues_pool)
        data["queue_counts"] = list(self.queue_counts)
        return data
