"""The use cases declared under ``platform_assets/defs/*/defs.yaml``, read without Dagster's loader.

Sensors, the CLI and stage code need the declarations without building the
code location; this reads the same YAML files the Dagster component loader
reads (``platform_assets.components``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from platform_assets.declarations import DeclarationError, UseCase, use_case_from_dict

DEFS_ROOT = Path(__file__).with_name("defs")
COMPONENT_TYPE = "platform_assets.components.UseCaseComponent"


def read_declarations(root: Path = DEFS_ROOT) -> list[UseCase]:
    """Every use case declared in ``root/*/defs.yaml``, sorted by name; errors name the file."""
    import yaml

    found = []
    for path in sorted(root.glob("*/defs.yaml")):
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise DeclarationError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(document, dict) or document.get("type") != COMPONENT_TYPE:
            continue
        found.append(use_case_from_dict(document.get("attributes") or {}, str(path)))
    names = [u.name for u in found]
    if len(set(names)) != len(names):
        raise DeclarationError(f"{root}: use case names declared twice: {sorted(n for n in names if names.count(n) > 1)}")
    return sorted(found, key=lambda u: u.name)


@lru_cache(maxsize=1)
def use_cases() -> tuple[UseCase, ...]:
    """The declared use cases (read once per process)."""
    return tuple(read_declarations())


def use_case(name: str | None = None) -> UseCase:
    """The use case called ``name``; without a name, the only one declared."""
    declared = use_cases()
    if name is None:
        if len(declared) != 1:
            raise DeclarationError(f"{len(declared)} use cases are declared ({[u.name for u in declared]}): name one")
        return declared[0]
    for candidate in declared:
        if candidate.name == name:
            return candidate
    raise DeclarationError(f"no use case {name!r} declared (declared: {[u.name for u in declared]})")


def use_case_index(use_case: UseCase) -> int:
    """The use case's place among the declared ones (by name): its model server listens on the base port + this."""
    names = [u.name for u in use_cases()]
    return names.index(use_case.name) if use_case.name in names else len(names)
