"""The gate's rollback rule, as a plain function: a rolled-back model stays out until a person clears it.

A rollback marks the version it took off serving (``rolled_back=true`` in the
registry, see :func:`platform_assets.train.registry.mark_rolled_back`). Retrained
on the same data with the same seed, training yields the same weights under a
new version number, so the rule compares weights hashes, not numbers.
"""

from __future__ import annotations

from typing import Iterable

from platform_assets.train.registration import WEIGHTS_TAG
from platform_assets.train.registry import ROLLED_BACK_AT_TAG


def clear_command(use_case: str, version: str) -> str:
    """The command a person runs to let ``version`` (and weights identical to it) through the gate again."""
    return f"python -m platform_assets clear-rollback --use-case {use_case} --version {version}"


def rollback_reasons(version: str, weights: Iterable[str | None], rolled_back: Iterable, use_case: str) -> list[str]:
    """Why ``version`` may not become champion: it is, or has the weights of, a version rolled back and not cleared.

    Args:
        version: The candidate's version number.
        weights: The candidate's weights hashes as known: rehashed from its stored weights file, and the
            ``weights_sha256`` training tagged it with (a match of either refuses; ``None`` entries are ignored).
        rolled_back: The model's versions marked rolled back and not cleared (objects with ``version`` and
            ``tags``, as ``MlflowClient.search_model_versions`` returns them).
        use_case: The use case's name, for the command that clears a rollback.

    Returns:
        One ``FAIL: ...`` reason per rolled-back version matched; empty when none matches.
    """
    known = {w for w in weights if w}
    reasons = []
    for other in sorted(rolled_back, key=lambda v: int(v.version)):
        other_version, tags = str(other.version), other.tags or {}
        when = f"rolled back on {tags[ROLLED_BACK_AT_TAG]}" if tags.get(ROLLED_BACK_AT_TAG) else "rolled back"
        clear = f"clear it with `{clear_command(use_case, other_version)}`"
        if other_version == str(version):
            reasons.append(f"FAIL: version {version} was {when}; {clear}")
        elif not known:
            reasons.append(f"FAIL: version {version}'s weights hash is unknown, so it cannot be told apart from "
                           f"version {other_version}, {when}; {clear}")
        elif tags.get(WEIGHTS_TAG) in known:
            reasons.append(f"FAIL: weights identical to version {other_version}, {when}; {clear}")
    return reasons
