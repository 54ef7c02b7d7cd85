"""Which labelled rows a use case's training set holds: the query of its labels and the training window."""

from __future__ import annotations

from platform_assets.declarations import UseCase

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
    label, label_time = use_case.label, source.label_time or source.event_time
    keys = ", ".join(f"a.{k}" for k in dict.fromkeys([*use_case.entity_keys]))
    columns = f"{keys}, a.{source.event_time}, a.{use_case.protected_attribute}, a._source_file AS {ROW_FILE}"
    if with_outcome_files and source.label_time:
        return (f"SELECT {columns}, coalesce(o.{label}, a.{label}) AS {label}, "
                f"coalesce(o.{source.label_time}, a.{label_time}) AS {LABEL_TIME}, "
                f"CASE WHEN o.{label} IS NOT NULL THEN o._source_file END AS {LABEL_FILE} FROM {source.validated_table} a "
                f"LEFT JOIN {use_case.monitor_table('outcomes')} o ON o.{source.key} = CAST(a.{source.key} AS VARCHAR)")
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


def files_trained_on(rows, listings) -> list[dict]:
    """The landing files (``role`` rows) and outcome files (``role`` labels) whose rows the training set holds.

    Each with its partition, the sha256 and row count the warehouse listed when the rows were read
    (``file_listings``: so, the file as it was when these rows were built), and how many of the training
    set's rows it gave. Read from ``rows`` (the training set's rows with ``LINEAGE_COLUMNS``), so a window
    (``since``) names only its own days.
    """
    import pandas as pd

    used = pd.concat([
        rows[ROW_FILE].value_counts().rename_axis("path").reset_index(name="rows_used").assign(role="rows"),
        rows[LABEL_FILE].dropna().value_counts().rename_axis("path").reset_index(name="rows_used")
        .assign(role="labels"),
    ], ignore_index=True)
    found = used.merge(listings.rename(columns={"rows": "file_rows", "_partition": "partition"}),
                       on=["role", "path"], how="left")
    found = found.sort_values(["role", "partition", "path"], ascending=[False, True, True], na_position="last")
    columns = ["role", "partition", "path", "sha256", "file_rows", "rows_used"]
    return [{k: (None if pd.isna(v) else int(v) if k in ("file_rows", "rows_used") else str(v))
             for k, v in row.items()} for row in found[columns].to_dict("records")]


def write_training_set(df, path, manifest: dict) -> None:
    """Writes ``df`` to ``path`` (atomically) with ``manifest`` (what it was built from) in its Parquet metadata.

    The manifest travels inside the file, so the file's digest covers it and whoever trains on these
    bytes (the model asset) records the very files they came from.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           LINEAGE_METADATA_KEY: json.dumps(manifest).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=True)
    tmp.replace(path)


def read_manifest(source) -> dict | None:
    """The manifest ``write_training_set`` stored in a training set (a path or a file object); ``None`` if none."""
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
