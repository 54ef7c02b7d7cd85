"""The drifted columns and the drift share are Evidently's own decisions, not a re-derivation of them.

Evidently's own per-column result is read independently here, from its legacy
``DataDriftTable`` metric (``drift_by_columns[column]["drift_detected"]``, the
decision ``DriftedColumnsCount`` counts), and compared with what the report says.
"""

import numpy as np
import pandas as pd
import pytest

from platform_assets.monitor import drift

COLUMNS = ["a", "b", "c", "d", "e", "region"]


def _frame(rng, rows, shift=None):
    frame = pd.DataFrame({c: rng.normal(size=rows) for c in COLUMNS[:-1]})
    frame["region"] = rng.choice(["north", "south", "east"], rows, p=[0.5, 0.3, 0.2])
    if shift:
        frame[shift] += 1.0
    return frame


def _evidently_own(reference, current, columns):
    """Column -> drift detected, and the drifted share, as Evidently's legacy DataDriftTable decides them."""
    from evidently.legacy.metrics import DataDriftTable
    from evidently.legacy.report import Report

    report = Report(metrics=[DataDriftTable(columns=columns)])
    report.run(reference_data=reference[columns], current_data=current[columns])
    result = report.as_dict()["metrics"][0]["result"]
    return {c: bool(v["drift_detected"]) for c, v in result["drift_by_columns"].items()}, result["share_of_drifted_columns"]


# 600 rows: Evidently tests with p-values (K-S, chi-square); 3000: with distances (Wasserstein, Jensen-Shannon).
@pytest.mark.parametrize("rows", [600, 3000])
def test_a_planted_shift_is_reported_exactly_as_evidently_decides(tmp_path, rows):
    rng = np.random.default_rng(rows)
    reference, current = _frame(rng, rows), _frame(rng, rows, shift="c")
    summary = drift.drift_report(reference, current, COLUMNS, tmp_path / "d.html")
    own, own_share = _evidently_own(reference, current, COLUMNS)
    assert summary.drifted == sorted(c for c, d in own.items() if d)
    assert "c" in summary.drifted
    assert summary.drifted_columns == len(summary.drifted) and summary.drift_share == pytest.approx(own_share)
    assert summary.columns == len(COLUMNS) and set(summary.scores) == set(COLUMNS) == set(summary.methods)
    assert all(("p_value" in method) == (rows < 1000) for method in summary.methods.values()), summary.methods


def test_no_shift_no_drifted_column(tmp_path):
    rng = np.random.default_rng(1)
    reference, current = _frame(rng, 3000), _frame(rng, 3000)
    summary = drift.drift_report(reference, current, COLUMNS, tmp_path / "d.html")
    own, own_share = _evidently_own(reference, current, COLUMNS)
    assert not any(own.values()) and own_share == 0.0
    assert summary.drifted == [] and summary.drifted_columns == 0 and summary.drift_share == 0.0


def test_the_share_over_model_inputs_is_evidentlys_share_over_them(tmp_path):
    """``figures`` leaves the prediction out of the share: the same share Evidently gives the inputs alone."""
    rng = np.random.default_rng(2)
    inputs = COLUMNS
    reference, current = _frame(rng, 3000), _frame(rng, 3000, shift="a")
    reference["probability"] = rng.uniform(0, 0.5, 3000)
    current["probability"] = rng.uniform(0.3, 0.8, 3000)  # the prediction drifted too
    summary = drift.drift_report(reference, current, [*inputs, "probability"], tmp_path / "all.html")
    found = drift.figures(summary, inputs, {"roc_auc": None}, None)
    inputs_only = drift.drift_report(reference, current, inputs, tmp_path / "inputs.html")
    assert found["prediction_drifted"] and "probability" in summary.drifted
    assert found["drift_share"] == pytest.approx(inputs_only.drift_share)
    assert found["drifted_columns"] == inputs_only.drifted_columns and found["drifted"] == ", ".join(inputs_only.drifted)


def test_a_report_without_evidentlys_column_tests_is_refused():
    from evidently import Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(3)
    snapshot = Report([DataDriftPreset()]).run(_frame(rng, 300), _frame(rng, 300))
    with pytest.raises(ValueError, match="no drift test"):
        drift.evidently_drift(snapshot.dict())
