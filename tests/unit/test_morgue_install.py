"""morgue.install: once per app, and several apps in one process refuse only what none takes."""

from __future__ import annotations

import pytest
from celery import Celery, signals

import kombu_pubsub.morgue as morgue

pytestmark = pytest.mark.usefixtures("no_installed_apps")  # each test starts with none installed


def task_message(content_type: str) -> dict:
    return {"body": "W1tdLCB7fSwge31d", "content-type": content_type, "content-encoding": "utf-8",
            "headers": {"task": "t", "id": "1", "lang": "py"},
            "properties": {"body_encoding": "base64", "delivery_info": {}}}


def test_installing_an_app_twice_registers_its_handlers_once() -> None:
    app = Celery("twice", broker="memory://")
    receivers = len(signals.task_failure.receivers)
    morgue.install(app)
    morgue.install(app)
    assert len(signals.task_failure.receivers) == receivers + 1
    assert len(morgue._refusals) == 1 and len(morgue._reject_reasons) == 1


def test_a_content_type_one_installed_app_accepts_is_not_refused() -> None:
    json_only = Celery("json_only", broker="memory://")
    yaml_too = Celery("yaml_too", broker="memory://")
    yaml_too.conf.accept_content = ["json", "yaml"]
    morgue.install(json_only)
    assert morgue.refusal(task_message("application/x-yaml")) == (
        "content type 'application/x-yaml' not accepted (accept_content=['json'])")
    morgue.install(yaml_too)
    assert morgue.refusal(task_message("application/x-yaml")) is None
    assert morgue.refusal(task_message("application/json")) is None
    assert morgue.refusal(task_message("application/x-python-serialize")) is not None
