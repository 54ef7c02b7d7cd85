"""The training set out of core: written and read in batches, sampled within bounds, trained on block by block."""

import numpy as np
import pandas as pd
import pytest

from platform_assets.features import training_file
from platform_assets.train import stream
from platform_assets.train.network import Preprocessor
from platform_assets.train.trainer import TrainParams, _roc_auc, train_on


def _rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(3, 2, size=n)
    region = rng.choice(["north", "south", "east"], size=n)
    logit = 1.5 * x1 - 0.5 * x2 + np.where(region == "east", 1.0, 0.0)
    # Microseconds: what the training set stores.
    return pd.DataFrame({"event_timestamp": pd.date_range("2025-01-01", periods=n, freq="min").astype("datetime64[us]"),
                         "x1": x1, "x2": x2, "region": region,
                         "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")})


def _write(tmp_path, df: pd.DataFrame, metadata=None):
    unsplit = tmp_path / "unsplit.parquet"
    df.to_parquet(unsplit, index=False, row_group_size=1000)
    path = tmp_path / "training_set.parquet"
    sizes = training_file.SplitWriter(path, metadata or {}).write_from(unsplit, (0.7, 0.85))
    return path, sizes


def test_splits_by_position_over_all_windows_are_those_of_one_sort(tmp_path):
    df = _rows(5_000)
    path, sizes = _write(tmp_path, df, {b"manifest": b"{}"})
    # Rows in time order, as the writer gets them: the first 70 % train, up to 85 % validation, the rest test.
    position = np.arange(len(df)) / len(df)
    expected = pd.Series(np.where(position < 0.7, "train", np.where(position < 0.85, "validation", "test")))
    assert sizes == expected.value_counts().to_dict() == training_file.split_rows(path)
    for split in training_file.SPLITS:
        got = training_file.read_split(path, split)
        pd.testing.assert_frame_equal(got, df[expected == split].reset_index(drop=True))
    # Batches are bounded, and together they are the split.
    batches = list(training_file.split_batches(path, "train", ["x1", "label"], batch_rows=700))
    assert max(len(b) for b in batches) <= 700 and sum(len(b) for b in batches) == sizes["train"]
    assert list(batches[0].columns) == ["x1", "label"]
    pd.testing.assert_frame_equal(training_file.first_rows(path, "test", 3),
                                  df[expected == "test"].head(3).reset_index(drop=True))
    assert training_file.column_max(path, "x1") == pytest.approx(df["x1"].max())


def test_an_empty_training_set_is_a_file_with_its_columns(tmp_path):
    path, sizes = _write(tmp_path, _rows(10).head(0))
    assert sizes == {"train": 0, "validation": 0, "test": 0}
    assert list(training_file.read_split(path, "test").columns) == ["event_timestamp", "x1", "x2", "region", "label"]
    assert training_file.first_rows(path, "test", 5).empty


def test_a_sample_is_bounded_repeatable_and_whole_when_the_split_is_small(tmp_path):
    path, sizes = _write(tmp_path, _rows(20_000))
    sample, total = training_file.sample_split(path, "test", 1_000, seed=3)
    again, _ = training_file.sample_split(path, "test", 1_000, seed=3)
    other, _ = training_file.sample_split(path, "test", 1_000, seed=4)
    assert total == sizes["test"] == 3_000
    assert 800 <= len(sample) <= 1_000 and sample.equals(again) and not sample.equals(other)
    # Spread over the whole split, not its first rows.
    assert sample["event_timestamp"].max() > training_file.read_split(path, "test")["event_timestamp"].quantile(0.9)
    whole, total = training_file.sample_split(path, "test", 10_000)
    assert len(whole) == total == 3_000
    everything, total = training_file.sample_split(path, None, 100_000)
    assert len(everything) == total == 20_000
    with pytest.raises(ValueError, match="split 'holdout'"):
        next(training_file.split_batches(path, "holdout"))


def test_the_preprocessing_fitted_batch_by_batch_is_the_one_fitted_at_once():
    df = _rows(10_000)
    whole = Preprocessor(numeric=["x1", "x2"], categorical=["region"]).fit(df)
    batched = stream.fit_preprocessor((df.iloc[i:i + 777] for i in range(0, len(df), 777)), ["x1", "x2", "region"])
    assert batched.numeric == whole.numeric and batched.categorical == whole.categorical
    assert batched.means == pytest.approx(whole.means, rel=1e-12)
    assert batched.stds == pytest.approx(whole.stds, rel=1e-12)
    assert batched.categories == whole.categories
    with pytest.raises(ValueError, match="no rows"):
        stream.fit_preprocessor(iter([df.head(0)]), ["x1"])


def test_encoded_blocks_read_back_the_rows_in_order(tmp_path):
    df = _rows(stream.BLOCK_ROWS + 10)
    pre = Preprocessor(numeric=["x1", "x2"], categorical=["region"]).fit(df)
    rows = stream.EncodedRows(tmp_path, "train", pre.output_dim)
    for start in range(0, len(df), 5_000):
        part = df.iloc[start:start + 5_000]
        rows.append(pre.transform(part), part["label"].to_numpy())
    assert rows.rows == len(df) and rows.blocks == 2
    x0, y0 = rows.block(0)
    x1, y1 = rows.block(1)
    assert x0.shape == (stream.BLOCK_ROWS, pre.output_dim) and len(x1) == 10
    np.testing.assert_array_equal(np.concatenate([x0, x1]), pre.transform(df))
    np.testing.assert_array_equal(np.concatenate([y0, y1]), df["label"].to_numpy(dtype=np.float32))


def test_training_a_block_at_a_time_learns_and_is_repeatable(tmp_path, monkeypatch):
    """Blocks of 2,000 rows, one held at a time: far less than the split, and still a model that learns."""
    monkeypatch.setattr(stream, "BLOCK_ROWS", 2_000)
    df = _rows(24_000, seed=1)
    train, validation = df.iloc[:18_000], df.iloc[18_000:]
    features = ["x1", "x2", "region"]
    data = stream.TrainingData.from_frames(train, validation, features, "label", tmp_path / "encoded")
    assert data.train.blocks == 9
    params = TrainParams(hidden=(16,), max_epochs=6, shuffle_blocks=1)
    first, second = train_on(data, params), train_on(data, params)
    assert first.weights_sha256 == second.weights_sha256
    assert train_on(data, TrainParams(hidden=(16,), max_epochs=6, shuffle_blocks=3)).weights_sha256 != \
        first.weights_sha256
    p = first.bundle.predict_proba(validation)
    assert _roc_auc(validation["label"].to_numpy(), p) > 0.8
    assert first.best_val_auc == pytest.approx(_roc_auc(validation["label"].to_numpy(), p), abs=1e-6)
