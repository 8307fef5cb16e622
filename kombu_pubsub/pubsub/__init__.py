"""Pub/Sub plumbing: topics and subscriptions, publishing, pulls, bounded calls, backlog.

Nothing here knows Kombu or Celery; the transport and the engine use it.
"""
