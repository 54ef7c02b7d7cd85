"""The Evidently drift report finds the column that moved and writes its HTML."""

import numpy as np
import pandas as pd

from platform_assets.monitor.drift import drift_report


def test_shifted_column_is_reported(tmp_path):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000),
                              "c": rng.choice(["x", "y"], 2000)})
    current = pd.DataFrame({"a": rng.normal(2, 1, size=1500), "b": rng.normal(size=1500),
                            "c": rng.choice(["x", "y"], 1500)})
    summary = drift_report(reference, current, ["a", "b", "c"], tmp_path / "d.html")
    assert summary.drifted == ["a"]
    assert summary.drifted_columns == 1 and summary.columns == 3
    assert (tmp_path / "d.html").stat().st_size > 10_000


def test_the_drift_table_lists_every_column_with_its_verdict_and_a_missing_report_says_what_to_do():
    from platform_assets.monitor.drift import DriftSummary, drift_table, not_written

    summary = DriftSummary(columns=3, drifted_columns=1, drift_share=1 / 3, drifted=["income"], reference_rows=10,
                           current_rows=10, scores={"probability": 0.5, "income": 0.001, "region": 0.2},
                           methods={"income": "K-S p_value", "region": "chi-square p_value", "probability": "K-S p_value"})
    rows = drift_table(summary, ["income", "region"]).splitlines()[2:]
    assert rows == ["| income | K-S p_value | 0.0010 | yes |", "| region | chi-square p_value | 0.2000 | no |",
                    "| probability | K-S p_value | 0.5000 | no |"]
    why = not_written(66, 200, 7)
    assert "66 rows" in why and "min_current_rows=200" in why and "window_days" in why
