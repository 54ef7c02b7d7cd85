"""A fresh platform state root for a benchmark that drives the real commands, and its servers stopped after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def fresh_state_root(home: Path, **extra_env: str) -> dict[str, str]:
    """Creates ``home`` (which must be empty) with its DAGSTER_HOME; returns the environment that points at it."""
    home = home.resolve()
    if home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} is not empty: give an empty state root")
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    return {**os.environ, "PLATFORM_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
            "PATH": f"{BIN}:{os.environ['PATH']}", **extra_env}


def stop_servers(env: dict[str, str]) -> None:
    """Stops the model and feature servers the state root's deployment started (if any)."""
    subprocess.run([str(BIN / "python"), "-m", "platform_assets", "stop-serving"], cwd=ROOT, env=env, check=False)
