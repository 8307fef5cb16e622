"""Operator tools: the `celery pubsub` commands, morgue and queue tools, Prometheus metrics.

The transport never imports them.
"""
