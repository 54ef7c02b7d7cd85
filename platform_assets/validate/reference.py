"""The reference engine: every cell parsed with pandas, every rule run by pandera on pandas.

This is how rows were split before the fast engine of
:mod:`platform_assets.validate.rules` (issue 24): simple, and slow at scale
(about 7 s for 1M rows). It stays for two reasons: it is the yardstick the
fast engine is tested against (same valid rows, same quarantined rows, same
reasons, same counts), and the fast engine hands a schema to it whole when
the schema uses a pandera feature the fast engine does not run itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.errors
import pandera.pandas as pa

from platform_assets.validate.reasons import (REASONS, SchemaViolation, ValidationResult, got, refuse_batch_level,
                                               rule_name)


def _text_to_float(values: pd.Series, missing: pd.Series) -> pd.Series:
    """Parses text cells as numbers (NaN where a cell is missing or is not a number), with polars."""
    import polars as pl

    text = pl.Series(values.astype(str).to_numpy(), dtype=pl.String)
    parsed = text.str.strip_chars().cast(pl.Float64, strict=False).to_numpy(writable=True)
    parsed[missing.to_numpy()] = np.nan
    return pd.Series(parsed, index=values.index, name=values.name)


def parse_column(values: pd.Series, dtype: str, personal: bool = False) -> tuple[pd.Series, pd.Series]:
    """Parses ``values`` as ``dtype``; returns the parsed column and the reasons of failed cells.

    Columns that already have the type (Parquet input) skip parsing. The
    reasons of a ``personal`` column do not show the value.
    """
    missing = values.isna()
    kind = "text"
    if dtype.startswith("datetime"):
        parsed = values
        if not pd.api.types.is_datetime64_any_dtype(values):
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        bad = parsed.isna() & ~missing
        kind = "a timestamp"
    elif dtype.lower().startswith(("float", "int")):
        parsed = values if pd.api.types.is_numeric_dtype(values) else _text_to_float(values, missing)
        finite = np.isfinite(parsed.to_numpy(dtype=np.float64, na_value=0.0))
        bad = (parsed.isna() & ~missing) | ~finite
        kind = "a finite number"
        if dtype.lower().startswith("int"):
            fractional = ~bad & ~missing & (parsed.fillna(0) % 1 != 0)
            if fractional.any():
                bad |= fractional
                kind = "a whole number"
    else:
        parsed = values if pd.api.types.is_string_dtype(values) else values.where(missing, values.astype(str))
        bad = pd.Series(False, index=values.index)
    reasons = pd.concat(
        [
            pd.Series(f"{values.name}: missing", index=values.index[missing.to_numpy()], dtype=object),
            pd.Series([f"{values.name}: not {kind} {got(v, personal)}" for v in values[bad]],
                      index=values.index[bad.to_numpy()], dtype=object),
        ]
    )
    return parsed, reasons


def parse_types(
    df: pd.DataFrame, schema: type[pa.DataFrameModel], personal: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, pd.Series]:
    """Parses every schema column of ``df``; returns the parsed frame and the reasons per failing row.

    Raises:
        SchemaViolation: If schema columns are missing from ``df`` (names them).
    """
    columns = schema.to_schema().columns
    absent = [name for name in columns if name not in df.columns]
    if absent:
        raise SchemaViolation(f"batch does not fit {schema.__name__}: missing columns {absent}")
    parsed = df.copy()
    reasons = []
    for name, column in columns.items():
        parsed[name], column_reasons = parse_column(df[name], str(column.dtype), name in personal)
        if column.nullable:
            column_reasons = column_reasons[df[name].reindex(column_reasons.index).notna()]
        reasons.append(column_reasons)
    failures = pd.concat(reasons) if reasons else pd.Series(dtype=object)
    if failures.empty:
        return parsed, failures
    return parsed, failures.groupby(level=0).agg("; ".join)


def split_valid_rows(df: pd.DataFrame, schema: type[pa.DataFrameModel], personal: tuple[str, ...]) -> ValidationResult:
    """Validates ``df`` with ``schema.validate`` on pandas and splits it into valid and quarantined rows.

    Arguments, result and errors are those of :func:`platform_assets.validate.rules.split_valid_rows`.
    """
    if not df.index.is_unique:
        raise ValueError("split_valid_rows needs a unique index")
    parsed, type_reasons = parse_types(df, schema, personal)
    candidates = parsed.drop(index=type_reasons.index)
    counts: dict[str, int] = {}
    if len(type_reasons):
        counts["type"] = len(type_reasons)
    try:
        schema.validate(candidates, lazy=True)
        rule_reasons = pd.Series(dtype=object)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        refuse_batch_level(cases, schema.__name__)
        cases = cases.assign(reason=cases.apply(rule_name, axis=1, args=(personal,)))
        rule_reasons = cases.groupby("index")["reason"].agg(lambda r: "; ".join(sorted(set(r))))
        counts.update({str(k): int(v) for k, v in cases.groupby("check")["index"].nunique().items()})
    reasons = pd.concat([type_reasons, rule_reasons])
    bad = df.index.isin(reasons.index)
    quarantined = df[bad].copy()
    quarantined[REASONS] = reasons.reindex(quarantined.index).to_numpy()
    # The rows left passed every check above: only their types remain to be set.
    valid = parsed[~bad].copy()
    for name, column in schema.to_schema().columns.items():
        valid[name] = column.dtype.coerce(valid[name])
    return ValidationResult(valid, quarantined, counts)
