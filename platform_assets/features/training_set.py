"""Which labelled rows a use case's training set holds: the query of its labels and the training window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from platform_assets.declarations import UseCase
from platform_assets.sql import quoted

# The column of a training row's outcome time (the label's event time in Feast's point-in-time join).
LABEL_TIME = "label_ts"

# The file each labelled row came from, and the outcome file its label came from (NULL when the row carried it):
# carried with the labelled rows up to the entity rows, then recorded with the training set and dropped.
ROW_FILE, LABEL_FILE = "_row_file", "_label_file"
LINEAGE_COLUMNS = (ROW_FILE, LABEL_FILE)
# The key of the training set's Parquet metadata that holds the files it was built from (``files_trained_on``).
LINEAGE_METADATA_KEY = b"platform.training_files"
# Where the model's MLflow run keeps that manifest.
TRAINING_FILES_ARTIFACT = "lineage/training_files.json"


def labelled_rows_sql(use_case: UseCase, with_outcome_files: bool) -> str:
    """The query of the use case's labelled rows: entity keys, event time, protected attribute, label and its time,
    and the files the row and its label came from (``LINEAGE_COLUMNS``).

    The outcome from an outcome file when one landed (monitor/outcomes), else the row's own (a history
    extract carries it); rows without either are not labelled yet. Without a declared label time, a
    label is known from the row's event time.
    """
    source = use_case.source
    label, label_time = quoted(use_case.label), quoted(source.label_time or source.event_time)
    keys = ", ".join(f"a.{quoted(k)}" for k in dict.fromkeys([*use_case.entity_keys]))
    protected = f"a.{quoted(use_case.protected_attribute)}, " if use_case.protected_attribute else ""
    columns = f"{keys}, a.{quoted(source.event_time)}, {protected}a._source_file AS {ROW_FILE}"
    if with_outcome_files and source.label_time:
        key = quoted(source.key)
        return (f"SELECT {columns}, coalesce(o.{label}, a.{label}) AS {label}, "
                f"coalesce(o.{label_time}, a.{label_time}) AS {LABEL_TIME}, "
                f"CASE WHEN o.{label} IS NOT NULL THEN o._source_file END AS {LABEL_FILE} FROM {source.validated_table} a "
                f"LEFT JOIN {use_case.monitor_table('outcomes')} o ON o.{key} = CAST(a.{key} AS VARCHAR)")
    return (f"SELECT {columns}, a.{label}, a.{label_time} AS {LABEL_TIME}, NULL::VARCHAR AS {LABEL_FILE} "
            f"FROM {source.validated_table} a")



def training_window(requested: str, previous: str | None) -> str | None:
    """The first day of the training window: ``requested``, or the previous window when empty.

    Returns:
        ``"YYYY-MM-DD"``, or ``None`` for all history.
    """
    import datetime as dt

    value = requested.strip() or (previous or "")
    if value in ("", "all"):
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"training_set config 'since': {value!r} is not a day (YYYY-MM-DD), 'all' or empty") from None


def file_listings(con, use_case: UseCase):
    """The warehouse's listing of landing files (role ``rows``) and outcome files (role ``labels``): path,
    sha256, rows and partition of each file as it was read. Taken with the labelled rows, in one connection."""
    from platform_assets.warehouse import table_names

    listings = [f"SELECT 'rows' AS role, path, sha256, rows, _partition FROM {use_case.source.landing_files_table}"]
    if use_case.monitor_table("outcome_files") in table_names(con):
        listings.append(f"SELECT 'labels' AS role, path, sha256, rows, _partition FROM "
                        f"{use_case.monitor_table('outcome_files')}")
    return con.execute(" UNION ALL ".join(listings)).df()


def labelled_rows(con, use_case: UseCase, with_outcome_files: bool):
    """The use case's labelled rows (:func:`labelled_rows_sql`) as a DataFrame, the file columns categorical:
    a path repeats over every row of its file, so they cost a code per row, not a string."""
    import pyarrow.compute as pc

    table = con.execute(labelled_rows_sql(use_case, with_outcome_files)).fetch_arrow_table()
    for name in LINEAGE_COLUMNS:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.dictionary_encode(table.column(i)))
    return table.to_pandas()


def lineage_counts(rows):
    """How many of ``rows`` (training rows with ``LINEAGE_COLUMNS``) each file gave: ``role`` (rows or
    labels), ``path`` and ``rows_used``. Counts of pieces of a training set add up (:func:`files_trained_on`)."""
    import pandas as pd

    counts = [rows[column].value_counts(dropna=True).rename_axis("path").reset_index(name="rows_used")
              .assign(role=role) for column, role in ((ROW_FILE, "rows"), (LABEL_FILE, "labels"))]
    used = pd.concat(counts, ignore_index=True)
    used["path"] = used["path"].astype(str)
    return used[used["rows_used"] > 0]  # a categorical column lists its other files too, with no rows


def files_trained_on(used, listings) -> list[dict]:
    """The landing files (``role`` rows) and outcome files (``role`` labels) whose rows the training set holds.

    Each with its partition, the sha256 and row count the warehouse listed when the rows were read
    (``file_listings``: so, the file as it was when these rows were built), and how many of the training
    set's rows it gave. ``used`` is :func:`lineage_counts` of the training set's rows (or the counts of its
    pieces, concatenated), so a window (``since``) names only its own days.
    """
    import pandas as pd

    used = used.groupby(["role", "path"], as_index=False)["rows_used"].sum()
    found = used.merge(listings.rename(columns={"rows": "file_rows", "_partition": "partition"}),
                       on=["role", "path"], how="left")
    found = found.sort_values(["role", "partition", "path"], ascending=[False, True, True], na_position="last")
    columns = ["role", "partition", "path", "sha256", "file_rows", "rows_used"]
    return [{k: (None if pd.isna(v) else int(v) if k in ("file_rows", "rows_used") else str(v))
             for k, v in row.items()} for row in found[columns].to_dict("records")]


@dataclass
class BuiltTrainingSet:
    """What :func:`build_training_file` wrote: rows per split, the labelled rows left out for want of features,
    the positive labels, the files the rows came from and the file's sha256."""

    split_rows: dict[str, int]
    rows_without_features: int
    positives: int
    files: list[dict]
    digest: str

    @property
    def rows(self) -> int:
        return sum(self.split_rows.values())


