"""Every asset key of the platform, in one place (no heavy imports: sensors and automation read them).

A use case's assets are prefixed by its name (``<use case>/train/model``), so
each use case is its own branch of the asset graph in the Dagster UI.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class UseCaseKeys:
    """The asset keys of one use case (``name``) and its source (``source``)."""

    name: str
    source: str

    def key(self, *parts: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, *parts])

    def feature(self, model: str) -> dg.AssetKey:
        """A dbt model (or mart) of the use case's feature layer."""
        return self.key("features", model)

    @property
    def raw(self) -> dg.AssetKey:
        return self.key("raw", self.source)

    @property
    def validated(self) -> dg.AssetKey:
        return self.key("validated", self.source)

    @property
    def quarantined(self) -> dg.AssetKey:
        return self.key("quarantine", self.source)

    @property
    def feature_store(self) -> dg.AssetKey:
        return self.key("features", "feature_store")

    @property
    def training_set(self) -> dg.AssetKey:
        return self.key("features", "training_set")

    @property
    def model(self) -> dg.AssetKey:
        return self.key("train", "model")

    @property
    def eval_report(self) -> dg.AssetKey:
        return self.key("evaluate", "eval_report")

    @property
    def champion(self) -> dg.AssetKey:
        return self.key("evaluate", "champion")

    @property
    def deployment(self) -> dg.AssetKey:
        return self.key("deploy", "deployment")

    @property
    def batch_predictions(self) -> dg.AssetKey:
        return self.key("deploy", "batch_predictions")

    @property
    def inference_log(self) -> dg.AssetKey:
        return self.key("monitor", "inference_log")

    @property
    def labelled_predictions(self) -> dg.AssetKey:
        return self.key("monitor", "labelled_predictions")

    @property
    def outcomes(self) -> dg.AssetKey:
        return self.key("monitor", "outcomes")

    @property
    def drift_report(self) -> dg.AssetKey:
        return self.key("monitor", "drift_report")


def for_use_case(use_case) -> UseCaseKeys:
    """The keys of a :class:`platform_assets.declarations.UseCase`."""
    return UseCaseKeys(use_case.name, use_case.source.name)
