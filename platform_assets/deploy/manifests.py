"""SeldonDeployment manifests for Kubernetes, rendered from the YAML template under deploy/k8s."""

from __future__ import annotations

import copy
import json
import string
from pathlib import Path
from typing import Any

import yaml

from platform_assets.deploy.kubernetes import PREVIOUS_VERSIONS

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "seldondeployment.yaml"
DEFAULT_FETCH_IMAGE = "registry.local/platform-assets:latest"  # user-code image (deploy/dagster/values.yaml)


def _fill(node: Any, values: dict[str, str]) -> Any:
    """Substitutes ``${...}`` in every string of ``node``: after parsing, so no value can inject YAML."""
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, str):
        return string.Template(node).substitute(values)
    return node


def render_seldon_deployment(
    *,
    name: str,
    namespace: str,
    use_case: str,
    image: str,
    model_version: str,
    model_uri: str,
    replicas: int = 1,
    canary: dict | None = None,
    shadow: dict | None = None,
    fetch_image: str = DEFAULT_FETCH_IMAGE,
    previous_versions: list[str] | None = None,
) -> dict:
    """Fills the template; with ``canary``, adds a second predictor that takes part of the traffic.

    Args:
        name: SeldonDeployment name.
        namespace: Kubernetes namespace.
        use_case: The declared use case the model is of (the server reads its declaration).
        image: Serving image (deploy/serving/Dockerfile).
        model_version: Registered model version served by the main predictor.
        model_uri: The MLflow model the init container downloads (``models:/<model name>/<version>``).
        replicas: Replicas of the main predictor.
        canary: ``{"model_version", "model_uri", "traffic"}`` (optional ``"image"``,
            ``"replicas"``): a canary predictor taking ``traffic`` percent (1-99,
            default 10); the main predictor takes the rest.
        shadow: ``{"model_version", "model_uri"}`` (optional ``"image"``): a shadow predictor that gets a
            copy of the traffic; its answers are not returned.
        fetch_image: Image with the mlflow CLI for the init container.
        previous_versions: The versions that served before (oldest first), kept as an annotation for a rollback.

    Returns:
        The manifest as a dict, ready for the Kubernetes API.

    Raises:
        ValueError: If the canary traffic is not between 1 and 99.
    """
    template = yaml.safe_load(TEMPLATE.read_text())
    prototype = template["spec"].pop("predictors")[0]
    common = {"name": name, "namespace": namespace, "use_case": use_case, "fetch_image": fetch_image}
    manifest = _fill(template, common)
    manifest["metadata"]["labels"]["model-version"] = str(model_version)
    manifest["metadata"].setdefault("annotations", {})[PREVIOUS_VERSIONS] = json.dumps(
        [str(v) for v in previous_versions or []])

    def predictor(label: str, **values: str) -> dict:
        return _fill(copy.deepcopy(prototype), {**common, "predictor": label, **values})

    main = predictor("main", image=image, model_version=str(model_version), model_uri=model_uri)
    main["replicas"] = int(replicas)
    manifest["spec"]["predictors"] = [main]
    if canary:
        traffic = int(canary.get("traffic", 10))
        if not 0 < traffic < 100:
            raise ValueError(f"canary traffic must be between 1 and 99 percent, got {traffic}")
        second = predictor(
            "canary", image=canary.get("image", image),
            model_version=str(canary["model_version"]), model_uri=canary["model_uri"],
        )
        second["replicas"], second["traffic"] = int(canary.get("replicas", 1)), traffic
        main["traffic"] = 100 - traffic
        manifest["spec"]["predictors"].append(second)
    if shadow:
        mirror = predictor(
            "shadow", image=shadow.get("image", image),
            model_version=str(shadow["model_version"]), model_uri=shadow["model_uri"],
        )
        mirror["shadow"], mirror["traffic"] = True, 0
        manifest["spec"]["predictors"].append(mirror)
    return manifest
