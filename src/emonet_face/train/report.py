"""Per-head validation report and the metrics plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from emonet_face.heads import FusedHeads
from emonet_face.taxonomy import HEAD_KEYS
from emonet_face.train.stage import head_metric, predict

if TYPE_CHECKING:
    from emonet_face.train.stage import StageData

__all__ = ["DECISION_THRESHOLD", "plot_metrics", "validation_report"]

DECISION_THRESHOLD = 3.5
"""A head "says present" when its raw output is above the middle of the 0–7 scale (for kappa)."""


def _votes_kappa(pred: np.ndarray, share: np.ndarray, weight: np.ndarray) -> float:
    """Cohen's kappa between the head's present/absent decision and every individual expert vote."""
    from sklearn.metrics import cohen_kappa_score

    present = weight > 0
    if not present.any():
        return float("nan")
    total = np.rint(weight[present]).astype(int)
    yes = np.rint(share[present] / 7.0 * total).astype(int)
    decision = pred[present] > DECISION_THRESHOLD
    votes = np.concatenate([np.repeat(1, yes.sum()), np.repeat(0, (total - yes).sum())])
    decisions = np.concatenate([np.repeat(decision, yes), np.repeat(decision, total - yes)])
    if len(np.unique(votes)) < 2 and len(np.unique(decisions)) < 2:
        return float("nan")
    return float(cohen_kappa_score(votes, decisions))


def _ratings_kappa(pred: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """Quadratic-weighted kappa between rounded predictions and rounded ratings (ordinal agreement)."""
    from sklearn.metrics import cohen_kappa_score

    present = weight > 0
    if present.sum() < 2:
        return float("nan")
    a, b = np.rint(target[present]).astype(int), np.rint(pred[present]).astype(int)
    if len(np.unique(np.concatenate([a, b]))) < 2:
        return float("nan")
    return float(cohen_kappa_score(a, b, weights="quadratic"))


def validation_report(heads: FusedHeads, stages: dict[str, StageData]) -> pd.DataFrame:
    """The exported model on each stage's held-out rows, one row per head.

    Columns: ``head``; for the pre-training store ``n_val_ratings``, ``spearman`` (SciPy) and
    ``kappa_ratings`` (quadratic-weighted); for the fine-tuning store ``n_val_votes`` (images),
    ``roc_auc`` (scikit-learn, majority vote, ties dropped) and ``kappa_votes`` (decision above
    3.5 vs each vote).
    """
    rows: dict[str, dict[str, str | int | float]] = {k: {"head": k} for k in heads.keys}
    for data in stages.values():
        x = data.embeddings[data.val_idx]
        pred = predict(heads, x)

        for h, key in enumerate(heads.keys):
            col = HEAD_KEYS.index(key)
            t, w = data.targets[data.val_idx, col], data.weights[data.val_idx, col]
            row = rows[key]
            if data.kind == "ratings":
                row["n_val_ratings"] = int((w > 0).sum())
                row["spearman"] = head_metric("ratings", pred[:, h], t, w)
                row["kappa_ratings"] = _ratings_kappa(pred[:, h], t, w)
            else:
                row["n_val_votes"] = int((w > 0).sum())
                row["roc_auc"] = head_metric("votes", pred[:, h], t, w)
                row["kappa_votes"] = _votes_kappa(pred[:, h], t, w)
    return pd.DataFrame(list(rows.values()))


def plot_metrics(metrics: pd.DataFrame, path: str | Path) -> Path:
    """Mean train/validation loss and median validation metric over heads, per epoch and stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    if not metrics.empty:
        for stage, frame in metrics.groupby("stage", sort=False):
            per_epoch = frame.groupby("epoch").agg(
                train_loss=("train_loss", "mean"), val_loss=("val_loss", "mean"), metric=("val_metric", "median")
            )
            ax_loss.plot(per_epoch.index, per_epoch["train_loss"], label=f"{stage} train")
            ax_loss.plot(per_epoch.index, per_epoch["val_loss"], "--", label=f"{stage} val")
            ax_metric.plot(per_epoch.index, per_epoch["metric"], label=f"{stage} ({frame['metric'].iloc[0]})")
    ax_loss.set(xlabel="epoch", ylabel="MSE (mean over heads)", title="loss")
    ax_metric.set(xlabel="epoch", ylabel="median over heads", title="validation metric")
    for ax in (ax_loss, ax_metric):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
