"""Which endpoint a connection calls: URL forms, the api_endpoint/emulator options, the
environment, and the clients built for it (no I/O: building a client makes no RPC)."""

from __future__ import annotations

import google.auth
import grpc
import pytest
from google.auth.credentials import AnonymousCredentials
from kombu import Connection

import kombu_pubsub  # noqa: F401
from kombu_pubsub import ConfigurationError, TransportOptions
from kombu_pubsub.options import parse_url
from kombu_pubsub.pubsub.endpoint import FROM_DEFAULT, FROM_ENV, FROM_OPTION, FROM_URL, Endpoint, resolve


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("PUBSUB_JOB_QUEUE_PROJECT_ID", raising=False)


@pytest.mark.parametrize(("url", "project", "target"), [
    ("pubsub://", "job_queue", None),
    ("pubsub://my-proj", "my-proj", None),
    ("pubsub://my-proj/", "my-proj", None),
    ("pubsub:///my-proj", "my-proj", None),
    ("pubsub://127.0.0.1:8085/my-proj", "my-proj", "127.0.0.1:8085"),
    ("pubsub://emulator:8085/my-proj", "my-proj", "emulator:8085"),
    ("pubsub://us-east1-pubsub.googleapis.com/my-proj", "my-proj", "us-east1-pubsub.googleapis.com"),
    ("pubsub://us-east1-pubsub.googleapis.com:443/my-proj", "my-proj",
     "us-east1-pubsub.googleapis.com:443"),
    ("pubsub://[::1]:8085/my-proj", "my-proj", "[::1]:8085"),
])
def test_a_url_with_a_path_names_an_endpoint_and_one_without_only_a_project(url, project, target):
    connection = Connection(url)
    address = parse_url(connection.hostname, connection.port, connection.userid,
                        connection.password, connection.virtual_host)
    assert (address.project, address.target) == (project, target)


@pytest.mark.parametrize(("url", "message"), [
    ("pubsub://my-proj:8085", r"has a port but no project; write pubsub://my-proj:8085/<project-id>"),
    ("pubsub://127.0.0.1:8085/", r"has a port but no project"),
    ("pubsub://us-east1-pubsub.googleapis.com",
     r"looks like a host; to use that endpoint write pubsub://us-east1-pubsub.googleapis.com/<project-id>"),
    ("pubsub://:8085/my-proj", r"has a port but no host"),
    ("pubsub://host:1/a/b", r"the path is one project id"),
    ("pubsub://host:1/Bad Proj", r"project id 'Bad Proj' is not valid"),
    ("pubsub://me:secret@host:1/my-proj", r"user or password"),
    ("pubsub://localhost/my-proj", r"emulator endpoint 'localhost' .* has no port; write "
                                   r"pubsub://HOST:PORT/PROJECT"),
])
def test_malformed_endpoint_urls_say_what_to_write(url, message):
    with pytest.raises(ConfigurationError, match=message):
        Connection(url).transport  # noqa: B018


@pytest.mark.parametrize(("target", "options", "env", "expected"), [
    # The URL wins over the option and the environment.
    ("127.0.0.1:7000", {"api_endpoint": "127.0.0.1:7001"}, "127.0.0.1:7002",
     Endpoint("127.0.0.1:7000", True, FROM_URL)),
    # The option wins over the environment.
    (None, {"api_endpoint": "127.0.0.1:7001"}, "127.0.0.1:7002",
     Endpoint("127.0.0.1:7001", True, FROM_OPTION)),
    # PUBSUB_EMULATOR_HOST as the client library reads it, whatever `emulator` says.
    (None, {}, "127.0.0.1:7002", Endpoint("127.0.0.1:7002", True, FROM_ENV)),
    (None, {"emulator": "false"}, "127.0.0.1:7002", Endpoint("127.0.0.1:7002", True, FROM_ENV)),
    (None, {}, None, Endpoint("pubsub.googleapis.com:443", False, FROM_DEFAULT)),
    # Kind: googleapis.com is Google Cloud (port 443 unless given), any other host an emulator.
    ("us-east1-pubsub.googleapis.com", {}, None,
     Endpoint("us-east1-pubsub.googleapis.com:443", False, FROM_URL)),
    (None, {"api_endpoint": "europe-west1-pubsub.googleapis.com:443"}, None,
     Endpoint("europe-west1-pubsub.googleapis.com:443", False, FROM_OPTION)),
    ("emulator:8085", {}, None, Endpoint("emulator:8085", True, FROM_URL)),
    ("[::1]:8085", {}, None, Endpoint("[::1]:8085", True, FROM_URL)),
    # `emulator` overrides the host rule.
    ("10.0.0.5:443", {"emulator": "false"}, None, Endpoint("10.0.0.5:443", False, FROM_URL)),
    ("pubsub.internal", {"emulator": False}, None, Endpoint("pubsub.internal:443", False, FROM_URL)),
    ("fake.googleapis.com:9000", {"emulator": "true"}, None,
     Endpoint("fake.googleapis.com:9000", True, FROM_URL)),
    ("emulator:8085", {"emulator": "auto"}, None, Endpoint("emulator:8085", True, FROM_URL)),
])
def test_the_endpoint_comes_from_url_then_option_then_environment(target, options, env, expected):
    environ = {"PUBSUB_EMULATOR_HOST": env} if env else {}
    assert resolve(target, TransportOptions.from_mapping(options), environ) == expected


