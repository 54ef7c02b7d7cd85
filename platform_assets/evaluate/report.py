"""The evaluation report in Markdown: metrics, calibration, fairness, importance, plots."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

# What a fairness gap shows where fewer than two groups were large enough to measure it.
NOT_JUDGED = "not judged"


def render_markdown(report: dict, images: Mapping[str, str], protected_attribute: str | None) -> str:
    """A human-readable report of one evaluation.

    Args:
        report: The evaluation (the scores the gate check judges, plus calibration and importance).
        images: Plot title -> image link (a relative file name for the file on
            disk, a ``data:`` URI for the Dagster UI, which shows Markdown inline).
        protected_attribute: The column the fairness slices are of (the report's heading names it).

    Returns:
        The Markdown text.
    """
    models = report["models"]
    challenger = models["challenger"]
    split_rows = report.get("test_split_rows", report["test_rows"])
    rows = (f"{report['test_rows']} test rows" if split_rows == report["test_rows"] else
            f"{report['test_rows']} test rows (a random sample of the test split's {split_rows})")
    lines = [
        f"# Evaluation of model version {report['challenger_version']}",
        "",
        f"Champion before: {report['champion_version'] or 'none'}; {rows}, "
        f"threshold {report['threshold']}. The gate's verdict is the `eval_gate_passed` check of this "
        "materialization (and the model version's `gate` tag).",
        "",
        "## Test metrics",
        "",
        pd.DataFrame(  # figures as text: a column may hold "not judged" beside numbers
            {f"{role} v{m['version']}": {k: v if isinstance(v, str) else f"{v:.4f}"
                                         for k, v in {**_without_rows(m["metrics"]), **_gaps(m)}.items()}
             for role, m in models.items()}
        ).to_markdown(),
        "",
        "## Plots",
        "",
        *[f"![{title}]({link})\n" for title, link in images.items()],
        "## Calibration of the challenger (10 equal-width bins)",
        "",
        _counts_as_text(pd.DataFrame(challenger["calibration"]), "count").to_markdown(index=False, floatfmt=".4f"),
        "",
        f"## Fairness slices of the challenger ({protected_attribute or 'none declared'})",
        "",
        _counts_as_text(
            pd.DataFrame(challenger["fairness"]["slices"]).T[
                ["rows", "roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "brier",
                 "positive_rate", "true_positive_rate"]
            ],
            "rows",
        ).to_markdown(floatfmt=".4f") if protected_attribute else
        "Not judged: the use case declares no protected attribute (`protected_attribute` in its defs.yaml).",
        "",
        "## Permutation feature importance of the challenger (ROC AUC drop on the test split)",
        "",
        pd.DataFrame(challenger["permutation_importance"]).to_markdown(index=False, floatfmt=".4f"),
    ]
    return "\n".join(lines) + "\n"


def _without_rows(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k != "rows"}


def _counts_as_text(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    # tabulate would print a count among float columns as 279.0000.
    return frame.assign(**{column: frame[column].astype(int).astype(str)})


def _gaps(model: dict) -> dict[str, float | str]:
    """The fairness gaps as the report shows them: "not judged" where fewer than two groups were large enough."""
    fairness = model["fairness"]
    return {k: NOT_JUDGED if fairness[k] is None else fairness[k]
            for k in ("demographic_parity_difference", "equal_opportunity_difference")}
