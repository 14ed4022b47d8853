"""Static checks of the deployment files (Dockerfile, docker-compose.yml, deploy/): no Docker, no
cluster, no network. They catch what breaks a deployment silently: a file that no longer parses,
a variable compose passes that the code never reads (a typo), a secret written inline, a probe on
the wrong path, an image running as root, two files that must agree and no longer do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# Read by docker-compose.yml, deploy/dagster.yaml (the Dagster instance) or `mlflow server`, not
# by bike_assets/settings.py, so they are documented in deploy/README.md (and, for `bike stack`,
# in .env.example).
COMPOSE_ONLY_VARS = {
    "MLFLOW_BACKEND_STORE_URI",
    "DAGSTER_POSTGRES_HOST",
    "DAGSTER_POSTGRES_PORT",
    "DAGSTER_POSTGRES_USER",
    "DAGSTER_POSTGRES_PASSWORD",
    "DAGSTER_POSTGRES_DB",
}
SECRET_VARS = {"BIKE_API_KEY", "DISCORD_WEBHOOK_URL", "DAGSTER_POSTGRES_PASSWORD"}
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}`; `$$` is compose's escaped dollar.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _load(path: Path) -> Any:
    docs = _load_all(path)
    assert len(docs) == 1, f"{path} should hold one YAML document"
    return docs[0]


def _documented_vars() -> set[str]:
    """Names in .env.example; before it existed, the names settings.py reads."""
    env_example = ROOT / ".env.example"
    if env_example.exists():
        return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", env_example.read_text(), re.M))
    settings = (ROOT / "bike_assets" / "settings.py").read_text()
    return set(re.findall(r"\"([A-Z][A-Z0-9_]+)\"", settings))


def _compose() -> dict[str, Any]:
    return _load(COMPOSE)


def _strings(node: Any) -> Iterator[str]:
    """Every key and scalar of a parsed YAML tree (comments are not part of it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif node is not None:
        yield str(node)


def _services_on_our_image() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in _compose()["services"].items()
        if str(svc.get("image", "")).startswith("bike-traffic")
    }


def _k8s_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    kustomization = _load(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        for doc in _load_all(K8S / resource):
            yield K8S / resource, doc


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _k8s_docs() if doc["kind"] == kind]


def _serving_deployment() -> dict[str, Any]:
    (deployment,) = [d for d in _by_kind("Deployment") if d["metadata"]["name"] == "bike-serving"]
    return deployment


def _api_container() -> dict[str, Any]:
    (container,) = _serving_deployment()["spec"]["template"]["spec"]["containers"]
    return container


def _dagster_values() -> dict[str, Any]:
    return _load(K8S / "dagster-values.yaml")


def _user_deployment() -> dict[str, Any]:
    (deployment,) = _dagster_values()["dagster-user-deployments"]["deployments"]
    return deployment


# --- every file parses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [COMPOSE, *sorted(DEPLOY.rglob("*.yaml")), *sorted(DEPLOY.rglob("*.yml"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_yaml_file_parses(path: Path) -> None:
    docs = _load_all(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in docs)


def test_compose_instance_config_is_a_valid_dagster_instance() -> None:
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")
    postgres = config["storage"]["postgres"]["postgres_db"]
    # Credentials are read from the environment, never written in the file.
    assert postgres["password"] == {"env": "DAGSTER_POSTGRES_PASSWORD"}
    # SQLAlchemy >= 2.1 would pick psycopg (3) for a bare postgresql:// URL; dagster-postgres
    # installs psycopg2 only.
    assert postgres["scheme"] == "postgresql+psycopg2"


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_interpolates_only_documented_variables() -> None:
    used = {m.group(1) for text in _strings(_compose()) for m in INTERPOLATION.finditer(text)}
    unknown = used - _documented_vars() - COMPOSE_ONLY_VARS
    assert not unknown, f"compose uses variables documented nowhere: {sorted(unknown)}"


