"""SeldonDeployment manifests for Kubernetes, rendered from the YAML template under deploy/k8s.

Every rendered manifest is checked against ``deploy/k8s/seldondeployment.schema.yaml``
and Seldon's rules across fields before it can reach a cluster: a manifest the API
server or Seldon's admission webhook would refuse, or silently prune, fails here with
the path of each problem.
"""

from __future__ import annotations

import copy
import functools
import json
import string
from pathlib import Path
from typing import Any

import yaml

from platform_assets.deploy.kubernetes import PREVIOUS_VERSIONS

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "seldondeployment.yaml"
SCHEMA = TEMPLATE.with_name("seldondeployment.schema.yaml")
DEFAULT_FETCH_IMAGE = "registry.local/platform-assets:latest"  # user-code image (deploy/dagster/values.yaml)


class ManifestError(ValueError):
    """A SeldonDeployment that must not be applied; the message names the path of every problem."""


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(yaml.safe_load(SCHEMA.read_text()))


def _where(path) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".") or "(manifest)"


def _graph_names(graph: dict) -> list[str]:
    return [graph.get("name"), *(name for child in graph.get("children") or [] for name in _graph_names(child))]


def seldon_deployment_problems(manifest: dict) -> list[str]:
    """What is wrong with ``manifest``: ``"<path>: <problem>"`` for each, empty when it can be applied.

    The schema first; then what Seldon's admission webhook checks across fields: predictor
    names unique, the traffic of the predictors that answer callers summing to 100, at most
    one shadow, and every node of a predictor's graph naming one of its containers.
    """
    problems = [f"{_where(error.absolute_path)}: {error.message}"
                for error in sorted(_validator().iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])]
    predictors = (manifest.get("spec") or {}).get("predictors") if isinstance(manifest, dict) else None
    if problems or not isinstance(predictors, list):
        return problems
    names = [p["name"] for p in predictors]
    problems += [f"spec.predictors: predictor name {n!r} is used {names.count(n)} times"
                 for n in sorted(set(names)) if names.count(n) > 1]
    answering = [p for p in predictors if not p.get("shadow")]
    if not answering:
        problems.append("spec.predictors: every predictor is a shadow; none answers callers")
    elif len(answering) > 1 or "traffic" in answering[0]:
        total = sum(p.get("traffic", 0) for p in answering)
        if total != 100:
            problems.append(f"spec.predictors: the traffic of the predictors that answer callers sums to {total}, not 100")
    if len(predictors) - len(answering) > 1:
        problems.append(f"spec.predictors: {len(predictors) - len(answering)} shadows; Seldon mirrors to one")
    for i, predictor in enumerate(predictors):
        containers = {c["name"] for spec in predictor["componentSpecs"] for c in spec["spec"]["containers"]}
        for node in _graph_names(predictor["graph"]):
            if node not in containers:
                problems.append(f"spec.predictors[{i}].graph: node {node!r} names no container of the predictor "
                                f"(containers: {sorted(containers)})")
    return problems


def validate_seldon_deployment(manifest: dict) -> dict:
    """Returns ``manifest`` when it can be applied.

    Raises:
        ManifestError: Naming the deployment and the path of each problem.
    """
    problems = seldon_deployment_problems(manifest)
    if problems:
        meta = (manifest.get("metadata") or {}) if isinstance(manifest, dict) else {}
        raise ManifestError(f"SeldonDeployment {meta.get('namespace')}/{meta.get('name')} cannot be applied: "
                            + "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else ""))
    return manifest


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
        ManifestError: If the manifest cannot be applied (a value that is not a valid
            label, name or quantity, say): :func:`validate_seldon_deployment`.
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
    return validate_seldon_deployment(manifest)
