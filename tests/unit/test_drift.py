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
