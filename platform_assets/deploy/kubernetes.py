"""Applying SeldonDeployments through the Kubernetes API (the production deploy path)."""

from __future__ import annotations

GROUP, VERSION, PLURAL = "machinelearning.seldon.io", "v1", "seldondeployments"
# The versions that served before the main predictor's (JSON list, oldest first): what a rollback returns to.
PREVIOUS_VERSIONS = "ml-platform/previous-versions"


def apply_seldon_deployment(custom_objects_api, manifest: dict) -> str:
    """Creates the SeldonDeployment, or updates it when it already exists (HTTP 409).

    The update is a JSON merge patch (the client's default for custom objects):
    lists such as ``spec.predictors`` are replaced whole, so dropping a canary works.

    Args:
        custom_objects_api: A ``kubernetes.client.CustomObjectsApi``.
        manifest: From :func:`platform_assets.deploy.manifests.render_seldon_deployment`.

    Returns:
        ``"created"`` or ``"updated"``.

    Raises:
        kubernetes.client.exceptions.ApiException: On any other API error.
    """
    from kubernetes.client.exceptions import ApiException

    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    target = dict(group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL)
    try:
        custom_objects_api.create_namespaced_custom_object(**target, body=manifest)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom_objects_api.patch_namespaced_custom_object(**target, name=name, body=manifest)
    return "updated"


def served_versions(custom_objects_api, namespace: str, name: str) -> tuple[str | None, list[str]]:
    """The version the SeldonDeployment's main predictor serves and the versions that served before it
    (its ``ml-platform/previous-versions`` annotation, oldest first); ``(None, [])`` when it does not exist."""
    import json

    from kubernetes.client.exceptions import ApiException

    try:
        current = custom_objects_api.get_namespaced_custom_object(
            group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL, name=name)
    except ApiException as exc:
        if exc.status == 404:
            return None, []
        raise
    main = next((p for p in current["spec"]["predictors"] if p["name"] == "main"), None)
    version = (main or {}).get("labels", {}).get("model-version")
    previous = json.loads((current["metadata"].get("annotations") or {}).get(PREVIOUS_VERSIONS, "[]"))
    return version, [str(v) for v in previous]


def wait_until_available(custom_objects_api, namespace: str, name: str, timeout_s: float,
                         poll_s: float = 2.0) -> dict:
    """Polls the SeldonDeployment's status until Seldon reports it ``Available``; returns the status.

    Raises:
        RuntimeError: If it reports ``Failed``, or is not available after ``timeout_s`` (with its description).
    """
    import time

    deadline, status = time.monotonic() + timeout_s, {}
    while True:
        current = custom_objects_api.get_namespaced_custom_object(
            group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL, name=name)
        status = current.get("status") or {}
        if status.get("state") == "Available":
            return status
        if status.get("state") == "Failed":
            raise RuntimeError(f"SeldonDeployment {namespace}/{name} failed: {status.get('description', status)}")
        if time.monotonic() >= deadline:
            raise RuntimeError(f"SeldonDeployment {namespace}/{name} not available after {timeout_s:g} s: "
                               f"state {status.get('state', 'unknown')} {status.get('description', '')}".rstrip())
        time.sleep(poll_s)
