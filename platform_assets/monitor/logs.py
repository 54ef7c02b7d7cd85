"""Reading the model server's inference log files: every line counted, kept or rejected with a reason.

Plain functions, no Dagster. The server writes one JSON object per scored row
to ``<inference dir>/day=YYYY-MM-DD/<host>-<pid>-<hour>.jsonl`` (see
``deploy/serving/inference_log.py``); a day's files are ingested together, like
the landing files of that day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from platform_assets.declarations import CLOCK_SKEW_S
from platform_assets.sql import quoted
from platform_assets.text import storable

# Every line must carry these, not null; the model inputs vary with the model and are kept as they come.
REQUIRED = ("request_id", "row", "served_at", "event_ts", "model_name", "model_version", "feature_source",
            "probability")
# Every line carries these too, null where the request had none: the use case's ids
# (:meth:`~platform_assets.declarations.UseCase.id_columns`; none when a request sent every model input).
NULLABLE = ("latency_ms",)
# How far after its serving an event may be: the clock skew the server accepts.
CLOCK_SKEW = dt.timedelta(seconds=CLOCK_SKEW_S)
# What the server writes as ``feature_source`` (``deploy/serving/PlatformModel.py``): "online", a caller's row
# completed by the server (real callers); "request", every model input sent (a smoke test, a backfill).
FEATURE_SOURCES = ("online", "request")


def log_fields(id_columns) -> tuple[str, ...]:
    """The metadata fields of a log line of a use case with these id columns (the rest are model inputs)."""
    return (*REQUIRED, *id_columns, *NULLABLE)


@dataclass
class LogFile:
    """One log file of a day: what it holds and what became of its lines."""

    path: str
    sha256: str
    lines: int
    rows: pd.DataFrame
    rejected: list[dict]


def day_files(inference_dir: Path, day: str) -> list[Path]:
    """The log files of ``day`` (``YYYY-MM-DD``), in name order."""
    return sorted((Path(inference_dir) / f"day={day}").glob("*.jsonl"))


def logged_days(inference_dir: Path) -> list[str]:
    """The days that have a log folder with at least one file."""
    days = []
    for folder in sorted(Path(inference_dir).glob("day=*")):
        if folder.is_dir() and any(folder.glob("*.jsonl")):
            days.append(folder.name.split("=", 1)[1])
    return days


def count_lines(data: bytes) -> int:
    """Lines in a file's bytes, counted from the newlines alone: a last line without one counts too."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _reject(path: str, line: int, reason: str, day: str) -> dict:
    return {"_source_file": path, "_source_line": line, "reason": reason, "_partition": day}


def unstorable(text: str) -> str | None:
    """Why a warehouse cannot store ``text`` (a lone surrogate: no UTF-8 encoding exists); ``None`` when it can.

    JSON allows it (``"\\ud800"``), Python decodes it, DuckDB refuses the whole batch that holds it.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate {text[exc.start]!r} at character {exc.start}, text a warehouse cannot store"
    return None


# Lone surrogates reach a record only through a JSON escape \uD800-\uDFFF (the line itself is strict UTF-8).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _unstorable_field(record: dict) -> str | None:
    """The first field of ``record`` (name or any value within) that a warehouse cannot store, with why."""
    for key, value in record.items():
        if why := unstorable(key):
            return f"field name {storable(key)!r}: {why}"
        pending = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, str) and (why := unstorable(item)):
                return f"{storable(key)}: {why}"
            if isinstance(item, dict):
                pending += [*item.keys(), *item.values()]
            elif isinstance(item, list):
                pending += item
    return None


def _time(value) -> dt.datetime | None:
    """A logged ISO time as a naive UTC time (an offset converted); ``None`` when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # JSON's true is no number


