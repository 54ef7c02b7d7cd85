"""SeldonDeployment manifests for Kubernetes, rendered from the YAML template under deploy/k8s."""

from __future__ import annotations

import copy
import string
from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "seldondeployment.yaml"


def render_seldon_deployment(
    *,
    name: str,
    namespace: str,
    image: str,
    model_version: str,
    model_uri: str,
    replicas: int = 1,
    canary: dict | None = None,
    fetch_image: str = "registry.local/platform-assets:latest",
) -> dict:
    """Fills the template; with ``canary``, adds a second predictor that takes part of the traffic.

    Args:
        name: SeldonDeployment name.
        namespace: Kubernetes namespace.
        image: Serving image (deploy/serving/Dockerfile).
        model_version: Registered model version served by the main predictor.
        model_uri: The registered version (``models:/loan-default/3``), downloaded by an
            init container into the pod's model volume.
        replicas: Replicas of the main predictor.
        canary: ``{"model_version", "model_uri", "traffic"}`` for a canary predictor
            taking ``traffic`` percent (1-99).
        fetch_image: An image with the mlflow CLI (the platform's user-code image).

    Returns:
        The manifest as a dict, ready for the Kubernetes API.
    """
    text = string.Template(TEMPLATE.read_text()).substitute(
        name=name, namespace=namespace, image=image, model_version=model_version, model_uri=model_uri,
        fetch_image=fetch_image,
    )
    manifest = yaml.safe_load(text)
    main = manifest["spec"]["predictors"][0]
    main["replicas"] = replicas
    if canary:
        traffic = int(canary["traffic"])
        if not 0 < traffic < 100:
            raise ValueError(f"canary traffic must be between 1 and 99 percent, got {traffic}")
        second = copy.deepcopy(main)
        second["name"], second["replicas"], second["traffic"] = "canary", 1, traffic
        second["labels"] = {"model-version": str(canary["model_version"])}
        pod = second["componentSpecs"][0]["spec"]
        pod["initContainers"][0]["command"][4] = canary["model_uri"]
        for item in pod["containers"][0]["env"]:
            if item["name"] == "MODEL_VERSION":
                item["value"] = str(canary["model_version"])
            if item["name"] == "MODEL_URI":
                item["value"] = canary["model_uri"]
        main["traffic"] = 100 - traffic
        manifest["spec"]["predictors"].append(second)
    return manifest
