"""The Dagster component that turns a use case's ``defs.yaml`` into its definitions.

``platform_assets/defs/<use case>/defs.yaml`` names this type and declares the
use case and its source (see :mod:`platform_assets.declarations`); ``dg list
defs`` and ``dg check yaml`` read them like any component.
"""

from __future__ import annotations

from typing import Any

import dagster as dg


class UseCaseComponent(dg.Component, dg.Resolvable, dg.Model):
    """A model use case on one source, trained, evaluated, served and monitored by the generic stages."""

    name: str
    source: dict[str, Any]
    label: str
    entity_keys: list[str]
    feature_service: str
    model_name: str
    protected_attribute: str | None = None
    marts: list[str] = []
    online_marts: list[str] = []
    online_feature_service: str | None = None
    request_features: str | None = None
    sample_data: str | None = None
    gate: dict[str, Any] = {}

    def use_case(self, where: str = "defs.yaml") -> "UseCase":  # noqa: F821
        """The declared use case (its fields checked; errors name ``where``)."""
        from platform_assets.declarations import use_case_from_dict

        return use_case_from_dict(self.model_dump(), where)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from platform_assets.build import build_use_case_definitions

        return build_use_case_definitions(self.use_case(str(context.path)))