WRITE_OPTIONS = {"coerce_timestamps": "us", "allow_truncated_timestamps": True}


def build_training_file(entities, features_of: Callable, use_case: UseCase, listings, path: Path, manifest: dict,
                        fractions: tuple[float, float], chunk_rows: int) -> BuiltTrainingSet:
    """Writes the training set to ``path``: the features of ``entities`` (Feast's entity rows in time order,
    with ``LINEAGE_COLUMNS``) asked of ``features_of`` ``chunk_rows`` rows at a time, each piece appended to
    a file, then split by position in time (:class:`~platform_assets.features.training_file.SplitWriter`)
    with ``manifest`` and the files the rows came from in its metadata.

    Memory follows a piece, not the rows: the features are never all held at once. A point-in-time join
    answers each entity row on its own, so the pieces add up to the one answer of all rows.
    A row whose features the offline store does not hold yet (its day validated after the last feature
    build) cannot be trained on: it is left out and counted, never a NaN the network would learn from.
    """
    import json

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from platform_assets.features.training_file import BATCH_ROWS, SplitWriter, sha256_of

    key = use_case.source.key
    unsplit = path.with_name(f".{path.name}.unsplit")
    path.parent.mkdir(parents=True, exist_ok=True)
    used, without_features, positives, writer = [], 0, 0, None
    try:
        for start in range(0, max(len(entities), 1), chunk_rows):
            piece = entities.iloc[start:start + chunk_rows]
            df = features_of(piece.drop(columns=list(LINEAGE_COLUMNS)))
            if len(df) != len(piece) or (df[key].to_numpy() != piece[key].to_numpy()).any():
                raise RuntimeError("Feast answered other rows than it was asked for: the training set's lineage "
                                   "cannot be recorded")
            for column in LINEAGE_COLUMNS:
                df[column] = piece[column].to_numpy()
            inputs = [c for c in df.columns if c not in use_case.never_features and c not in LINEAGE_COLUMNS]
            without = df[inputs].isna().any(axis=1).to_numpy()
            without_features += int(without.sum())
            df = df[~without]
            used.append(lineage_counts(df))
            df = df.drop(columns=list(LINEAGE_COLUMNS))
            positives += int(df[use_case.label].sum())
            table = pa.Table.from_pandas(df, preserve_index=False)
            if table.num_rows:  # an empty piece may type its columns null: the file takes its types from rows
                writer = writer or pq.ParquetWriter(unsplit, table.schema, **WRITE_OPTIONS)
                writer.write_table(table.cast(writer.schema), row_group_size=BATCH_ROWS)
        if writer is None:  # no row at all: an empty file with the columns
            writer = pq.ParquetWriter(unsplit, table.schema, **WRITE_OPTIONS)
            writer.write_table(table)
        writer.close()
        files = files_trained_on(pd.concat(used, ignore_index=True), listings)
        rows = pq.ParquetFile(unsplit).metadata.num_rows
        metadata = {LINEAGE_METADATA_KEY: json.dumps({**manifest, "rows": rows, "files": files}).encode()}
        sizes = SplitWriter(path, metadata).write_from(unsplit, fractions)
    finally:
        unsplit.unlink(missing_ok=True)
    return BuiltTrainingSet(split_rows=sizes, rows_without_features=without_features, positives=positives,
                            files=files, digest=sha256_of(path))


def read_manifest(source) -> dict | None:
    """The manifest ``build_training_file`` stored in a training set (a path or a file object); ``None`` if none."""
    import json

    import pyarrow.parquet as pq

    metadata = pq.read_schema(source).metadata or {}
    raw = metadata.get(LINEAGE_METADATA_KEY)
    return json.loads(raw) if raw else None


def files_table(files: list[dict]) -> str:
    """``files_trained_on`` as a Markdown table (the training set's metadata in the UI)."""
    lines = ["| role | partition | file | sha256 | rows used |", "|---|---|---|---|---|"]
    lines += [f"| {f['role']} | {f['partition']} | {str(f['path']).rsplit('/', 1)[-1]} | "
              f"{(f['sha256'] or 'not listed')[:12]} | {f['rows_used']} |" for f in files]
    return "\n".join(lines)
