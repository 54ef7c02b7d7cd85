"""Steps 1-2 of docs/adding-a-dataset.md on a source shaped unlike the shipped ones: infer, review, validate."""

import importlib.util
import sys

import numpy as np
import pandas as pd

from platform_assets.cli import main
from platform_assets.ingest.landing import read_sample
from platform_assets.validate.rules import REASONS, split_valid_rows


def _repayments(n: int, seed: int = 3) -> pd.DataFrame:
    """A second source shaped unlike applications: loan repayments."""
    rng = np.random.default_rng(seed)
    late = rng.integers(0, 30, n).astype(float)
    late[rng.random(n) < 0.7] = np.nan  # most repayments are on time: no lateness recorded
    return pd.DataFrame(
        {
            "repayment_id": [f"r-{i}" for i in range(n)],
            "loan id": [f"L-{i % 97}" for i in range(n)],
            "paid_at": pd.Timestamp("2026-10-01") + pd.to_timedelta(rng.integers(0, 86_400 * 30, n), unit="s"),
            "amount": rng.uniform(50, 900, n).round(2),
            "channel": rng.choice(["card", "bank_transfer", "cash"], n),
            "late_days": late,
        }
    )


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_infer_review_and_validate_a_second_source(tmp_path, capsys):
    sample = tmp_path / "repayments_2026-10-01.csv"
    _repayments(500).to_csv(sample, index=False)
    module_path = tmp_path / "repayments_schema.py"
    assert main(["infer-schema", str(sample), "--name", "RepaymentSchema", "--out", str(module_path)]) == 0
    source = module_path.read_text()
    assert "repayment_id: Series[str] = pa.Field(unique=True, nullable=False)" in source
    assert "isin=['bank_transfer', 'card', 'cash']" in source
    assert "late_days: Series[float] = pa.Field(ge=0, nullable=True)" in source
    assert "alias='loan id'" in source
    schema = _load(module_path, "repayments_schema").RepaymentSchema

    clean = read_sample(str(sample), 10_000)
    assert len(split_valid_rows(clean, schema, ()).valid) == 500

    fresh = _repayments(200, seed=4).astype({"amount": object})
    fresh.loc[5, "channel"] = "crypto"
    fresh.loc[9, "amount"] = "twelve"
    fresh.loc[11, "amount"] = -3.0
    result = split_valid_rows(fresh, schema, ())
    reasons = result.quarantined[REASONS].to_dict()
    assert set(reasons) == {5, 9, 11}
    assert "crypto" in reasons[5] and "not a finite number (got 'twelve')" in reasons[9]
    assert "greater_than_or_equal_to(0)" in reasons[11]
    assert len(result.valid) == 197
