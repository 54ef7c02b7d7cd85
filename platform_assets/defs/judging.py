"""Checks that say "not judged" instead of passing when they have nothing to compare.

A green check must mean that something was measured and held. A check with nothing to
measure (no labelled rows yet, no served request whose features exist, no drift share)
returns :class:`NotJudged` with the reason: the check then yields no result, so Dagster
shows it as skipped (never as passed), and the run's log says why. A blocking check that
was not judged blocks nothing.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Callable

import dagster as dg


@dataclass(frozen=True)
class NotJudged:
    """A check's answer when it has nothing to judge, and why."""

    why: str


# The plain function of each judged check, by check key: what tests call to see a NotJudged and its reason.
_JUDGES: dict[dg.AssetCheckKey, Callable] = {}


def judged_check(*, asset: dg.AssetKey, description: str, blocking: bool = False,
                 name: str | None = None) -> Callable[[Callable], dg.AssetChecksDefinition]:
    """``@dg.asset_check`` for a check whose function may return :class:`NotJudged` instead of a result.

    Resources and config are declared on the function as for ``@dg.asset_check``; the check's op has the
    name ``@dg.asset_check`` gives it (``<asset key>_<check name>``), so its run config is unchanged.
    """

    def decorate(fn: Callable) -> dg.AssetChecksDefinition:
        check_name = name or fn.__name__
        key = dg.AssetCheckKey(asset, check_name)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            found = fn(*args, **kwargs)
            if isinstance(found, NotJudged):
                context = args[0] if args else kwargs.get("context")
                if context is not None:
                    context.log.warning(f"{check_name} on {asset.to_user_string()} not judged: {found.why}")
                return
            yield found

        run.__signature__ = inspect.signature(fn)
        _JUDGES[key] = fn
        spec = dg.AssetCheckSpec(check_name, asset=asset, blocking=blocking, description=description)
        return dg.multi_asset_check(specs=[spec], can_subset=True, name=f"{asset.to_python_identifier()}_{check_name}",
                                    description=description)(run)

    return decorate


def judge(check: dg.AssetChecksDefinition, *args, **kwargs) -> dg.AssetCheckResult | NotJudged:
    """Calls a check's function directly (as a test does): its result, or :class:`NotJudged`."""
    (key,) = check.check_keys
    if key in _JUDGES:
        return _JUDGES[key](*args, **kwargs)
    return check(*args, **kwargs)
