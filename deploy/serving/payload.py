"""Checks of prediction requests: a caller's mistake becomes one message naming the field and the rows.

Plain Python and numpy (no Seldon), so the rules hold whichever server runs the
model. The accepted request is Seldon's JSON message with named columns::

    {"data": {"names": ["income", ...], "ndarray": [[52000.0, ...], ...]}}

Numeric columns take JSON numbers only, finite ones (Python's JSON parser reads
``NaN``, ``Infinity`` and ``1e400`` as non-finite floats); categorical columns
take one of the levels the preprocessor was fitted on. Extra columns are ignored.

The columns read are held to the source's declared rules (``rules`` in its
declaration: the bounds its schema quarantines rows by), ids to what the platform
stores (integers within signed 64 bits, Unicode text of bounded length), and event
times to what it partitions (from the partitions' first day to now).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import reprlib
from collections import Counter
from contextvars import ContextVar
from typing import Any, Mapping, Sequence

import numpy as np
import orjson

from platform_assets.declarations import CLOCK_SKEW_S

MAX_LISTED = 10  # errors listed in one message: enough to fix a batch, short enough to read
MAX_VALUE_CHARS = 40  # a caller's value is echoed at most this long
EXAMPLE = '{"data": {"names": ["col", ...], "ndarray": [[value, ...], ...]}}'
MAX_JSON_DEPTH = 1024  # orjson's own nesting limit; Python's parser would exhaust the stack past it
MAX_ID_CHARS = 256  # a string id (a key, a request id) longer than this is not an id: refused, never logged
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # integer ids are stored as BIGINT (DuckDB, Feast's Int64)
# A caller's clock may run ahead of the server's: an event time up to CLOCK_SKEW_S past the moment the
# request arrived is taken as a time of now; beyond it the time is in the future and refused.

# The request's traffic: the server sets it from the X-Platform-Traffic header before the model scores
# (``SMOKE_TRAFFIC`` for the platform's own smoke tests and checks, which the router never forwards).
TRAFFIC_HEADER = "x-platform-traffic"
SMOKE_TRAFFIC = "smoke"
traffic: ContextVar[str | None] = ContextVar("platform_traffic", default=None)
# The X-Request-Id the router gives every request: the request id of a request without ``meta.puid``,
# so that the id a caller got back from the router is the one its rows are logged under.
REQUEST_ID_HEADER = "x-request-id"
header_request_id: ContextVar[str | None] = ContextVar("header_request_id", default=None)

_DATA_FIELDS = frozenset({"names", "ndarray"})
_short = reprlib.Repr()
_short.maxlevel, _short.maxlist, _short.maxdict, _short.maxstring = 2, 4, 4, MAX_VALUE_CHARS


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
    if isinstance(value, (list, dict)):
        return _short.repr(value)  # bounded: a deeply nested value would exhaust repr's stack
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"  # Python refuses str() of one over 4300 digits
    text = repr(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


def _described(value: Any) -> str:
    """Type and value of a caller's value: ``string 'abc'``, ``boolean true``, ``null``."""
    return "null" if value is None else f"{_kind(value)} {_show(value)}"


