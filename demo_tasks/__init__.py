"""The demo Celery app: ``celery -A demo_tasks worker -Q default`` runs ``mock_job``.

Configured only from the environment (see demo_tasks.app).
"""

from __future__ import annotations

from .app import JobError, app, mock_job

__all__ = ["JobError", "app", "mock_job"]
