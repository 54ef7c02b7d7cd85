"""Checks of prediction requests: a caller's mistake becomes one message naming the field and the rows.

Plain Python and numpy (no Seldon), so the rules hold whichever server runs the
model. The accepted request is Seldon's JSON message with named columns::

    {"data": {"names": ["income", ...], "ndarray": [[52000.0, ...], ...]}}

Numeric columns take JSON numbers only, finite ones (Python's JSON parser reads
``NaN``, ``Infinity`` and ``1e400`` as non-finite floats); categorical columns
take one of the levels the preprocessor was fitted on. Extra columns are ignored.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np

MAX_LISTED = 10  # errors listed in one message: enough to fix a batch, short enough to read
MAX_VALUE_CHARS = 40  # a caller's value is echoed at most this long
EXAMPLE = '{"data": {"names": ["col", ...], "ndarray": [[value, ...], ...]}}'


class RequestError(ValueError):
    """A mistake in a prediction request: the caller's to fix (HTTP 400)."""


def _kind(value: Any) -> str:
    """The JSON type of ``value``, as a caller would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


def _show(value: Any) -> str:
    """A short JSON-like rendering of a caller's value (non-finite numbers as words, never as NaN)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    text = repr(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


def _described(value: Any) -> str:
    """Type and value of a caller's value: ``string 'abc'``, ``boolean true``, ``null``."""
    return "null" if value is None else f"{_kind(value)} {_show(value)}"


