"""The Dagster component that turns a use case's ``defs.yaml`` into its definitions.

``platform_assets/defs/<use case>/defs.yaml`` names this type and declares the
use case and its source (see :mod:`platform_assets.declarations`); ``dg list
defs`` and ``dg check yaml`` read them like any component.
"""

from __future__ import annotations

from typing import Any

import dagster as dg


# What `dg scaffold defs platform_assets.components.UseCaseComponent <folder>` writes: every field, each commented,
# with values to replace (docs/adding-a-dataset.md walks through them). {name} is the folder's name.
DEFS_TEMPLATE = """\
type: platform_assets.components.UseCaseComponent
attributes:
  # Lower-case letters, digits and _: the prefix of the asset keys and the Dagster group.
  name: {name}
  # The landing files and how a valid row looks (platform_assets/declarations.py, Source).
  source:
    name: {name}                      # the tables raw.{name}, validated.{name}, quarantine.{name}
    file_prefix: {name}               # files are <file_prefix>_YYYY-MM-DD.csv|parquet|jsonl
    landing_folder: {name}            # under $PLATFORM_HOME/landing/
    schema: {name}_schema:RowSchema   # module:class of the pandera model of a valid row
                                      # (`.venv/bin/python -m platform_assets infer-schema <sample>` proposes one)
    key: id                           # the row's business key (a later copy is quarantined)
    event_time: event_ts              # when the row happened: days are partitioned by it
    label: outcome                    # the outcome the model predicts (0/1, true/false, or the two values below)
    # positive_label: "yes"           # the label's two values in the files, quoted; written as 1/0
    # negative_label: "no"
    # label_time: outcome_ts          # when the outcome became known, if it arrives after the row
    pii: []                           # personal data: replaced by keyed tokens, never a model input
    protected: []                     # protected attributes: never model inputs
  # protected_attribute: group        # one of source.protected, a text column: the fairness slices
                                      # (left out: the gate and the report say fairness was not judged)
  # Left out, the features are the source's own columns (every schema column but the key, times, label, personal
  # data and protected ones): the platform derives the mart and the Feast view. Your own dbt marts instead:
  # marts: [fct_{name}_features]      # dbt marts in dbt/models/{name}/, exported as Parquet for your Feast views
  # feature_service: {name}_model     # the Feast feature service training reads (default: {name}_model)
  # entity_keys: [id]                 # Feast join keys, the source key first (default: the source key)
  # model_name: {model}               # the MLflow experiment and registered model (default shown)
  # label: outcome                    # the label the model predicts (default: the source's)
  gate:                               # the evaluation gate (GateConfig): min_roc_auc, tolerance, fairness bounds
    min_roc_auc: 0.65                 # the ROC AUC every model must reach on the test split
"""


class UseCaseScaffolder(dg.Scaffolder):
    """Writes :data:`DEFS_TEMPLATE` as the folder's ``defs.yaml`` (Dagster's own scaffolder writes ``attributes: {}``,
    which leaves every field to be copied from the docs)."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:  # noqa: D102
        if request.scaffold_format != "yaml":
            raise ValueError("a use case is declared in YAML: scaffold it with --format yaml")
        request.target_path.mkdir(parents=True, exist_ok=True)
        name = request.target_path.name
        (request.target_path / "defs.yaml").write_text(DEFS_TEMPLATE.format(name=name, model=name.replace("_", "-")))


@dg.scaffold_with(UseCaseScaffolder)
class UseCaseComponent(dg.Component, dg.Resolvable, dg.Model):
    """A model use case on one source, trained, evaluated, served and monitored by the generic stages."""

    name: str
    source: dict[str, Any]
    label: str | None = None
    entity_keys: list[str] = []
    feature_service: str | None = None
    model_name: str | None = None
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
