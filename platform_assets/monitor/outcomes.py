"""Outcome files: the labels that became known on a day, landed days after the rows they label.

Plain functions, no Dagster. For a source whose label arrives later (a declared
``label_time``), a file ``outcomes_YYYY-MM-DD.csv`` holds one row per key whose
outcome became known that day: the source's key, its label (0 or 1) and its
label time (on or before the file's day), named as the source names them. Every
data row becomes an outcome or a rejected row with its reason (``file:row:
column: why``); a second outcome for the same key (in the file or on an earlier
day) is rejected, never overwrites the first.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from platform_assets.declarations import Source, UseCase
from platform_assets.sql import quoted
from platform_assets.text import storable

FILE_PATTERN = re.compile(r"^outcomes_(\d{4}-\d{2}-\d{2})\.csv$")
# A byte that is not UTF-8, as ``surrogateescape`` decodes it.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


@dataclass
class OutcomeFile:
    """One outcome file of a day and what became of its rows."""

    path: str
    sha256: str
    rows: int  # data rows counted from the bytes (lines after the header, blank lines left out)
    outcomes: pd.DataFrame
    rejected: list[dict] = field(default_factory=list)


def day_files(outcomes_dir: Path, day: str) -> list[Path]:
    """The outcome file(s) of ``day``."""
    path = Path(outcomes_dir) / f"outcomes_{day}.csv"
    return [path] if path.exists() else []


def landed_days(outcomes_dir: Path) -> list[str]:
    """Days with an outcome file, in order."""
    root = Path(outcomes_dir)
    if not root.exists():
        return []
    return sorted(m.group(1) for p in root.iterdir() if (m := FILE_PATTERN.match(p.name)))


def count_rows(data: bytes) -> int:
    """Data rows of a CSV file from its bytes: non-blank lines after the header."""
    lines = [line for line in data.splitlines() if line.strip()]
    return max(len(lines) - 1, 0)


def _reject(path: str, row: int, reason: str, day: str) -> dict:
    return {"_source_file": path, "_source_row": row, "reason": reason, "_partition": day}


def outcome_columns(source: Source) -> tuple[str, str, str]:
    """The columns of an outcome file of ``source``: its key, label and label time."""
    if not (source.label and source.label_time):
        raise ValueError(f"source {source.name}: outcome files need a declared label and label_time")
    return source.key, source.label, source.label_time


def _iso_day(text: str) -> str:
    """The day of an ISO time as ``YYYY-MM-DD`` ("" when ``text`` is not one)."""
    try:
        return dt.datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        return ""


def _data_rows(data: bytes) -> tuple[list[str], list[tuple[list[str], str]]]:
    """The header and the data rows of a CSV file's bytes, each row with why its shape or text is bad ("" when not).

    Bytes that are not UTF-8 are kept as escapes (``surrogateescape``) to be named, not to fail the file;
    blank lines are not rows (as :func:`count_rows` counts).
    """
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    records = (r for r in csv.reader(io.StringIO(text, newline="")) if r and (len(r) > 1 or r[0].strip()))
    header = next(records, [])
    rows = []
    for fields in records:
        why = "" if len(fields) == len(header) else f"row: {len(fields)} fields where the header has {len(header)}"
        for column, value in zip(header, fields):
            if not why and (escaped := _ESCAPED_BYTE.search(value)):
                why = (f"{storable(column)}: not UTF-8 text (byte 0x{ord(escaped.group()) - 0xDC00:02x} at character "
                       f"{escaped.start() + 1})")
        rows.append(((fields + [""] * len(header))[: len(header)], why))
    return header, rows


def read_outcome_file(path: Path, day: str, source: Source) -> OutcomeFile:
    """Parses and checks one outcome file of ``day`` for ``source``.

    A row is rejected with its reason (``column: why``): a field count other than the
    header's, bytes that are not UTF-8, a missing key, a label not 0 or 1, a label time
    that is not one or is after ``day``, a second outcome for a key.

    Raises:
        ValueError: When the file lacks a required column (names the file and the columns).
    """
    columns = outcome_columns(source)
    key_column, label_column, time_column = columns
    data = Path(path).read_bytes()
    name = storable(str(path))
    header, parsed = _data_rows(data)
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{name}: missing columns {missing} (an outcome file has {list(columns)})")
    # A repeated header name: the first column of that name counts.
    unique = [c if c not in header[:i] else f"{c}.{i}" for i, c in enumerate(header)]
    table = pd.DataFrame([fields for fields, _ in parsed], columns=unique, dtype=object).astype(str)
    table = table.assign(_source_row=range(1, len(table) + 1))
    ends = pd.Timestamp(day) + pd.Timedelta(days=1)
    label_ts = pd.to_datetime(table[time_column].str.strip(), errors="coerce", format="mixed", utc=True)
    label_ts = label_ts.dt.tz_localize(None)
    key = table[key_column].str.strip()
    label = table[label_column].str.strip()
    reasons = pd.Series([f"; {why}" if why else "" for _, why in parsed], index=table.index, dtype=object)
    reasons[key == ""] += f"; {key_column}: missing"
    not_binary = ~label.isin(["0", "1"])
    reasons[not_binary] += f"; {label_column}: " + label[not_binary].map(storable).str.slice(0, 40).radd("not 0 or 1: ")
    # A time past pandas' range (9999-12-31) is still a time, and after the day.
    late = label_ts.isna() & table[time_column].str.strip().map(lambda text: _iso_day(text) > day)
    reasons[label_ts.isna() & ~late] += f"; {time_column}: not a timestamp"
    reasons[(label_ts >= ends) | late] += f"; {time_column}: after the file's day {day}"
    duplicate = key.duplicated() & (key != "")
    first_row = table.groupby(key)["_source_row"].transform("min")
    reasons[duplicate] += f"; {key_column}: a second outcome in this file (first at row " + first_row[
        duplicate].astype(str) + ")"
    bad = reasons != ""
    rejected = [_reject(name, int(row), reason.lstrip("; "), day)
                for row, reason in zip(table.loc[bad, "_source_row"], reasons[bad])]
    outcomes = pd.DataFrame({
        key_column: key[~bad].to_numpy(),
        label_column: label[~bad].astype("int64").to_numpy(),
        time_column: label_ts[~bad].to_numpy(),
        "_source_file": name,
        "_source_row": table.loc[~bad, "_source_row"].to_numpy(),
        "_partition": day,
    })
    return OutcomeFile(name, hashlib.sha256(data).hexdigest(), count_rows(data), outcomes, rejected)


def write_day(
    con, day: str, files: list[OutcomeFile], ingested_at: dt.datetime, source: Source, schema: str
) -> dict[str, int]:
    """Replaces ``day``'s outcomes, rejected rows and file records (one transaction).

    A key whose outcome another day already holds is rejected here
    (``already known from <day>``): an outcome is a fact, recorded once.

    Returns:
        ``rows`` (counted from the files), ``outcomes`` and ``rejected``: rows = outcomes + rejected.
    """
    key_column, label_column, time_column = outcome_columns(source)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.outcomes ({quoted(key_column)} VARCHAR, "
                f"{quoted(label_column)} BIGINT, {quoted(time_column)} TIMESTAMP, _source_file VARCHAR, "
                "_source_row BIGINT, _partition VARCHAR)")
    con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.outcome_rejects (_source_file VARCHAR, _source_row BIGINT, "
                "reason VARCHAR, _partition VARCHAR)")
    con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.outcome_files (path VARCHAR, sha256 VARCHAR, rows BIGINT, "
                "outcomes BIGINT, rejected BIGINT, _partition VARCHAR, ingested_at TIMESTAMP)")
    outcomes = pd.concat([f.outcomes for f in files], ignore_index=True) if files else pd.DataFrame(
        columns=[key_column, label_column, time_column, "_source_file", "_source_row", "_partition"])
    rejected = [r for f in files for r in f.rejected]
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("_day_outcomes", outcomes)
        earlier = dict(con.execute(
            f"SELECT o.{quoted(key_column)}, min(o._partition) FROM {schema}.outcomes o JOIN _day_outcomes d "
            f"USING ({quoted(key_column)}) WHERE o._partition <> ? GROUP BY 1", [day]).fetchall())
        con.unregister("_day_outcomes")
        if earlier:
            known = outcomes[key_column].isin(earlier)
            repeated = outcomes[known]
            rejected += [_reject(path, int(row), f"{key_column}: outcome already known from {earlier[k]}", day)
                         for path, row, k in zip(repeated["_source_file"], repeated["_source_row"],
                                                 repeated[key_column])]
            outcomes = outcomes[~known]
        for table in ("outcomes", "outcome_rejects", "outcome_files"):
            con.execute(f"DELETE FROM {schema}.{table} WHERE _partition = ?", [day])
        con.register("_outcomes", outcomes)
        con.execute(f"INSERT INTO {schema}.outcomes BY NAME SELECT * FROM _outcomes")
        con.register("_rejects", pd.DataFrame(rejected, columns=["_source_file", "_source_row", "reason", "_partition"]))
        con.execute(f"INSERT INTO {schema}.outcome_rejects BY NAME SELECT * FROM _rejects")
        per_file = {f.path: [r["_source_file"] for r in rejected].count(f.path) for f in files}
        listing = pd.DataFrame([{"path": f.path, "sha256": f.sha256, "rows": f.rows,
                                 "outcomes": int((outcomes["_source_file"] == f.path).sum()),
                                 "rejected": per_file[f.path], "_partition": day, "ingested_at": ingested_at}
                                for f in files],
                               columns=["path", "sha256", "rows", "outcomes", "rejected", "_partition", "ingested_at"])
        con.register("_listing", listing)
        con.execute(f"INSERT INTO {schema}.outcome_files BY NAME SELECT * FROM _listing")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return {"rows": sum(f.rows for f in files), "outcomes": len(outcomes), "rejected": len(rejected)}


def write_outcome_files(outcomes: pd.DataFrame, outcomes_dir: Path, source: Source) -> list[Path]:
    """Writes one ``outcomes_YYYY-MM-DD.csv`` per day the outcomes became known (by label time), atomically."""
    columns = outcome_columns(source)
    outcomes_dir = Path(outcomes_dir)
    outcomes_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for day, part in outcomes.groupby(outcomes[columns[2]].dt.date, sort=True):
        path = outcomes_dir / f"outcomes_{day.isoformat()}.csv"
        tmp = path.with_name(f".{path.name}.tmp")
        part[list(columns)].to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        tmp.replace(path)
        paths.append(path)
    return paths


def labels_query(tables: set[str], use_case: UseCase) -> str:
    """The known outcome of each row (key as text, label, ``label_ts``): from outcome files when present,
    else the row's own (a row without a declared label time knows its label from its event time)."""
    source, key, label = use_case.source, quoted(use_case.source.key), quoted(use_case.label)
    label_time = quoted(source.label_time or source.event_time)
    inline = (f"SELECT CAST({key} AS VARCHAR) AS {key}, {label}, {label_time} AS label_ts "
              f"FROM {source.validated_table} WHERE {label} IS NOT NULL")
    outcomes = use_case.monitor_table("outcomes")
    if not source.label_time or outcomes not in tables:
        return inline
    return (
        f"SELECT {key}, {label}, {label_time} AS label_ts FROM {outcomes} UNION ALL "
        f"SELECT * FROM ({inline}) WHERE {key} NOT IN (SELECT {key} FROM {outcomes})"
    )
