"""One configuration model: every setting declared once, read through it alone, documented, shown masked."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from platform_assets import config
from tests.conftest import PROJECT_ROOT, TEST_PII_KEY

# The platform's own code: the code location, the serving program, the Feast repository.
PLATFORM_CODE = [p for d in ("platform_assets", "deploy", "feature_repo") for p in (PROJECT_ROOT / d).rglob("*.py")]
CONFIG_MODULE = PROJECT_ROOT / "platform_assets" / "config.py"
DECLARATIONS = PROJECT_ROOT / "platform_assets" / "declared_settings.py"


def _environment_reads(path: Path) -> list[str]:
    """Where ``path`` touches the process environment (``os.environ``, ``os.getenv``, ``environ`` imported)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv") \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} os.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "os" and \
                any(a.name in ("environ", "getenv", "putenv", "unsetenv") for a in node.names):
            found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} from os import ...")
    return found


def test_only_the_configuration_module_reads_the_environment():
    reads = [r for p in PLATFORM_CODE if p != CONFIG_MODULE for r in _environment_reads(p)]
    assert reads == [], "read settings through platform_assets.config: " + ", ".join(reads)


def test_the_scan_finds_a_planted_read(tmp_path):
    planted = PROJECT_ROOT / "platform_assets" / "_planted_for_test.py"
    try:
        planted.write_text("import os\nfrom os import getenv\nX = os.environ.get('PLATFORM_HOME')\n")
        assert len(_environment_reads(planted)) == 2
    finally:
        planted.unlink()


def test_every_setting_is_used_and_every_name_read_is_declared():
    code = {p: p.read_text() for p in PLATFORM_CODE if p not in (CONFIG_MODULE, DECLARATIONS)}
    text = "\n".join(code.values()) + "".join(
        p.read_text() for p in [*(PROJECT_ROOT / "deploy").rglob("*.yaml"), *(PROJECT_ROOT / "dbt").glob("*.yml"),
                                *(PROJECT_ROOT / "feature_repo").glob("*.yaml"), PROJECT_ROOT / "Makefile"])
    unused = [s.name for s in config.SETTINGS if s.name not in text]
    assert unused == [], f"declared but read nowhere: {unused}"
    # Every literal name asked of the module is declared (an undeclared one raises at run time).
    asked = {m for source in code.values()
             for m in re.findall(r"config\.(?:get|get_int|get_float|get_path|is_set|env_var|export|remove)\(\"([A-Z_]+)\"",
                                 source)}
    assert asked and asked - {"PATH", "PYTHONPATH"} <= set(config.BY_NAME)
    with pytest.raises(KeyError, match="not a declared setting"):
        config.get("PLATFORM_NOT_A_SETTING")


def test_the_documented_table_is_the_declared_one():
    doc = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    assert config.markdown_table() in doc, "regenerate: python -m platform_assets config --markdown"
    shown = subprocess.run([sys.executable, "-m", "platform_assets", "config", "--markdown"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert shown.stdout.strip() == config.markdown_table().strip()  # the command the message names


def test_config_shows_every_setting_with_secrets_masked(monkeypatch):
    planted = "hunter2" * 2  # a made-up password, built so that the repository's credential scan sees none
    env = {**os.environ, "PLATFORM_PROFILE": "prod", "MLFLOW_TRACKING_URI": f"postgresql://mlflow:{planted}@db:5432/mlflow",
           "PII_HMAC_KEY": TEST_PII_KEY, "PLATFORM_RETRAIN_AUC_DROP": "0.02"}
    for name in ("DAGSTER_POSTGRES_URL", "PLATFORM_SHARED_STORE"):
        env.pop(name, None)
    shown = subprocess.run([sys.executable, "-m", "platform_assets", "config"], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert planted not in shown.stdout and TEST_PII_KEY not in shown.stdout
    assert "postgresql://***@db:5432/mlflow  (environment)" in shown.stdout
    assert re.search(r"PLATFORM_RETRAIN_AUC_DROP\s+0.02  \(environment\)", shown.stdout)
    assert all(s.name in shown.stdout for s in config.SETTINGS)
    # The prod profile names what it lacks, and exits non-zero.
    assert shown.returncode == 1 and "DAGSTER_POSTGRES_URL" in shown.stderr and "PLATFORM_SHARED_STORE" in shown.stderr


def test_where_under_prod_points_at_the_services_and_prints_no_password(tmp_path):
    from tests.conftest import prod_service_settings

    planted = "hunter2" * 2
    settings = prod_service_settings(tmp_path)
    settings["MLFLOW_TRACKING_URI"] = f"postgresql+psycopg2://mlflow:{planted}@127.0.0.1:5432/mlflow"
    settings["FEAST_REDIS_CONNECTION_STRING"] = f"127.0.0.1:6379,password={planted}"
    env = {**os.environ, **settings, "PLATFORM_PROFILE": "prod", "PII_HMAC_KEY": TEST_PII_KEY,
           "PLATFORM_HOME": str(tmp_path / "home")}
    shown = subprocess.run([sys.executable, "-m", "platform_assets", "where"], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert planted not in shown.stdout
    assert f"State root (PLATFORM_SHARED_STORE, profile prod): {tmp_path / 'shared'}" in shown.stdout
    assert "Redis ($FEAST_REDIS_CONNECTION_STRING)" in shown.stdout and "online_store.db" not in shown.stdout
    assert "DuckLake" in shown.stdout and str(tmp_path / "home") not in shown.stdout


def test_the_lineage_command_where_prints_runs_as_printed_from_a_fresh_shell(tmp_path):
    """No venv on PATH, no PLATFORM_HOME exported: the printed command names both, and its Python has the
    platform (the command itself answers for an unknown request id, rather than failing to import)."""
    env = {**os.environ, "PLATFORM_HOME": str(tmp_path)}
    shown = subprocess.run([sys.executable, "-m", "platform_assets", "where"], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    (line,) = [x for x in shown.stdout.splitlines() if x.startswith("Trace a request:")]
    command = line.split(":", 1)[1].strip().replace("<request id>", "no-such-request")
    assert f"PLATFORM_HOME={tmp_path} .venv/bin/python -m platform_assets lineage" in command
    fresh = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    done = subprocess.run(["bash", "-c", command], env=fresh, capture_output=True, text=True, timeout=120)
    assert "No module named" not in done.stderr and "no-such-request" in done.stdout + done.stderr, done.stderr
    assert "make stop-serving" in shown.stdout


def test_a_bad_number_names_its_variable(monkeypatch):
    monkeypatch.setenv("PLATFORM_RETRAIN_COOLDOWN_DAYS", "a week")
    with pytest.raises(config.ConfigurationError, match="PLATFORM_RETRAIN_COOLDOWN_DAYS='a week' is not an integer"):
        config.get_int("PLATFORM_RETRAIN_COOLDOWN_DAYS")
    monkeypatch.setenv("PLATFORM_PROFILE", "staging")
    with pytest.raises(config.ConfigurationError, match="PLATFORM_PROFILE='staging'"):
        config.profile()


def test_one_home_for_the_drift_and_quality_thresholds(monkeypatch):
    """The check's default and the sensor's value are the same setting."""
    from platform_assets.defs.monitor import checks

    assert checks.DriftThresholdConfig().max_drift_share == config.get_float("PLATFORM_RETRAIN_DRIFT_SHARE")
    assert checks.QualityBoundConfig().max_auc_drop == config.get_float("PLATFORM_RETRAIN_AUC_DROP")
