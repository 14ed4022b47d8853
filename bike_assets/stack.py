"""`bike stack up | status | down | restart`: the production topology on one machine, no Docker.

The same services, commands and instance config as docker-compose.yml (checked by
bike_assets_tests/test_stack_config.py), as plain processes:

| service       | command                                                | ready when              |
|---------------|--------------------------------------------------------|-------------------------|
| pushgateway   | `prometheus-pushgateway` (if the binary exists)        | `/-/ready`              |
| alertmanager  | `prometheus-alertmanager` (if the binary exists)       | `/-/ready`              |
| prometheus    | `prometheus` (if the binary exists)                    | `/-/ready`              |
| mlflow        | `mlflow server`, Postgres backend, local artifacts     | `/health`               |
| code-location | `dagster code-server start -m bike_assets.definitions` | the webserver loaded it |
| api           | `uvicorn bike_serving.app:app`                         | `/health/live`          |
| webserver     | `dagster-webserver -w <workspace: the gRPC server>`    | `/server_info`+location |
| daemon        | `dagster-daemon run -w <same workspace>`               | its heartbeat: healthy  |

Why our own runner rather than honcho or supervisord: the readiness waits need the platform's
own probes (a GraphQL check that the code location loaded, the daemon's heartbeat), `down` must be
callable from another shell, and one process group per service lets `down` kill what a service
spawned too (Dagster's run workers are children of the code server); all of that is ~300 lines
of stdlib, and no new dependency.

Guarantees:
- every service runs in its own session (process group), with stdout+stderr appended to
  `$BIKE_DATA_DIR/stack/logs/<service>.log`; pids and URLs in `$BIKE_DATA_DIR/stack/state.json`;
- `up` returns once every service answers its probe, or stops what it started and fails with the
  tail of the failing service's log;
- `down` sends SIGTERM to each process group (reverse start order), SIGKILL after
  `BIKE_STACK_STOP_TIMEOUT` seconds, and returns only when no process of any group is left;
- secrets are handed only to the process that needs them (like compose): the webserver and the
  daemon get the instance settings only, the API the serving settings only, and the MLflow
  server its backend URI through the environment, never on a command line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
INSTANCE_CONFIG = REPO / "deploy" / "dagster.yaml"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
# Written there when DISCORD_WEBHOOK_URL is empty: notifications fail (logged), nothing is sent.
NO_WEBHOOK = "http://127.0.0.1:9/discord-webhook-not-configured"
CODE_LOCATION = "bike_assets"
# Start order; `down` stops in reverse (clients before the servers they talk to).
ORDER = (
    "pushgateway",
    "alertmanager",
    "prometheus",
    "mlflow",
    "code-location",
    "api",
    "webserver",
    "daemon",
)
# The compose host:port of each service, rewritten in the Prometheus config for the local stack.
COMPOSE_ADDRESSES = {
    "api": "api:8000",
    "pushgateway": "pushgateway:9091",
    "alertmanager": "alertmanager:9093",
    "prometheus": "localhost:9090",
}
# Given to every process: what a program needs to run at all (never a platform setting).
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
# The serving settings (docker-compose.yml's `api` service gets exactly these).
API_ENV = (
    "BIKE_DATA_DIR",
    "BIKE_API_KEY",
    "BIKE_MAX_RECORDS",
    "BIKE_RELOAD_INTERVAL",
    "BIKE_FORECAST_CACHE_DAYS",
    "BIKE_ENV",
    "GCP_PROJECT",
    "GCS_BUCKET",
    "GCS_PREFIX",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "DAGSTER_GRAPHQL_URL",
)
WORKSPACE_YAML = """# Written by `bike stack up`: the webserver and the daemon load no user
# code, they talk to the code-location gRPC server (as in deploy/workspace.compose.yaml).
load_from:
  - grpc_server:
      host: {host}
      port: {port}
      location_name: {location}
