"""What ``python -m platform_assets where`` and ``config`` print: where each part of the platform lives now.

Both read the profile: under ``prod`` the state root is the shared store, the online store is Redis and the
UIs are started against the services, so nothing printed points at an embedded file that prod does not use.
Values that may hold a password (the tracking URI, Redis) are named by their variable, never printed.
"""

from __future__ import annotations

import json

from platform_assets import config, settings


def configuration_text() -> tuple[str, str | None]:
    """Every setting's effective value (secrets masked) and its source, grouped; and what the profile lacks."""
    rows = config.effective()
    width = max(len(r["name"]) for r in rows)
    lines, group = [], None
    for row in rows:
        if row["group"] != group:
            group = row["group"]
            lines.append(f"# {group}")
        value = "" if row["value"] is None else row["value"]
        lines.append(f"{row['name']:<{width}}  {value}  ({row['source']})")
    missing = config.missing_for_profile()
    lacking = f"PLATFORM_PROFILE={config.profile()} needs: {', '.join(missing)}" if missing else None
    return "\n".join(lines), lacking


def mlflow_ui_port() -> int:
    """The port of ``MLFLOW_UI_URL``, where the platform's MLflow links point (``make mlflow-ui`` listens there)."""
    from urllib.parse import urlsplit

    return urlsplit(config.get("MLFLOW_UI_URL")).port or 5000


def _platform_lines(paths: settings.StatePaths) -> list[str]:
    from platform_assets.warehouse import profile_warehouse

    warehouse = profile_warehouse().where
    if config.profile() == config.PROD_PROFILE:
        return [
            f"State root (PLATFORM_SHARED_STORE, profile prod): {paths.root}",
            "  Dagster UI:        dagster-webserver -w workspace.yaml (instance in $DAGSTER_HOME: PostgreSQL)",
            f"  MLflow UI:         mlflow ui --backend-store-uri \"$MLFLOW_TRACKING_URI\" -p {mlflow_ui_port()} "
            f"(links: {config.get('MLFLOW_UI_URL')})",
            f"  Warehouse:         {warehouse}",
            "  Feast online store:Redis ($FEAST_REDIS_CONNECTION_STRING), registry in $FEAST_REGISTRY_URL",
        ]
    tracking = "$MLFLOW_TRACKING_URI" if config.is_set("MLFLOW_TRACKING_URI") else settings.mlflow_tracking_uri()
    return [
        f"State root ({settings.STATE_ROOT_ENV}): {paths.root}",
        "  Dagster UI:        make ui            (dg dev -w workspace.yaml, http://127.0.0.1:3000)",
        f"  MLflow UI:         make mlflow-ui     (mlflow ui --backend-store-uri {tracking} -p {mlflow_ui_port()}; "
        f"{config.get('MLFLOW_UI_URL')})",
        f"  Warehouse:         {warehouse}",
        f"  Feast online store:{paths.feast / 'online_store.db'}",
    ]


def where_text() -> str:
    """The state root, the UIs, the warehouse and online store, and each use case's reports and endpoint."""
    from platform_assets.declared import use_cases

    paths = settings.paths()
    lines = _platform_lines(paths)
    for use_case in use_cases():
        own = paths.of(use_case.name)
        lines += [
            f"{use_case.name} (model {use_case.model_name}, landing {paths.landing / use_case.source.landing_folder}):",
            f"  Evaluation report: {own.reports / 'eval' / 'eval_report.md'}",
            f"  Drift report:      {own.reports / 'drift' / 'drift_report.html'}",
        ]
        deployment = own.serving / "deployment.json"
        if deployment.exists():
            record = json.loads(deployment.read_text())
            lines.append(f"  Serving endpoint:  {record['url']}/api/v1.0/predictions "
                         f"({record['model_name']} v{record['model_version']})")
            if record.get("feature_server_url"):
                lines.append(f"  Feature server:    {record['feature_server_url']}/get-online-features (feast serve)")
            lines.append(f"  Inference log:     {own.inference} (one JSON line per served prediction)")
    # As typed in a fresh shell: the environment's Python, the state root named (nothing needs exporting).
    python = settings.PROJECT_ROOT / ".venv" / "bin" / "python"
    lines.append(f"Trace a request:     cd {settings.PROJECT_ROOT} && {settings.STATE_ROOT_ENV}={paths.root} "
                 f"{python.relative_to(settings.PROJECT_ROOT)} -m platform_assets lineage <request id>")
    if config.profile() != config.PROD_PROFILE:
        lines.append("Stop serving:        make stop-serving   (the model and feature servers keep running until then)")
    return "\n".join(lines)
