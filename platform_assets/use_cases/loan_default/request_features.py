"""Loan default's request-time features: applicant history as of the request, and the ratios of its fields.

Declared as the use case's ``request_features``: the model server imports this
module and calls :func:`compute` for each row of a request, with the
applicant's online features (``ONLINE_ENTITY``) looked up from the feature
server. One definition for training (dbt computes the same), serving and the
skew check.

Plain Python and numpy (the serving environment imports it too). History is
**as of the start of the request's day (UTC)**: the applicant's applications
strictly before that day. That is what a daily feature pipeline knows when a
request comes in (the day's own applications land after the day), and it is
what the dbt model ``int_applicant_windows`` computes for every application
offline, so training and serving see the same definition.

The online store holds, per applicant, the times and loan amounts of their
applications over the last 365 days (view ``applicant_activity``); the model
server turns them into these features at request time with :func:`history_features`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DAY_S = 86_400.0
WINDOWS_DAYS = (30, 90, 365)
# Features of the view `applicant_history` (dbt mart fct_applicant_history), in its order.
HISTORY_FEATURES = (
    "prior_applications_30d",
    "prior_applications_90d",
    "prior_applications_365d",
    "prior_loan_sum_30d",
    "prior_loan_sum_90d",
    "prior_loan_sum_365d",
    "avg_prior_loan_amount_365d",
    "days_since_last_application",
)
# Features computed from the application's own fields, as dbt's fct_application_features does.
DERIVED_FEATURES = ("loan_to_income", "payment_to_monthly_income")


def day_start(epoch_s: float) -> float:
    """The start (UTC, epoch seconds) of the day holding ``epoch_s``."""
    return math.floor(epoch_s / DAY_S) * DAY_S


def history_features(
    event_ts: Sequence[float], loan_amounts: Sequence[float], request_ts: float
) -> dict[str, float]:
    """The applicant-history features of a request at ``request_ts``.

    Args:
        event_ts: Times (epoch seconds, UTC) of the applicant's known applications.
        loan_amounts: Their loan amounts, in the same order.
        request_ts: The time of the request (epoch seconds, UTC).

    Returns:
        Every name in :data:`HISTORY_FEATURES`: counts and loan sums of the
        applications in the 30, 90 and 365 days before the request's day, the
        mean prior loan over 365 days (0 without one), and the days from the
        last application before the request's day to the request (-1 without one).
        Applications on the request's day or later are never counted.
    """
    ts = np.asarray(event_ts, dtype=np.float64)
    amounts = np.asarray(loan_amounts, dtype=np.float64)
    if ts.shape != amounts.shape:
        raise ValueError(f"{ts.size} application times but {amounts.size} loan amounts")
    cutoff = day_start(request_ts)
    prior = ts < cutoff
    out: dict[str, float] = {}
    for days in WINDOWS_DAYS:
        inside = prior & (ts >= cutoff - days * DAY_S)
        out[f"prior_applications_{days}d"] = float(inside.sum())
        out[f"prior_loan_sum_{days}d"] = float(amounts[inside].sum()) if inside.any() else 0.0
    n365 = out["prior_applications_365d"]
    out["avg_prior_loan_amount_365d"] = out["prior_loan_sum_365d"] / n365 if n365 > 0 else 0.0
    out["days_since_last_application"] = (request_ts - float(ts[prior].max())) / DAY_S if prior.any() else -1.0
    return {name: out[name] for name in HISTORY_FEATURES}


def derived_features(income: float, loan_amount: float, term_months: float) -> dict[str, float]:
    """``loan_to_income`` and ``payment_to_monthly_income`` of an application, as dbt computes them.

    A zero income or term gives an infinite ratio (not an exception): the caller's checks report it.
    """
    income, loan_amount, term_months = np.float64(income), np.float64(loan_amount), np.float64(term_months)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "loan_to_income": float(loan_amount / income),
            "payment_to_monthly_income": float((loan_amount / term_months) / (income / 12.0)),
        }


# The request-features contract the model server reads (platform_assets.declarations.UseCase.request_features):
# the request fields compute() reads, the features it returns, and the entity whose online features it needs.
NEEDS = ("income", "loan_amount", "term_months")
COMPUTED = (*HISTORY_FEATURES, *DERIVED_FEATURES)
ONLINE_ENTITY = "applicant_id"


def compute(fields: dict, online: dict | None, request_ts: float) -> dict[str, float]:
    """Every :data:`COMPUTED` feature of one request row.

    Args:
        fields: The row's :data:`NEEDS` fields (numbers).
        online: The applicant's online features (``recent_application_ts``, ``recent_loan_amounts``;
            empty lists or ``None`` for an applicant the store has never seen).
        request_ts: The row's time (epoch seconds, UTC).
    """
    online = online or {}
    history = history_features(online.get("recent_application_ts") or [], online.get("recent_loan_amounts") or [],
                               request_ts)
    return {**history, **derived_features(fields["income"], fields["loan_amount"], fields["term_months"])}