def test_compose_only_variables_are_documented_in_deploy_readme() -> None:
    readme = (DEPLOY / "README.md").read_text()
    missing = {name for name in COMPOSE_ONLY_VARS if f"`{name}`" not in readme}
    assert not missing


def test_our_services_set_only_known_variables() -> None:
    known = _documented_vars() | COMPOSE_ONLY_VARS
    for name, svc in _services_on_our_image().items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use the mapping form of environment"
        unknown = set(env) - known
        assert not unknown, f"{name} sets variables the code never reads: {sorted(unknown)}"


def test_compose_has_no_inline_secret() -> None:
    for name, svc in _compose()["services"].items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if key in SECRET_VARS or "PASSWORD" in key:
                match = INTERPOLATION.fullmatch(str(value))
                assert match, f"{name}: {key} must come from .env, not be written here"
                operator, default = match.group(2), match.group(3)
                assert operator in (None, ":?", "?") or not default, (
                    f"{name}: {key} has a default value in the file"
                )


def test_api_gets_the_key_from_the_environment_and_data_read_only() -> None:
    api = _compose()["services"]["api"]
    assert api["environment"]["BIKE_API_KEY"] == "${BIKE_API_KEY}"
    assert "data:/data:ro" in api["volumes"]
    assert api["environment"]["BIKE_DATA_DIR"] == "/data"
    # The published service gets the serving settings only, not the whole .env.
    assert "env_file" not in api


def test_healthchecks_of_api_and_webserver() -> None:
    services = _compose()["services"]
    assert "/health/live" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/server_info" in " ".join(services["webserver"]["healthcheck"]["test"])


def test_data_volume_is_shared_by_code_location_and_api() -> None:
    services = _compose()["services"]
    for name in ("code-location", "api"):
        assert any(str(v).startswith("data:/data") for v in services[name]["volumes"]), name
    for name in ("code-location", "daemon", "api"):
        env_dir = (services[name].get("environment") or {}).get("BIKE_DATA_DIR")
        assert env_dir in (None, "/data"), name


def test_compose_bind_mounts_exist() -> None:
    for name, svc in _compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts a missing file: {source}"


def test_env_file_is_dot_env() -> None:
    for name, svc in _compose()["services"].items():
        if "env_file" in svc:
            assert svc["env_file"] in (".env", [".env"]), name


def test_workspace_points_at_the_code_location_service() -> None:
    (entry,) = _load(DEPLOY / "workspace.compose.yaml")["load_from"]
    server = entry["grpc_server"]
    services = _compose()["services"]
    assert server["host"] in services
    command = services[server["host"]]["command"]
    assert str(server["port"]) == command[command.index("-p") + 1]
    assert server["location_name"] == "bike_assets"


def test_prometheus_scrapes_the_api_and_the_pushgateway() -> None:
    scrape = {job["job_name"]: job for job in _load(DEPLOY / "prometheus.yml")["scrape_configs"]}
    targets = {t for job in scrape.values() for c in job["static_configs"] for t in c["targets"]}
    assert {"api:8000", "pushgateway:9091"} <= targets
    assert scrape["bike-serving"]["metrics_path"] == "/metrics"
    # The pushed job/run_id labels must survive the scrape.
    assert any(job.get("honor_labels") for job in scrape.values())


# --- Dockerfile --------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_runs_as_a_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    final_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [arg for op, arg in final_stage if op == "USER"]
    assert users, "the final stage has no USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_default_command_is_the_code_location() -> None:
    instructions = dict(_dockerfile_instructions())
    assert "ENTRYPOINT" not in instructions  # the Helm chart passes its command line as args
    assert '"code-server", "start", "-m", "bike_assets.definitions"' in instructions["CMD"]
    assert "DAGSTER_HOME=/opt/dagster/home" in " ".join(
        arg for op, arg in _dockerfile_instructions() if op == "ENV"
    )


