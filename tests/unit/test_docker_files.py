"""Static guards for Dockerfile, docker-compose.yml and .dockerignore.

No Docker engine is needed: the files are read and parsed, nothing is built or run.
They catch what breaks `docker compose up --scale worker=3` / `docker compose run --rm
tests` silently: a service pointing at the wrong emulator address, starting before the
emulator is healthy, a healthcheck probing another port, a command naming a module that
does not exist, an image running as root.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

EMULATOR_SERVICE = "pubsub"
# Every service built from the Dockerfile; all of them talk to Pub/Sub.
APP_SERVICES = ("worker", "spawner", "status", "flower", "tests")
EMULATOR_IMAGE = re.compile(
    r"^(?:(?:us|eu|asia)\.)?gcr\.io/google\.com/cloudsdktool/google-cloud-cli:(?:\d+\.\d+\.\d+-)?emulators$"
)
# Modules that a command names before they are written; skipped (not failed) while absent.
PENDING_MODULES: dict[str, str] = {}
PYTHON_311_SLIM = re.compile(
    r"(?:docker\.io/)?(?:library/)?python:3\.11(?:\.\d+)?-slim(?:-\w+)?(?:@sha256:[0-9a-f]{64})?"
)
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash"}
ROOT_USERS = {"root", "0"}


# --------------------------------------------------------------------------- helpers


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no {name!r} service"
    return services[name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, list or mapping form, as a dict."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(svc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A service's `depends_on` in long form (the short list form means service_started)."""
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return {name: spec or {"condition": "service_started"} for name, spec in deps.items()}


def publishes_host_port(port: str | int | dict[str, Any]) -> bool:
    """Whether a `ports` entry binds a fixed host port ("8080:80", {published: 8080})."""
    if isinstance(port, dict):
        return bool(port.get("published"))
    return ":" in str(port)


