"""Running a pandera pandas schema's rules on parsed rows, without the cost pandera adds at scale.

At 1M rows ``DataFrameModel.validate`` spends most of its time beside the
rules: it copies the frame, proves that each text cell is a ``str`` with one
Python call per cell, and for every cross-field rule scans every cell of the
frame for gaps although only the failing rows need it. Here the rules run
through pandera's own check machinery (each built-in check is pandera's
pandas function, vectorised; each custom check is the user's function, as
pandera calls it), the costs beside them are cut where the outcome is known,
and the failures come back in the shape of ``SchemaErrors.failure_cases``.

Only what this module can promise to judge as pandera does runs here; for
anything else (see :func:`unsupported`) the caller uses the reference engine,
:mod:`platform_assets.validate.reference`. The promise is kept by tests that
compare both engines (``tests/unit/test_validation_engines.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.api.checks import Check
from pandera.backends.pandas.error_formatters import reshape_failure_cases
from pandera.backends.utils import convert_uniquesettings
from pandera.config import ValidationDepth, get_config_context
from pandera.engines import pandas_engine

from platform_assets.validate.check_runner import has_gaps, reshape, run_check
from platform_assets.validate.parse import all_text

CASE_COLUMNS = ["schema_context", "column", "check", "check_number", "failure_case", "index"]


class Unsupported(Exception):
    """This batch or schema needs pandera itself: the caller validates with the reference engine."""


def unsupported(schema: pa.DataFrameSchema, df: pd.DataFrame) -> str | None:
    """Why ``schema`` on ``df`` is outside this engine, or ``None`` when it is within."""
    config = get_config_context()
    if not config.validation_enabled or config.validation_depth != ValidationDepth.SCHEMA_AND_DATA:
        return "pandera is configured to skip some validation"
    if config.use_narwhals_backend:
        return "pandera is configured to validate through narwhals"
    if not df.columns.is_unique:
        return "the batch has repeated column names"
    frame_features = {
        "dtype": schema.dtype is not None, "parsers": bool(schema.parsers), "strict": schema.strict is not False,
        "ordered": schema.ordered, "unique": bool(schema.unique), "index": schema.index is not None,
        "add_missing_columns": schema.add_missing_columns, "drop_invalid_rows": schema.drop_invalid_rows,
        "unique_column_names": schema.unique_column_names,
    }
    used = [name for name, on in frame_features.items() if on]
    for name, column in schema.columns.items():
        column_features = {
            "regex": column.regex, "parsers": bool(column.parsers), "default": column.default is not None,
            "drop_invalid_rows": column.drop_invalid_rows, "no dtype": column.dtype is None,
        }
        used += [f"{name}.{feature}" for feature, on in column_features.items() if on]
    checks = [*schema.checks, *(c for column in schema.columns.values() for c in column.checks)]
    used += [f"check {c.name}: raise_warning" for c in checks if c.raise_warning]
    return f"schema uses {used}" if used else None


def _coerce(column: pa.Column, values: pd.Series, text_only: bool) -> pd.Series:
    """The column in its schema type, as pandera's ``try_coerce`` gives it.

    Text that is already all ``str`` (or gaps) is returned as it is: pandera's
    ``str`` coercion would copy it to the same values, at 40 ms a column.
    """
    if isinstance(column.dtype, pandas_engine.NpString) and values.dtype == object and (
            text_only or pd.api.types.is_string_dtype(values)):
        return values
    try:
        return column.dtype.try_coerce(values)
    except Exception as error:  # a failed coercion is a failure case pandera reports: the reference says it
        raise Unsupported(f"{column.name}: coercion failed ({error})") from error


def coerce_columns(columns: dict[str, pd.Series], index: pd.Index, schema: pa.DataFrameSchema,
                   text_only: set = frozenset()) -> tuple[pd.DataFrame, set]:
    """One frame of ``columns`` (Series on ``index``, in the batch's order), schema columns in their type.

    ``text_only`` names columns already known to hold only ``str``.

    Returns:
        The frame, and the names of the schema columns it holds unchanged with only ``str`` (so no gaps).

    Raises:
        Unsupported: When a column does not coerce (pandera reports that as failure cases).
    """
    coerced, complete = dict(columns), set()
    for name, column in schema.columns.items():
        values = columns[name]
        known = name in text_only or all_text(values)
        if column.coerce or schema.coerce:
            coerced[name] = _coerce(column, values, known)
        if known and coerced[name] is values:
            complete.add(name)
    # NumPy arrays where the type allows: pandas scans a wrapped NumPy array for gaps when unwrapping it.
    arrays = {name: v.to_numpy() if isinstance(v.dtype, np.dtype) else v.array for name, v in coerced.items()}
    return pd.DataFrame(arrays, index=index, copy=False), complete


def _identifier(check) -> str:
    """How ``SchemaErrors.failure_cases`` names a check."""
    if isinstance(check, str):
        return check
    return check.error if check.error is not None else check.name if check.name is not None else str(check)


class _Run:
    """One run of a schema's rules on a frame: the failure cases found so far, and each column's gaps."""

    def __init__(self, frame: pd.DataFrame, complete: set):
        self.frame = frame
        self.found: list[pd.DataFrame] = []  # cases of rows
        self.scalars: list[dict] = []  # cases of the batch as a whole
        self._gaps: dict = dict.fromkeys(complete, False)

    def gaps(self, name) -> bool:
        if name not in self._gaps:
            self._gaps[name] = has_gaps(self.frame[name])
        return self._gaps[name]

    def add(self, context: str, column, check, number, cases) -> None:
        """Adds one failed check's cases, as pandera's ``consolidate_failure_cases`` lays them out."""
        meta = {"schema_context": context, "check": _identifier(check), "check_number": number}
        if isinstance(cases, pd.DataFrame):
            named = cases["column"] if "column" in cases else column
            self.found.append(cases.assign(column=named, **meta)[CASE_COLUMNS])
        else:  # a check that judged the batch as a whole: no row to blame
            self.scalars.append({"column": column, "failure_case": cases, "index": None, **meta})

    def check(self, context: str, column, check: Check, number: int, key) -> None:
        try:
            result = run_check(check, self.frame, key, self.gaps)
            passed = bool(result.check_passed)
        except Exception as error:  # pandera reports a check that raises as a batch failure: the reference says it
            raise Unsupported(f"check {_identifier(check)} raised {error!r}") from error
        if not passed:
            cases = result.check_passed if result.failure_cases is None else reshape(result.failure_cases, check.ignore_na)
            self.add(context, column, check, number, cases)

    def column(self, name, column: pa.Column, coerced: bool) -> None:
        """The failures of one column: gaps, repeats, type, then its checks (pandera's order)."""
        values = self.frame[name]
        if not column.nullable and self.gaps(name):
            self.add("Column", name, "not_nullable", None, reshape_failure_cases(values[values.isna()], ignore_na=False))
        if column.unique and not values.is_unique:
            repeated = values[values.duplicated(keep=convert_uniquesettings(column.report_duplicates))]
            if len(repeated):
                self.add("Column", name, "field_uniqueness", None, reshape_failure_cases(repeated))
        # A coerced text column holds only ``str`` and gaps, which is what pandera's cell-by-cell test proves.
        if not (coerced and isinstance(column.dtype, pandas_engine.NpString)):
            fits = column.dtype.check(pandas_engine.Engine.dtype(values.dtype), values)
            if not (fits if isinstance(fits, (bool, np.bool_)) else bool(np.all(fits))):
                raise Unsupported(f"{name}: values are not {column.dtype}")
        for number, check in enumerate(column.checks):
            self.check("Column", name, check, number, name)


def failure_cases(frame: pd.DataFrame, schema: pa.DataFrameSchema, complete: set = frozenset()) -> pd.DataFrame | None:
    """The failure cases of ``schema``'s rules on ``frame`` (coerced by :func:`coerce_columns`).

    ``complete`` names columns known to have no gaps (they are not scanned for them again).

    Returns:
        ``None`` when every rule passed, else a frame with pandera's
        ``SchemaErrors.failure_cases`` columns: one row per failing value
        (per failing cell of a cross-field rule's row), ``index`` empty for a
        failure of the batch as a whole.

    Raises:
        Unsupported: Where pandera would report something this engine does
            not (a check that raises, values of another type).
    """
    pa.DataFrameSchema.register_default_backends(type(frame))
    run = _Run(frame, complete)
    for name, column in schema.columns.items():
        run.column(name, column, column.coerce or schema.coerce)
    for number, check in enumerate(schema.checks):
        run.check("DataFrameSchema", schema.name, check, number, None)
    frames = run.found + ([pd.DataFrame.from_records(run.scalars)] if run.scalars else [])
    if not frames:
        return None
    return pd.concat(frames).reset_index(drop=True).sort_values("schema_context", ascending=False)