def test_emulator_true_without_any_endpoint_is_refused():
    with pytest.raises(ConfigurationError, match="emulator=true, but no endpoint is named"):
        resolve(None, TransportOptions.from_mapping({"emulator": "true"}), {})


@pytest.mark.parametrize(("raw", "message"), [
    ({"api_endpoint": "https://pubsub.googleapis.com"}, r"api_endpoint='https://pubsub.googleapis.com' is "
                                                        r"not an endpoint; expected HOST or HOST:PORT"),
    ({"api_endpoint": "host:1/path"}, r"not an endpoint"),
    ({"api_endpoint": "host:port"}, r"not an endpoint"),
    ({"emulator": "maybe"}, r"emulator='maybe' is not valid; accepted: true, false or auto"),
])
def test_bad_endpoint_options_name_the_option_and_the_value(raw, message):
    with pytest.raises(ConfigurationError, match=message):
        TransportOptions.from_mapping(raw)


def test_the_option_reaches_the_transport_and_the_url_beats_it(monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:7002")
    options = {"api_endpoint": "127.0.0.1:7001"}
    via_option = Connection("pubsub://proj-a", transport_options=options).transport
    assert via_option.endpoint.target == "127.0.0.1:7001"
    via_url = Connection("pubsub://127.0.0.1:7000/proj-a", transport_options=options).transport
    assert (via_url.project, via_url.endpoint.target) == ("proj-a", "127.0.0.1:7000")


def test_each_alternate_gets_its_own_endpoint():
    connection = Connection("pubsub://127.0.0.1:7000/proj-a;pubsub://127.0.0.1:7001/proj-a")
    assert connection.transport.endpoint.target == "127.0.0.1:7000"
    connection.maybe_switch_next()
    assert connection.transport.endpoint.target == "127.0.0.1:7001"
    assert connection.transport.project == "proj-a"


def channels_made(monkeypatch) -> list[tuple[str, str]]:
    """Record each gRPC channel made from now on: ("secure"|"insecure", target)."""
    made: list[tuple[str, str]] = []
    for kind in ("secure", "insecure"):
        real = getattr(grpc, f"{kind}_channel")

        def record(target, *args, _kind=kind, _real=real, **kwargs):
            made.append((_kind, target))
            return _real(target, *args, **kwargs)

        monkeypatch.setattr(grpc, f"{kind}_channel", record)
    return made


def test_emulator_clients_call_their_endpoint_even_when_the_environment_names_another(monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:7002")
    made = channels_made(monkeypatch)
    endpoint = Endpoint("127.0.0.1:7000", emulator=True, source=FROM_URL)
    publisher, subscriber = endpoint.publisher_client(), endpoint.subscriber_client()
    try:
        assert made == [("insecure", "127.0.0.1:7000")] * 2
        assert publisher._transport.host == subscriber._transport.host == "127.0.0.1:7000"
    finally:
        publisher.stop()
        subscriber.close()


def test_google_clients_use_tls_with_google_credentials(monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:7002")  # not used: the URL named Google
    made = channels_made(monkeypatch)
    asked = []

    def default(**kwargs):
        asked.append(kwargs)
        return AnonymousCredentials(), "proj"

    monkeypatch.setattr(google.auth, "default", default)
    endpoint = Endpoint("us-east1-pubsub.googleapis.com:443", emulator=False, source=FROM_URL)
    subscriber = endpoint.subscriber_client()
    try:
        assert made == [("secure", "us-east1-pubsub.googleapis.com:443")]
        assert asked, "Application Default Credentials were not asked for"
        assert subscriber._transport.host == "us-east1-pubsub.googleapis.com:443"
    finally:
        subscriber.close()


def test_without_an_endpoint_the_clients_are_the_librarys_own(monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:7002")
    transport = Connection("pubsub://proj-a").transport
    assert transport.endpoint == Endpoint("127.0.0.1:7002", True, FROM_ENV)
    subscriber = transport.endpoint.subscriber_client()
    try:
        assert subscriber._transport.host == "127.0.0.1:7002"
    finally:
        subscriber.close()