def split(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def unwrap_shell(argv: list[str]) -> list[str]:
    """The argv a `sh -c 'exec prog args'` wrapper runs (the argv itself if unwrapped)."""
    if argv and argv[0] in SHELLS and "-c" in argv[1:]:
        argv = shlex.split(argv[argv.index("-c") + 1])
    while argv and argv[0] == "exec":
        argv = argv[1:]
    return argv


@cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return instructions


def dockerfile(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


def dockerfile_cmd() -> str:
    cmds = dockerfile("CMD")
    assert cmds, "Dockerfile has no CMD"
    return cmds[-1]


def command_argv(source: str) -> list[str]:
    """What a command source runs: 'Dockerfile:CMD' or 'compose:<service>'."""
    if source == "Dockerfile:CMD":
        cmd = dockerfile_cmd()
        return unwrap_shell(json.loads(cmd) if cmd.startswith("[") else ["/bin/sh", "-c", cmd])
    command = service(source.removeprefix("compose:")).get("command")
    assert command, f"{source} has no command"
    # `$$` is compose's escape for a literal `$` handed to the container.
    return unwrap_shell([arg.replace("$$", "$") for arg in split(command)])


def referenced_modules(argv: list[str]) -> list[str]:
    """Modules named by `celery -A X` / `--app X` and `python -m M` in an argv."""
    modules = []
    for i, arg in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in ("-A", "--app") and nxt:
            modules.append(nxt.split(":")[0])
        elif arg.startswith("--app="):
            modules.append(arg.removeprefix("--app=").split(":")[0])
        elif arg == "-m" and i > 0 and Path(argv[i - 1]).name.startswith("python") and nxt:
            modules.append(nxt)
    return modules


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def emulator_host_port() -> tuple[str, int]:
    """The host and port the emulator service is started with (--host-port=HOST:PORT)."""
    argv = unwrap_shell(split(service(EMULATOR_SERVICE)["command"]))
    assert argv[:5] == ["gcloud", "beta", "emulators", "pubsub", "start"], argv
    for i, arg in enumerate(argv):
        if arg.startswith("--host-port="):
            value = arg.removeprefix("--host-port=")
        elif arg == "--host-port" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        host, _, port = value.rpartition(":")
        return host, int(port)
    raise AssertionError(f"the emulator command sets no --host-port: {argv}")


def dockerignored(path: str) -> bool:
    """Whether the build context leaves `path` out (Docker's .dockerignore rules, simplified)."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
                end = pattern.index("]", i + 1)
                regex, i = regex + pattern[i : end + 1].replace("[!", "[^"), end + 1
            else:
                char = pattern[i]
                regex += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
                i += 1
        rules.append((re.compile(regex + "$"), negate))
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for regex, negate in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


# --------------------------------------------------------------------------- docker-compose.yml


def test_compose_file_parses_into_services() -> None:
    data = compose()
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    assert isinstance(data.get("services"), dict), "docker-compose.yml has no services mapping"


@pytest.mark.parametrize("name", [EMULATOR_SERVICE, *APP_SERVICES])
def test_service_exists(name: str) -> None:
    assert isinstance(service(name), dict)


def test_every_non_emulator_service_is_guarded_as_a_pubsub_client() -> None:
    others = set(compose()["services"]) - {EMULATOR_SERVICE}
    assert others == set(APP_SERVICES), "add new services to APP_SERVICES so they are checked below"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_is_built_from_the_dockerfile(name: str) -> None:
    build = service(name).get("build")
    assert build is not None, f"{name} is not built from the project's Dockerfile"
    context, file = (build, "Dockerfile") if isinstance(build, str) else (
        build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    assert (COMPOSE_FILE.parent / context / file).resolve() == DOCKERFILE.resolve()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_points_at_the_emulator(name: str) -> None:
    _, port = emulator_host_port()
    assert environment(service(name)).get("PUBSUB_EMULATOR_HOST") == f"{EMULATOR_SERVICE}:{port}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_waits_for_a_healthy_emulator(name: str) -> None:
    deps = depends_on(service(name))
    assert EMULATOR_SERVICE in deps, f"{name} does not depend on {EMULATOR_SERVICE}"
    assert deps[EMULATOR_SERVICE].get("condition") == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
@pytest.mark.parametrize(
    ("variable", "default"),
    [
        ("PUBSUB_JOB_QUEUE_PROJECT_ID", "job_queue"),
        ("QUEUE_NAME", "default"),
        ("MOCK_JOB_RETRY_DELAY", "300"),
    ],
)
def test_app_service_passes_settings_through_with_defaults(name: str, variable: str, default: str) -> None:
    assert environment(service(name)).get(variable) == f"${{{variable}:-{default}}}"


def test_emulator_image_is_the_official_gcloud_emulators_image() -> None:
    image = service(EMULATOR_SERVICE).get("image", "")
    assert EMULATOR_IMAGE.match(image), image


def test_emulator_listens_on_all_interfaces() -> None:
    host, _ = emulator_host_port()
    assert host in ("0.0.0.0", "[::]"), f"other containers cannot reach an emulator bound to {host}"


def test_emulator_exposes_its_port() -> None:
    _, port = emulator_host_port()
    assert str(port) in [str(p) for p in service(EMULATOR_SERVICE).get("expose", [])]


def test_emulator_healthcheck_probes_the_emulator_port() -> None:
    healthcheck = service(EMULATOR_SERVICE).get("healthcheck") or {}
    assert not healthcheck.get("disable"), "the emulator healthcheck is disabled"
    test = healthcheck.get("test")
    assert test, "the emulator has no healthcheck test"
    probe = test if isinstance(test, str) else " ".join(str(part) for part in test)
    assert not probe.startswith("NONE"), probe
    assert re.search(r"\bcurl\b|\bwget\b|/dev/tcp/", probe), f"healthcheck probes nothing: {probe}"
    ports = {int(p) for p in re.findall(r"(?:localhost|127\.0\.0\.1|\[::1\])[:/](\d+)", probe)}
    assert ports == {emulator_host_port()[1]}, f"healthcheck probes {ports or 'no port'}: {probe}"


def test_worker_is_scalable() -> None:
    worker = service("worker")
    assert "container_name" not in worker, "container_name prevents --scale worker=N"
    fixed = [port for port in worker.get("ports", []) if publishes_host_port(port)]
    assert not fixed, f"fixed host ports prevent --scale worker=N: {fixed}"


@pytest.mark.parametrize(
    ("name", "profiles"),
    [(EMULATOR_SERVICE, []), ("worker", []), ("spawner", []), ("status", []), ("flower", []),
     ("tests", ["tests"])],
)
def test_service_profiles(name: str, profiles: list[str]) -> None:
    """`docker compose up` starts all but tests; `docker compose run --rm tests` runs them."""
    assert service(name).get("profiles", []) == profiles


@pytest.mark.parametrize("name", [EMULATOR_SERVICE, *APP_SERVICES])
def test_compose_variables_in_commands_have_defaults_or_are_escaped(name: str) -> None:
    """A bare `$VAR` in a command is substituted from the *host* at parse time, empty if unset."""
    command = service(name).get("command") or ""
    text = command if isinstance(command, str) else " ".join(map(str, command))
    unescaped = text.replace("$$", "")
    bad = [m.group(0) for m in re.finditer(r"\$(?!\{\w+:?-[^}]*\})\S*", unescaped)]
    assert not bad, f"{name}: use $$ for the container shell, or ${{VAR:-default}}: {bad}"


# --------------------------------------------------------------------------- commands

COMMAND_SOURCES = ["compose:worker", "compose:spawner", "compose:status", "compose:flower", "compose:tests",
                   "Dockerfile:CMD"]


def test_every_app_service_command_is_in_the_table() -> None:
    with_command = {f"compose:{name}" for name in APP_SERVICES if service(name).get("command")}
    assert with_command <= set(COMMAND_SOURCES)


@pytest.mark.parametrize(
    ("source", "program"),
    [("compose:worker", "celery"), ("compose:spawner", "python"), ("compose:status", "python"),
     ("compose:flower", "celery"),
     ("compose:tests", "ruff"),
     ("Dockerfile:CMD", "celery")],
)
def test_command_runs_the_expected_program(source: str, program: str) -> None:
    argv = command_argv(source)
    assert argv and argv[0] == program, argv


def _steps(chain: str) -> list[str]:
    """The programs of a `a && b && c` chain with their first argument, venv prefixes dropped."""
    steps = []
    for part in chain.split("&&"):
        argv = shlex.split(part.strip().replace(".venv/bin/", ""))
        steps.append(" ".join(argv[:2]))
    return steps


def test_the_compose_tests_command_runs_the_same_checks_as_ci():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()[-1]
    wanted = [step for step in _steps(ci) if not step.startswith(("python3.11", "pip"))]
    assert _steps(" ".join(command_argv("compose:tests"))) == wanted


@pytest.mark.parametrize("source", ["compose:worker", "compose:spawner", "compose:status",
                                    "compose:flower", "Dockerfile:CMD"])
def test_command_names_existing_modules(source: str) -> None:
    modules = referenced_modules(command_argv(source))
    assert modules, f"{source} names no module with celery -A / python -m"
    missing = [name for name in modules if not module_exists(name)]
    assert not [name for name in missing if name not in PENDING_MODULES], f"{source}: no module {missing}"
    if missing:
        pytest.skip("; ".join(PENDING_MODULES[name] for name in missing))


@pytest.mark.parametrize("source", ["compose:worker", "Dockerfile:CMD"])
def test_worker_command_consumes_the_configured_queue(source: str) -> None:
    argv = command_argv(source)
    assert argv[:4] == ["celery", "-A", "demo_tasks", "worker"], argv
    assert "-Q" in argv, f"{source} consumes no named queue"
    assert re.fullmatch(r"\$\{?QUEUE_NAME(?::-default)?\}?", argv[argv.index("-Q") + 1]), argv


def test_dockerfile_cmd_is_shell_form_when_it_uses_variables() -> None:
    cmd = dockerfile_cmd()
    assert "$" not in cmd or not cmd.startswith("["), "exec-form CMD does not expand variables"


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_from_python_311_slim() -> None:
    froms = dockerfile("FROM")
    assert froms, "Dockerfile has no FROM"
    image = next(arg for arg in froms[-1].split() if not arg.startswith("--"))
    assert PYTHON_311_SLIM.fullmatch(image), image


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = dockerfile("USER")
    assert users, "Dockerfile has no USER: the container runs as root"
    assert users[-1].split(":")[0] not in ROOT_USERS, users[-1]


def test_dockerfile_copies_then_installs_the_project_with_test_extras() -> None:
    instructions = dockerfile_instructions()
    install = re.compile(r"pip3? install\b.*?\s['\"]?\.\[[^\]]*\btest\b[^\]]*\]['\"]?(?:\s|$)")
    installs = [i for i, (kw, args) in enumerate(instructions) if kw == "RUN" and install.search(args + " ")]
    assert installs, "no RUN pip install '.[test]' (or -e '.[test]')"
    copies = [i for i, (kw, args) in enumerate(instructions)
              if kw in ("COPY", "ADD") and [a for a in args.split() if not a.startswith("--")][0] == "."]
    assert copies and copies[0] < installs[0], "the project is not copied before it is installed"


@pytest.mark.parametrize(
    "path",
    ["setup.cfg", "pyproject.toml", "README.md", "kombu_pubsub/__init__.py", "demo_tasks/app.py",
     "tests/unit/test_docker_files.py", "Dockerfile", "docker-compose.yml"],
)
def test_dockerignore_keeps_what_the_image_needs(path: str) -> None:
    assert not dockerignored(path)


@pytest.mark.parametrize(
    "path",
    [".git/HEAD", ".venv/bin/python", "venv/bin/python", "kombu_pubsub/__pycache__/acker.cpython-311.pyc",
     ".pytest_cache/README.md", ".ruff_cache/CACHEDIR.TAG", "kombu_pubsub.egg-info/PKG-INFO"],
)
def test_dockerignore_leaves_out_vcs_venvs_and_caches(path: str) -> None:
    assert dockerignored(path)


def test_compose_worker_sends_task_events_and_flower_watches_the_demo_app() -> None:
    assert "-E" in command_argv("compose:worker")  # without events Flower shows no tasks
    assert command_argv("compose:flower")[:4] == ["celery", "-A", "demo_tasks", "flower"]


def test_flower_is_healthchecked_on_the_port_it_serves_and_publishes() -> None:
    flower = service("flower")
    port = next(arg.split("=", 1)[1] for arg in command_argv("compose:flower")
                if arg.startswith("--port="))
    assert any(str(entry).endswith(f":{port}") for entry in flower["ports"]), flower["ports"]
    probe = " ".join(flower["healthcheck"]["test"])
    assert f"localhost:{port}/healthcheck" in probe, probe
    assert not probe.startswith("CMD curl"), "python:3.11-slim has no curl"


def test_worker_metrics_port_is_exposed_not_published() -> None:
    worker = service("worker")
    port = environment(worker)["KOMBU_PUBSUB_METRICS_PORT"]
    assert port in [str(entry) for entry in worker.get("expose", [])]


@pytest.mark.parametrize("source", ["compose:worker", "Dockerfile:CMD"])
def test_worker_runs_with_the_local_demos_pool_options(source: str) -> None:
    """docker compose and `python -m demo_tasks.local` size the demo worker alike."""
    from demo_tasks.local import WORKER_OPTIONS

    argv = command_argv(source)
    start = argv.index(WORKER_OPTIONS[0]) if WORKER_OPTIONS[0] in argv else -1
    assert tuple(argv[start:start + len(WORKER_OPTIONS)]) == WORKER_OPTIONS, argv


def test_spawner_starts_once_the_status_line_counts_events() -> None:
    """Events published before the status service subscribed are not counted."""
    assert depends_on(service("spawner"))["status"]["condition"] == "service_healthy"
    probe = " ".join(service("status")["healthcheck"]["test"])
    ready_file = command_argv("compose:status")[command_argv("compose:status").index("--ready-file") + 1]
    assert ready_file in probe, probe
