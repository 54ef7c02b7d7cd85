"""Loading the code location: a non-local profile refuses to start without a PII key; local mode says it uses one."""

import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, TEST_PII_KEY, prod_service_settings


def _load(tmp_path, **env):
    """Imports the code location in a fresh interpreter with exactly these PII settings (and, for prod, the
    services' settings: loading connects to none of them)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PLATFORM_PROFILE", "PII_HMAC_KEY", "PII_SALT")}
    services = prod_service_settings(tmp_path) if env.get("PLATFORM_PROFILE") == "prod" else {}
    return subprocess.run(
        [sys.executable, "-c", "import platform_assets.definitions"],
        cwd=PROJECT_ROOT, env={**clean, "PLATFORM_HOME": str(tmp_path), **services, **env},
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("key", [None, "short"])
def test_a_prod_profile_without_a_key_refuses_to_load(tmp_path, key):
    done = _load(tmp_path, PLATFORM_PROFILE="prod", **({"PII_HMAC_KEY": key} if key else {}))
    assert done.returncode != 0
    assert "ConfigurationError" in done.stderr and "PII_HMAC_KEY" in done.stderr


def test_a_prod_profile_with_a_key_loads_quietly(tmp_path):
    done = _load(tmp_path, PLATFORM_PROFILE="prod", PII_HMAC_KEY=TEST_PII_KEY)
    assert done.returncode == 0, done.stderr
    assert "PiiKeyWarning" not in done.stderr


def test_local_mode_loads_and_warns_about_the_development_key(tmp_path):
    done = _load(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "PiiKeyWarning" in done.stderr and "DEVELOPMENT key" in done.stderr
