"""Helpers of the observability tests: the shipped dashboards, rules and configs read as data,
the metric names the code exports, and real Prometheus / Pushgateway / Alertmanager / API
processes on free 127.0.0.1 ports with the project's own configs rewritten to those ports.

Every process started here is a `Service` stopped by `running(...)` (terminate, then kill after a
grace period); `leftovers(marker)` lists processes whose command line still names the test's
temporary folder, so a test can assert that nothing outlived its fixture.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bike_assets.resources.batch_metrics import METRICS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROMETHEUS_CONFIG = DEPLOY / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules"
RULE_TESTS = DEPLOY / "prometheus" / "tests"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"

# Values Grafana gives its built-in variables, for evaluating a panel's query outside Grafana.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# Series Prometheus itself attaches to every scrape target: the only names a dashboard or a rule
# may use that no code of the project exports.
PROMETHEUS_SYNTHETIC = {"up"}

_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip


# -- the shipped files, as data -----------------------------------------------------------------
def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries() -> list[tuple[str, str]]:
    """(`file: panel title [refId]`, PromQL) for every target of every panel."""
    out = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                out.append((f"{name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return out


def substitute(expr: str, variables: Mapping[str, str] = GRAFANA_VARIABLES) -> str:
    """A panel query as Grafana sends it: `$name` and `${name}` replaced by their values."""
    out = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], expr)
    assert "$" not in out, f"unsubstituted variable in {expr!r}"
    return out


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (a small lexer, enough for our queries: the stack
    test proves with a real Prometheus that each query parses and returns data)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in _PROMQL_WORDS:
            names.add(word)
    return names


# -- what the code exports ----------------------------------------------------------------------
def batch_metric_names() -> set[str]:
    return {metric.name for metric in METRICS}


def exposition_names(text: str) -> set[str]:
    """Sample names of a /metrics page (histograms give _bucket/_sum/_count, counters _total)."""
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def exported_names(serving_metrics_text: str) -> set[str]:
    return batch_metric_names() | exposition_names(serving_metrics_text) | PROMETHEUS_SYNTHETIC


# -- real processes -----------------------------------------------------------------------------
@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _stop(service: Service) -> None:
    if service.process.poll() is None:
        service.process.terminate()
        try:
            service.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait(timeout=10)


@contextmanager
def running(
    name: str,
    argv: list[str],
    url: str,
    ready_path: str,
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Iterator[Service]:
    """Start `argv`, wait until GET url+ready_path answers 200, yield, always stop it."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env) if env else None
        )
    service = Service(name, process, url, log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}:\n{service.log_tail()}"
                )
            try:
                if requests.get(url + ready_path, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout_s} s:\n{service.log_tail()}")
            time.sleep(0.2)
        yield service
    finally:
        _stop(service)


def leftovers(marker: str) -> list[str]:
    """Command lines of live processes that mention `marker` (e.g. the test's tmp folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        command = raw.replace(b"\0", b" ").decode(errors="replace")
        if marker in command and state != "Z":
            found.append(command)
    return found


def version_of(binary: str) -> tuple[int, ...]:
    """`alertmanager, version 0.25.0 (...)` -> (0, 25, 0)."""
    text = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", text.stdout + text.stderr)
    assert match, f"no version in the output of {binary} --version"
    return tuple(int(part) for part in match.groups())


def python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


# -- the project's configs rewritten to local ports ---------------------------------------------
def render_prometheus(targets: Mapping[str, str], out: Path, *, interval: str = "1s") -> Path:
    """deploy/prometheus.yml with every compose target replaced (all of them must be known),
    rule files made absolute, and a short scrape/evaluation interval."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {**config.get("global", {}), "scrape_interval": interval}
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / p) for p in config["rule_files"]]
    static = [c for job in config["scrape_configs"] for c in job.get("static_configs", [])] + [
        c for am in config["alerting"]["alertmanagers"] for c in am["static_configs"]
    ]
    for static_config in static:
        static_config["targets"] = [targets[t] for t in static_config["targets"]]
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def render_alertmanager(webhook_url: str, out_dir: Path, version: tuple[int, ...]) -> Path:
    """deploy/alertmanager/alertmanager.yml with the Discord webhook pointed at `webhook_url`
    and the first-notification wait shortened. Alertmanager >= 0.26 reads the URL from a file
    as shipped; 0.25 (Debian 12) only knows an inline `webhook_url` for Discord."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["route"]["group_wait"] = "1s"
    for receiver in config["receivers"]:
        for discord in receiver.get("discord_configs", []):
            del discord["webhook_url_file"]
            if version >= (0, 26, 0):
                secret = out_dir / "discord_webhook_url"
                secret.write_text(webhook_url)
                discord["webhook_url_file"] = str(secret)
            else:
                discord["webhook_url"] = webhook_url
    out = out_dir / "alertmanager.yml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def query(prometheus_url: str, promql: str) -> dict[str, Any]:
    response = requests.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
    body: dict[str, Any] = response.json()
    return body