def _listing(errors: list[str]) -> str:
    """The first :data:`MAX_LISTED` errors, and how many more there are."""
    more = len(errors) - MAX_LISTED
    return "; ".join(errors[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


def decode_json(body: bytes) -> Any:
    """A request body parsed as JSON, or a message saying what is wrong with it.

    orjson reads strict JSON; what it refuses is read again by Python's parser, which also
    takes ``NaN``, ``Infinity`` and lone surrogates (the checks of the values name those).

    Raises:
        RequestError: If the body is not UTF-8, not JSON, or nests deeper than :data:`MAX_JSON_DEPTH`.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise RequestError(f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the request body is not UTF-8 text (byte 0x{body[exc.start]:02x} at position "
                           f"{exc.start}): send JSON encoded as UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise RequestError(f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise RequestError(f"the request body is not JSON: {exc}") from None


def text_problem(text: str, column: str) -> str | None:
    """The rule an id's text breaks (valid Unicode, at most :data:`MAX_ID_CHARS`), or ``None``."""
    if len(text) > MAX_ID_CHARS:
        return f"{column} has at most {MAX_ID_CHARS} characters (it has {len(text)})"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{column} is Unicode text (a lone surrogate at character {exc.start})"
    return None


def sane_request_id(text: str) -> bool:
    """Whether an ``X-Request-Id`` is a token to keep: 1 to 128 printable ASCII characters, no space."""
    return 0 < len(text) <= 128 and text.isascii() and text.isprintable() and " " not in text


def request_id(message: Any) -> str | None:
    """The caller's request id, ``meta.puid``, checked as an id; else the request's ``X-Request-Id``
    (:data:`header_request_id`) if it is a sane token; ``None`` when neither was sent.

    Raises:
        RequestError: If ``meta`` is not an object, or the id is not text the log can hold.
    """
    meta = message.get("meta") if isinstance(message, dict) else None
    if meta is not None and not isinstance(meta, dict):
        raise RequestError(f"'meta' must be an object, got {_kind(meta)}")
    puid = (meta or {}).get("puid")
    if not isinstance(puid, str) or not puid.strip():
        header = header_request_id.get()
        return header if header is not None and sane_request_id(header) else None
    problem = text_problem(puid, "meta.puid")
    if problem:
        raise RequestError(f"'meta.puid': {_show(puid)} violates {problem}")
    return puid


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
    unread = sorted(data.keys() - _DATA_FIELDS)
    if unread:
        raise RequestError(f"'data' has fields {unread} this model does not read; send 'names' and 'ndarray' only")
    names = data.get("names")
    if not isinstance(names, list) or not names:
        raise RequestError(f"'data.names' must be a non-empty list of column names, got {_described(names)}")
    bad = [i for i, name in enumerate(names) if not isinstance(name, str) or not name.strip()]
    if bad:
        raise RequestError(f"'data.names' entries {bad[:MAX_LISTED]} are not column names (empty or not a string)")
    repeated = len(set(names)) < len(names) and sorted(name for name, count in Counter(names).items() if count > 1)
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


def _rule_errors(rules, column: str, values: Sequence, skip: set, errors: list[str]) -> None:
    """Appends the declared rule each value of ``column`` breaks (rows in ``skip`` already failed)."""
    rule = rules.fields.get(column) if rules is not None else None
    if rule is None:
        return
    for r, value in enumerate(values):
        broken = None if r in skip else rule.broken(column, value)
        if broken:
            skip.add(r)
            errors.append(f"row {r}, column {column!r}: {_show(value)} violates {broken}")


def _one_row(names: list, row: list, numeric: Sequence[str], categories: Mapping[str, Sequence[str]],
             rules) -> dict[str, np.ndarray] | None:
    """The columns of a one-row request whose every value is valid; ``None`` when any is not (then
    :func:`_checked_columns` names each mistake). Most requests are one valid row: this is their path."""
    fields = rules.fields if rules is not None else {}
    columns: dict[str, np.ndarray] = {}
    for column in numeric:
        value = row[names.index(column)]
        if value.__class__ is not float and value.__class__ is not int:
            return None
        try:
            number = float(value)
        except OverflowError:
            return None
        rule = fields.get(column)
        if not math.isfinite(number) or rule is not None and not rule.keeps(value):
            return None
        columns[column] = np.array([number])
    for column, levels in categories.items():
        value = row[names.index(column)]
        rule = fields.get(column)
        if value is None or isinstance(value, (list, dict)) or rule is not None and not rule.keeps(value) \
                or str(value) not in levels:
            return None
        columns[column] = np.array([value], dtype=object)
    for rule in rules.rows if rules is not None else ():
        if all(c in columns for c in rule.columns):
            with quiet_numpy():
                if not np.asarray(rule.check(*(columns[c] for c in rule.columns)), dtype=bool).all():
                    return None
    return columns


def _checked_columns(names: list, rows: list, numeric: Sequence[str], categories: Mapping[str, Sequence[str]],
                     rules, errors: list[str]) -> dict[str, np.ndarray]:
    """The columns of :func:`model_columns`; each bad value appended to ``errors``."""
    if len(rows) == 1 and (columns := _one_row(names, rows[0], numeric, categories, rules)) is not None:
        return columns
    columns: dict[str, np.ndarray] = {}
    failed: dict[str, set] = {}  # column -> rows whose value failed a check
    for column in numeric:
        i, values, bad = names.index(column), np.zeros(len(rows)), failed.setdefault(column, set())
        raw = [row[i] for row in rows]
        for r, value in enumerate(raw):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors.append(f"row {r}, column {column!r}: expected a number, got {_described(value)}")
                bad.add(r)
                continue
            try:
                values[r] = float(value)
            except OverflowError:  # an integer beyond the largest double
                values[r] = math.inf
            if not math.isfinite(values[r]):
                errors.append(f"row {r}, column {column!r}: {_show(value)} is not a finite number")
                bad.add(r)
        _rule_errors(rules, column, raw, bad, errors)
        columns[column] = values
    for column, levels in categories.items():
        i, allowed, bad = names.index(column), set(levels), failed.setdefault(column, set())
        values = [row[i] for row in rows]
        _rule_errors(rules, column, values, bad, errors)
        for r, value in enumerate(values):
            # str(): the preprocessor compares levels as text (network.Preprocessor.transform)
            if r not in bad and (value is None or isinstance(value, (list, dict)) or str(value) not in allowed):
                errors.append(f"row {r}, column {column!r}: {_show(value)} is not one of {sorted(allowed)}")
        columns[column] = np.asarray(values, dtype=object)
    for rule in rules.rows if rules is not None else ():
        if not all(c in columns for c in rule.columns):
            continue  # a rule across columns this request does not use
        with np.errstate(all="ignore"):
            kept = np.asarray(rule.check(*(columns[c] for c in rule.columns)), dtype=bool)
        for r in np.flatnonzero(~kept):
            if not any(r in failed[c] for c in rule.columns):
                shown = ", ".join(f"{c} {_show(rows[r][names.index(c)])}" for c in rule.columns)
                errors.append(f"row {r}: {shown} violate {rule.name} ({rule.text})")
    return columns


def model_columns(
    message: Any, numeric: Sequence[str], categories: Mapping[str, Sequence[str]], rules=None,
) -> dict[str, np.ndarray]:
    """The model's input columns from a request, every value checked.

    Args:
        message: The parsed JSON body.
        numeric: Columns that must hold finite JSON numbers.
        categories: Categorical column -> the levels the model was fitted on.
        rules: The source's declared rules (``declarations.Rules``), if any: a value that breaks
            one of its column (or a row that breaks one across columns) is refused, naming the rule.

    Returns:
        Column -> values: float64 arrays for numeric columns, object arrays for categorical ones.

    Raises:
        RequestError: Naming the field, and for bad values each row and column (the first ten).
    """
    return checked_model_columns(*names_and_rows(message), numeric, categories, rules)


def checked_model_columns(names: list, rows: list, numeric: Sequence[str], categories: Mapping[str, Sequence[str]],
                          rules=None) -> dict[str, np.ndarray]:
    """:func:`model_columns` of a request's names and rows already checked for shape (:func:`names_and_rows`)."""
    needed = [*numeric, *categories]
    missing = [c for c in needed if c not in names]
    if missing:
        raise RequestError(_missing_columns(missing, names, needed))
    errors: list[str] = []
    columns = _checked_columns(names, rows, numeric, categories, rules, errors)
    if errors:
        raise RequestError(f"{len(errors)} invalid value(s): {_listing(errors)}")
    return columns


if hasattr(np, "seterrobj"):  # numpy 1.x: errstate costs a tenth of a one-row request's scoring
    with np.errstate(over="ignore", invalid="ignore"):
        _QUIET_MASK = np.geterrobj()[1]


class quiet_numpy:
    """``np.errstate(over="ignore", invalid="ignore")``, cheaply: overflow and invalid values are
    checked after (:func:`check_encoded`, :func:`check_output`) and answered 400, never warned of."""

    def __enter__(self):
        if not hasattr(np, "seterrobj"):  # numpy 2: errstate is a cheap context variable
            self._state = np.errstate(over="ignore", invalid="ignore")
            return self._state.__enter__()
        self._saved = np.geterrobj()
        np.seterrobj([self._saved[0], _QUIET_MASK, self._saved[2]])
        return self

    def __exit__(self, *exc):
        if hasattr(self, "_state"):
            return self._state.__exit__(*exc)
        np.seterrobj(self._saved)
        return False


def check_encoded(encoded: np.ndarray, numeric: Sequence[str], columns: Mapping[str, np.ndarray]) -> None:
    """Rejects finite inputs that the preprocessing cannot represent (float32 overflow).

    Args:
        encoded: The preprocessor's output; its first ``len(numeric)`` columns are the numeric inputs.
        numeric: The numeric column names, in the preprocessor's order.
        columns: The raw inputs, to quote the offending values.

    Raises:
        RequestError: Naming each row and column out of range.
    """
    finite = np.isfinite(encoded[:, : len(numeric)])
    if finite.all():
        return
    rows, cols = np.nonzero(~finite)
    if rows.size:
        errors = [f"row {r}, column {numeric[c]!r}: {columns[numeric[c]][r]:g}" for r, c in zip(rows, cols)]
        raise RequestError(f"values too large for the model (they overflow its float32 input): {_listing(errors)}")


def check_output(probabilities: np.ndarray) -> None:
    """Rejects a request whose rows give a non-finite probability: a NaN never leaves the server.

    Raises:
        RequestError: Naming the rows.
    """
    finite = np.isfinite(probabilities)
    if finite.all():
        return
    rows = np.flatnonzero(~finite)
    if rows.size:
        raise RequestError(
            f"rows {rows[:MAX_LISTED].tolist()}{' and more' if rows.size > MAX_LISTED else ''} give no finite "
            "probability: their values are too extreme for the model"
        )


def _epoch_seconds(value: Any) -> float:
    """An ISO-8601 time (naive means UTC) as epoch seconds; ``ValueError`` otherwise."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    parsed = dt.datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def _id_values(names: list, rows: list, column: str, kind: str, errors: list[str], required: bool, rules) -> list:
    """The ids of ``column`` (``kind`` "int" or "str"); ``None`` where absent and not required.

    Integer ids must fit signed 64 bits, string ids be Unicode text of at most :data:`MAX_ID_CHARS`
    characters (what the log, the warehouse and the feature store hold), both keep the declared rules.
    """
    if column not in names:
        if required:
            raise RequestError(f"'data.names' lacks {column!r}: send the row's own fields with its {column}, "
                               "or every model input")
        return [None] * len(rows)
    i, out, bad = names.index(column), [], set()
    for r, row in enumerate(rows):
        value, problem = row[i], None
        if value is None and not required:
            out.append(None)
            continue
        if kind == "int":
            if isinstance(value, bool) or not (isinstance(value, int) or isinstance(value, float) and value.is_integer()):
                problem = f"expected an integer id, got {_described(value)}"
        elif isinstance(value, bool) or not isinstance(value, (str, int)) or isinstance(value, str) and not value.strip():
            problem = f"expected a non-empty id, got {_described(value)}"
        if problem is None and not isinstance(value, str) and not INT64_MIN <= value <= INT64_MAX:
            problem = f"{_show(value)} violates {INT64_MIN} <= {column} <= {INT64_MAX} (ids are signed 64-bit integers)"
        if problem is None and isinstance(value, str) and (broken := text_problem(value, column)):
            problem = f"{_show(value)} violates {broken}"
        if problem is not None:
            errors.append(f"row {r}, column {column!r}: {problem}")
            bad.add(r)
            out.append(None)
        else:
            out.append(int(value) if kind == "int" else str(value))
    _rule_errors(rules, column, out, bad | {r for r, value in enumerate(out) if value is None}, errors)
    return out


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def row_columns(
    message: Any, numeric: Sequence[str], categories: Mapping[str, Sequence[str]], received_at: float,
    ids: Mapping[str, tuple[str, bool]], event_time: str, rules=None, earliest: float | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list], list[float]]:
    """A caller's row form: the row's own fields, its entity ids and its time.

    Every id is checked here, before any lookup uses it.

    Args:
        message: The parsed JSON body: the row's fields, its ids and optionally its event time.
        numeric: The row's numeric fields the model (or its request features) needs.
        categories: Categorical field -> the levels the model was fitted on.
        received_at: When the request arrived (epoch seconds): the time of rows without ``event_time``,
            and "now" for the event times sent (at most :data:`CLOCK_SKEW_S` later).
        ids: Id column -> (kind "int" or "str", required).
        event_time: The column holding the row's time (ISO 8601).
        rules: The source's declared rules, if any (see :func:`model_columns`).
        earliest: The first moment the platform partitions (epoch seconds): an earlier event time is refused.

    Returns:
        The checked columns (as :func:`model_columns`), id column -> one id per row (``None``
        where an optional id was not sent), and each row's time (epoch seconds).

    Raises:
        RequestError: Naming each row and field at fault, and the rule (the first ten).
    """
    names, rows = names_and_rows(message)
    errors: list[str] = []
    found = {column: _id_values(names, rows, column, kind, errors, required, rules)
             for column, (kind, required) in ids.items()}
    needed = [*numeric, *categories]
    missing = [c for c in needed if c not in names]
    if missing:
        raise RequestError(_missing_columns(missing, names, needed))
    columns = _checked_columns(names, rows, numeric, categories, rules, errors)
    times = [received_at] * len(rows)
    if event_time in names:
        i, latest = names.index(event_time), received_at + CLOCK_SKEW_S
        for r, row in enumerate(rows):
            if row[i] is None:
                continue
            try:
                when = _epoch_seconds(row[i])
            except (ValueError, TypeError, OverflowError):
                errors.append(f"row {r}, column {event_time!r}: {_show(row[i])} is not an ISO-8601 time "
                              "(e.g. 2026-11-23T10:00:00Z)")
                continue
            if earliest is not None and when < earliest:
                errors.append(f"row {r}, column {event_time!r}: {_show(row[i])} violates {event_time} >= "
                              f"{_iso(earliest)} (the first day the platform partitions)")
            elif when > latest:
                errors.append(f"row {r}, column {event_time!r}: {_show(row[i])} violates {event_time} <= now + "
                              f"{CLOCK_SKEW_S:g} s (not in the future; now is {_iso(received_at)})")
            else:
                times[r] = when
    if errors:
        raise RequestError(f"{len(errors)} invalid value(s): {_listing(errors)}")
    return columns, found, times
