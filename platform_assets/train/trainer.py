"""Training the tabular network: seeded, early-stopped on the validation split."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from platform_assets.train.network import ModelBundle, Preprocessor, TabularNet, weights_sha256


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


def split_columns(df: pd.DataFrame, features: list[str]) -> tuple[list[str], list[str]]:
    """Splits feature names into numeric and categorical by the DataFrame's dtypes."""
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(df[c])]
    return numeric, [c for c in features if c not in numeric]


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
    threads = torch.get_num_threads()
    torch.set_num_threads(params.num_threads)
    try:
        return _train(train, validation, features, label, params)
    finally:
        torch.set_num_threads(threads)


def _train(
    train: pd.DataFrame, validation: pd.DataFrame, features: list[str], label: str, params: TrainParams
) -> TrainResult:
    torch.manual_seed(params.seed)
    numeric, categorical = split_columns(train, features)
    pre = Preprocessor(numeric=numeric, categorical=categorical).fit(train)
    x_train = torch.from_numpy(pre.transform(train))
    y_train = torch.from_numpy(train[label].to_numpy(dtype=np.float32))
    x_val = torch.from_numpy(pre.transform(validation))
    y_val = validation[label].to_numpy(dtype=np.float32)

    net = TabularNet(pre.output_dim, hidden=params.hidden, dropout=params.dropout)
    optimiser = torch.optim.AdamW(net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(params.seed)
    best_state, best_loss, best_epoch, history = None, float("inf"), 0, []
    for epoch in range(1, params.max_epochs + 1):
        net.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), params.batch_size):
            idx = order[start : start + params.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(net(x_train[idx]), y_train[idx])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            val_logits = net(x_val)
            val_loss = float(loss_fn(val_logits, torch.from_numpy(y_val)))
        train_loss = total / len(order)
        if not np.isfinite(train_loss) or not np.isfinite(val_loss):
            raise ValueError(f"loss is not finite at epoch {epoch}: train {train_loss}, validation {val_loss}")
        val_auc = _roc_auc(y_val, torch.sigmoid(val_logits).numpy())
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_auc": val_auc})
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(net.state_dict())
        elif epoch - best_epoch >= params.patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    architecture = {"hidden": list(params.hidden), "dropout": params.dropout}
    bundle = ModelBundle(net, pre, architecture)
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
    results = [train_model(train, validation, features, label, params) for params in candidates]
    best = min(range(len(results)), key=lambda i: (results[i].best_val_loss, i))
    return best, results
