"""A rolled-back model stays out: retrained to identical weights, the gate and the champion asset refuse it.

One Dagster instance and MLflow backend for the module; runs in order (one small candidate each, and the
gate's no-regression tolerances opened wide, so that only the rollback rule can refuse):
1. seed 7 -> version 1, champion; seed 8 -> version 2, champion (it serves);
2. the use case's rollback job (with a stand-in deployer: serving is not under test) -> version 1 again;
3. seed 8 again -> version 3, the weights of version 2: refused, version 1 stays champion;
4. ``clear-rollback`` of version 2, then seed 8 again -> version 4 passes and becomes champion.
"""

import dagster as dg
import pytest

from platform_assets import cli, definitions, settings
from platform_assets.defs.deploy.assets import build_rollback_job
from platform_assets.defs.evaluate import assets as evaluate_assets
from platform_assets.resources import Deployer
from platform_assets.train.registry import CHAMPION, GATE_TAG, ROLLED_BACK_AT_TAG, ROLLED_BACK_TAG, alias_version
from tests.conftest import loan, loan_asset, loan_check, loan_keys, loan_node
from tests.integration.test_training_gate import write_training_set

NAME = loan().model_name
KEYS = loan_keys()
GATE_OP = f"{loan_node('evaluate', 'eval_report')}_eval_gate_passed"


class ServedBefore(Deployer):
    """Stands in for the serving machinery: version ``back`` served before, and a rollback returns to it."""

    back: str

    def release(self, request, log) -> dict:  # noqa: D102
        raise NotImplementedError

    def rollback(self, request, log) -> dict:  # noqa: D102
        return {"url": "http://127.0.0.1:9", "stable": {"version": self.back}}

    def previous_version(self, request) -> str:  # noqa: D102
        return self.back


def _run_config(keys, seed: int) -> dict:
    """One small candidate seeded ``seed``; a gate that only the floor, fairness and rollback rules can fail."""
    train = {"candidates": [{"hidden": [16], "dropout": 0.0, "learning_rate": 3e-3}], "max_epochs": 8, "seed": seed}
    ops = {loan_node("train", "model"): {"config": train},
           GATE_OP: {"config": {"min_roc_auc": 0.6, "tolerance": 1.0, "brier_tolerance": 1.0}}}
    return {"ops": {op: config for op, config in ops.items() if op.startswith(tuple("__".join(k.path) for k in keys))}}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A state root with a training set, a Dagster instance, and ``train(seed)``: model, evaluation, champion."""
    root = tmp_path_factory.mktemp("rollback_state")
    assets = [loan_asset("train", "model"), *{id(a): a for a in (loan_asset("evaluate", n)
                                                                  for n in ("eval_report", "champion"))}.values()]
    checks = [loan_check("eval_gate_passed"), loan_check("champion_passed_the_gate")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORM_HOME", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        resources = definitions.embedded_resources(root)
        (root / "dagster_home").mkdir()
        write_training_set(root)
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:

            def materialize(*keys: dg.AssetKey, seed: int = 8):
                return dg.materialize([*assets, *checks], selection=dg.AssetSelection.assets(*keys),
                                      resources=resources, instance=instance, run_config=_run_config(keys, seed),
                                      raise_on_error=False)

            def train(seed: int):
                return materialize(KEYS.model, KEYS.eval_report, KEYS.champion, seed=seed)

            yield {"root": root, "instance": instance, "resources": resources, "train": train,
                   "materialize": materialize, "client": resources["mlflow_registry"].client()}


def _metadata(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def _failure(result) -> str:
    return next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.message


@pytest.fixture(scope="module")
def rolled_back(platform):
    """Versions 1 and 2 were champions in turn; version 2 served, then the rollback job returned to version 1."""
    client, instance = platform["client"], platform["instance"]
    first, second = platform["train"](7), platform["train"](8)
    assert first.success and second.success
    assert alias_version(client, NAME, CHAMPION) == "2"
    # What the deployment asset records of the version it released.
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=KEYS.deployment, metadata={"deployment": dg.MetadataValue.json({"model_version": "2"})}))
    resources = {**platform["resources"], "deployer": ServedBefore(back="1")}
    rollback = build_rollback_job(loan()).execute_in_process(instance=instance, resources=resources,
                                                             raise_on_error=False)
    assert rollback.success
    return _metadata(second, loan_node("train", "model"))["weights_sha256"], rollback.run_id


@pytest.fixture(scope="module")
def retrained(platform, rolled_back):
    """Version 3: trained again on the same data with version 2's seed."""
    return platform["train"](8)


def test_the_rollback_marks_the_version_with_its_date_and_returns_the_champion(platform, rolled_back):
    tags = platform["client"].get_model_version(NAME, "2").tags
    assert tags[ROLLED_BACK_TAG] == "true" and tags["rolled_back_by_run"] == rolled_back[1]
    assert tags[ROLLED_BACK_AT_TAG][:2] == "20"
    assert alias_version(platform["client"], NAME, CHAMPION) == "1"


def test_identical_weights_retrained_are_refused_and_the_previous_version_stays_champion(
        platform, rolled_back, retrained):
    client = platform["client"]
    model = _metadata(retrained, loan_node("train", "model"))
    assert model["model_version"] == "3" and model["weights_sha256"] == rolled_back[0]
    assert not retrained.success
    (gate,) = [e for e in retrained.get_asset_check_evaluations() if e.check_name == "eval_gate_passed"]
    reasons = gate.metadata["reasons"].value
    assert not gate.passed and "PASS: ROC AUC" in reasons
    when = client.get_model_version(NAME, "2").tags[ROLLED_BACK_AT_TAG]
    assert (f"FAIL: weights identical to version 2, rolled back on {when}; clear it with "
            "`python -m platform_assets clear-rollback --use-case loan_default --version 2`") in reasons
    # The weights compared are the ones stored with version 3, rehashed by the evaluation.
    evaluation = evaluate_assets.latest_evaluation(platform["instance"], KEYS.eval_report)[0]
    assert evaluation["models"]["challenger"]["weights_sha256"] == rolled_back[0]
    assert GATE_TAG not in client.get_model_version(NAME, "3").tags  # the gate check writes nothing
    assert KEYS.champion not in {e.asset_key for e in retrained.get_asset_materialization_events()}
    assert alias_version(client, NAME, CHAMPION) == "1"


def test_champion_alone_refuses_it_even_with_a_passed_gate(platform, retrained):
    """Its gate verdict says passed on the latest evaluation (as a verdict from before the rollback would)."""
    client = platform["client"]
    client.set_model_version_tag(NAME, "3", GATE_TAG, "passed")
    try:
        result = platform["materialize"](KEYS.champion)
    finally:
        client.delete_model_version_tag(NAME, "3", GATE_TAG)
    assert not result.success and not result.get_asset_materialization_events()
    assert f"refusing to make {NAME} version 3 champion: weights identical to version 2, rolled back on" in \
        _failure(result)
    assert alias_version(client, NAME, CHAMPION) == "1"


def test_once_a_person_clears_the_rollback_the_same_retrain_passes(platform, rolled_back, retrained, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri(platform["root"]))
    assert cli.main(["clear-rollback", "--use-case", "loan_default", "--version", "2", "--by", "ana"]) == 0
    again = platform["train"](8)
    assert again.success
    model = _metadata(again, loan_node("train", "model"))
    assert model["model_version"] == "4" and model["weights_sha256"] == rolled_back[0]
    assert alias_version(platform["client"], NAME, CHAMPION) == "4"
    assert platform["client"].get_model_version(NAME, "2").tags["rollback_cleared"].startswith("ana at ")
