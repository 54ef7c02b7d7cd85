"""Training the tabular network: seeded, early-stopped on the validation split."""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from platform_assets.train.network import ModelBundle, TabularNet, weights_sha256
from platform_assets.train.stream import TrainingData


@dataclass(frozen=True)
class TrainParams:
    """Hyperparameters of one training run."""

    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 5
    seed: int = 7
    # Part of the config: torch does not promise the same float results on another thread count
    # (no difference seen here between 1 and 2 threads). One thread is as fast as two for these
    # batches on an idle 2-core machine and several times faster on a busy one.
    num_threads: int = 1
    # Blocks of the encoded training split an epoch holds and shuffles at once (of stream.BLOCK_ROWS rows):
    # memory follows this, not the training set; a split that fits is shuffled whole.
    shuffle_blocks: int = 4


@dataclass
class TrainResult:
    """A trained model and how it got there."""

    bundle: ModelBundle
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    weights_sha256: str = ""
    params: TrainParams = field(default_factory=TrainParams)

    @property
    def best_val_loss(self) -> float:
        """Validation loss of the kept epoch."""
        return self.history[self.best_epoch - 1]["val_loss"]

    @property
    def best_val_auc(self) -> float:
        """Validation ROC AUC of the kept epoch."""
        return self.history[self.best_epoch - 1]["val_auc"]


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by ranks (Mann-Whitney U); 0.5 when only one class is present."""
    positives = y == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    features: list[str],
    label: str,
    params: TrainParams,
) -> TrainResult:
    """Trains a network on ``train``, keeping the epoch with the lowest validation loss.

    The preprocessing is fitted on ``train`` only. Same data, params and seed
    give the same weights (and the same ``weights_sha256``).

    Args:
        train: Training rows with ``features`` and ``label``.
        validation: Validation rows, used for early stopping only.
        features: Input columns (numeric and categorical).
        label: The 0/1 target column.
        params: Hyperparameters.

    Returns:
        The best network with its preprocessing, the per-epoch history and the weights hash.

    Raises:
        ValueError: If a split is empty or the loss becomes NaN.
    """
    if train.empty or validation.empty:
        raise ValueError(f"empty split: {len(train)} train rows, {len(validation)} validation rows")
    with tempfile.TemporaryDirectory(prefix="encoded-") as tmp:
        return train_on(TrainingData.from_frames(train, validation, features, label, Path(tmp)), params)


def train_on(data: TrainingData, params: TrainParams) -> TrainResult:
    """:func:`train_model` on encoded splits (:class:`~platform_assets.train.stream.TrainingData`): each epoch
    reads the training split block by block in a seeded random order, :attr:`TrainParams.shuffle_blocks` blocks
    at a time, and shuffles the rows of those blocks (the whole split, when it fits in them)."""
    if not data.train.rows or not data.validation.rows:
        raise ValueError(f"empty split: {data.train.rows} train rows, {data.validation.rows} validation rows")
    threads = torch.get_num_threads()
    torch.set_num_threads(params.num_threads)
    try:
        return _train(data, params)
    finally:
        torch.set_num_threads(threads)


def _validation_loss(net: nn.Module, rows) -> tuple[float, np.ndarray]:
    """The mean loss over the validation rows (block by block) and every row's probability."""
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    total, probabilities = 0.0, []
    with torch.no_grad():
        for x, y in rows.all_blocks():
            logits = net(torch.from_numpy(x))
            total += float(loss_fn(logits, torch.from_numpy(y)))
            probabilities.append(torch.sigmoid(logits).numpy())
    return total / rows.rows, np.concatenate(probabilities)


def _train(data: TrainingData, params: TrainParams) -> TrainResult:
    torch.manual_seed(params.seed)
    y_val = data.validation.labels()
    net = TabularNet(data.preprocessor.output_dim, hidden=params.hidden, dropout=params.dropout)
    optimiser = torch.optim.AdamW(net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(params.seed)
    best_state, best_loss, best_epoch, history = None, float("inf"), 0, []
    for epoch in range(1, params.max_epochs + 1):
        net.train()
        blocks = torch.randperm(data.train.blocks, generator=generator).tolist()
        total = 0.0
        for first in range(0, len(blocks), params.shuffle_blocks):
            held = [data.train.block(i) for i in blocks[first : first + params.shuffle_blocks]]
            x_buffer = torch.from_numpy(np.concatenate([x for x, _ in held]))
            y_buffer = torch.from_numpy(np.concatenate([y for _, y in held]))
            del held
            order = torch.randperm(len(x_buffer), generator=generator)
            for start in range(0, len(order), params.batch_size):
                idx = order[start : start + params.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(net(x_buffer[idx]), y_buffer[idx])
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
        net.eval()
        val_loss, val_p = _validation_loss(net, data.validation)
        train_loss = total / data.train.rows
        if not np.isfinite(train_loss) or not np.isfinite(val_loss):
            raise ValueError(f"loss is not finite at epoch {epoch}: train {train_loss}, validation {val_loss}")
        val_auc = _roc_auc(y_val, val_p)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_auc": val_auc})
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(net.state_dict())
        elif epoch - best_epoch >= params.patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    architecture = {"hidden": list(params.hidden), "dropout": params.dropout}
    bundle = ModelBundle(net, data.preprocessor, architecture)
    return TrainResult(bundle, history, best_epoch, weights_sha256(net), params)


def search(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    features: list[str],
    label: str,
    candidates: Sequence[TrainParams],
) -> tuple[int, list[TrainResult]]:
    """Trains every candidate and picks the one with the lowest validation loss.

    Each candidate is seeded on its own, so a candidate's weights do not depend
    on its position in the list. Ties go to the earlier candidate.

    Args:
        train: Training rows.
        validation: Validation rows (early stopping and selection).
        features: Input columns.
        label: The 0/1 target column.
        candidates: At least one set of hyperparameters.

    Returns:
        The index of the best candidate and every candidate's result, in order.

    Raises:
        ValueError: If ``candidates`` is empty.
    """
    if not candidates:
        raise ValueError("the search needs at least one candidate")
    if train.empty or validation.empty:
        raise ValueError(f"empty split: {len(train)} train rows, {len(validation)} validation rows")
    with tempfile.TemporaryDirectory(prefix="encoded-") as tmp:
        return search_on(TrainingData.from_frames(train, validation, features, label, Path(tmp)), candidates)


def search_on(data: TrainingData, candidates: Sequence[TrainParams]) -> tuple[int, list[TrainResult]]:
    """:func:`search` on encoded splits: every candidate reads the same encoded files."""
    if not candidates:
        raise ValueError("the search needs at least one candidate")
    results = [train_on(data, params) for params in candidates]
    best = min(range(len(results)), key=lambda i: (results[i].best_val_loss, i))
    return best, results
