"""How many messages wait on each subscription, from Cloud Monitoring (Pub/Sub has no depth API).

Separate because it is the one place that talks to Cloud Monitoring, an optional
dependency: without ``google-cloud-monitoring``, on the emulator, or without
``roles/monitoring.viewer`` the backlog is reported as unknown, with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Iterable
from typing import Any

import google.auth.exceptions
from google.api_core import exceptions as gexc

try:
    from google.cloud import monitoring_v3
except ImportError:  # optional: only `celery pubsub queues` on Google Cloud needs it
    monitoring_v3 = None

METRIC = "pubsub.googleapis.com/subscription/num_undelivered_messages"
#: How far back to look for the latest sample, seconds: Pub/Sub writes the metric
#: once a minute and Cloud Monitoring shows it up to about two minutes later.
WINDOW = 300
#: Bound on the Cloud Monitoring call, seconds.
TIMEOUT = 30.0
STALENESS = "Cloud Monitoring num_undelivered_messages, up to ~2 min stale"


@dataclasses.dataclass(frozen=True)
class Sample:
    """The latest backlog figure of one subscription."""

    count: int
    at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Backlog:
    """Backlog by subscription id, or why it is unknown."""

    samples: dict[str, Sample]
    unknown: str = ""
    """Why there is no figure at all ("" when Cloud Monitoring answered)."""

    error: str = ""
    """What went wrong and what to do, for the operator ("" when nothing did)."""

    def describe(self, subscription_id: str) -> str:
        """The figure for one subscription as the table shows it."""
        sample = self.samples.get(subscription_id)
        if sample is not None:
            return f"{sample.count:,}"
        return "unknown" if self.unknown else "unknown (no sample yet)"

    @property
    def note(self) -> str:
        """The footnote explaining the BACKLOG column."""
        if self.unknown:
            return f"unknown ({self.unknown})"
        return (f"{STALENESS}; 'no sample yet' means no figure in the last {WINDOW // 60} min "
                "(a new subscription takes a few minutes to appear)")


def read_backlog(project: str, client: Any = None, *, emulator: bool = False) -> Backlog:
    """The latest num_undelivered_messages of every subscription in `project`; unknown
    when the project lives on an emulator (`emulator`)."""
    if emulator:
        return Backlog({}, unknown="the emulator has no Cloud Monitoring")
    if monitoring_v3 is None and client is None:
        return Backlog({}, unknown="google-cloud-monitoring is not installed; "
                                   "'pip install google-cloud-monitoring' to see it")
    try:
        if client is None:
            with monitoring_v3.MetricServiceClient() as owned:
                return Backlog(latest(_series(owned, project)))
        return Backlog(latest(_series(client, project)))
    except gexc.PermissionDenied as exc:
        return Backlog({}, unknown="Cloud Monitoring refused", error=(
            f"Cloud Monitoring refused to read {METRIC} in project {project!r}: {exc.message}. "
            f"Grant roles/monitoring.viewer to the account running this command: 'gcloud projects "
            f"add-iam-policy-binding {project} --member=user:YOU --role=roles/monitoring.viewer'"))
    except google.auth.exceptions.DefaultCredentialsError as exc:
        return Backlog({}, unknown="no credentials for Cloud Monitoring", error=(
            f"no Google Cloud credentials for Cloud Monitoring ({exc}); run "
            "'gcloud auth application-default login' or set GOOGLE_APPLICATION_CREDENTIALS"))
    except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
        return Backlog({}, unknown="Cloud Monitoring failed", error=(
            f"could not read the backlog from Cloud Monitoring: {exc}. Try again; if it keeps "
            "failing, check that the Cloud Monitoring API is enabled in the project"))


def _series(client: Any, project: str) -> Iterable[Any]:
    now = int(time.time())
    return client.list_time_series(request={
        "name": f"projects/{project}",
        "filter": f'metric.type = "{METRIC}" AND resource.type = "pubsub_subscription"',
        "interval": {"end_time": {"seconds": now}, "start_time": {"seconds": now - WINDOW}},
        "view": 0,  # ListTimeSeriesRequest.TimeSeriesView.FULL: with the points
    }, timeout=TIMEOUT)


def latest(series: Iterable[Any]) -> dict[str, Sample]:
    """Subscription id → its newest sample, from Cloud Monitoring TimeSeries."""
    samples: dict[str, Sample] = {}
    for one in series:
        subscription_id = one.resource.labels.get("subscription_id", "")
        for point in one.points:
            at = point.interval.end_time
            known = samples.get(subscription_id)
            if subscription_id and (known is None or at > known.at):
                samples[subscription_id] = Sample(int(point.value.int64_value), at)
    return samples