"""


class StackError(RuntimeError):
    """The stack could not be brought up, or a command cannot be carried out; says why."""


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError as exc:
        raise StackError(f"{name}={raw!r} is not a port number") from exc
    if not 0 < value < 65536:
        raise StackError(f"{name}={value} is not a port number")
    return value


@dataclass(frozen=True)
class StackConfig:
    """Where everything runs, from the environment (documented in .env.example)."""

    data_dir: Path
    host: str = "127.0.0.1"
    grpc_port: int = 4000
    webserver_port: int = 3000
    api_port: int = 8000
    mlflow_port: int = 5000
    prometheus_port: int = 9090
    pushgateway_port: int = 9091
    alertmanager_port: int = 9093
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    pg_db: str = "dagster"
    mlflow_db: str = "mlflow"
    instance_config: Path = INSTANCE_CONFIG
    ready_timeout_s: float = 300.0
    stop_timeout_s: float = 30.0
    # The rest of the environment, handed to the code location (it runs the runs).
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackConfig:
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("BIKE_DATA_DIR", "").strip() or "data").expanduser().resolve()
        return cls(
            data_dir=data_dir,
            host=env.get("BIKE_STACK_HOST", "").strip() or "127.0.0.1",
            grpc_port=_port(env, "DAGSTER_GRPC_PORT", 4000),
            webserver_port=_port(env, "DAGSTER_WEBSERVER_PORT", 3000),
            api_port=_port(env, "BIKE_API_PORT", 8000),
            mlflow_port=_port(env, "MLFLOW_PORT", 5000),
            prometheus_port=_port(env, "PROMETHEUS_PORT", 9090),
            pushgateway_port=_port(env, "PUSHGATEWAY_PORT", 9091),
            alertmanager_port=_port(env, "ALERTMANAGER_PORT", 9093),
            pg_host=env.get("DAGSTER_POSTGRES_HOST", "").strip() or "127.0.0.1",
            pg_port=_port(env, "DAGSTER_POSTGRES_PORT", 5432),
            pg_user=env.get("DAGSTER_POSTGRES_USER", "").strip() or "postgres",
            pg_password=env.get("DAGSTER_POSTGRES_PASSWORD", ""),
            pg_db=env.get("DAGSTER_POSTGRES_DB", "").strip() or "dagster",
            mlflow_db=env.get("MLFLOW_POSTGRES_DB", "").strip() or "mlflow",
            instance_config=Path(
                env.get("BIKE_STACK_INSTANCE_CONFIG", "").strip() or INSTANCE_CONFIG
            ),
            ready_timeout_s=float(env.get("BIKE_STACK_READY_TIMEOUT", "").strip() or 300),
            stop_timeout_s=float(env.get("BIKE_STACK_STOP_TIMEOUT", "").strip() or 30),
            env=env,
        )

    @property
    def stack_dir(self) -> Path:
        return self.data_dir / "stack"

    @property
    def dagster_home(self) -> Path:
        return self.stack_dir / "dagster_home"

    @property
    def logs_dir(self) -> Path:
        return self.stack_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.stack_dir / "state.json"

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    @property
    def webserver_url(self) -> str:
        return self.url(self.webserver_port)

    @property
    def mlflow_url(self) -> str:
        return self.url(self.mlflow_port)

    @property
    def api_url(self) -> str:
        return self.url(self.api_port)

    def postgres_url(self, db: str) -> str:
        auth = quote(self.pg_user) + (f":{quote(self.pg_password)}" if self.pg_password else "")
        return f"postgresql+psycopg2://{auth}@{self.pg_host}:{self.pg_port}/{db}"

    def instance_env(self) -> dict[str, str]:
        """What deploy/dagster.yaml reads, for every Dagster process."""
        return {
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_POSTGRES_HOST": self.pg_host,
            "DAGSTER_POSTGRES_PORT": str(self.pg_port),
            "DAGSTER_POSTGRES_USER": self.pg_user,
            "DAGSTER_POSTGRES_PASSWORD": self.pg_password,
            "DAGSTER_POSTGRES_DB": self.pg_db,
        }


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    url: str
    probe: Callable[[], bool] = field(compare=False, repr=False)
    # Started only once this service is ready: the daemon loads the code location once at start
    # and, if it was not reachable yet, retries only every 60 s (dagster's workspace refresh).
    after: str | None = None


def _bin(name: str) -> str:
    """An executable of this virtualenv (beside the running python), else from PATH."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise StackError(f"`{name}` is not installed (pip install -e '.[prod]')")
    return found


def find_binary(*names: str) -> str | None:
    """A Prometheus-family binary: Debian names it prometheus-pushgateway, upstream pushgateway."""
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
        if path:
            return path
    return None


