"""One training stage of all heads at once, with per-head masks, validation and checkpoint selection.

All heads live in one :class:`~emonet_face.heads.FusedHeads` (the inference layout), so a step is a
few batched matrix products. The loss is the *sum over heads* of each head's weighted mean
squared error over the rows that have a target for it: heads share no parameter, so each head
gets exactly the gradient it would get alone, and AdamW (element-wise moments and weight decay)
makes the stacked update identical to training 44 separate heads with the same batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from emonet_face.heads import FusedHeads

__all__ = [
    "StageConfig",
    "StageData",
    "StageResult",
    "epoch_metric",
    "head_metric",
    "predict",
    "train_stage",
    "training_step",
]


@dataclass
class StageConfig:
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 256
    patience: int = 5
    """Epochs without validation improvement after which a head is done (stage stops when all are)."""
    schedule: str = "cosine"
    """``cosine`` (per step, to zero over ``epochs``) or ``plateau`` (halve on a flat mean val loss)."""


@dataclass
class StageData:
    """Rows of one stage with targets and weights ``(N, H)`` (weight 0 = no target for that head)."""

    name: str
    kind: str
    """``ratings`` (Spearman reported) or ``votes`` (ROC-AUC reported)."""
    embeddings: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray


@dataclass
class StageResult:
    best_epoch: np.ndarray
    best_val_loss: np.ndarray
    epochs_run: int
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_second: float = 0.0


def _batch(x: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32)).to(device, non_blocking=True)


def training_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One masked, weighted MSE step of all heads; returns per-head (weighted squared error sum, weight sum).

    ``model`` maps ``(B, D)`` to ``(B, H)``; the loss is the sum over heads of each head's weighted mean.
    """
    pred = model(x)
    err = w * (pred - t) ** 2
    den = w.sum(0)
    loss = (err.sum(0) / den.clamp_min(1e-8)).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return err.detach().sum(0), den.detach()


