"""The deployment asset: the champion served by Seldon Core's microservice, refusing ungated models."""


import json

import dagster as dg

from platform_assets.evaluate.assets import EVAL_REPORT
from platform_assets.resources import MlflowRegistry, ModelServing, PlatformState

DEPLOYMENT = dg.AssetKey(["deploy", "deployment"])


class ModelNotApprovedError(dg.Failure):
    """The model version did not pass its evaluation gate; it is never served."""


def approved_champion(client, name: str) -> str:
    """The champion version, if and only if its gate passed.

    A blocking check only stops downstream assets within its own run
    (dagster-io/dagster#25112); this is the deployment's own refusal, whichever
    run or sensor asked for it.

    Raises:
        ModelNotApprovedError: When there is no champion or its gate tag is not ``passed``.
    """
    from platform_assets.train.registry import CHAMPION, GATE_TAG, alias_version

    version = alias_version(client, name, CHAMPION)
    if version is None:
        raise ModelNotApprovedError(f"registered model {name!r} has no champion: no version passed the gate")
    gate = client.get_model_version(name, version).tags.get(GATE_TAG)
    if gate != "passed":
        raise ModelNotApprovedError(f"refusing to deploy {name} version {version}: gate is {gate or 'missing'}")
    return version


@dg.asset(
    key=DEPLOYMENT,
    deps=[EVAL_REPORT],
    group_name="deploy",
    kinds={"seldon", "pytorch"},
    description="The champion model served over REST by a Seldon Core microservice (replaced on each deploy).",
)
def deployment(
    context: dg.AssetExecutionContext,
    state: PlatformState,
    mlflow_registry: MlflowRegistry,
    serving: ModelServing,
) -> dg.MaterializeResult:
    """Downloads the approved champion's bundle and (re)starts the model server on it."""
    from platform_assets.deploy import serving as server
    from platform_assets.train.registry import download_bundle

    client = mlflow_registry.client()
    name = mlflow_registry.registered_model_name
    version = approved_champion(client, name)
    bundle_dir = download_bundle(client, name, version, state.paths.serving / "models" / f"v{version}")
    log_path = state.paths.serving / "server.log"
    process = server.start_model_server(
        python=serving.python_path(),
        model_dir=bundle_dir,
        model_name=name,
        model_version=version,
        http_port=serving.http_port,
        log_path=log_path,
        pid_path=serving.pid_path(state.paths),
    )
    waited = server.wait_until_healthy(process.url, timeout_s=serving.start_timeout_s, pid=process.pid, log_path=log_path)
    record = {"url": process.url, "model_name": name, "model_version": version, "pid": process.pid, "bundle": str(bundle_dir)}
    (state.paths.serving / "deployment.json").write_text(json.dumps(record, indent=2))
    context.log.info(f"serving {name} v{version} at {process.url} (healthy after {waited:.1f} s)")
    return dg.MaterializeResult(
        metadata={
            "url": dg.MetadataValue.url(f"{process.url}/api/v1.0/predictions"),
            "model_version": version,
            "pid": process.pid,
            "seconds_to_healthy": waited,
            "log": dg.MetadataValue.path(str(log_path)),
        }
    )
