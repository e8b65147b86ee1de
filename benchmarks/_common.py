"""Shared helpers of the benchmark scripts: machine description and JSON results."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from calosurrogate.benchmark import machine_description

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return machine_description()


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_result(name: str, data: dict[str, Any], command: str, commit: str | None = None) -> Path:
    """Write ``results/NAME.json`` with the command, machine, commit and date beside the figures."""
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": name, "command": command, "machine": machine(), "commit": commit or git_commit(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **data}  # fmt: skip
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
