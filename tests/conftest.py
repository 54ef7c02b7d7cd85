"""Shared fixtures: every test works under a temporary state root and DAGSTER_HOME."""

from __future__ import annotations

import datetime as dt
import functools
import gc
import os
from pathlib import Path

import pytest

# The tests' days start in 2025-12; a first day recorded by `make demo` under .platform must not apply.
os.environ["PLATFORM_PARTITIONS_START"] = "2025-01-01"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A PII key long enough for the prod profile; a test value, not a secret.
TEST_PII_KEY = "0123456789abcdef" * 2

def prod_service_settings(root: Path, database: str = "test", redis_db: int = 0) -> dict[str, str]:
    """The prod profile's service settings on this machine's PostgreSQL and Redis (every setting but the PII
    key), with the shared store under ``root``."""
    postgres = f"postgresql://postgres@127.0.0.1:5432/{database}"
    return {"PLATFORM_SHARED_STORE": str(root / "shared"), "DAGSTER_POSTGRES_URL": postgres,
            "PLATFORM_WAREHOUSE_URL": postgres, "MLFLOW_TRACKING_URI": postgres.replace("postgresql:", "postgresql+psycopg2:"),
            "FEAST_REGISTRY_URL": postgres.replace("postgresql:", "postgresql+psycopg:"),
            "FEAST_REDIS_CONNECTION_STRING": f"127.0.0.1:6379,db={redis_db}"}


SERVING_PYTHON = PROJECT_ROOT / ".venv-serving" / "bin" / "python"
SHARED = PROJECT_ROOT.parent / "shared"
SELDON_CRD = SHARED / "k8s-schemas" / "seldondeployments.machinelearning.seldon.io.v1.crd.yaml"


