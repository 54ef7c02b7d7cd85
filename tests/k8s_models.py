"""A strict reading of Kubernetes objects, with the kubernetes client's models as the schema.

The API server refuses a wrong type or a missing required field, and silently drops a field it does
not know (a misspelt probe simply vanishes): ``k8s_problems`` reports all three, with the path of
each, for any model of ``kubernetes.client.models``. ``manifest_problems`` adds the checks across
fields the API server makes for workloads (selector against pod labels, mounts against volumes).
"""

import functools

import kubernetes
from kubernetes.client import Configuration

KINDS = {"Deployment": ("apps/v1", "V1Deployment"), "StatefulSet": ("apps/v1", "V1StatefulSet"),
         "Service": ("v1", "V1Service"), "PersistentVolumeClaim": ("v1", "V1PersistentVolumeClaim"),
         "Job": ("batch/v1", "V1Job")}
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str, "date": str}


@functools.cache
def required_fields(model: str) -> frozenset[str]:
    """The attributes of ``model`` its own setters refuse to leave unset (client-side validation)."""
    klass = getattr(kubernetes.client.models, model)
    probe = klass.__new__(klass)
    probe.local_vars_configuration = Configuration()
    required = set()
    for attribute in klass.openapi_types:
        try:
            setattr(probe, attribute, None)
        except ValueError:
            required.add(attribute)
    return frozenset(required)


def k8s_problems(data, model: str, path: str = "") -> list[str]:
    """What the API server would refuse (or silently drop) in ``data`` read as ``model``, with the paths."""
    if data is None or model == "object":  # null is "unset"; IntOrString and free-form fields take any value
        return []
    if model in SCALARS:
        wrong = not isinstance(data, SCALARS[model]) or (model != "bool" and isinstance(data, bool))
        return [f"{path}: {data!r} is not of type {model}"] if wrong else []
    if model.startswith("list["):
        if not isinstance(data, list):
            return [f"{path}: {data!r} is not a list"]
        return [p for i, item in enumerate(data) for p in k8s_problems(item, model[5:-1], f"{path}[{i}]")]
    if model.startswith(("dict(", "dict[")):  # dict(str, X) in older clients, dict[str, X] in newer
        if not isinstance(data, dict):
            return [f"{path}: {data!r} is not a mapping"]
        inner = model[5:-1].split(",", 1)[1].strip()
        return [p for key, item in data.items() for p in k8s_problems(item, inner, f"{path}.{key}")]
    if not isinstance(data, dict):
        return [f"{path}: {data!r} is not a {model} object"]
    klass = getattr(kubernetes.client.models, model)
    attributes = {json_key: attribute for attribute, json_key in klass.attribute_map.items()}
    problems = [f"{path}: unknown field {key!r} in {model}" for key in data if key not in attributes]
    problems += [f"{path}: required field {klass.attribute_map[a]!r} of {model} is missing"
                 for a in sorted(required_fields(model)) if data.get(klass.attribute_map[a]) is None]
    for key, value in data.items():
        if key in attributes:
            problems += k8s_problems(value, klass.openapi_types[attributes[key]], f"{path}.{key}".lstrip("."))
    return problems


def pod_spec(manifest: dict) -> dict:
    """The pod spec of a workload (Deployment, StatefulSet, Job)."""
    return manifest["spec"]["template"]["spec"]


def pod_problems(manifest: dict) -> list[str]:
    """Checks across fields the API server makes: mounts name declared volumes, env names are unique."""
    spec, problems = pod_spec(manifest), []
    volumes = {v["name"] for v in spec.get("volumes") or []}
    volumes |= {t["metadata"]["name"] for t in manifest["spec"].get("volumeClaimTemplates") or []}
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        problems += [f"container {container['name']}: mounts undeclared volume {m['name']!r}"
                     for m in container.get("volumeMounts") or [] if m["name"] not in volumes]
        names = [e["name"] for e in container.get("env") or []]
        problems += [f"container {container['name']}: env {name} set twice"
                     for name in sorted(set(names)) if names.count(name) > 1]
    return problems


def manifest_problems(manifest: dict) -> list[str]:
    """Everything wrong with one manifest (or an object built for the API), by path; empty when valid."""
    if manifest.get("kind") not in KINDS:
        return [f"unexpected kind {manifest.get('kind')!r}"]
    api_version, model = KINDS[manifest["kind"]]
    problems = k8s_problems(manifest, model)
    problems += [] if manifest.get("apiVersion") == api_version else [f"apiVersion: not {api_version}"]
    problems += [] if (manifest.get("metadata") or {}).get("name") else ["metadata.name: missing"]
    if not problems and "template" in manifest["spec"]:
        labels = manifest["spec"]["template"]["metadata"].get("labels", {})
        selector = manifest["spec"].get("selector", {}).get("matchLabels", {})
        problems += [f"selector {selector} does not match the pod labels"] if selector.items() - labels.items() else []
        problems += pod_problems(manifest)
    return problems