def _tcp_open(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            return False

    return probe


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return requests.get(url, timeout=3).ok
        except requests.RequestException:
            return False

    return probe


LOCATION_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
RELOAD_LOCATION = """
mutation Reload($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) { __typename }
}
"""
DAEMON_QUERY = """
{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """POST a query to dagster-webserver; raise StackError on transport or GraphQL errors."""
    try:
        response = requests.post(
            f"{url}/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=60
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        raise StackError(f"GraphQL request to {url} failed: {exc}") from exc
    body = response.json()
    if body.get("errors"):
        raise StackError(f"GraphQL errors: {body['errors']}")
    return dict(body["data"])


def _location_loaded(webserver_url: str) -> Callable[[], bool]:
    """The webserver answers and has loaded the code location without error."""

    def probe() -> bool:
        try:
            data = graphql(webserver_url, LOCATION_QUERY)
        except StackError:
            return False
        entries = data["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            if entry["name"] != CODE_LOCATION or entry["loadStatus"] != "LOADED":
                continue
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") != "PythonError":
                return True
            message = str(loaded.get("message"))
            if "UserCodeUnreachable" in message:
                # asked before the code server listened: ask again rather than give up
                graphql(webserver_url, RELOAD_LOCATION, {"name": CODE_LOCATION})
                return False
            raise StackError(f"code location failed to load: {message}")
        return False

    return probe


def _daemon_healthy(webserver_url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            data = graphql(webserver_url, DAEMON_QUERY)
        except StackError:
            return False
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return all(s["healthy"] for s in statuses if s["required"])

    return probe


def _pick(env: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    return {n: env[n] for n in names if n in env}


def _prometheus_family(
    config: StackConfig, name: str, binary: str, port: int, *flags: str
) -> Service:
    """Prometheus, Pushgateway and Alertmanager share their listen flag and readiness path."""
    url = config.url(port)
    return Service(
        name,
        [binary, *flags, f"--web.listen-address={config.host}:{port}"],
        _pick(config.env, BASE_ENV),
        url,
        _http_ok(f"{url}/-/ready"),
    )


def build_services(config: StackConfig, only: Iterable[str] | None = None) -> list[Service]:
    """The services to run, in start order; Prometheus and Pushgateway only if installed."""
    wanted = set(only) if only else set(ORDER)
    unknown = wanted - set(ORDER)
    if unknown:
        raise StackError(f"unknown services {sorted(unknown)}; choose among {', '.join(ORDER)}")
    base = _pick(config.env, BASE_ENV)
    host = config.host
    dagster = base | config.instance_env()
    workspace = str(config.dagster_home / "workspace.yaml")
    services: list[Service] = []
    pushgateway_bin = find_binary("prometheus-pushgateway", "pushgateway")
    prometheus_bin = find_binary("prometheus")
    alertmanager_bin = find_binary("prometheus-alertmanager", "alertmanager")
    pushgateway_on = "pushgateway" in wanted and pushgateway_bin is not None
    mlflow_on = "mlflow" in wanted

    if pushgateway_on and pushgateway_bin:
        # Persisted: per-run counter groups must survive a restart (batch_metrics.py).
        services.append(
            _prometheus_family(
                config,
                "pushgateway",
                pushgateway_bin,
                config.pushgateway_port,
                f"--persistence.file={config.stack_dir / 'pushgateway.store'}",
                "--persistence.interval=1m",
            )
        )
    if "alertmanager" in wanted and alertmanager_bin:
        services.append(
            _prometheus_family(
                config,
                "alertmanager",
                alertmanager_bin,
                config.alertmanager_port,
                f"--config.file={config.stack_dir / 'alertmanager.yml'}",
                f"--storage.path={config.stack_dir / 'alertmanager'}",
                "--cluster.listen-address=",  # one instance, no gossip port
            )
        )
    if "prometheus" in wanted and prometheus_bin:
        services.append(
            _prometheus_family(
                config,
                "prometheus",
                prometheus_bin,
                config.prometheus_port,
                f"--config.file={config.stack_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={config.stack_dir / 'prometheus'}",
                "--storage.tsdb.retention.time=15d",
            )
        )
    if mlflow_on:
        port = config.mlflow_port
        services.append(
            Service(
                "mlflow",
                [
                    _bin("mlflow"),
                    "server",
                    "--host",
                    host,
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--artifacts-destination",
                    str(config.data_dir / "mlartifacts"),
                    "--serve-artifacts",
                    "--allowed-hosts",
                    f"{host},{host}:{port},localhost,localhost:{port}",
                ],
                # The backend URI holds the database password: environment, not argv (ps shows it).
                base | {"MLFLOW_BACKEND_STORE_URI": config.postgres_url(config.mlflow_db)},
                config.mlflow_url,
                _http_ok(f"{config.mlflow_url}/health"),
            )
        )
    if "code-location" in wanted:
        # The code location runs the runs (default run launcher): it gets the whole environment,
        # pointed at the stack's MLflow server, Pushgateway and API (reports) unless the caller
        # chose others.
        code_env = dict(config.env) | config.instance_env()
        if mlflow_on and not code_env.get("MLFLOW_TRACKING_URI", "").strip():
            code_env["MLFLOW_TRACKING_URI"] = config.mlflow_url
        if pushgateway_on and not code_env.get("PROMETHEUS_PUSHGATEWAY_URL", "").strip():
            code_env["PROMETHEUS_PUSHGATEWAY_URL"] = config.url(config.pushgateway_port)
        if "api" in wanted and not code_env.get("BIKE_REPORTS_URL", "").strip():
            # the API serves the reports folder (GET /reports/{name}): the UI's report links are
            # http links that open, not file:// ones a browser refuses to follow from the UI
            code_env["BIKE_REPORTS_URL"] = f"{config.api_url}/reports"
        code_env["BIKE_DATA_DIR"] = str(config.data_dir)
        services.append(
            Service(
                "code-location",
                [
                    _bin("dagster"),
                    "code-server",
                    "start",
                    "-m",
                    "bike_assets.definitions",
                    "--location-name",
                    CODE_LOCATION,
                    "-h",
                    host,
                    "-p",
                    str(config.grpc_port),
                ],
                code_env,
                f"grpc://{host}:{config.grpc_port}",
                # Listening; "loaded" is the webserver's probe (below), which also waits for
                # the definitions to be imported.
                _tcp_open(host, config.grpc_port),
            )
        )
    if "api" in wanted:
        api_env = base | _pick(config.env, API_ENV) | {"BIKE_DATA_DIR": str(config.data_dir)}
        if "webserver" in wanted and not api_env.get("DAGSTER_GRAPHQL_URL", "").strip():
            # the API's admin controls start runs through the stack's webserver
            api_env["DAGSTER_GRAPHQL_URL"] = f"{config.webserver_url}/graphql"
        services.append(
            Service(
                "api",
                [
                    _bin("uvicorn"),
                    "bike_serving.app:app",
                    "--host",
                    host,
                    "--port",
                    str(config.api_port),
                ],
                api_env,
                config.api_url,
                _http_ok(f"{config.api_url}/health/live"),
            )
        )
    if "webserver" in wanted:
        services.append(
            Service(
                "webserver",
                [
                    _bin("dagster-webserver"),
                    "-h",
                    host,
                    "-p",
                    str(config.webserver_port),
                    "-w",
                    workspace,
                ],
                dagster,
                config.webserver_url,
                _location_loaded(config.webserver_url)
                if "code-location" in wanted
                else _http_ok(f"{config.webserver_url}/server_info"),
            )
        )
    if "daemon" in wanted:
        probe = _daemon_healthy(config.webserver_url) if "webserver" in wanted else (lambda: True)
        # "webserver ready" means the code location loaded; without a webserver, its port is open
        after = "webserver" if "webserver" in wanted else "code-location"
        services.append(
            Service(
                "daemon",
                [_bin("dagster-daemon"), "run", "-w", workspace],
                dagster,
                "",
                probe,
                after=after if after in wanted else None,
            )
        )
    return services


def ensure_database(config: StackConfig, name: str) -> None:
    """Create database `name` on the stack's Postgres unless it exists."""
    import psycopg2  # the `prod` extra
    from psycopg2 import sql

    conn = psycopg2.connect(
        host=config.pg_host,
        port=config.pg_port,
        user=config.pg_user,
        password=config.pg_password or None,
        dbname="postgres",
        connect_timeout=5,
    )
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def _write_configs(config: StackConfig) -> None:
    config.dagster_home.mkdir(parents=True, exist_ok=True)
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    if not config.instance_config.exists():
        raise StackError(f"instance config {config.instance_config} not found")
    shutil.copyfile(config.instance_config, config.dagster_home / "dagster.yaml")
    (config.dagster_home / "workspace.yaml").write_text(
        WORKSPACE_YAML.format(host=config.host, port=config.grpc_port, location=CODE_LOCATION)
    )
    if PROMETHEUS_CONFIG.exists():
        text = PROMETHEUS_CONFIG.read_text()
        ports = {
            "api": config.api_port,
            "pushgateway": config.pushgateway_port,
            "alertmanager": config.alertmanager_port,
            "prometheus": config.prometheus_port,
        }
        for name, address in COMPOSE_ADDRESSES.items():
            text = text.replace(address, f"{config.host}:{ports[name]}")
        prometheus = yaml.safe_load(text)
        # rule files are relative to the config's folder, which is deploy/, not the stack's
        prometheus["rule_files"] = [
            str(PROMETHEUS_CONFIG.parent / rule) for rule in prometheus.get("rule_files") or []
        ]
        (config.stack_dir / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    alertmanager_bin = find_binary("prometheus-alertmanager", "alertmanager")
    if ALERTMANAGER_CONFIG.exists() and alertmanager_bin:
        _write_alertmanager_config(config, _version(alertmanager_bin))


def _version(binary: str) -> tuple[int, ...]:
    """`alertmanager, version 0.25.0 (...)` -> (0, 25, 0); () when it does not say."""
    output = subprocess.run(  # noqa: S603 (a binary found on PATH, fixed argument)
        [binary, "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    found = re.search(r"version (\d+)\.(\d+)\.(\d+)", output.stdout + output.stderr)
    return tuple(int(part) for part in found.groups()) if found else ()


def _write_alertmanager_config(config: StackConfig, version: tuple[int, ...]) -> None:
    """deploy/alertmanager/alertmanager.yml with the Discord webhook from DISCORD_WEBHOOK_URL:
    in a 0600 file beside it, as compose's secret (Alertmanager >= 0.26), or inline in the 0600
    rendered config for older ones (Debian 12 ships 0.25, which has no `webhook_url_file` for
    Discord)."""
    webhook = config.env.get("DISCORD_WEBHOOK_URL", "").strip() or NO_WEBHOOK
    rendered = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in rendered.get("receivers") or []:
        for discord in receiver.get("discord_configs") or []:
            discord.pop("webhook_url_file", None)
            if version >= (0, 26, 0):
                secret = config.stack_dir / "discord_webhook_url"
                secret.write_text(webhook)
                secret.chmod(0o600)
                discord["webhook_url_file"] = str(secret)
            else:
                discord["webhook_url"] = webhook
    out = config.stack_dir / "alertmanager.yml"
    out.write_text(yaml.safe_dump(rendered, sort_keys=False))
    out.chmod(0o600)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live pids of process group `pgid` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields: state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Started:
    name: str
    pid: int
    url: str
    log: str
    argv: list[str]


def read_state(config: StackConfig) -> list[Started]:
    if not config.state_file.exists():
        return []
    return [Started(**item) for item in json.loads(config.state_file.read_text())]


def _write_state(config: StackConfig, started: list[Started]) -> None:
    config.state_file.write_text(json.dumps([asdict(s) for s in started], indent=2))


def up(
    config: StackConfig, only: Iterable[str] | None = None, echo: Callable[[str], None] = print
) -> list[Started]:
    """Start the services, wait until each is ready; on failure stop them all and raise."""
    running = [s for s in read_state(config) if _alive(s.pid)]
    if running:
        raise StackError(
            f"the stack is already running ({', '.join(s.name for s in running)}); "
            "`bike stack down` first"
        )
    services = build_services(config, only)
    _write_configs(config)
    if any(s.name in ("code-location", "webserver", "daemon") for s in services):
        ensure_database(config, config.pg_db)
    if any(s.name == "mlflow" for s in services):
        ensure_database(config, config.mlflow_db)
    started: list[Started] = []
    t0 = time.monotonic()
    deadline = t0 + config.ready_timeout_s
    by_name = {s.name: s for s in services}
    ready: set[str] = set()

    def wait(name: str) -> None:
        if name not in ready:
            process = next(s for s in started if s.name == name)
            _wait_ready(by_name[name], process, deadline)
            ready.add(name)
            echo(f"  {name:<14} ready after {time.monotonic() - t0:5.1f} s  {by_name[name].url}")

    try:
        # Everything boots at once (the slow imports overlap), except what must wait for another.
        for service in services:
            if service.after:
                wait(service.after)
            started.append(_start(config, service))
            _write_state(config, started)
        for service in services:
            wait(service.name)
    except BaseException:
        down(config, echo=lambda _line: None)
        raise
    return started


def _start(config: StackConfig, service: Service) -> Started:
    log = config.logs_dir / f"{service.name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 (argv built above, no shell)
            service.argv,
            env=service.env,
            cwd=config.stack_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `down` kills its children too
        )
    return Started(service.name, proc.pid, service.url, str(log), service.argv)


def restart(config: StackConfig, name: str) -> Started:
    """Stop one service (its whole group) and start it again, waiting until it is ready: what
    compose's restart policy or Kubernetes does after a crash, e.g. of the code server."""
    started = read_state(config)
    index = next((i for i, s in enumerate(started) if s.name == name), None)
    if index is None:
        raise StackError(f"{name} is not running in this stack")
    _stop_group(started[index].pid, config.stop_timeout_s)
    (service,) = [s for s in build_services(config, [s.name for s in started]) if s.name == name]
    started[index] = _start(config, service)
    _write_state(config, started)
    _wait_ready(service, started[index], time.monotonic() + config.ready_timeout_s)
    return started[index]


def _wait_ready(service: Service, started: Started, deadline: float) -> None:
    while True:
        if not _alive(started.pid):
            raise StackError(
                f"{service.name} exited during start-up; the end of {started.log}:\n"
                + _log_tail(Path(started.log))
            )
        if service.probe():
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"{service.name} not ready in time; the end of {started.log}:\n"
                + _log_tail(Path(started.log))
            )
        time.sleep(0.5)


def status(config: StackConfig) -> list[tuple[Started, bool]]:
    """Each recorded service and whether its process is alive."""
    return [(s, _alive(s.pid)) for s in read_state(config)]


def down(config: StackConfig, echo: Callable[[str], None] = print) -> None:
    """Stop every recorded service and everything it spawned; raise if a process survives."""
    started = read_state(config)
    for service in reversed(started):
        _stop_group(service.pid, config.stop_timeout_s)
        echo(f"  {service.name:<14} stopped")
    survivors = {s.name: group_members(s.pid) for s in started}
    survivors = {name: pids for name, pids in survivors.items() if pids}
    if survivors:
        raise StackError(f"processes left after stopping: {survivors}")
    if config.state_file.exists():
        config.state_file.unlink()


def _stop_group(pgid: int, timeout_s: float) -> None:
    """SIGTERM the group (a clean shutdown), then SIGKILL whatever is left after `timeout_s`."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def urls(config: StackConfig, started: Iterable[Started]) -> list[str]:
    names = {s.name for s in started}
    lines = []
    if "webserver" in names:
        lines.append(f"Dagster UI      {config.webserver_url}")
    if "mlflow" in names:
        lines.append(f"MLflow          {config.mlflow_url}")
    if "api" in names:
        lines.append(f"Forecast API    {config.api_url}  (docs {config.api_url}/schema)")
    if "prometheus" in names:
        lines.append(f"Prometheus      {config.url(config.prometheus_port)}")
    if "pushgateway" in names:
        lines.append(f"Pushgateway     {config.url(config.pushgateway_port)}")
    if "alertmanager" in names:
        lines.append(f"Alertmanager    {config.url(config.alertmanager_port)}")
    lines.append(f"logs            {config.logs_dir}")
    return lines


def main(argv: list[str]) -> int:
    """`bike stack up [--only a,b] | status | down | restart --only NAME`."""
    import argparse

    parser = argparse.ArgumentParser(prog="bike stack", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "status", "down", "restart"))
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(ORDER)}")
    args = parser.parse_args(argv)
    try:
        config = StackConfig.from_env()
        if args.action == "up":
            only = [s for s in args.only.split(",") if s.strip()] or None
            t0 = time.monotonic()
            started = up(config, only)
            print(f"stack up in {time.monotonic() - t0:.1f} s")
            for line in urls(config, started):
                print(f"  {line}")
            print("stop it with `bike stack down`")
        elif args.action == "status":
            rows = status(config)
            if not rows:
                print("the stack is not running")
            for service, alive in rows:
                print(
                    f"  {service.name:<14} {'up' if alive else 'DOWN':<5} pid {service.pid:<8} "
                    f"{service.url}  log {service.log}"
                )
            return 0 if rows and all(alive for _, alive in rows) else 1
        elif args.action == "restart":
            names = [s for s in args.only.split(",") if s.strip()]
            if len(names) != 1:
                raise StackError("restart takes one service: --only NAME")
            restart(config, names[0])
            print(f"  {names[0]} restarted")
        else:
            down(config)
    except StackError as exc:
        print(f"bike stack {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
