"""The training data out of core: the preprocessing fitted in one pass over batches, the splits encoded once into
float32 files, and mini-batches read back block by block.

Memory follows a block and the shuffle buffer, not the training set: a split of millions of rows is encoded
batch by batch into a file (rows x features, float32) that every epoch and every candidate of a search reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from platform_assets.train.network import Preprocessor

# Rows per block of an encoded file: the unit an epoch shuffles and reads.
BLOCK_ROWS = 65_536


def split_columns(df: pd.DataFrame, features: list[str]) -> tuple[list[str], list[str]]:
    """Splits feature names into numeric and categorical by the DataFrame's dtypes."""
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(df[c])]
    return numeric, [c for c in features if c not in numeric]


def fit_preprocessor(batches: Iterable[pd.DataFrame], features: list[str]) -> Preprocessor:
    """The preprocessing of :class:`Preprocessor` fitted in one pass: means and (population) standard deviations
    merged batch by batch (Chan et al.), category levels collected. Numeric or categorical by the first batch's
    dtypes.

    Raises:
        ValueError: if there is no row.
    """
    pre, count, means, m2 = None, 0, None, None
    levels: dict[str, set[str]] = {}
    for batch in batches:
        if batch.empty:
            continue
        if pre is None:
            numeric, categorical = split_columns(batch, features)
            pre = Preprocessor(numeric=numeric, categorical=categorical)
            means, m2 = np.zeros(len(numeric)), np.zeros(len(numeric))
            levels = {name: set() for name in categorical}
        values = np.column_stack([np.asarray(batch[c], dtype=np.float64) for c in pre.numeric]) if pre.numeric \
            else np.zeros((len(batch), 0))
        n = len(batch)
        batch_mean = values.mean(axis=0)
        batch_m2 = ((values - batch_mean) ** 2).sum(axis=0)
        delta, total = batch_mean - means, count + n
        means = means + delta * (n / total)
        m2 = m2 + batch_m2 + delta ** 2 * (count * n / total)
        count = total
        for name in pre.categorical:
            levels[name].update(str(v) for v in pd.unique(batch[name]))
    if pre is None:
        raise ValueError("the preprocessing cannot be fitted on no rows")
    pre.means = [float(m) for m in means]
    pre.stds = [float(s) if s > 0 else 1.0 for s in np.sqrt(m2 / count)]
    pre.categories = {name: sorted(levels[name]) for name in pre.categorical}
    return pre


class EncodedRows:
    """Rows encoded by a preprocessor in two files of a directory: inputs (float32, ``rows x width``) and labels
    (float32). Appended batch by batch, read back by block."""

    def __init__(self, directory: Path, name: str, width: int):
        directory.mkdir(parents=True, exist_ok=True)
        self.x_path, self.y_path = directory / f"{name}.x.f32", directory / f"{name}.y.f32"
        self.width, self.rows = width, 0
        for path in (self.x_path, self.y_path):
            path.write_bytes(b"")

    def append(self, x: np.ndarray, y: np.ndarray) -> None:
        with open(self.x_path, "ab") as f:
            np.ascontiguousarray(x, dtype=np.float32).tofile(f)
        with open(self.y_path, "ab") as f:
            np.ascontiguousarray(y, dtype=np.float32).tofile(f)
        self.rows += len(y)

    @property
    def blocks(self) -> int:
        return -(-self.rows // BLOCK_ROWS)

    def block(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Block ``index``: at most :data:`BLOCK_ROWS` rows (inputs, labels)."""
        start = index * BLOCK_ROWS
        count = min(BLOCK_ROWS, self.rows - start)
        x = np.fromfile(self.x_path, dtype=np.float32, count=count * self.width, offset=start * self.width * 4)
        y = np.fromfile(self.y_path, dtype=np.float32, count=count, offset=start * 4)
        return x.reshape(count, self.width), y

    def all_blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index in range(self.blocks):
            yield self.block(index)

    def labels(self) -> np.ndarray:
        """Every label (one float32 per row: small beside the inputs)."""
        return np.fromfile(self.y_path, dtype=np.float32)


@dataclass
class TrainingData:
    """A training split and a validation split, encoded by the preprocessing fitted on the training split."""

    preprocessor: Preprocessor
    train: EncodedRows
    validation: EncodedRows

    @classmethod
    def encode(cls, train_batches, validation_batches, features: list[str], label: str,
               directory: Path) -> TrainingData:
        """Encodes the splits into ``directory``. ``*_batches``: callables returning a fresh iterator of
        DataFrames (the training split is read twice: to fit the preprocessing, then to encode it)."""
        pre = fit_preprocessor(train_batches(), features)
        splits = []
        for name, batches in (("train", train_batches), ("validation", validation_batches)):
            rows = EncodedRows(directory, name, pre.output_dim)
            for batch in batches():
                rows.append(pre.transform(batch), batch[label].to_numpy(dtype=np.float32))
            splits.append(rows)
        return cls(pre, *splits)

    @classmethod
    def from_frames(cls, train: pd.DataFrame, validation: pd.DataFrame, features: list[str], label: str,
                    directory: Path) -> TrainingData:
        """:meth:`encode` of two DataFrames, in blocks."""
        def batches(df):
            return lambda: (df.iloc[i:i + BLOCK_ROWS] for i in range(0, len(df), BLOCK_ROWS))

        return cls.encode(batches(train), batches(validation), features, label, directory)