@functools.cache
def seldon_crd_schema() -> dict:
    """Seldon Core's own CRD schema, from ``../shared`` (2.4 MB of YAML: read once, with libyaml where it is)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(SELDON_CRD.read_text(), Loader=loader)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def pytest_collection_finish(session):
    """Undoes the ``gc.freeze()`` of ``platform_assets.definitions`` for the test session.

    Test modules import duckdb before the definitions; frozen DuckDB objects are
    never freed, and DuckDB's bindings then print pages of "leaked" at exit.
    """
    gc.unfreeze()


@pytest.fixture(scope="session", autouse=True)
def _free_serving_ports():
    """A user's platform may be serving on the default ports (``make demo`` leaves 9100 and 9101 taken): a test's
    release takes a free one, in this process (``embedded_resources``) and in the commands it starts
    (``SERVING_PORT``, set per test by ``_isolated_state``)."""
    from platform_assets import definitions
    from platform_assets.deploy.processes import free_port

    on_defaults = definitions.embedded_resources

    def on_a_free_port(root, declared=None, serving_port=None):
        return on_defaults(root, declared, serving_port or free_port())

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(definitions, "embedded_resources", on_a_free_port)
        yield


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """Points PLATFORM_HOME, DAGSTER_HOME and MLflow at temporary folders, and the serving port at a free one:
    never the user's state or ports."""
    from platform_assets.deploy.processes import free_port

    root = tmp_path_factory.mktemp("platform_home")
    monkeypatch.setenv("SERVING_PORT", str(free_port()))
    monkeypatch.setenv("PLATFORM_HOME", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (root / "dagster_home").mkdir()
    yield root


def write_sample_landing(
    root: Path, days: int = 40, rows_per_day: int = 300, start: dt.date = dt.date(2026, 9, 1), **kwargs
) -> int:
    """Writes generated landing files (one per day from ``start``) under ``root``; returns the number of rows."""
    from platform_assets import settings
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications, write_landing_files

    config = GeneratorConfig(
        start_date=start, days=days, rows_per_day=rows_per_day, **kwargs
    )
    df = generate_applications(config)
    write_landing_files(df, settings.paths(root).landing / loan().source.landing_folder)
    return len(df)


def loan():
    """The loan-default use case, as declared in platform_assets/defs/loan_default/defs.yaml."""
    from platform_assets.declared import use_case

    return use_case("loan_default")


def release_tiny_loan_model(folder: Path, rows, seed: int = 1) -> tuple[dict, object, int]:
    """Version 1 of a small loan-default network (fitted on ``rows``), released on a free port under
    ``folder / "serving"`` with its smoke test; returns the release record, its spec and the port."""
    import torch

    from platform_assets.declarations import use_case_to_dict
    from platform_assets.deploy import release
    from platform_assets.deploy.processes import free_port
    from platform_assets.train.network import ModelBundle, Preprocessor, TabularNet

    torch.manual_seed(seed)
    pre = Preprocessor(numeric=["income", "debt_to_income", "open_loans"], categorical=["region"]).fit(rows)
    ModelBundle(TabularNet(pre.output_dim, (8,), 0.0), pre, {"hidden": [8], "dropout": 0.0},
                {"model_name": "loan-default", "model_version": "1"}).save(folder / "v1")
    spec = release.BackendSpec(
        python=SERVING_PYTHON, bundle=folder / "v1", use_case="loan_default", declaration=use_case_to_dict(loan()),
        model_name="loan-default", version="1", feature_repo=None, state_root=folder,
        inference_log_dir=folder / "inference", workers=2)
    port = free_port()
    record = release.release(spec, folder / "serving", host="127.0.0.1", port=port, log=print,
                             smoke_test=lambda url: release.smoke_test_against_bundle(url, folder / "v1", rows, "1"))
    return record, spec, port


def loan_keys():
    """The asset keys of the loan-default use case."""
    from platform_assets.keys import for_use_case

    return for_use_case(loan())


def loan_paths(root):
    """The loan-default use case's files under the state root ``root``."""
    from platform_assets import settings

    return settings.paths(root).of("loan_default")


_DEFINITIONS = {}


def loan_definitions():
    """The loan-default use case's definitions (built once per session)."""
    if "loan" not in _DEFINITIONS:
        from platform_assets.build import build_use_case_definitions

        _DEFINITIONS["loan"] = build_use_case_definitions(loan())
    return _DEFINITIONS["loan"]


def loan_node(*path: str) -> str:
    """The op (step) name of a loan-default asset, e.g. ``loan_node("evaluate", "eval_report")``."""
    return "__".join(["loan_default", *path])


def day_range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that target the daily partitions ``first`` to ``last`` in one run (single-run backfill)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _everything():
    definitions = loan_definitions()
    return [*definitions.assets, *definitions.asset_checks]


def daily_selection():
    """The loan-default use case's daily assets: raw, validated and quarantined rows."""
    import dagster as dg

    keys = loan_keys()
    return dg.AssetSelection.assets(keys.raw, keys.validated, keys.quarantined)


def ingest_days(resources, first: str, last: str, instance=None):
    """Ingests and validates the days ``first``..``last`` in one run; returns its result."""
    import dagster as dg

    return dg.materialize(_everything(), resources=resources, instance=instance, raise_on_error=False,
                          selection=daily_selection(), tags=day_range_tags(first, last))


def materialize_graph(instance, resources, first: str, last: str, downstream: bool = True) -> list:
    """Materializes the days ``first``..``last`` of ingest and validation, then (optionally) the rest.

    Returns the results of the runs, as ``make materialize`` does them: the
    partitioned data assets for the range, then everything downstream.
    """
    import dagster as dg

    results = [ingest_days(resources, first, last, instance)]
    if downstream and results[0].success:
        downstream_of_days = (dg.AssetSelection.key_prefixes(["loan_default"]) - daily_selection()
                              - dg.AssetSelection.key_prefixes(["loan_default", "monitor"]))
        results.append(dg.materialize(_everything(), resources=resources, instance=instance, raise_on_error=False,
                                      selection=downstream_of_days))
    return results


def loan_check(name: str, *asset: str):
    """The loan-default use case's asset check called ``name`` (on ``loan_default/<asset>`` when given: a name
    may be checked on two assets), callable directly as a plain check function (or with ``judging.judge``)."""
    import dagster as dg

    found = [c for c in loan_definitions().asset_checks if any(
        k.name == name and (not asset or k.asset_key == dg.AssetKey(["loan_default", *asset])) for k in c.check_keys)]
    assert len(found) == 1, f"no single check {name!r}"
    return found[0]


def loan_asset(*path: str):
    """The loan-default use case's assets definition that holds ``loan_default/<path>``."""
    import dagster as dg

    key = dg.AssetKey(["loan_default", *path])
    found = [a for a in loan_definitions().assets if key in a.keys]
    assert len(found) == 1, f"no assets definition of {key.to_user_string()}"
    return found[0]


def check_states(instance, check_keys) -> dict[str, str]:
    """The latest state of each asset check, as the UI shows it: ``passed``, ``failed``, ``warned``,
    ``not judged`` (planned in a run that finished without a result: the check said why in the log), or
    ``never run``."""
    import dagster as dg
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(check_keys))
    states = {}
    for key in check_keys:
        record = latest.get(key)
        if record is None:
            state = "never run"
        elif record.status == AssetCheckExecutionRecordStatus.PLANNED:
            state = "not judged"
        else:
            judged = record.event.dagster_event.event_specific_data
            state = "passed" if judged.passed else (
                "warned" if judged.severity == dg.AssetCheckSeverity.WARN else "failed")
        states[key.to_user_string()] = state
    return states
