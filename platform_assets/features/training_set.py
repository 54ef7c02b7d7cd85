"""Which labelled rows a use case's training set holds: the query of its labels and the training window."""

from __future__ import annotations

from platform_assets.declarations import UseCase
from platform_assets.features.feast_ops import LABEL_TIME


def labelled_rows_sql(use_case: UseCase, with_outcome_files: bool) -> str:
    """The query of the use case's labelled rows: entity keys, event time, protected attribute, label and its time.

    The outcome from an outcome file when one landed (monitor/outcomes), else the row's own (a history
    extract carries it); rows without either are not labelled yet. Without a declared label time, a
    label is known from the row's event time.
    """
    source = use_case.source
    label, label_time = use_case.label, source.label_time or source.event_time
    keys = ", ".join(f"a.{k}" for k in dict.fromkeys([*use_case.entity_keys]))
    columns = f"{keys}, a.{source.event_time}, a.{use_case.protected_attribute}"
    if with_outcome_files and source.label_time:
        return (f"SELECT {columns}, coalesce(o.{label}, a.{label}) AS {label}, "
                f"coalesce(o.{source.label_time}, a.{label_time}) AS {LABEL_TIME} FROM {source.validated_table} a "
                f"LEFT JOIN {use_case.monitor_table('outcomes')} o ON o.{source.key} = CAST(a.{source.key} AS VARCHAR)")
    return f"SELECT {columns}, a.{label}, a.{label_time} AS {LABEL_TIME} FROM {source.validated_table} a"



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