def test_dockerfile_bakes_in_no_secret() -> None:
    for op, arg in _dockerfile_instructions():
        if op in ("ENV", "ARG"):
            assert not any(name in arg for name in SECRET_VARS), arg
        if op in ("COPY", "ADD"):
            assert ".env" not in arg.split(), arg


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = (ROOT / ".dockerignore").read_text().split()
    # Everything is excluded, then only what the build needs is let back in.
    assert patterns[patterns.index("*") :][0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert not allowed & {".env", "data", ".venv", ".git"}
    assert {"pyproject.toml", "bike_assets", "bike_serving", "dagster.yaml"} <= allowed


# --- Kubernetes --------------------------------------------------------------------------------


def test_kustomization_lists_existing_files_and_no_secret() -> None:
    kustomization = _load(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"]
    assert not _by_kind("Secret")


def test_serving_probes() -> None:
    container = _api_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert "/health/ready" not in str(container.get("startupProbe"))


def test_serving_deployment_shape() -> None:
    deployment = _serving_deployment()
    assert deployment["spec"]["replicas"] == 2
    container = _api_container()
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["command"][:2] == ["uvicorn", "bike_serving.app:app"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_serving_api_key_comes_from_a_secret() -> None:
    env = {e["name"]: e for e in _api_container().get("env", [])}
    key = env["BIKE_API_KEY"]
    assert "value" not in key
    assert key["valueFrom"]["secretKeyRef"]["key"] == "BIKE_API_KEY"
    examples = {d["metadata"]["name"] for d in _load_all(K8S / "secret.example.yaml")}
    assert key["valueFrom"]["secretKeyRef"]["name"] in examples


def test_secret_example_holds_placeholders_only() -> None:
    for doc in _load_all(K8S / "secret.example.yaml"):
        assert doc["kind"] == "Secret"
        assert "data" not in doc  # base64 would hide a real value from review
        for key, value in doc["stringData"].items():
            assert value.startswith("<placeholder"), f"{key} looks like a real value"


def test_configmap_is_gcp_mode_without_secrets() -> None:
    configs = {c["metadata"]["name"]: c["data"] for c in _by_kind("ConfigMap")}
    data = configs["bike-traffic-config"]
    assert data["BIKE_ENV"] == "gcp"
    assert {"GCS_BUCKET", "GCS_PREFIX", "GCP_PROJECT"} <= set(data)
    assert not set(data) & SECRET_VARS
    assert set(data) <= _documented_vars()
    env_from = {e["configMapRef"]["name"] for e in _api_container()["envFrom"]}
    assert "bike-traffic-config" in env_from


def test_serving_service_account_uses_workload_identity() -> None:
    (account,) = _by_kind("ServiceAccount")
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]
    pod = _serving_deployment()["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_dagster_values_run_this_code_location() -> None:
    values = _dagster_values()
    user = values["dagster-user-deployments"]
    assert user["enabled"] is True
    assert "iam.gke.io/gcp-service-account" in user["serviceAccount"]["annotations"]
    deployment = _user_deployment()
    args = deployment.get("codeServerArgs") or deployment.get("dagsterApiGrpcArgs")
    assert args[args.index("-m") + 1] == "bike_assets.definitions"
    assert {"name": "bike-traffic-config"} in deployment["envConfigMaps"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True


def test_dagster_values_use_the_image_dagster_home() -> None:
    env = " ".join(arg for op, arg in _dockerfile_instructions() if op == "ENV")
    home = _dagster_values()["global"]["dagsterHome"]
    assert f"DAGSTER_HOME={home}" in env


def test_dagster_values_hold_no_password() -> None:
    values = _dagster_values()
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"


def test_api_and_dagster_run_the_same_image() -> None:
    (image,) = _load(K8S / "kustomization.yaml")["images"]
    assert image["name"] == _api_container()["image"]
    user_image = _user_deployment()["image"]
    assert (user_image["repository"], str(user_image["tag"])) == (
        image["newName"],
        str(image["newTag"]),
    )
