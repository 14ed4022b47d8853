"""One topology, three descriptions: `bike stack` (bike_assets/stack.py), docker-compose.yml and
the Helm values must run the same services with the same instance policy; the lock must agree
with pyproject.toml. Fast, no service needed (the `stack` tests boot the real thing)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bike_assets import stack
from bike_assets.jobs import retrain_job

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROD_INSTANCE = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
LOCAL_INSTANCE = yaml.safe_load((ROOT / "dagster.yaml").read_text())
HELM = yaml.safe_load((ROOT / "deploy" / "k8s" / "dagster-values.yaml").read_text())
# Flags whose value is where a service listens or finds its files: they differ by design
# (0.0.0.0 and fixed ports in containers, 127.0.0.1 and free ports locally).
PLACE_FLAGS = {"-h", "--host", "-p", "--port", "-w", "--web.listen-address"}
# argv values that name a place on disk, not a behaviour
PLACE_PREFIXES = ("/",)


def lock_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.split(";")[0].strip()
    return pins


def direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return [Requirement(spec) for spec in specs]


def test_the_lock_pins_every_requirement_of_pyproject_within_its_range() -> None:
    pins = lock_pins()
    problems = []
    for requirement in direct_requirements():
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement.name} is not in constraints.txt")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement.name}=={pinned} does not satisfy {requirement}")
    assert not problems, (
        "constraints.txt disagrees with pyproject.toml; regenerate it with the command in its "
        f"header: {problems}"
    )


def test_run_py_the_dockerfile_and_ci_install_from_the_lock() -> None:
    assert '"-c", CONSTRAINTS' in (ROOT / "run.py").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml README.md constraints.txt" in dockerfile
    assert "-c constraints.txt" in dockerfile
    assert "python3 run.py test" in (ROOT / ".ci" / "run").read_text()


def _shape(argv: list[str]) -> set[str]:
    """What a command line does, without where: flags and positional words, no host/port/path."""
    shape: set[str] = set()
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        flag = token.split("=", 1)[0]
        if flag in PLACE_FLAGS:
            skip = "=" not in token
            continue
        if token.startswith(PLACE_PREFIXES) or "," in token:  # paths, allowed-host lists
            continue
        shape.add(flag if token.startswith("-") else token)
    return shape


def local_services(tmp_path: Path) -> dict[str, stack.Service]:
    config = stack.StackConfig.from_env({"BIKE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin"})
    return {s.name: s for s in stack.build_services(config)}


@pytest.mark.parametrize("name", ["code-location", "webserver", "daemon", "api", "mlflow"])
def test_compose_runs_the_same_python_services_as_the_stack(tmp_path: Path, name: str) -> None:
    local = local_services(tmp_path)[name]
    compose_command = COMPOSE["services"][name]["command"]
    local_argv = [Path(local.argv[0]).name, *local.argv[1:]]
    assert _shape(local_argv) == _shape(compose_command), (name, local_argv, compose_command)


@pytest.mark.parametrize("name", ["prometheus", "pushgateway", "alertmanager"])
def test_compose_runs_the_same_prometheus_services_as_the_stack(tmp_path: Path, name: str) -> None:
    local = local_services(tmp_path).get(name)
    if local is None:
        pytest.skip(f"no {name} binary here: the stack runs it only when installed")
    # compose runs the upstream image (its entrypoint is the binary), so compare the flags
    assert _shape(local.argv[1:]) == _shape(COMPOSE["services"][name]["command"])


def test_compose_mlflow_uses_postgres_and_serves_artifacts() -> None:
    mlflow = COMPOSE["services"]["mlflow"]
    assert "profiles" not in mlflow  # part of the stack, not an option
    uri = mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert uri.startswith("postgresql+psycopg2://") and uri.endswith("/mlflow")
    assert {"--serve-artifacts", "--artifacts-destination", "--allowed-hosts"} <= set(
        mlflow["command"]
    )


@pytest.mark.parametrize("name", ["code-location", "webserver", "daemon"])
def test_every_dagster_container_loads_the_production_instance(name: str) -> None:
    volumes = COMPOSE["services"][name]["volumes"]
    assert "./deploy/dagster.yaml:/opt/dagster/home/dagster.yaml:ro" in volumes


def _tag_limits(instance: dict[str, Any]) -> list[dict[str, Any]]:
    return list(instance["concurrency"]["runs"]["tag_concurrency_limits"])


@pytest.mark.parametrize("instance", [PROD_INSTANCE, LOCAL_INSTANCE], ids=["deploy", "local"])
def test_every_instance_config_has_the_same_policy(instance: dict[str, Any]) -> None:
    assert instance["concurrency"] == PROD_INSTANCE["concurrency"]
    monitoring = instance["run_monitoring"]
    assert monitoring["enabled"] is True
    # a dead run worker cannot hold the paris_api slot for ever (issue 13, point 2)
    assert (
        monitoring["max_runtime_seconds"] == PROD_INSTANCE["run_monitoring"]["max_runtime_seconds"]
    )
    assert monitoring["free_slots_after_run_end_seconds"] > 0
    # retrain_job runs never overlap: its tag is limited to one run in progress
    assert dict(retrain_job.tags or {}) == {"bike/serial": "retrain"}
    assert {"key": "bike/serial", "value": "retrain", "limit": 1} in _tag_limits(instance)


def test_helm_values_carry_the_same_policy() -> None:
    runs = HELM["concurrency"]["runs"]
    assert runs["maxConcurrentRuns"] == PROD_INSTANCE["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == _tag_limits(PROD_INSTANCE)
    assert HELM["concurrency"]["pools"]["defaultLimit"] == 1
    monitoring = HELM["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is True
    assert (
        monitoring["freeSlotsAfterRunEndSeconds"]
        == PROD_INSTANCE["run_monitoring"]["free_slots_after_run_end_seconds"]
    )
    # the chart has no max_runtime_seconds: Kubernetes ends the run's Job at the same limit, and
    # the K8sRunLauncher's health check then marks the run failed (deploy/README.md)
    job_spec = HELM["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["jobSpecConfig"]
    assert (
        job_spec["activeDeadlineSeconds"] == PROD_INSTANCE["run_monitoring"]["max_runtime_seconds"]
    )


def test_secrets_go_only_to_the_process_that_needs_them(tmp_path: Path) -> None:
    env = {
        "BIKE_DATA_DIR": str(tmp_path),
        "PATH": "/usr/bin",
        "DISCORD_WEBHOOK_URL": "https://discord.invalid/api/webhooks/1/s3cr3t-a",
        "DAGSTER_POSTGRES_PASSWORD": "s3cr3t-b",
        "BIKE_API_KEY": "k" * 32,
    }
    services = {s.name: s for s in stack.build_services(stack.StackConfig.from_env(env))}
    assert services["code-location"].env["DISCORD_WEBHOOK_URL"].endswith("s3cr3t-a")
    for name in ("webserver", "daemon", "api", "mlflow"):
        assert "DISCORD_WEBHOOK_URL" not in services[name].env, name
    assert "DAGSTER_POSTGRES_PASSWORD" not in services["api"].env
    assert services["api"].env["BIKE_API_KEY"] == "k" * 32
    assert "BIKE_API_KEY" not in services["webserver"].env
    # the MLflow backend URI (with the password) is in its environment, never on its command line
    assert "s3cr3t-b" in services["mlflow"].env["MLFLOW_BACKEND_STORE_URI"]
    assert not any("s3cr3t" in token for s in services.values() for token in s.argv)


def test_report_links_in_the_ui_point_at_the_api_that_serves_them(tmp_path: Path) -> None:
    env = {"BIKE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin", "BIKE_API_PORT": "8123"}
    services = {s.name: s for s in stack.build_services(stack.StackConfig.from_env(env))}
    code_env = services["code-location"].env
    assert code_env["BIKE_REPORTS_URL"] == "http://127.0.0.1:8123/reports"
    # the folder the code location writes reports to is the one the API serves
    assert code_env["BIKE_DATA_DIR"] == services["api"].env["BIKE_DATA_DIR"]
    # a URL the user chose wins; without the API nothing serves the folder: no URL is invented
    chosen = env | {"BIKE_REPORTS_URL": "https://reports.example.org"}
    (code,) = stack.build_services(stack.StackConfig.from_env(chosen), only=["code-location"])
    assert code.env["BIKE_REPORTS_URL"] == "https://reports.example.org"
    (alone,) = stack.build_services(stack.StackConfig.from_env(env), only=["code-location"])
    assert "BIKE_REPORTS_URL" not in alone.env
    # compose: the link a browser on the host opens is the API's published port
    compose_env = COMPOSE["services"]["code-location"]["environment"]
    assert compose_env["BIKE_REPORTS_URL"] == "${BIKE_REPORTS_URL:-http://127.0.0.1:8000/reports}"
    assert "127.0.0.1:8000:8000" in COMPOSE["services"]["api"]["ports"]


def test_ports_come_from_the_environment_and_bad_ones_are_refused(tmp_path: Path) -> None:
    config = stack.StackConfig.from_env(
        {"BIKE_DATA_DIR": str(tmp_path), "DAGSTER_WEBSERVER_PORT": "3123", "BIKE_API_PORT": "8123"}
    )
    assert (config.webserver_url, config.api_url) == (
        "http://127.0.0.1:3123",
        "http://127.0.0.1:8123",
    )
    with pytest.raises(stack.StackError, match="BIKE_API_PORT"):
        stack.StackConfig.from_env({"BIKE_API_PORT": "80000"})
    with pytest.raises(stack.StackError, match="unknown services"):
        stack.build_services(config, only=["kafka"])


def test_every_variable_the_stack_reads_is_documented_in_env_example() -> None:
    source = (ROOT / "bike_assets" / "stack.py").read_text()
    read = set(re.findall(r'env(?:\.get)?\(\s*"([A-Z][A-Z0-9_]+)"', source))
    read |= set(re.findall(r'_port\(env, "([A-Z][A-Z0-9_]+)"', source))
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert {"DAGSTER_WEBSERVER_PORT", "BIKE_STACK_HOST"} <= read  # the patterns find them
    assert read <= documented, sorted(read - documented)
