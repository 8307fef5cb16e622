# Image for the demo worker, the spawner and the test suite (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# An unprivileged user owns /app so pytest can write its cache there; the
# installed packages stay root-owned and read-only for it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app \
    && install -d -o app -g app /app

WORKDIR /app

# The whole context (trimmed by .dockerignore): the packages, tests/ and the
# docker files that tests/unit/test_docker_files.py reads.
COPY --chown=app:app . /app

# Editable, with the test extras, so `pytest` runs tests/ against this checkout.
RUN pip install --no-cache-dir -e '.[test]'

USER app

# Shell form so ${QUEUE_NAME} expands at run time; exec so celery is PID 1 and
# gets the SIGTERM of `docker stop` (warm shutdown).
# The pool options are the demo worker's (demo_tasks.local.WORKER_OPTIONS): jobs mostly sleep.
CMD exec celery -A demo_tasks worker -Q "${QUEUE_NAME:-default}" -E -P threads -c 32 --without-gossip --without-mingle -l info