def _parse(raw: bytes, number: int) -> tuple[object, str | None]:
    """A line's JSON value, or why it is not one (naming the column where the text goes wrong)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"
    try:
        return json.loads(text.removeprefix("\ufeff") if number == 1 else text), None
    except json.JSONDecodeError as exc:
        return None, f"not a JSON record ({exc.msg} at column {exc.colno})"
    except (ValueError, RecursionError) as exc:  # an integer of thousands of digits, nesting past the stack
        return None, f"not a JSON record ({type(exc).__name__}: {str(exc)[:80]})"


def _problem(record, raw: bytes, day: str, id_columns: dict[str, str], today: dt.date) -> str | None:
    """Why a parsed line is not a whole, storable record of ``day``; ``None`` when it is.

    Normalises ``record``'s times in place (naive UTC ``datetime``) when it is kept.
    """
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    missing = [k for k in REQUIRED if record.get(k) is None] + [k for k in (*id_columns, *NULLABLE) if k not in record]
    if missing:
        return f"missing {missing}"
    if _SURROGATE_ESCAPE.search(raw) and (why := _unstorable_field(record)):
        return why
    if record["feature_source"] not in FEATURE_SOURCES:
        return f"feature_source {record['feature_source']!r} is not one of {list(FEATURE_SOURCES)}"
    event, served = _time(record["event_ts"]), _time(record["served_at"])
    for column, moment in (("event_ts", event), ("served_at", served)):
        if moment is None:
            return f"{column}: {storable(repr(record[column]))[:60]} is not an ISO time"
    if served.date() > today:
        return f"served_at: {record['served_at']!r} is after today ({today})"
    if event > served + CLOCK_SKEW:
        return f"event_ts: {record['event_ts']!r} is after it was served ({record['served_at']!r})"
    if event.date().isoformat() != day:
        return f"event_ts {record['event_ts']!r} is not of the file's day {day}"
    if not (_number(record["row"]) and isinstance(record["row"], int) and 0 <= record["row"] < 2**63):
        return f"row: {record['row']!r} is not a row number"
    for column in ("probability", *([] if record["latency_ms"] is None else ["latency_ms"])):
        if not _number(record[column]):
            return f"{column}: {storable(repr(record[column]))[:60]} is not a number"
    for column in (c for c, kind in id_columns.items() if kind == "int"):
        value = record[column]
        if value is not None and not (_number(value) and -2**63 <= value < 2**63 and float(value).is_integer()):
            return f"{column}: {storable(repr(value))[:60]} is not a 64-bit integer id"
    record["event_ts"], record["served_at"] = event, served
    return None


_KIND_ORDER = ("number", "text", "boolean")  # a tie for the most common kind of a field goes to the first


def _kind(value) -> str | None:
    """The JSON kind of a logged value (``None`` for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if _number(value):
        return "number"
    return "text" if isinstance(value, str) else "array or object"


def _odd_kinds(records: list[dict], known: set[str]) -> dict[int, str]:
    """Lines (index -> reason) whose value of a model-input field is of another JSON kind than the file's other
    lines have for it (a number where the rest have text, say), or is an array or object: a column holds one kind.
    """
    fields = {k for record in records for k in record if k not in known}
    odd: dict[int, str] = {}
    for field in sorted(fields):
        kinds = [_kind(record.get(field)) for record in records]
        counts = {k: kinds.count(k) for k in _KIND_ORDER}
        usual = max(_KIND_ORDER, key=lambda k: (counts[k], -_KIND_ORDER.index(k)))
        for i, kind in enumerate(kinds):
            if kind is not None and kind != usual and i not in odd:
                shown = storable(repr(records[i][field]))[:60]
                odd[i] = (f"{field}: {kind} {shown} is not a logged value" if kind == "array or object" else
                          f"{field}: {kind} {shown} where the file's other lines have a {usual}")
    return odd


def read_log_file(path: Path, day: str, id_columns: dict[str, str], today: dt.date | None = None) -> LogFile:
    """Parses one log file; a line that is not a whole, well-formed, storable record of ``day`` is rejected.

    Args:
        path: The file.
        day: Its day.
        id_columns: The use case's id columns (column -> "str" or "int"), present on every line.
        today: The day of the ingestion (default: today, UTC): nothing can have been served after it.

    Returns:
        The file's hash and line count (from its bytes), its records (one row per
        line, with ``_source_file``, ``_source_line`` and ``_partition``) and the
        rejected lines with their reasons, each naming the field or column where
        the line goes wrong: a torn last line after a crash, bytes that are not
        UTF-8, text a warehouse cannot store (a lone surrogate), a record without
        a required field or with an unknown ``feature_source``, a time that is not
        one, an event after it was served (beyond clock skew) or served after today, an
        event not of ``day``, or a model input of another JSON kind than in the file's other lines.
    """
    data = Path(path).read_bytes()
    today = today or dt.datetime.now(dt.timezone.utc).date()
    records, rejected = [], []
    name = storable(str(path))
    # Split on newlines alone, as count_lines counts them (bytes.splitlines would also split on a lone \r).
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        record, why = _parse(raw, number)
        if why is None:
            why = _problem(record, raw, day, id_columns, today)
        if why is not None:
            rejected.append(_reject(name, number, why, day))
            continue
        record.update(_source_file=name, _source_line=number, _partition=day)
        records.append(record)
    odd = _odd_kinds(records, {*log_fields(id_columns), "role", "_source_file", "_source_line", "_partition"})
    rejected += [_reject(name, records[i]["_source_line"], why, day) for i, why in odd.items()]
    rejected.sort(key=lambda r: r["_source_line"])
    records = [r for i, r in enumerate(records) if i not in odd]
    rows = pd.DataFrame.from_records(records)
    if len(rows):
        # Text columns typed as text even when every value of a file is null (a smoke test has no ids).
        text = [c for c, kind in id_columns.items() if kind == "str"]
        for column in ("request_id", "model_name", "feature_source", *text):
            rows[column] = rows[column].astype("string")
        rows["served_at"] = pd.to_datetime(rows["served_at"])
        rows["event_ts"] = pd.to_datetime(rows["event_ts"])
        rows["model_version"] = rows["model_version"].astype(str)
        for column in (c for c, kind in id_columns.items() if kind == "int"):
            rows[column] = pd.array(rows[column], dtype="Int64")
    return LogFile(name, hashlib.sha256(data).hexdigest(), count_lines(data), rows, rejected)


def add_missing_columns(con, table: str, frame: pd.DataFrame) -> None:
    """Adds to ``table`` the columns of ``frame`` it lacks (a new model may log a new input)."""
    have = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    con.register("_new_columns", frame.head(0))
    try:
        for name, kind, *_ in con.execute("DESCRIBE _new_columns").fetchall():
            if name not in have:  # a field name is the logger's text: quoted as an identifier
                con.execute(f"ALTER TABLE {table} ADD COLUMN {quoted(name)} {kind}")
    finally:
        con.unregister("_new_columns")


_NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "DECIMAL")


