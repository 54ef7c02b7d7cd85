"""The duplicate policy of the business key: the first copy stays valid, later copies are quarantined.

Among the rows that pass every other rule, the copies of one key are ordered
by event time, then source file, then source row. The first copy is valid;
every later copy is quarantined with the reason ``<key>: duplicate of
<file>:<row>`` (the first copy's place, never a value of the row) and that
place in ``_duplicate_of``. The outcome depends only on the set of rows, not
on the order in which files arrive or how days are grouped into runs; rows
that fail another rule are quarantined for that and never count as a copy.
"""

from __future__ import annotations

import pandas as pd

from platform_assets.declarations import Source
from platform_assets.ingest.landing import SOURCE_FILE, SOURCE_ROW
from platform_assets.validate.rules import REASONS, ValidationResult, split_source_rows

DUPLICATE_OF = "_duplicate_of"


def place(frame: pd.DataFrame) -> pd.Series:
    """``file:row`` of each row: where it came from, as a duplicate's reason names it."""
    return frame[SOURCE_FILE].astype(str) + ":" + frame[SOURCE_ROW].astype("int64").astype(str)


def first_copies(candidates: pd.DataFrame, key: str | list[str], event_time: str) -> pd.Series:
    """For each candidate row, the place (``file:row``) of the first copy of its key; ``None`` for first copies.

    Args:
        candidates: Rows that passed every other rule, with ``key``,
            ``event_time`` (parsed timestamps), ``_source_file`` and
            ``_source_row``; the index must be unique.
        key: The business key column (or columns: a key unique within a day is ``[key, day]``).
        event_time: The column whose earliest value decides the first copy.

    Returns:
        A string Series aligned with ``candidates``.
    """
    if not candidates.index.is_unique:
        raise ValueError("first_copies needs a unique index")
    result = pd.Series(pd.NA, index=candidates.index, dtype="string")
    # Only keys that occur more than once need ordering: at 1M rows that is a few rows, not all of them.
    keys = [key] if isinstance(key, str) else list(key)
    repeated = candidates[candidates.duplicated(subset=keys, keep=False).to_numpy()]
    if repeated.empty:
        return result
    ordered = repeated.sort_values([event_time, SOURCE_FILE, SOURCE_ROW], kind="stable")
    places = place(ordered)
    first = places.groupby([ordered[k].to_numpy() for k in keys], sort=False).transform("first")
    later = first[first != places]
    result.loc[later.index] = later.astype("string")
    return result


def quarantine_duplicates(
    result: ValidationResult, raw: pd.DataFrame, first: pd.Series, key: str
) -> ValidationResult:
    """Moves the valid rows that are later copies (``first`` not missing) to quarantine.

    Args:
        result: The rule outcome of ``raw`` (:func:`rules.split_valid_rows`).
        raw: The rows as they came in, with the index ``result`` was built on.
        first: :func:`first_copies` for the valid rows of ``result``.
        key: The business key column (named in the reason).

    Returns:
        The outcome with every quarantined row carrying ``_duplicate_of``
        (missing for rows quarantined by another rule).
    """
    duplicate = first.reindex(result.valid.index).notna().to_numpy()
    moved = raw.loc[result.valid.index[duplicate]].copy()
    moved[DUPLICATE_OF] = first.reindex(moved.index).astype("string")
    moved[REASONS] = f"{key}: duplicate of " + moved[DUPLICATE_OF].astype(str)
    others = result.quarantined.assign(**{DUPLICATE_OF: pd.Series(pd.NA, index=result.quarantined.index, dtype="string")})
    counts = dict(result.failure_counts)
    if duplicate.any():
        counts["duplicate"] = int(duplicate.sum())
    quarantined = pd.concat([others, moved]) if len(moved) else others
    return ValidationResult(result.valid[~duplicate], quarantined, counts)


def split_batch(raw: pd.DataFrame, source: Source) -> ValidationResult:
    """Validates one batch of ``source`` rows alone: the rules, then the duplicate policy among its own rows.

    Args:
        raw: Raw rows with ``_source_file`` and ``_source_row``; the index must be unique.
        source: The declared source (its schema, key, event time and personal data).
    """
    result = split_source_rows(raw, source)
    columns = [source.key, source.event_time, SOURCE_FILE, SOURCE_ROW]
    first = first_copies(result.valid[columns], source.key, source.event_time)
    return quarantine_duplicates(result, raw, first, source.key)