def _listing(errors: list[str]) -> str:
    """The first :data:`MAX_LISTED` errors, and how many more there are."""
    more = len(errors) - MAX_LISTED
    return "; ".join(errors[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


def names_and_rows(message: Any) -> tuple[list[str], list[list[Any]]]:
    """The column names and rows of a request, checked for shape.

    Raises:
        RequestError: If the body is not ``{"data": {"names": [...], "ndarray": [[...], ...]}}``
            with one value per name in every row.
    """
    if not isinstance(message, dict):
        raise RequestError(f"the request body must be a JSON object {EXAMPLE}, got {_kind(message)}")
    if "data" not in message:
        raise RequestError(f"the request has no 'data' (fields: {sorted(message)}); send {EXAMPLE}")
    data = message["data"]
    if not isinstance(data, dict):
        raise RequestError(f"'data' must be an object with 'names' and 'ndarray', got {_described(data)}")
    unread = sorted(set(data) - {"names", "ndarray"})
    if unread:
        raise RequestError(f"'data' has fields {unread} this model does not read; send 'names' and 'ndarray' only")
    names = data.get("names")
    if not isinstance(names, list) or not names:
        raise RequestError(f"'data.names' must be a non-empty list of column names, got {_described(names)}")
    bad = [i for i, name in enumerate(names) if not isinstance(name, str) or not name.strip()]
    if bad:
        raise RequestError(f"'data.names' entries {bad[:MAX_LISTED]} are not column names (empty or not a string)")
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise RequestError(f"'data.names' repeats {repeated[:MAX_LISTED]}")
    rows = data.get("ndarray")
    if not isinstance(rows, list) or not rows:
        raise RequestError(f"'data.ndarray' must be a non-empty list of rows, got {_described(rows)}")
    wrong = [
        f"row {r} has {len(row)} values" if isinstance(row, list) else f"row {r} is {_described(row)}"
        for r, row in enumerate(rows) if not isinstance(row, list) or len(row) != len(names)
    ]
    if wrong:
        raise RequestError(f"'data.ndarray' rows must be lists of {len(names)} values (one per name): {_listing(wrong)}")
    return names, rows


def _missing_columns(missing: list[str], names: list[str], needed: list[str]) -> str:
    """The message for absent columns, with the likely misspellings among the unused names."""
    unused = [n for n in names if n not in needed]
    guesses = [f"{close[0]!r} for {m!r}" for m in missing if (close := difflib.get_close_matches(m, unused, n=1))]
    text = f"'data.names' lacks {missing}; the model needs {needed}"
    return text + (f" (misspelled? {', '.join(guesses)})" if guesses else "")


def model_columns(
    message: Any, numeric: Sequence[str], categories: Mapping[str, Sequence[str]]
) -> dict[str, np.ndarray]:
    """The model's input columns from a request, every value checked.

    Args:
        message: The parsed JSON body.
        numeric: Columns that must hold finite JSON numbers.
        categories: Categorical column -> the levels the model was fitted on.

    Returns:
        Column -> values: float64 arrays for numeric columns, object arrays for categorical ones.

    Raises:
        RequestError: Naming the field, and for bad values each row and column (the first ten).
    """
    names, rows = names_and_rows(message)
    needed = [*numeric, *categories]
    missing = [c for c in needed if c not in names]
    if missing:
        raise RequestError(_missing_columns(missing, names, needed))
    errors: list[str] = []
    columns: dict[str, np.ndarray] = {}
    for column in numeric:
        i, values = names.index(column), np.zeros(len(rows))
        for r, row in enumerate(rows):
            value = row[i]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors.append(f"row {r}, column {column!r}: expected a number, got {_described(value)}")
                continue
            try:
                values[r] = float(value)
            except OverflowError:  # an integer beyond the largest double
                values[r] = math.inf
            if not math.isfinite(values[r]):
                errors.append(f"row {r}, column {column!r}: {_show(value)} is not a finite number")
        columns[column] = values
    for column, levels in categories.items():
        i, allowed = names.index(column), set(levels)
        values = [row[i] for row in rows]
        for r, value in enumerate(values):
            # str(): the preprocessor compares levels as text (network.Preprocessor.transform)
            if value is None or isinstance(value, (list, dict)) or str(value) not in allowed:
                errors.append(f"row {r}, column {column!r}: {_show(value)} is not one of {sorted(allowed)}")
        columns[column] = np.asarray(values, dtype=object)
    if errors:
        raise RequestError(f"{len(errors)} invalid value(s): {_listing(errors)}")
    return columns


def check_encoded(encoded: np.ndarray, numeric: Sequence[str], columns: Mapping[str, np.ndarray]) -> None:
    """Rejects finite inputs that the preprocessing cannot represent (float32 overflow).

    Args:
        encoded: The preprocessor's output; its first ``len(numeric)`` columns are the numeric inputs.
        numeric: The numeric column names, in the preprocessor's order.
        columns: The raw inputs, to quote the offending values.

    Raises:
        RequestError: Naming each row and column out of range.
    """
    rows, cols = np.nonzero(~np.isfinite(encoded[:, : len(numeric)]))
    if rows.size:
        errors = [f"row {r}, column {numeric[c]!r}: {columns[numeric[c]][r]:g}" for r, c in zip(rows, cols)]
        raise RequestError(f"values too large for the model (they overflow its float32 input): {_listing(errors)}")


def check_output(probabilities: np.ndarray) -> None:
    """Rejects a request whose rows give a non-finite probability: a NaN never leaves the server.

    Raises:
        RequestError: Naming the rows.
    """
    rows = np.flatnonzero(~np.isfinite(probabilities))
    if rows.size:
        raise RequestError(
            f"rows {rows[:MAX_LISTED].tolist()}{' and more' if rows.size > MAX_LISTED else ''} give no finite "
            "probability: their values are too extreme for the model"
        )


def _epoch_seconds(value: Any) -> float:
    """An ISO-8601 time (naive means UTC) as epoch seconds; ``ValueError`` otherwise."""
    import datetime as dt

    if not isinstance(value, str):
        raise ValueError("not a string")
    parsed = dt.datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def _id_values(names: list, rows: list, column: str, kind: str, errors: list[str], required: bool) -> list:
    """The ids of ``column`` (``kind`` "int" or "str"); ``None`` where absent and not required."""
    if column not in names:
        if required:
            raise RequestError(f"'data.names' lacks {column!r}: send the row's own fields with its {column}, "
                               "or every model input")
        return [None] * len(rows)
    i, out = names.index(column), []
    for r, row in enumerate(rows):
        value = row[i]
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) and not (
                    isinstance(value, float) and value.is_integer()):
                errors.append(f"row {r}, column {column!r}: expected an integer id, got {_described(value)}")
                out.append(0)
            else:
                out.append(int(value))
        else:
            if value is None and not required:
                out.append(None)
            elif isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
                errors.append(f"row {r}, column {column!r}: expected a non-empty id, got {_described(value)}")
                out.append(None)
            else:
                out.append(str(value))
    return out


def row_columns(
    message: Any, numeric: Sequence[str], categories: Mapping[str, Sequence[str]], received_at: float,
    ids: Mapping[str, tuple[str, bool]], event_time: str,
) -> tuple[dict[str, np.ndarray], dict[str, list], list[float]]:
    """A caller's row form: the row's own fields, its entity ids and its time.

    Args:
        message: The parsed JSON body: the row's fields, its ids and optionally its event time.
        numeric: The row's numeric fields the model (or its request features) needs.
        categories: Categorical field -> the levels the model was fitted on.
        received_at: When the request arrived (epoch seconds): the time of rows without ``event_time``.
        ids: Id column -> (kind "int" or "str", required).
        event_time: The column holding the row's time (ISO 8601).

    Returns:
        The checked columns (as :func:`model_columns`), id column -> one id per row (``None``
        where an optional id was not sent), and each row's time (epoch seconds).

    Raises:
        RequestError: Naming each row and field at fault (the first ten).
    """
    names, rows = names_and_rows(message)
    errors: list[str] = []
    found = {column: _id_values(names, rows, column, kind, errors, required)
             for column, (kind, required) in ids.items()}
    columns = model_columns(message, list(numeric), categories)
    times = [received_at] * len(rows)
    if event_time in names:
        i = names.index(event_time)
        for r, row in enumerate(rows):
            if row[i] is None:
                continue
            try:
                times[r] = _epoch_seconds(row[i])
            except (ValueError, TypeError, OverflowError):
                errors.append(f"row {r}, column {event_time!r}: {_show(row[i])} is not an ISO-8601 time "
                              "(e.g. 2026-11-23T10:00:00Z)")
    if errors:
        raise RequestError(f"{len(errors)} invalid value(s): {_listing(errors)}")
    return columns, found, times
