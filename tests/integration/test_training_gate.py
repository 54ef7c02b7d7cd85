"""Training and the evaluation gate through Dagster, on a generated training set.

One Dagster instance and MLflow backend for the module; runs in order:
1. the model and its evaluation on clean data (the first champion);
2. the model again on the same data (the same weights hash);
3. model, evaluation, champion and deployment on label-noised data (the gate rejects it);
4. deployment and the champion alias alone, in new runs, for a version whose gate did not pass (they refuse);
then `mlflow ui` on the same backend serves the runs, metrics, versions and aliases.
"""

import hashlib
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from platform_assets import definitions, settings
from platform_assets.defs.evaluate import assets as evaluate_assets
from platform_assets.defs.train import assets as train_assets
from platform_assets.defs.train import checks as train_checks
from platform_assets.train.registry import CHALLENGER, CHAMPION, GATE_TAG, alias_version
from tests.conftest import loan, loan_asset, loan_check, loan_keys, loan_node, loan_paths

NAME = loan().model_name
KEYS = loan_keys()
# The MLflow tags of upstream data versions, as the model asset writes them.
TRAINING_SET_TAG = f"data_version.{KEYS.training_set.to_user_string()}"
FEATURE_STORE_TAG = f"data_version.{KEYS.feature_store.to_user_string()}"


def write_training_set(root, label_noise: float = 0.0) -> str:
    """Writes a training set shaped like the feature stage's (split by time); returns its sha256.

    ``label_noise`` flips that share of the train labels (seeded); validation and
    test labels stay clean, so models are chosen and judged on the truth.
    """
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications

    df = generate_applications(GeneratorConfig(days=30, rows_per_day=300, dirty_fraction=0))
    df = df.drop(columns=["applicant_name", "email", "phone"]).rename(columns={"application_ts": "event_timestamp"})
    position = np.arange(len(df)) / len(df)
    df["split"] = np.select([position < 0.7, position < 0.85], ["train", "validation"], "test")
    if label_noise:
        rng = np.random.default_rng(11)
        flip = (df["split"] == "train").to_numpy() & (rng.uniform(size=len(df)) < label_noise)
        df.loc[flip, "is_default"] = 1 - df.loc[flip, "is_default"]
    path = loan_paths(root).training_set
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A state root, a Dagster instance and a function that materializes a selection there."""
    root = tmp_path_factory.mktemp("gate_state")
    # The stages under test: training, evaluation (report and champion alias) and deployment, with the
    # checks of training and evaluation.
    stage_keys = (KEYS.model, KEYS.eval_report, KEYS.champion, KEYS.deployment)
    assets = list({id(a): a for a in (loan_asset(*k.path[1:]) for k in stage_keys)}.values())
    checks = [loan_check(n) for n in ("model_loss_converged", "model_tracked_and_registered", "eval_gate_passed",
                                      "champion_passed_the_gate")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORM_HOME", str(root))
        # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: an earlier module's backend must not leak in.
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        resources = definitions.embedded_resources(root)
        (root / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:

            def run(*keys: dg.AssetKey):
                selection = dg.AssetSelection.assets(*keys)
                return dg.materialize(
                    [*assets, *checks], selection=selection, resources=resources, instance=instance,
                    raise_on_error=False,
                )

            client = resources["mlflow_registry"].client()
            yield {"root": root, "instance": instance, "run": run, "client": client, "resources": resources,
                   "assets": assets, "checks": checks}


@pytest.fixture(scope="module")
def first_champion(platform):
    """Run 1: the model trained on clean data passes the gate and becomes champion."""
    digest = write_training_set(platform["root"])
    # What the training_set asset records: its file's sha256 as the data version; the feature layer its own.
    for key in train_assets.lineage_keys(loan()):
        version = digest if key == KEYS.training_set else f"v-{key.to_user_string()}"
        platform["instance"].report_runless_asset_event(
            dg.AssetMaterialization(asset_key=key, tags={"dagster/data_version": version}))
    result = platform["run"](KEYS.model, KEYS.eval_report, KEYS.champion)
    assert result.success
    return result, digest


def _gate(result):
    """The gate check's evaluation in ``result``."""
    (gate,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "eval_gate_passed"]
    return gate


