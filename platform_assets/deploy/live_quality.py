"""Live quality of a shadow (or canary) version against the stable one, on the same labelled requests.

Plain functions, no Dagster. The stable version's answers are its inference log
(``<inference>/day=*/``); a shadow's are the log it writes beside it
(``<inference>/shadow/day=*/``, every line marked ``role: shadow``), under the same
request ids, since the router sends the shadow a copy of each request with the
stable answer's id. Both are read with the monitoring's own log reader (every
line counted, bad ones rejected with their reason), joined on (request id, row),
then to the outcomes known so far. A promotion needs enough labelled rows and a
challenger that is not worse on them than the version it would replace.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from platform_assets.monitor import logs

SHADOW_FOLDER = "shadow"


@dataclass(frozen=True)
class Answers:
    """One version's logged answers: (request_id, row, key, model_version, probability) and what was rejected."""

    rows: pd.DataFrame
    lines: int
    rejected: int


def logged_answers(inference_dir: Path, id_columns: dict[str, str], key: str, versions: set[str] | None = None,
                   role: str | None = None) -> Answers:
    """The answers logged under ``inference_dir`` (every day), of ``versions`` if given.

    ``role``: keep only lines of that role (``canary``: the canary's share of the stable log).
    """
    frames, lines, rejected = [], 0, 0
    for day in logs.logged_days(inference_dir):
        for path in logs.day_files(inference_dir, day):
            read = logs.read_log_file(path, day, id_columns)
            lines, rejected = lines + read.lines, rejected + len(read.rejected)
            if len(read.rows):
                frames.append(read.rows)
    columns = ["request_id", "row", key, "model_version", "probability"]
    if not frames:
        return Answers(pd.DataFrame(columns=columns), lines, rejected)
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[rows["feature_source"] == "online"]  # callers' traffic, not smoke tests
    if versions is not None:
        rows = rows[rows["model_version"].isin(versions)]
    if role is not None:
        rows = rows[rows["role"] == role] if "role" in rows else rows.iloc[0:0]
    rows = rows.assign(**{key: rows[key].astype("string")})
    return Answers(rows[columns].reset_index(drop=True), lines, rejected)


def _auc(labels: pd.Series, scores: pd.Series) -> float | None:
    if labels.nunique() < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


@dataclass(frozen=True)
class Comparison:
    """Both versions scored on the requests both answered whose outcome is known."""

    stable_version: str
    challenger_version: str
    both_answered: int
    labelled: int
    positives: int
    stable_auc: float | None
    challenger_auc: float | None
    stable_brier: float | None
    challenger_brier: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def compare(stable: pd.DataFrame, challenger: pd.DataFrame, labels: pd.DataFrame, key: str, label: str,
            stable_version: str, challenger_version: str, paired: bool = True) -> Comparison:
    """ROC AUC and Brier score of both versions on labelled requests.

    Args:
        stable, challenger: Logged answers (:func:`logged_answers`).
        labels: ``key`` (text) and ``label`` (0/1) of the rows whose outcome is known.
        paired: A shadow's answers: both versions are scored on the requests both answered
            (``labelled`` counts those). Else (a canary, which answers its own share of requests)
            each on its own labelled requests, ``labelled`` the smaller of the two counts.
    """
    known = labels[[key, label]].assign(**{key: labels[key].astype("string")}).drop_duplicates(key)
    measured, counts, positives = {}, [], 0
    if paired:
        both = stable.merge(challenger, on=["request_id", "row"], suffixes=("_stable", "_challenger"))
        labelled = both.merge(known, left_on=f"{key}_stable", right_on=key, how="inner")
        sides = {side: (labelled[label].astype(int), labelled[f"probability_{side}"].astype(float))
                 for side in ("stable", "challenger")}
        answered = len(both)
    else:
        sides = {}
        for side, rows in (("stable", stable), ("challenger", challenger)):
            labelled = rows.merge(known, on=key, how="inner")
            sides[side] = (labelled[label].astype(int), labelled["probability"].astype(float))
        answered = min(len(stable), len(challenger))
    for side, (y, p) in sides.items():
        measured[f"{side}_auc"] = _auc(y, p) if len(y) else None
        measured[f"{side}_brier"] = float(((p - y) ** 2).mean()) if len(y) else None
        counts.append(len(y))
        positives = max(positives, int(y.sum()))
    return Comparison(stable_version, challenger_version, int(answered), int(min(counts)), positives, **measured)


def decide(comparison: Comparison, min_labelled: int, max_auc_drop: float, max_brier_rise: float) -> tuple[bool, str]:
    """Whether the challenger may replace the stable version, and why (or why not)."""
    c = comparison
    if c.labelled < min_labelled:
        return False, (f"only {c.labelled} labelled requests answered by both versions "
                       f"(of {c.both_answered} answered by both); at least {min_labelled} needed")
    if c.stable_auc is None or c.challenger_auc is None:
        return False, f"the {c.labelled} labelled requests have a single outcome: ROC AUC is undefined"
    worse = []
    if c.challenger_auc < c.stable_auc - max_auc_drop:
        worse.append(f"ROC AUC {c.challenger_auc:.4f} < {c.stable_auc:.4f} - {max_auc_drop:g}")
    if c.challenger_brier > c.stable_brier + max_brier_rise:
        worse.append(f"Brier {c.challenger_brier:.4f} > {c.stable_brier:.4f} + {max_brier_rise:g}")
    if worse:
        return False, f"challenger v{c.challenger_version} is worse live than v{c.stable_version}: " + "; ".join(worse)
    return True, (f"challenger v{c.challenger_version} is not worse live than v{c.stable_version} on {c.labelled} "
                  f"labelled requests (ROC AUC {c.challenger_auc:.4f} vs {c.stable_auc:.4f}, "
                  f"Brier {c.challenger_brier:.4f} vs {c.stable_brier:.4f})")