def fit_to_table(con, table: str, rows: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """``rows`` less the ones a numeric column of ``table`` cannot hold (text where it holds numbers), and those
    rows as rejects naming the column: a day's file cannot make the whole day's ingestion fail."""
    types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    bad = pd.Series(False, index=rows.index)
    reasons = pd.Series("", index=rows.index)
    for column in rows.columns:
        kind = types.get(column, "")
        if not kind.startswith(_NUMERIC_TYPES) or rows[column].dtype.kind in "biuf":
            continue
        values = rows[column]
        clash = values.notna() & ~values.map(_number)
        reasons[clash & ~bad] = [f"{column}: {storable(repr(v))[:60]} where the warehouse holds numbers ({kind})"
                                 for v in values[clash & ~bad]]
        bad |= clash
    rejects = [_reject(f, int(n), why, p) for f, n, why, p in
               zip(rows.loc[bad, "_source_file"], rows.loc[bad, "_source_line"], reasons[bad], rows.loc[bad, "_partition"])]
    kept = rows[~bad].copy()
    for column in kept.columns:  # what is left of a clashing column is numbers now
        if types.get(column, "").startswith(_NUMERIC_TYPES) and kept[column].dtype == object:
            kept[column] = pd.to_numeric(kept[column])
    return kept, rejects


def write_day(con, day: str, files: list[LogFile], ingested_at: dt.datetime, schema: str) -> dict[str, int]:
    """Replaces ``day``'s rows, rejected lines and file records in the ``monitor`` tables (one transaction).

    Returns:
        ``lines``, ``rows`` and ``rejected`` of the day: lines = rows + rejected.
    """
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {schema}.inference_log_files (path VARCHAR, sha256 VARCHAR, lines BIGINT, "
        "rows BIGINT, rejected BIGINT, _partition VARCHAR, ingested_at TIMESTAMP)"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {schema}.inference_log_rejects (_source_file VARCHAR, _source_line BIGINT, "
        "reason VARCHAR, _partition VARCHAR)"
    )
    kept = [f.rows for f in files if len(f.rows)]
    # A day whose every line was rejected still records its files and rejects.
    rows = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    rejects = [r for f in files for r in f.rejected]
    con.execute("BEGIN TRANSACTION")
    try:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]).fetchall()}
        if "inference_log" in tables:
            if len(rows):
                # Columns change before rows: DuckDB refuses a table altered after a delete in one transaction.
                add_missing_columns(con, f"{schema}.inference_log", rows)
                rows, clashing = fit_to_table(con, f"{schema}.inference_log", rows)
                rejects += clashing
            con.execute(f"DELETE FROM {schema}.inference_log WHERE _partition = ?", [day])
        rejected = pd.DataFrame(rejects, columns=["_source_file", "_source_line", "reason", "_partition"])
        kept_of = rows["_source_file"].value_counts() if len(rows) else pd.Series(dtype=int)
        rejected_of = rejected["_source_file"].value_counts()
        listing = pd.DataFrame(
            [{"path": f.path, "sha256": f.sha256, "lines": f.lines, "rows": int(kept_of.get(f.path, 0)),
              "rejected": int(rejected_of.get(f.path, 0)), "_partition": day, "ingested_at": ingested_at}
             for f in files],
            columns=["path", "sha256", "lines", "rows", "rejected", "_partition", "ingested_at"],
        )
        if len(rows):
            con.register("_rows", rows)
            if "inference_log" not in tables:
                con.execute(f"CREATE TABLE {schema}.inference_log AS SELECT * FROM _rows LIMIT 0")
            con.execute(f"INSERT INTO {schema}.inference_log BY NAME SELECT * FROM _rows")
            con.unregister("_rows")
        con.execute(f"DELETE FROM {schema}.inference_log_rejects WHERE _partition = ?", [day])
        con.execute(f"DELETE FROM {schema}.inference_log_files WHERE _partition = ?", [day])
        con.register("_rejected", rejected)
        con.execute(f"INSERT INTO {schema}.inference_log_rejects BY NAME SELECT * FROM _rejected")
        con.register("_listing", listing)
        con.execute(f"INSERT INTO {schema}.inference_log_files BY NAME SELECT * FROM _listing")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return {"lines": int(listing["lines"].sum()), "rows": len(rows), "rejected": len(rejected)}


def unchanged_since_ingestion(con, inference_dir: Path, day: str, schema: str) -> bool:
    """Whether the warehouse already holds ``day`` as read from exactly the files there now (same paths, same hashes).

    Lets a sensor starting without a cursor skip the days a person ingested by hand.
    """
    from platform_assets.warehouse import table_names

    if f"{schema}.inference_log_files" not in table_names(con):
        return False
    recorded = dict(con.execute(f"SELECT path, sha256 FROM {schema}.inference_log_files WHERE _partition = ?",
                                [day]).fetchall())
    current = {storable(str(p)): hashlib.sha256(p.read_bytes()).hexdigest() for p in day_files(inference_dir, day)}
    return bool(current) and recorded == current


def recount_day(inference_dir: Path, day: str) -> tuple[int, int]:
    """Files and lines of ``day`` counted afresh from the files' bytes (the check's independent count)."""
    files = day_files(inference_dir, day)
    return len(files), sum(count_lines(f.read_bytes()) for f in files)
