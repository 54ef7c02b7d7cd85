"""Lineage of a served prediction: model version, MLflow run, training data, raw file and row."""

from __future__ import annotations

from platform_assets import settings


def trace_prediction(paths: settings.StatePaths, application_id: str) -> dict:
    """Answers "where did this prediction come from?" for one application.

    Follows the inference log to the model version, the registry to the MLflow
    run (Dagster run id, training-set digest, git commit), and the warehouse to
    the landing file, row and content hash the application was read from.

    Raises:
        LookupError: If the application was never scored.
    """
    import duckdb
    import mlflow

    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        logged = con.execute(
            "SELECT model_name, model_version, probability_of_default, logged_at, dagster_run_id "
            "FROM monitor.inference_log WHERE application_id = ? ORDER BY logged_at DESC LIMIT 1",
            [application_id],
        ).fetchone()
        if logged is None:
            raise LookupError(f"application {application_id!r} is not in the inference log")
        source = con.execute(
            "SELECT a._source_file, a._source_row, f.sha256 FROM validated.applications a "
            "JOIN raw.landing_files f ON f.path = a._source_file WHERE a.application_id = ?",
            [application_id],
        ).fetchone()
    model_name, version, probability, logged_at, inference_run = logged
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri(paths.root))
    model_version = client.get_model_version(model_name, version)
    run = client.get_run(model_version.run_id)
    return {
        "application_id": application_id,
        "prediction": {"probability_of_default": probability, "logged_at": logged_at, "dagster_run_id": inference_run},
        "model": {"name": model_name, "version": version, "gate": model_version.tags.get("gate"),
                  "weights_sha256": model_version.tags.get("weights_sha256")},
        "training_run": {
            "mlflow_run_id": run.info.run_id,
            "dagster_run_id": run.data.tags.get("dagster_run_id"),
            "training_set_data_version": run.data.tags.get("training_set_data_version"),
            "git_commit": run.data.tags.get("git_commit"),
            "dataset_digests": [d.dataset.digest for d in run.inputs.dataset_inputs],
        },
        "raw": {"file": source[0], "row": source[1], "file_sha256": source[2]} if source else None,
    }
