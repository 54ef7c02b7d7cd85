"""Every setting of the platform, declared once: the only module that reads the process environment.

A setting is an environment variable with a default, a group and a line of
documentation (``SETTINGS``, in :mod:`platform_assets.declared_settings`). Code asks for it by name (``get``, ``get_int``,
``get_float``); an undeclared name is a programming error (``KeyError``), so a
new setting cannot be read without being declared and documented.
``docs/configuration.md`` is this table (``markdown_table``, kept in step by a
test), and ``python -m platform_assets config`` prints the effective values,
secrets masked. Dagster resources take theirs through ``env_var`` (a
``dg.EnvVar`` when the variable is set, read at run time).

Thresholds that both a check and a sensor use have one setting here, which both
read (the check's default and the sensor's value).

Nothing here imports more than the standard library: the serving environment,
which has no Dagster, reads its settings through this module too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from platform_assets.declared_settings import PROJECT_ROOT, SETTINGS, Setting  # noqa: F401 - re-exported


BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
LOCAL_PROFILE, PROD_PROFILE = "local", "prod"


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong for the profile; the message names the variable."""


def _declared(name: str) -> Setting:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name} is not a declared setting: add it to platform_assets.config.SETTINGS") from None


def is_set(name: str) -> bool:
    """Whether the environment sets ``name`` (to something other than blanks)."""
    _declared(name)
    return bool(os.environ.get(name, "").strip())


def get(name: str) -> str | None:
    """The value of the setting ``name``: the environment's when set, else its default (``None``: unset)."""
    setting = _declared(name)
    value = os.environ.get(name, "")
    return value if value.strip() else setting.default


def get_int(name: str) -> int:
    """``get(name)`` as an integer. Raises ``ConfigurationError`` naming the variable when it is not one."""
    return _number(name, int)


def get_float(name: str) -> float:
    """``get(name)`` as a number. Raises ``ConfigurationError`` naming the variable when it is not one."""
    return _number(name, float)


def _number(name: str, kind: type):
    value = get(name)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={value!r} is not {'an integer' if kind is int else 'a number'}") from None


def get_path(name: str) -> Path | None:
    """``get(name)`` as an absolute path (``~`` expanded), or ``None`` when unset."""
    value = get(name)
    return Path(value).expanduser().resolve() if value else None


def profile() -> str:
    """``PLATFORM_PROFILE``: ``local`` or ``prod``."""
    value = (get("PLATFORM_PROFILE") or LOCAL_PROFILE).strip()
    if value not in (LOCAL_PROFILE, PROD_PROFILE):
        raise ConfigurationError(f"PLATFORM_PROFILE={value!r}: want {LOCAL_PROFILE!r} or {PROD_PROFILE!r}")
    return value


def missing_for_profile() -> list[str]:
    """The settings the profile needs that are unset (none in ``local``)."""
    if profile() != PROD_PROFILE:
        return []
    return [s.name for s in SETTINGS if s.prod and not is_set(s.name)
            and not (s.name == "PII_HMAC_KEY" and is_set("PII_SALT"))]


def require_profile() -> None:
    """Refuses a ``prod`` profile with a setting missing, naming every one."""
    missing = missing_for_profile()
    if missing:
        raise ConfigurationError(f"PLATFORM_PROFILE={PROD_PROFILE} needs {', '.join(missing)} "
                                 "(see docs/configuration.md)")


def env_var(name: str, default: str | None = None):
    """For a Dagster resource's field: ``dg.EnvVar(name)`` when the environment sets it (read at run time, never
    shown in the UI), else ``default`` (or the setting's own)."""
    import dagster as dg

    _declared(name)
    return dg.EnvVar(name) if is_set(name) else (default if default is not None else BY_NAME[name].default)


def child_environment(import_first: tuple[str, ...] = (), **overrides: str) -> dict[str, str]:
    """The environment for a process the platform starts: this one's, with ``overrides``, and the folders
    ``import_first`` put before PYTHONPATH."""
    env = {**os.environ, **overrides}
    if import_first:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (*import_first, env.get("PYTHONPATH", "")) if p)
    return env


def system_path(name: str) -> str:
    """A system search path (``PATH``, ``PYTHONPATH``): not a setting of the platform, read for child processes."""
    if name not in ("PATH", "PYTHONPATH"):
        raise KeyError(f"{name} is not a system search path")
    return os.environ.get(name, "")


def export(name: str, value: str) -> None:
    """Sets a variable for libraries that read only the environment (dbt's profiles, Feast's YAML), at run time."""
    if name not in ("PATH", "PYTHONPATH"):
        _declared(name)
    os.environ[name] = value


@contextlib.contextmanager
def temporarily(**values: str) -> Iterator[None]:
    """Sets variables that a library reads from the environment on each use (MLflow's HTTP retries), restored
    after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def remove(name: str) -> None:
    """Unsets a declared variable, so the processes started after do not inherit it."""
    _declared(name)
    os.environ.pop(name, None)


def masked(setting: Setting, value: str | None) -> str | None:
    """``value`` as shown: a secret's password part or whole value hidden."""
    if value is None or not setting.secret:
        return value
    if "://" in value and "@" in value:  # a URL: keep scheme, host and database, hide the credentials
        scheme, rest = value.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return "***"


def effective() -> list[dict]:
    """Every setting's effective value (secrets masked) and where it came from: ``environment``, ``default`` or
    ``unset``."""
    rows = []
    for setting in SETTINGS:
        source = "environment" if is_set(setting.name) else "default" if setting.default is not None else "unset"
        rows.append({"name": setting.name, "group": setting.group, "value": masked(setting, get(setting.name)),
                     "source": source, "secret": setting.secret, "prod": setting.prod})
    return rows


def markdown_table() -> str:
    """The settings as ``docs/configuration.md`` lists them (defaults as a fresh clone has them)."""

    def default(setting: Setting) -> str:
        if setting.default is None:
            return ""
        return f"`{setting.default.replace(str(PROJECT_ROOT), '<project>')}`"

    lines = ["| variable | group | default | prod | secret | what it is |", "|---|---|---|---|---|---|"]
    lines += [f"| `{s.name}` | {s.group} | {default(s)} | {'required' if s.prod else ''} | "
              f"{'yes' if s.secret else ''} | {s.doc} |" for s in SETTINGS]
    return "\n".join(lines)
