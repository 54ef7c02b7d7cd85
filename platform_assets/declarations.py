"""What a dataset and a model use case are, as declared in YAML: plain data, no Dagster import.

A *source* is a kind of landing file (one daily file per day): where it lands,
its pandera schema, its keys, times, label, personal data and protected
attributes. A *use case* trains, evaluates, serves and monitors one model on one
source through the generic stages. Both are declared in
``platform_assets/defs/<use case>/defs.yaml`` (see docs/adding-a-dataset.md);
the generic stages read these objects and name no dataset of their own.
"""

from __future__ import annotations

import importlib
import operator
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FILE_SUFFIXES = ("parquet", "csv", "jsonl")
# How far after "now" a caller's event time may be (clocks differ): the server refuses later ones at
# the door, the inference log files a line by its event's day within it, and monitoring reads with
# the same allowance. One value for the three (the serving environment imports this module too).
CLOCK_SKEW_S = 300.0


class DeclarationError(ValueError):
    """A declaration that cannot be used; the message names the declaration and the field."""


def import_object(path: str, where: str):
    """The object ``module:attribute`` names (a schema class, a function)."""
    module_name, _, attribute = path.partition(":")
    if not attribute:
        raise DeclarationError(f"{where}: {path!r} is not of the form 'module:attribute'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise DeclarationError(f"{where}: cannot import {path!r}: {exc}") from exc


def _column_name_problem(column: Any) -> str | None:
    """Why ``column`` cannot name a declared column; ``None`` when it can."""
    if isinstance(column, bool):
        return "YAML read it as a boolean: quote it"
    if not isinstance(column, str) or not column:
        return "must be a column name (non-empty text)"
    if '"' in column or any(ord(c) < 32 or ord(c) == 127 for c in column):
        return "must not hold a double quote or a control character (a newline, a tab)"
    return None


def _check_column_names(where: str, named: Mapping[str, Any], optional: tuple[str, ...] = ()) -> None:
    """Raises :class:`DeclarationError` naming the field whose column name cannot work.

    Any text names a column once quoted in SQL (a reserved word like ``default`` too), but not an empty
    one, not one YAML read as something else (an unquoted ``on`` or ``1``), and not one holding a double
    quote or a control character (a newline): dbt models, Feast views and log lines could not name it.

    Args:
        where: The declaration, as messages name it (``source cards``).
        named: Field -> its column name, or a list of them.
        optional: The fields that may be ``None`` (not declared).
    """
    for field_name, value in named.items():
        if value is None and field_name in optional:
            continue
        for column in value if isinstance(value, (list, tuple)) else [value]:
            why = _column_name_problem(column)
            if why:
                raise DeclarationError(f"{where}: {field_name} {column!r}: {why}")


def _number(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


@dataclass(frozen=True)
class FieldRule:
    """The bounds of one column's valid values, in plain Python: the one home of these numbers.

    The source's pandera schema builds its fields from them (``pa.Field(**rule.checks())``),
    so the validation stage quarantines what breaks them; the model server checks a
    caller's values against the same rules (the serving environment has no pandera).

    Attributes:
        whole: Whole numbers only (an integer column: the schema's dtype says it too).
        ge, gt, le, lt: Inclusive and exclusive bounds.
        isin: The allowed values.
    """

    whole: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    isin: tuple | None = None

    def checks(self) -> dict:
        """The keyword arguments of ``pandera.Field`` that check these bounds (``whole`` is the dtype's)."""
        found = {name: getattr(self, name) for name in ("ge", "gt", "le", "lt") if getattr(self, name) is not None}
        return {**found, "isin": list(self.isin)} if self.isin is not None else found

    @cached_property
    def _bounds(self) -> tuple:
        """``(sign, comparison, bound)`` of each bound that is set."""
        return tuple((sign, keeps, getattr(self, name)) for name, sign, keeps in (
            ("ge", ">=", operator.ge), ("gt", ">", operator.gt), ("le", "<=", operator.le), ("lt", "<", operator.lt))
            if getattr(self, name) is not None)

    def keeps(self, value: Any) -> bool:
        """Whether ``value`` keeps every rule: :meth:`broken` is ``None``, without building its message (the
        model server asks it of every value of every request)."""
        if self.isin is not None and value not in self.isin:
            return False
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.whole and not (number and (isinstance(value, int) or value.is_integer())):
            return False
        return all(number and keep(value, bound) for _, keep, bound in self._bounds)

    def broken(self, column: str, value: Any) -> str | None:
        """The rule ``value`` breaks, as people read it (``income > 0``); ``None`` when it keeps every one."""
        if self.isin is not None and value not in self.isin:
            return f"{column} in {list(self.isin)}"
        # Python compares ints and floats exactly, so a huge integer is judged as it is; NaN keeps no bound.
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.whole and not (number and (isinstance(value, int) or value.is_integer())):
            return f"{column} is a whole number"
        for sign, keeps, bound in self._bounds:
            if not (number and keeps(value, bound)):
                return f"{column} {sign} {_number(bound)}"
        return None


@dataclass(frozen=True)
class RowRule:
    """A rule across a row's columns: ``check(*columns)`` is true where a row keeps it, for
    pandas Series (the schema's dataframe check), numpy arrays (the model server) or numbers alike."""

    name: str
    columns: tuple[str, ...]
    check: Callable
    text: str  # the rule as people read it: "loan_amount <= 10 * |income|"


@dataclass(frozen=True)
class Rules:
    """The bounds of a source's valid rows: column -> :class:`FieldRule`, and the rules across columns."""

    fields: Mapping[str, FieldRule]
    rows: tuple[RowRule, ...] = ()


@dataclass(frozen=True)
class Source:
    """One kind of landing file, read daily into ``raw.<name>`` and validated into ``validated.<name>``.

    Attributes:
        name: The tables' and asset keys' name (``raw/<name>``), lower case.
        file_prefix: Files are named ``<file_prefix>_YYYY-MM-DD.<parquet|csv|jsonl>``.
        schema: ``module:Class`` of the pandera ``DataFrameModel`` a valid row meets; its
            columns, in order, are the columns every file must have.
        key: The business key; with ``unique_across_days`` one valid row per key ever
            (later copies are quarantined), else one per key and day.
        event_time: The column that orders rows (and copies of a key).
        label: The outcome column, if the source carries one.
        label_time: When the outcome became known, if it arrives later than the row.
        pii: Personal data columns: replaced by keyed tokens before rows leave validation.
        protected: Protected attributes: never model inputs, always fairness slices.
        landing_folder: Folder under the landing root ("" = the root itself).
        positive_label, negative_label: The label's two values in the files (``"yes"``/``"no"``),
            if they are not already 1/0 or true/false: validation writes them as 1/0 and
            quarantines a row whose label is neither.
        rules: ``module:attribute`` of the :class:`Rules` of a valid row (plain Python: the model
            server imports it), which the schema's fields are built from; ``None`` if the schema
            declares its bounds itself (the server then checks types only).
    """

    name: str
    file_prefix: str
    schema: str
    key: str
    event_time: str
    unique_across_days: bool = True
    label: str | None = None
    label_time: str | None = None
    pii: tuple[str, ...] = ()
    protected: tuple[str, ...] = ()
    landing_folder: str = ""
    positive_label: str | None = None
    negative_label: str | None = None
    rules: str | None = None

    def __post_init__(self):
        if not NAME.match(self.name):
            raise DeclarationError(f"source {self.name!r}: name must be lower case letters, digits and _")
        _check_column_names(f"source {self.name}", {
            "key": self.key, "event_time": self.event_time, "label": self.label, "label_time": self.label_time,
            "pii": self.pii, "protected": self.protected}, optional=("label", "label_time"))
        values = (self.positive_label, self.negative_label)
        if any(v is not None for v in values):
            if any(isinstance(v, bool) for v in values):
                raise DeclarationError(f"source {self.name}: positive_label/negative_label {list(values)}: quote them "
                                       "(YAML reads unquoted yes/no/true/false as booleans)")
            if not (self.label and all(isinstance(v, str) and v for v in values) and values[0] != values[1]):
                raise DeclarationError(f"source {self.name}: positive_label and negative_label must both be set, "
                                       f"differ and come with a label; got {list(values)}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.file_prefix):
            raise DeclarationError(f"source {self.name}: file_prefix {self.file_prefix!r} must be letters, digits, _ or -")

    @cached_property
    def file_name(self) -> re.Pattern:
        """The landing file names of this source; group ``day`` is the partition."""
        return re.compile(rf"^{re.escape(self.file_prefix)}_(?P<day>\d{{4}}-\d{{2}}-\d{{2}})\.({'|'.join(FILE_SUFFIXES)})$")

    @property
    def file_pattern(self) -> str:
        """The file names, as people read them (in errors and docs)."""
        return f"{self.file_prefix}_YYYY-MM-DD.{'|'.join(FILE_SUFFIXES)}"

    @property
    def raw_table(self) -> str:
        return f"raw.{self.name}"

    @property
    def landing_files_table(self) -> str:
        return f"raw.{self.name}_landing_files"

    @property
    def rejected_files_table(self) -> str:
        return f"raw.{self.name}_rejected_files"

    @property
    def validated_table(self) -> str:
        return f"validated.{self.name}"

    @property
    def quarantine_table(self) -> str:
        return f"quarantine.{self.name}"

    def schema_model(self):
        """The pandera ``DataFrameModel`` class (imported on first use: pandera is not cheap)."""
        return import_object(self.schema, f"source {self.name}: schema")

    def declared_rules(self) -> Rules | None:
        """The :class:`Rules` of a valid row (imported on first use), or ``None`` when none are declared."""
        if self.rules is None:
            return None
        rules = import_object(self.rules, f"source {self.name}: rules")
        if not isinstance(rules, Rules):
            raise DeclarationError(f"source {self.name}: rules {self.rules!r} is a {type(rules).__name__}, not Rules")
        return rules

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """The columns of a landing file, in the schema's order."""
        return tuple(self.schema_model().to_schema().columns)

    def check_columns(self) -> None:
        """Raises :class:`DeclarationError` when a declared column is not in the schema."""
        named = {"key": [self.key], "event_time": [self.event_time], "label": [self.label],
                 "label_time": [self.label_time], "pii": list(self.pii), "protected": list(self.protected)}
        rules = self.declared_rules()
        if rules is not None:
            named["rules"] = [*rules.fields, *(c for rule in rules.rows for c in rule.columns)]
        for field_name, columns in named.items():
            missing = [c for c in columns if c is not None and c not in self.columns]
            if missing:
                raise DeclarationError(f"source {self.name}: {field_name} {missing} not in schema {self.schema}")


@dataclass(frozen=True)
class UseCase:
    """A model trained, evaluated, served and monitored on one source.

    Attributes:
        name: Lower-case name; the prefix of its asset keys and its Dagster group.
        source: The source its rows (entities, labels) come from.
        label: The binary outcome the model predicts (0/1 after validation); the source's label if left out.
        entity_keys: The join keys of its Feast feature views (the source's key first); the source's key if
            left out.
        feature_service: The Feast feature service training reads point-in-time; ``<name>_model`` if left out.
        online_feature_service: The Feast feature service the model server reads per request, if any.
        request_features: A module computing model inputs at request time (``NEEDS``: the request
            fields it reads; ``COMPUTED``: the features it returns; ``compute(fields, online, ts)``;
            optionally ``ONLINE_ENTITY``, the join key whose online features it needs, and
            ``ONLINE_ENTITY_KIND``, ``"int"`` or ``"str"``), if the model needs any it cannot get
            from the request itself. Plain Python and numpy: the serving environment imports it.
        protected_attribute: The fairness slice of the evaluation and the monitor (one of the source's
            ``protected`` columns, categorical), or ``None``: fairness is then not judged, and says so.
        sample_data: ``module:function`` writing sample landing files, ``(landing_dir, start, days,
            rows_per_day, seed, **options) -> rows`` (``python -m platform_assets generate``), if any.
        model_name: The registered model's (and experiment's) name in MLflow; the use case's name with
            ``-`` for ``_`` if left out.
        marts: dbt marts exported as Parquet for Feast's FileSources. Left out, the features are the
            source's own columns: the mart and the Feast view are derived from the declaration and the
            schema (:mod:`platform_assets.features.derived`), and no dbt model or Feast file is needed.
        gate: Bounds of the evaluation gate (``GateConfig`` fields).
    """

    name: str
    source: Source
    label: str | None = None
    entity_keys: tuple[str, ...] = ()
    feature_service: str | None = None
    model_name: str | None = None
    protected_attribute: str | None = None
    marts: tuple[str, ...] = ()
    online_marts: tuple[str, ...] = ()
    online_feature_service: str | None = None
    request_features: str | None = None
    sample_data: str | None = None
    gate: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not NAME.match(self.name):
            raise DeclarationError(f"use case {self.name!r}: name must be lower case letters, digits and _")
        if not isinstance(self.source, Source):
            raise DeclarationError(f"use case {self.name}: source must be a Source, got {type(self.source).__name__}")
        # What is left out follows from the rest (frozen: set once, here).
        defaults = {"label": self.source.label, "entity_keys": (self.source.key,),
                    "feature_service": f"{self.name}_model", "model_name": self.name.replace("_", "-")}
        for name, value in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)
        if not self.label:
            raise DeclarationError(f"use case {self.name}: label: neither the use case nor source "
                                   f"{self.source.name} declares the label the model predicts")
        _check_column_names(f"use case {self.name}", {
            "label": self.label, "entity_keys": self.entity_keys, "protected_attribute": self.protected_attribute},
            optional=("protected_attribute",))
        if self.protected_attribute is not None and self.protected_attribute not in self.source.protected:
            raise DeclarationError(f"use case {self.name}: protected_attribute {self.protected_attribute!r} "
                                   f"is not among source {self.source.name}'s protected {list(self.source.protected)}")
        if self.source.key not in self.entity_keys:
            raise DeclarationError(f"use case {self.name}: entity_keys must include the source key {self.source.key!r}")

    def check_columns(self) -> None:
        """Raises :class:`DeclarationError` when a declared column is not in the schema (the source's
        :meth:`Source.check_columns`), or when the protected attribute is a number: fairness slices are groups, and
        a number (an age) makes one slice per value, each too small to judge. Declare a banded column instead."""
        self.source.check_columns()
        if self.protected_attribute is None:
            return
        dtype = str(self.source.schema_model().to_schema().columns[self.protected_attribute].dtype).lower()
        if dtype.startswith(("int", "uint", "float", "decimal")):
            raise DeclarationError(
                f"use case {self.name}: protected_attribute {self.protected_attribute!r} is a number ({dtype}) in "
                f"schema {self.source.schema}: fairness needs groups, so declare a banded text column (e.g. "
                "age_band: 18-25, 26-40, ...) computed in the schema's source, or leave protected_attribute out "
                "(fairness is then not judged)")

    def request_features_module(self):
        """The imported ``request_features`` module, or ``None`` when the request carries every input."""
        if not self.request_features:
            return None
        try:
            return importlib.import_module(self.request_features)
        except ImportError as exc:
            raise DeclarationError(f"use case {self.name}: request_features: cannot import "
                                   f"{self.request_features!r}: {exc}") from exc

    def id_columns(self) -> dict[str, str]:
        """The ids a caller's request carries and the server logs: column -> ``"str"`` or ``"int"``.

        The source key, and the entity whose online features the request features need (if any).
        """
        ids = {self.source.key: "str"}
        module = self.request_features_module()
        entity = getattr(module, "ONLINE_ENTITY", None) if module else None
        if entity:
            ids[entity] = getattr(module, "ONLINE_ENTITY_KIND", "int")
        return ids

    @property
    def monitor_schema(self) -> str:
        """The warehouse schema of the use case's monitoring tables (``monitor_<use case>``)."""
        return f"monitor_{self.name}"

    def monitor_table(self, name: str) -> str:
        """The warehouse table of the use case's monitoring data called ``name``."""
        return f"{self.monitor_schema}.{name}"

    @property
    def derives_features(self) -> bool:
        """Whether the features are the source's own columns: no dbt mart declared, so the platform builds
        the mart and the Feast view from the declaration (:mod:`platform_assets.features.derived`)."""
        return not self.marts

    @property
    def feature_marts(self) -> tuple[str, ...]:
        """The marts the feature store exports: the declared dbt marts, or the derived one."""
        return self.marts or (f"fct_{self.name}_features",)

    @property
    def dbt_select(self) -> str:
        """The dbt selection of this use case's models: its folder ``dbt/models/<name>/``."""
        return f"path:models/{self.name}"

    @property
    def never_features(self) -> set[str]:
        """Columns of a training set that are never model inputs."""
        # label_ts: the training set's time each label became known (whatever the source calls it).
        return {*self.entity_keys, "event_timestamp", "label_ts", "split", self.label,
                *(c for c in [self.source.label_time] if c), *self.source.protected, *self.source.pii}


def use_case_to_dict(use_case: UseCase) -> dict:
    """The mapping :func:`use_case_from_dict` reads back (JSON-ready): how a server learns its use case."""
    import dataclasses

    return _json_ready(dataclasses.asdict(use_case))


def _json_ready(value):
    """Tuples as lists, recursively (what JSON and YAML write)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def source_from_dict(data: dict, where: str) -> Source:
    """A :class:`Source` from its YAML mapping."""
    return _build(Source, data, where, tuples=("pii", "protected"))


def use_case_from_dict(data: dict, where: str) -> UseCase:
    """A :class:`UseCase` from its YAML mapping (the source nested under ``source``)."""
    data = dict(data)
    if not isinstance(data.get("source"), dict):
        raise DeclarationError(f"{where}: 'source' must be a mapping")
    data["source"] = source_from_dict(data["source"], f"{where}: source")
    return _build(UseCase, data, where, tuples=("entity_keys", "marts", "online_marts"))


def _build(cls, data: dict, where: str, tuples: tuple[str, ...]):
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DeclarationError(f"{where}: unknown field(s) {unknown} (known: {sorted(known)})")
    values = {k: tuple(v) if k in tuples and v is not None else v for k, v in data.items()}
    try:
        return cls(**values)
    except DeclarationError as exc:
        if str(exc).startswith(where):
            raise
        raise DeclarationError(f"{where}: {exc}") from exc
    except TypeError as exc:
        raise DeclarationError(f"{where}: {exc}") from exc
