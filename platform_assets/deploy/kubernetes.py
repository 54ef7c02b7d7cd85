"""Applying SeldonDeployments through the Kubernetes API (the production deploy path)."""

from __future__ import annotations

GROUP, VERSION, PLURAL = "machinelearning.seldon.io", "v1", "seldondeployments"


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
