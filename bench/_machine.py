"""What every benchmark report says about the machine it ran on."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


def cpu_model(default: str = "?") -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else `default`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def uname_m() -> str:
    """`uname -m`, or Python's idea of it where uname is missing."""
    try:
        out = subprocess.run(["uname", "-m"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return platform.machine()
