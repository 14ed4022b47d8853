"""No secret and no webhook URL is committed: every file `git ls-files` lists is scanned.

Two kinds of rules:

- token shapes that are never legitimate in a repository (private key blocks, cloud and chat
  tokens, Discord/Slack webhook URLs with their id and token);
- in configuration files (env files, YAML, TOML, Dockerfile), a variable or key named like a
  secret (password, token, API key, webhook...) must be empty or a placeholder (`${VAR}`, `<...>`,
  `changeme`, a reference to a Kubernetes secret or a mounted file), never a literal value.

A hit names the file, the line and the rule, never the matched value (CI logs are public). A
placeholder that must be allowed goes in `ALLOWED_VALUES`, with a reason.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TOKEN_RULES: dict[str, re.Pattern[str]] = {
    "private key block": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    "GCP service account key": re.compile(r'"private_key_id"\s*:\s*"[0-9a-f]{40}"'),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Slack webhook URL": re.compile(r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/\w+"),
    "Discord webhook URL": re.compile(
        r"discord(?:app)?\.com/api/webhooks/\d{5,}/[A-Za-z0-9_\-]{20,}", re.IGNORECASE
    ),
}

# `NAME=value`, `NAME: value`, `"name": "value"` where NAME looks like a secret's name.
SECRET_NAME = r"[A-Za-z0-9_.\-]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|WEBHOOK(?:_URL)?)"
ASSIGNMENT = re.compile(
    rf"""^\s*(?:export\s+|-\s+|ENV\s+|ARG\s+)?["']?(?P<name>{SECRET_NAME})["']?\s*[:=]\s*(?P<value>.*)$""",
    re.IGNORECASE,
)
CONFIG_FILE = re.compile(r"(^|/)(\.env[^/]*|[^/]+\.(ya?ml|toml|ini|cfg|conf)|Dockerfile[^/]*)$")
PLACEHOLDER = re.compile(
    r"""^(?:
        |""|''                                  # empty
        |\$\{[^}]*\}|\$\([^)]*\)|\$[A-Z_]+      # ${VAR}, $(cmd), $VAR
        |<[^>]*>                                # <your token>
        |\{\{.*\}\}                             # a template
        |(?:change|replace)[-_ ]?me.*|example.*|dummy.*|placeholder.*|x{3,}|\*+
        |/[\w./-]+                              # a path to a mounted secret file
        |(?:true|false|null|none|~)
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# Values that are not secrets although their key is named like one, with the reason.
ALLOWED_VALUES: dict[str, str] = {
    "secretKeyRef": "Kubernetes: the value comes from a Secret object",
    "secretName": "Kubernetes: names a Secret object, holds no value",
}
MAX_BYTES = 2_000_000


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def _literal(value: str) -> str:
    """The value of an assignment without a trailing comment, quotes and YAML block markers."""
    value = re.sub(r"(^|\s+)#.*$", "", value.strip()).strip().rstrip(",")
    return value.strip("\"'")


def scan_text(path: str, text: str) -> list[Finding]:
    findings = []
    config = bool(CONFIG_FILE.search(path))
    for number, line in enumerate(text.splitlines(), start=1):
        findings += [
            Finding(path, number, rule) for rule, rx in TOKEN_RULES.items() if rx.search(line)
        ]
        if not config:
            continue
        match = ASSIGNMENT.match(line)
        if not match:
            continue
        value = _literal(match["value"])
        if value in ("", "|", ">") or PLACEHOLDER.match(value) or value in ALLOWED_VALUES:
            continue
        if value.startswith(("{", "[")) or value.endswith(":"):
            continue  # a mapping or list follows (YAML / JSON structure), not a value
        findings.append(Finding(path, number, f"literal value for secret-like {match['name']!r}"))
    return findings


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    return [name for name in out.stdout.decode().split("\0") if name]


def test_no_tracked_file_holds_a_secret_or_a_webhook_url() -> None:
    files = tracked_files()
    assert len(files) > 50  # the scan really ran over the repository
    findings: list[Finding] = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        findings += scan_text(name, text)
    assert not findings, "possible secrets committed:\n" + "\n".join(map(str, findings))


# The scanner itself: samples are assembled at run time so this file holds none of them.
_DISCORD = "https://discord.com/api/" + "webhooks/" + "123456789012345678/" + "a1B2" * 15
_SLACK = "https://hooks.slack" + ".com/services/" + "T0ABCDEF/B0ABCDEF/" + "x" * 24
_PRIVATE = "-----BEGIN " + "RSA PRIVATE KEY-----"
_AWS = "AKIA" + "ABCDEFGHIJKLMNOP"
_GITHUB = "ghp_" + "a" * 36


@pytest.mark.parametrize(
    ("path", "text", "rule"),
    [
        ("bike_assets/alerts.py", f'URL = "{_DISCORD}"', "Discord webhook URL"),
        ("README.md", f"post to {_SLACK}", "Slack webhook URL"),
        ("deploy/key.pem", _PRIVATE, "private key block"),
        ("notes.txt", f"aws {_AWS}", "AWS access key id"),
        ("ci.sh", f"TOKEN={_GITHUB}", "GitHub token"),
        (".env", "DISCORD_WEBHOOK_URL=https://example.org/hook", "secret-like"),
        (".env.example", "BIKE_API_KEY=s3cr3t-value-123", "secret-like"),
        ("docker-compose.yml", "      POSTGRES_PASSWORD: hunter2", "secret-like"),
        ("deploy/values.yaml", '  "apiToken": "abc123"', "secret-like"),
    ],
)
def test_the_scanner_finds_planted_secrets(path: str, text: str, rule: str) -> None:
    findings = scan_text(path, text)
    assert findings and rule in findings[0].rule, findings
    assert _DISCORD[40:] not in str(findings[0])  # a finding never prints the value


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (".env.example", "DISCORD_WEBHOOK_URL="),
        (".env.example", "BIKE_API_KEY=  # empty: disabled"),
        ("docker-compose.yml", "      DAGSTER_POSTGRES_PASSWORD: ${DAGSTER_POSTGRES_PASSWORD}"),
        ("deploy/k8s/secret.example.yaml", "  BIKE_API_KEY: <at least 16 characters>"),
        ("deploy/k8s/deployment.yaml", "            secretKeyRef:"),
        ("docker-compose.yml", "      GF_SECURITY_ADMIN_PASSWORD__FILE: /run/secrets/grafana"),
        ("README.md", "export DISCORD_WEBHOOK_URL=https://discord.com/api/webhooks/<id>/<token>"),
        ("bike_assets/settings.py", 'api_key = env.get("BIKE_API_KEY", "")'),
    ],
)
def test_placeholders_and_references_are_not_secrets(path: str, text: str) -> None:
    assert scan_text(path, text) == []