def _metadata(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_candidate_search_registers_the_best_on_validation_with_lineage(platform, first_champion):
    result, digest = first_champion
    model = _metadata(result, loan_node("train", "model"))
    client = platform["client"]
    version = client.get_model_version(NAME, model["model_version"])
    parent = client.get_run(version.run_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == len(train_assets.TrainConfig().candidates) == 3
    losses = {int(c.data.tags["candidate"]): c.data.metrics["best_val_loss"] for c in children}
    assert model["chosen_candidate"] == min(losses, key=losses.get)
    chosen = next(c for c in children if c.data.tags["chosen"] == "true")
    # Labelled as candidates of the search in MLflow's run list (its description column), the chosen one said.
    assert all(c.data.tags["platform.role"] == "search candidate" for c in children)
    assert "(chosen: registered by the parent run" in chosen.data.tags["mlflow.note.content"]
    assert chosen.data.tags["weights_sha256"] == parent.data.tags["weights_sha256"] == model["weights_sha256"]
    assert "| candidate |" in model["candidate_search"] and "**yes**" in model["candidate_search"]
    tags = parent.data.tags
    assert tags["dagster_run_id"] == result.run_id
    assert tags["dagster_partition"] == "none"
    assert tags[TRAINING_SET_TAG] == digest == tags["training_set_data_version"]
    assert tags[FEATURE_STORE_TAG] == f"v-{KEYS.feature_store.to_user_string()}"
    assert len(tags["git_commit"]) == 40
    assert [d.dataset.digest for d in parent.inputs.dataset_inputs] == [digest[:16]]
    history = client.get_metric_history(parent.info.run_id, "val_loss")
    assert len(history) == model["epochs_run"] > 1
    # The logged model has a signature and an input example.
    from mlflow.models import get_model_info

    info = get_model_info(f"models:/{NAME}/{version.version}")
    assert info.signature.inputs.input_names()[:2] == ["income", "loan_amount"]
    assert info.saved_input_example_info is not None
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["model_tracked_and_registered"] and checks["model_loss_converged"]


def _check(check, platform, **config):
    resources = platform["resources"]
    kwargs = {"state": resources["state"], "mlflow_registry": resources["mlflow_registry"]}
    if config:
        kwargs["config"] = train_checks.ConvergenceConfig(**config)
    return check(**kwargs)


def test_lineage_check_fails_on_a_missing_data_version_and_on_other_bytes(platform, first_champion):
    client = platform["client"]
    run_id = client.get_model_version_by_alias(NAME, CHALLENGER).run_id
    tags = client.get_run(run_id).data.tags
    tracked = loan_check("model_tracked_and_registered")
    assert _check(tracked, platform).passed
    try:
        client.set_tag(run_id, FEATURE_STORE_TAG, "none")
        check = _check(tracked, platform)
        assert not check.passed and \
            f"no data version for {KEYS.feature_store.to_user_string()} (got 'none')" in check.description
        client.set_tag(run_id, FEATURE_STORE_TAG, tags[FEATURE_STORE_TAG])
        client.set_tag(run_id, "training_set_data_version", "0" * 64)
        check = _check(tracked, platform)
        assert not check.passed and "trained on bytes 000000000000" in check.description
    finally:
        for tag in (FEATURE_STORE_TAG, "training_set_data_version"):
            client.set_tag(run_id, tag, tags[tag])
    assert _check(tracked, platform).passed


def test_loss_check_recomputes_the_loss_and_fails_when_the_model_is_no_better_than_the_base_rate(
        platform, first_champion):
    import pandas as pd

    passed = _check(loan_check("model_loss_converged"), platform, max_loss_vs_base_rate=0.95)
    assert passed.passed and passed.metadata["loss_vs_base_rate"].value < 0.95
    assert abs(passed.metadata["validation_loss_now"].value - passed.metadata["best_logged_val_loss"].value) < 1e-3
    # Validation labels shuffled: the same model on them is no better than the base rate.
    path = loan_paths(platform["root"]).training_set
    original = path.read_bytes()
    df = pd.read_parquet(path)
    rows = df["split"] == "validation"
    df.loc[rows, "is_default"] = np.random.default_rng(3).permutation(df.loc[rows, "is_default"].to_numpy())
    try:
        df.to_parquet(path, index=False)
        check = _check(loan_check("model_loss_converged"), platform, max_loss_vs_base_rate=0.95)
    finally:
        path.write_bytes(original)
    assert not check.passed and check.metadata["loss_vs_base_rate"].value > 0.95
    assert check.metadata["validation_loss_now"].value > check.metadata["best_logged_val_loss"].value + 1e-3


def test_first_model_passes_the_gate_and_report_has_every_part(platform, first_champion):
    result, _ = first_champion
    report = _metadata(result, loan_node("evaluate", "eval_report"))
    gate = _gate(result)
    assert gate.passed and report["champion_version"] == "none"
    assert "PASS: ROC AUC" in gate.metadata["reasons"].value
    assert gate.metadata["model_version"].value == report["challenger_version"]
    assert alias_version(platform["client"], NAME, CHAMPION) == report["challenger_version"]
    assert _metadata(result, loan_node("evaluate", "champion"))["champion_version"] == report["challenger_version"]
    markdown = report["report"]
    for part in ("demographic_parity_difference", "## Calibration", "## Permutation feature importance",
                 "![ROC](data:image/png;base64,", "![Calibration](data:image/png;base64,", "| 18-25 |"):
        assert part in markdown, part
    # The plots are on the asset page themselves, not paths to open.
    assert report["roc_plot"].startswith("![ROC](data:image/png;base64,")
    assert report["calibration_plot"].startswith("![Calibration](data:image/png;base64,")
    eval_dir = loan_paths(platform["root"]).reports / "eval"
    for png in ("roc.png", "calibration.png"):
        assert (eval_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![ROC](roc.png)" in (eval_dir / "eval_report.md").read_text()


def test_same_inputs_and_seed_register_the_same_weights(platform, first_champion):
    first, _ = first_champion
    again = platform["run"](KEYS.model)
    assert again.success
    a, b = _metadata(first, loan_node("train", "model")), _metadata(again, loan_node("train", "model"))
    assert b["model_version"] != a["model_version"]
    assert b["weights_sha256"] == a["weights_sha256"]


@pytest.fixture(scope="module")
def rejected_challenger(platform, first_champion):
    """Run 3: a challenger trained on label-noised data, with deployment in the same run."""
    champion_before = alias_version(platform["client"], NAME, CHAMPION)
    digest = write_training_set(platform["root"], label_noise=0.4)
    platform["instance"].report_runless_asset_event(
        dg.AssetMaterialization(asset_key=KEYS.training_set, tags={"dagster/data_version": digest}))
    return platform["run"](KEYS.model, KEYS.eval_report, KEYS.champion, KEYS.deployment), \
        champion_before


def test_noisy_challenger_is_rejected_champion_kept_and_not_deployed(platform, rejected_challenger):
    client = platform["client"]
    result, champion_before = rejected_challenger
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    # It learned something (the loss check passes on clean validation labels); the gate rejects it.
    assert checks["model_loss_converged"].passed and not checks["eval_gate_passed"].passed
    report = _metadata(result, loan_node("evaluate", "eval_report"))
    assert report["champion_version"] == champion_before
    assert "FAIL: ROC AUC" in checks["eval_gate_passed"].metadata["reasons"].value
    challenger = alias_version(client, NAME, CHALLENGER)
    assert challenger == report["challenger_version"] != champion_before
    assert GATE_TAG not in client.get_model_version(NAME, challenger).tags  # the check judged; it wrote nothing
    assert evaluate_assets.gate_verdict(platform["instance"], KEYS.eval_report, challenger) == "failed"
    assert alias_version(client, NAME, CHAMPION) == champion_before
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert not materialized & {KEYS.champion, KEYS.deployment}
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert not started & {loan_node("evaluate", "champion"), loan_node("deploy", "deployment")}
    logs = [e.user_message for e in platform["instance"].all_logs(result.run_id)]
    blocked = f"{loan_node('evaluate', 'champion')} failed: ['{loan_node('evaluate', 'eval_report')}_eval_gate_passed']"
    assert any(blocked in m for m in logs), logs


@pytest.mark.parametrize("gate", ["failed", None])
def test_deployment_in_a_separate_run_refuses_a_version_whose_gate_did_not_pass(platform, rejected_challenger, gate):
    client = platform["client"]
    rejected = _metadata(rejected_challenger[0], loan_node("evaluate", "eval_report"))["challenger_version"]
    champion = alias_version(client, NAME, CHAMPION)
    # Someone points the champion alias at the rejected version by hand (e.g. in the MLflow UI).
    client.set_registered_model_alias(NAME, CHAMPION, rejected)
    if gate is not None:  # (the gate check writes no tag: a "failed" one is set by hand)
        client.set_model_version_tag(NAME, rejected, GATE_TAG, gate)
    try:
        result = platform["run"](KEYS.deployment)
    finally:
        client.set_registered_model_alias(NAME, CHAMPION, champion)
        if gate is not None:
            client.delete_model_version_tag(NAME, rejected, GATE_TAG)
    assert not result.success
    assert not result.get_asset_materialization_events()
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert f"refusing to deploy {NAME} version {rejected}: gate is {gate or 'missing'}" in message
    assert not (loan_paths(platform["root"]).serving / "deployment.json").exists()


def test_champion_alone_refuses_a_version_whose_gate_failed_or_was_passed_by_hand(platform, rejected_challenger):
    """Run on its own, the champion asset reads the gate check's verdict on the latest evaluation, as Dagster
    recorded it: tags set by hand in MLflow (even naming the real evaluation) change nothing."""
    client = platform["client"]
    rejected = _metadata(rejected_challenger[0], loan_node("evaluate", "eval_report"))["challenger_version"]
    champion = alias_version(client, NAME, CHAMPION)
    failed = platform["run"](KEYS.champion)
    evaluation_run = evaluate_assets.latest_evaluation(platform["instance"], KEYS.eval_report)[1]
    client.set_model_version_tag(NAME, rejected, GATE_TAG, "passed")
    client.set_model_version_tag(NAME, rejected, evaluate_assets.GATE_EVALUATION_TAG, evaluation_run)
    try:
        by_hand = platform["run"](KEYS.champion)
    finally:
        client.delete_model_version_tag(NAME, rejected, GATE_TAG)
        client.delete_model_version_tag(NAME, rejected, evaluate_assets.GATE_EVALUATION_TAG)
    for result in (failed, by_hand):
        assert not result.success and not result.get_asset_materialization_events()
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert f"refusing to make {NAME} version {rejected} champion: its gate is failed on the latest evaluation" \
            in failure.event_specific_data.error.message
    assert alias_version(client, NAME, CHAMPION) == champion


def test_champion_check_fails_when_the_alias_is_moved_by_hand(platform, rejected_challenger):
    """The alias moved in the MLflow UI to a version the gate rejected: the check on the alias fails."""
    client = platform["client"]
    rejected = _metadata(rejected_challenger[0], loan_node("evaluate", "eval_report"))["challenger_version"]
    champion = alias_version(client, NAME, CHAMPION)

    def check():
        return loan_check("champion_passed_the_gate")(
            dg.build_asset_check_context(instance=platform["instance"]),
            mlflow_registry=platform["resources"]["mlflow_registry"])

    def audit():  # what the champion audit schedule runs: the check alone, no asset materialized
        key = dg.AssetCheckKey(KEYS.champion, "champion_passed_the_gate")
        result = dg.materialize([loan_asset(*KEYS.champion.path[1:]), loan_check("champion_passed_the_gate")],
                                selection=dg.AssetSelection.checks(key), resources=platform["resources"],
                                instance=platform["instance"], raise_on_error=False)
        assert not result.get_asset_materialization_events()
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    assert check().passed and audit().passed
    client.set_registered_model_alias(NAME, CHAMPION, rejected)
    try:
        moved, audited = check(), audit()
    finally:
        client.set_registered_model_alias(NAME, CHAMPION, champion)
    assert not moved.passed and not audited.passed
    assert moved.metadata["champion_version"].value == rejected and moved.metadata["gate"].value == "failed"


def test_gate_check_fails_on_an_evaluation_the_registry_moved_past(platform, rejected_challenger):
    """The recorded evaluation compared v_rejected with the champion; re-pointing the challenger makes it stale."""
    client = platform["client"]
    rejected = _metadata(rejected_challenger[0], loan_node("evaluate", "eval_report"))["challenger_version"]
    champion = alias_version(client, NAME, CHAMPION)
    client.set_registered_model_alias(NAME, CHALLENGER, champion)
    try:
        result = dg.materialize(
            [*platform["assets"], *platform["checks"]], selection=dg.AssetSelection.checks(loan_check("eval_gate_passed")),
            resources=platform["resources"], instance=platform["instance"], raise_on_error=False)
    finally:
        client.set_registered_model_alias(NAME, CHALLENGER, rejected)
    gate = _gate(result)
    assert not gate.passed
    assert f"FAIL: the evaluation scored version {rejected}, the challenger is now {champion}" in \
        gate.metadata["reasons"].value


def test_logged_model_holds_no_pickle_and_loads_through_mlflow_on_its_own(platform, first_champion, tmp_path):
    import json
    import os
    import subprocess
    import sys

    import mlflow
    import pandas as pd

    from platform_assets.train.registry import load_version

    version = _metadata(first_champion[0], loan_node("train", "model"))["model_version"]
    local = mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version}", dst_path=str(tmp_path / "m"))
    files = {p.relative_to(local).as_posix() for p in Path(local).rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))], files
    assert {"artifacts/bundle/model.safetensors", "code/platform_assets/train/network.py"} <= files
    test = pd.read_parquet(loan_paths(platform["root"]).training_set).query("split == 'test'").head(50)
    test.to_parquet(tmp_path / "rows.parquet")
    # A fresh interpreter outside the project: the model's own code must be enough.
    code = (
        "import json, sys, mlflow, pandas as pd; "
        f"m = mlflow.pyfunc.load_model({local!r}); "
        f"print(json.dumps([float(v) for v in m.predict(pd.read_parquet({str(tmp_path / 'rows.parquet')!r}))]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    served = json.loads(out.stdout.strip().splitlines()[-1])
    offline = load_version(platform["client"], NAME, version, tmp_path / "b").predict_proba(test)
    np.testing.assert_allclose(served, offline, atol=1e-7)


def test_mlflow_ui_shows_runs_metrics_and_versions_with_aliases(platform, rejected_challenger, tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from platform_assets.deploy.serving import free_port

    port = free_port()
    backend = settings.mlflow_tracking_uri(platform["root"])
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow_cli), "ui", "--workers", "1", "--backend-store-uri", backend, "--host", "127.0.0.1", "--port", str(port)],
        stdout=open(tmp_path / "ui.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get("/health")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "ui.log").read_text()[-2000:])
                time.sleep(0.5)
        assert b"<title>MLflow" in get("/")
        model = json.loads(get(f"/api/2.0/mlflow/registered-models/get?name={NAME}"))["registered_model"]
        aliases = {a["alias"]: a["version"] for a in model["aliases"]}
        client = platform["client"]
        assert aliases == {CHAMPION: alias_version(client, NAME, CHAMPION), CHALLENGER: alias_version(client, NAME, CHALLENGER)}
        experiment = client.get_experiment_by_name(NAME).experiment_id
        runs = json.loads(get("/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment], "max_results": 100}))["runs"]
        parents = [r for r in runs if not any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
        assert len(parents) == 3 and len(runs) == 3 * 4  # three model runs, three candidates each
        metrics = {m["key"] for r in parents for m in r["data"]["metrics"]}
        assert {"val_loss", "train_loss", "val_auc", "test_roc_auc"} <= metrics
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