@torch.no_grad()
def predict(
    heads: FusedHeads, embeddings: np.ndarray, device: torch.device | str = "cpu", chunk: int = 4096
) -> np.ndarray:
    """Raw outputs ``(N, H)`` in eval mode (no dropout), float32 numpy."""
    was_training = heads.training
    heads.eval()
    outs = [
        heads(_batch(embeddings, np.arange(s, min(s + chunk, len(embeddings))), torch.device(device)))
        .float()
        .cpu()
        .numpy()
        for s in range(0, len(embeddings), chunk)
    ]
    heads.train(was_training)
    return np.concatenate(outs) if outs else np.empty((0, len(heads.keys)), dtype=np.float32)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _weighted_mse(pred: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    den = weight.sum(0)
    num = (weight * (pred - target) ** 2).sum(0)
    return np.divide(num, den, out=np.full(pred.shape[1], np.nan), where=den > 0)


def epoch_metric(kind: str, pred: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """:func:`head_metric` computed from ranks directly (Spearman = Pearson of ranks, AUC = Mann–Whitney U):
    the same numbers without scikit-learn's per-call validation, cheap enough for every head every epoch."""
    from scipy.stats import rankdata

    present = weight > 0
    if kind == "ratings":
        if present.sum() < 3 or np.ptp(target[present]) == 0 or np.ptp(pred[present]) == 0:
            return float("nan")
        return float(np.corrcoef(rankdata(pred[present]), rankdata(target[present]))[0, 1])
    decided = present & (np.abs(target - 3.5) > 1e-6)
    labels = target[decided] > 3.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(pred[decided])
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def head_metric(kind: str, pred: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """Spearman ρ (ratings) or ROC-AUC against the majority vote (votes; ties dropped) for one head."""
    present = weight > 0
    if kind == "ratings":
        from scipy.stats import spearmanr

        if present.sum() < 3 or np.ptp(target[present]) == 0 or np.ptp(pred[present]) == 0:
            return float("nan")
        return float(spearmanr(pred[present], target[present]).statistic)
    from sklearn.metrics import roc_auc_score

    decided = present & (np.abs(target - 3.5) > 1e-6)
    labels = target[decided] > 3.5
    if decided.sum() < 2 or labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, pred[decided]))


@dataclass
class _Rows:
    """Training and validation rows that carry a target for at least one head, and which heads have any."""

    train_idx: np.ndarray
    val_idx: np.ndarray
    has_train: np.ndarray
    has_val: np.ndarray


def _rows_with_target(data: StageData) -> _Rows:
    """Rows without any target add nothing to a loss or a metric, so batches and validation leave them out."""
    rows_with_target = data.weights.sum(1) > 0
    train_idx = data.train_idx[rows_with_target[data.train_idx]]
    val_idx = data.val_idx[rows_with_target[data.val_idx]]
    return _Rows(train_idx, val_idx, data.weights[train_idx].sum(0) > 0, data.weights[val_idx].sum(0) > 0)


def _make_scheduler(optimizer: torch.optim.Optimizer, config: StageConfig, steps_per_epoch: int) -> Any:
    """The learning-rate schedule ``config.schedule`` names; an unknown name fails before any step."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs * steps_per_epoch))
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 2))
    raise ValueError(f"unknown schedule {config.schedule!r}; use 'cosine' or 'plateau'")


@dataclass
class _Batches:
    """All rows of a stage, handed out batch by batch on the training device.

    Targets and weights are converted to tensors once, so a batch is only an index and a copy.
    """

    embeddings: np.ndarray
    targets: torch.Tensor
    weights: torch.Tensor
    device: torch.device

    @classmethod
    def of(cls, data: StageData, device: torch.device) -> _Batches:
        targets = torch.from_numpy(np.ascontiguousarray(data.targets, dtype=np.float32))
        weights = torch.from_numpy(np.ascontiguousarray(data.weights, dtype=np.float32))
        return cls(data.embeddings, targets, weights, device)

    def take(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embeddings, targets and weights of the rows ``idx``."""
        return (
            _batch(self.embeddings, idx, self.device),
            self.targets[idx].to(self.device, non_blocking=True),
            self.weights[idx].to(self.device, non_blocking=True),
        )


def _train_epoch(
    heads: FusedHeads,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: StageConfig,
    batches: _Batches,
    order: np.ndarray,
    bar: tqdm,
) -> np.ndarray:
    """One pass over the rows ``order``; returns each head's weighted mean training loss over the epoch.

    The cosine schedule steps per batch here; the plateau schedule needs the validation loss, so the
    caller steps it.
    """
    loss_num = torch.zeros(len(heads.keys), dtype=torch.float64)
    loss_den = torch.zeros(len(heads.keys), dtype=torch.float64)
    for s in range(0, len(order), config.batch_size):
        idx = order[s : s + config.batch_size]
        err, den = training_step(heads, optimizer, *batches.take(idx))
        bar.update(len(idx))
        if config.schedule == "cosine":
            scheduler.step()
        loss_num += err.double().cpu()
        loss_den += den.double().cpu()
    return (loss_num / loss_den.clamp_min(1e-12)).numpy()


@dataclass
class _Validation:
    """The validation rows of a stage, scored after every epoch."""

    kind: str
    embeddings: np.ndarray
    targets: np.ndarray
    weights: np.ndarray

    def evaluate(self, heads: FusedHeads, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        """Per-head validation loss (it selects the checkpoint) and metric (reported only)."""
        pred = predict(heads, self.embeddings, device)
        loss = _weighted_mse(pred, self.targets, self.weights)
        metric = np.array(
            [epoch_metric(self.kind, pred[:, h], self.targets[:, h], self.weights[:, h]) for h in range(pred.shape[1])]
        )
        return loss, metric


@dataclass
class _Selection:
    """Per head: the lowest validation loss so far, its epoch, a copy of its weights, epochs since it improved."""

    weights: list[torch.Tensor]
    loss: np.ndarray
    epoch: np.ndarray
    stale: np.ndarray

    def update(
        self, params: list[torch.Tensor], val_loss: np.ndarray, has_val: np.ndarray, epoch: int, device: torch.device
    ) -> None:
        """Copy the weights of every head whose validation loss improved; every other head grows staler."""
        improved = has_val & (val_loss < self.loss)
        with torch.no_grad():
            mask = torch.from_numpy(improved).to(device)
            for b, p in zip(self.weights, params):
                b[mask] = p.detach()[mask]
        self.loss = np.where(improved, val_loss, self.loss)
        self.epoch = np.where(improved, epoch, self.epoch)
        self.stale = np.where(improved, 0, self.stale + 1)


@dataclass
class _Epoch:
    """What one epoch measured; the arrays hold one value per head."""

    number: int
    train_loss: np.ndarray
    val_loss: np.ndarray
    val_metric: np.ndarray
    lr: float
    rows: int
    seconds: float

    def report(self, data: StageData, keys: Sequence[str], has_train: np.ndarray, best_epoch: np.ndarray) -> list[dict]:
        """One ``metrics.csv`` row per head."""
        return [
            {
                "stage": data.name,
                "epoch": self.number,
                "head": key,
                "train_loss": float(self.train_loss[h]) if has_train[h] else float("nan"),
                "val_loss": float(self.val_loss[h]),
                "val_metric": float(self.val_metric[h]),
                "metric": "spearman" if data.kind == "ratings" else "roc_auc",
                "lr": self.lr,
                "best_epoch": int(best_epoch[h]),
                "epoch_seconds": self.seconds,
                "embeddings_per_second": self.rows / max(self.seconds, 1e-9),
            }
            for h, key in enumerate(keys)
        ]


def _keep_selected_weights(
    params: list[torch.Tensor], best: list[torch.Tensor], start: list[torch.Tensor], rows: _Rows, device: torch.device
) -> None:
    """Put back into ``params`` each head's weights of its best epoch; heads without validation rows keep
    the last epoch, heads without training targets their starting weights (weight decay must not erode them)."""
    with torch.no_grad():
        keep_best = torch.from_numpy(rows.has_val).to(device)
        untouched = torch.from_numpy(~rows.has_train).to(device)
        for p, b, s in zip(params, best, start):
            p[keep_best] = b[keep_best]
            p[untouched] = s[untouched]


def train_stage(
    heads: FusedHeads,
    data: StageData,
    config: StageConfig,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> StageResult:
    """Train ``heads`` in place; afterwards every head holds the weights of its own best epoch.

    Epoch 0 is the starting point: a head whose validation loss never improves keeps its starting
    weights (stage 2 never makes a head worse on its held-out votes than stage 1 left it). Heads
    with no training target in this stage are not touched; heads with training targets but no
    validation rows keep their last-epoch weights.
    """
    device = torch.device(device)
    heads.to(device)
    rows = _rows_with_target(data)
    validation = _Validation(
        data.kind, data.embeddings[rows.val_idx], data.targets[rows.val_idx], data.weights[rows.val_idx]
    )
    params = list(heads.weights) + list(heads.biases)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _make_scheduler(optimizer, config, max(1, math.ceil(len(rows.train_idx) / config.batch_size)))
    start = [w.detach().clone() for w in params]
    start_loss, _ = validation.evaluate(heads, device)
    zeros = np.zeros(len(heads.keys), dtype=int)
    best = _Selection([w.detach().clone() for w in params], np.where(rows.has_val, start_loss, np.inf), zeros, zeros)
    generator = torch.Generator().manual_seed(seed)
    result = StageResult(best.epoch, best.loss, 0)
    batches = _Batches.of(data, device)
    bar = tqdm(
        total=config.epochs * len(rows.train_idx), desc=data.name, unit="emb", unit_scale=True, disable=not progress
    )
    t_start = time.perf_counter()
    seen = 0
    for epoch in range(1, config.epochs + 1):
        bar.set_description(f"{data.name} epoch {epoch}/{config.epochs}")
        heads.train()
        order = rows.train_idx[torch.randperm(len(rows.train_idx), generator=generator).numpy()]
        t_epoch = time.perf_counter()
        train_loss = _train_epoch(heads, optimizer, scheduler, config, batches, order, bar)
        seen += len(order)
        epoch_seconds = time.perf_counter() - t_epoch
        val_loss, val_metric = validation.evaluate(heads, device)
        if config.schedule == "plateau":
            scheduler.step(_nanmean(val_loss) if rows.has_val.any() else 0.0)
        best.update(params, val_loss, rows.has_val, epoch, device)
        lr = optimizer.param_groups[0]["lr"]
        measured = _Epoch(epoch, train_loss, val_loss, val_metric, lr, len(order), epoch_seconds)
        result.rows += measured.report(data, heads.keys, rows.has_train, best.epoch)
        active = int((rows.has_val & (best.stale < config.patience)).sum())
        bar.set_postfix(val_loss=f"{_nanmean(val_loss):.3f}", metric=f"{_nanmean(val_metric):.3f}", active=active)
        result.epochs_run = epoch
        if rows.has_val.any() and active == 0:
            break
    bar.close()
    result.seconds = time.perf_counter() - t_start
    result.samples_per_second = seen / max(result.seconds, 1e-9)
    _keep_selected_weights(params, best.weights, start, rows, device)
    heads.eval()
    result.best_epoch, result.best_val_loss = best.epoch, best.loss
    return result
