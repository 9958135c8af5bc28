"""Two-stage training of all emotion heads from embedding stores, neutral statistics, export.

``train_heads`` runs: stage 1 (``pretrain``, BIG's generated 0–7 ratings) → stage 2 (``finetune``,
BINARY's expert votes, see :mod:`emonet_face.train.targets`) → neutral statistics → export in the
released layout and as safetensors → validation report, metrics CSV + plot, ``training.json``.
"""

from __future__ import annotations

import json
import platform
import random
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from emonet_face.data.store import is_store, read_manifest, read_store, read_store_targets
from emonet_face.errors import InputError, require_extra
from emonet_face.heads import HEAD_ARCHITECTURES, FusedHeads, HeadArchitecture, save_heads
from emonet_face.taxonomy import HEAD_KEYS
from emonet_face.train.report import plot_metrics, validation_report
from emonet_face.train.stage import StageConfig, StageData, StageResult, predict, train_stage
from emonet_face.train.targets import rating_targets, vote_targets

__all__ = ["TrainConfig", "TrainResult", "neutral_embeddings", "set_seed", "split_indices", "train_heads"]

RELEASED_DIR = "released"
SAFETENSORS_DIR = "safetensors"


@dataclass
class TrainConfig:
    arch: str = "large"
    hidden: tuple[int, ...] | None = None
    """Override the hidden widths of ``arch`` (experiments, tests)."""
    dropout: float = 0.1
    seed: int = 0
    val_fraction: float = 0.1
    device: str = "cpu"
    pretrain: StageConfig = field(default_factory=StageConfig)
    finetune: StageConfig = field(default_factory=lambda: StageConfig(epochs=20, lr=3e-4, patience=5))

    @property
    def widths(self) -> tuple[int, ...]:
        if self.hidden:
            return tuple(self.hidden)
        if self.arch not in HEAD_ARCHITECTURES:
            raise InputError(f"--arch {self.arch!r}: unknown; use one of {', '.join(HEAD_ARCHITECTURES)}")
        return HEAD_ARCHITECTURES[self.arch]


@dataclass
class TrainResult:
    heads: FusedHeads
    out: Path
    report: pd.DataFrame
    stages: dict[str, StageResult]
    splits: dict[str, StageData]


def set_seed(seed: int) -> None:
    """Seed every generator training touches (Python, NumPy, torch CPU/CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic held-out split of row indices (rows are images, so no image is on both sides)."""
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction) if n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _load_stage(
    store: str | Path, name: str, kind: str, val_fraction: float, seed: int
) -> tuple[StageData, pd.DataFrame]:
    if not is_store(store):
        raise InputError(f"{store}: not an embedding store; create it with `emonet-face embed DATASET --out {store}`")
    embeddings, frame = read_store(store)
    targets = read_store_targets(store)
    if tuple(targets.keys) != HEAD_KEYS:
        raise InputError(f"{store}: store heads {targets.keys[:3]}… differ from this version's 44 heads")
    if kind == "ratings":
        t, w = rating_targets(targets.ratings)
        missing = "ratings (generated 0–7 intensities)"
    else:
        t, w = vote_targets(targets.votes_yes, targets.votes_no, targets.keys)
        missing = "expert votes"
    if not (w > 0).any():
        raise InputError(f"{store}: no {missing} in this store; check that --{name} points at the right dataset")
    train_idx, val_idx = split_indices(len(embeddings), val_fraction, seed)
    return StageData(name, kind, embeddings, t, w, train_idx, val_idx), frame


def neutral_embeddings(spec: str, frames: dict[str, tuple[np.ndarray, pd.DataFrame]]) -> tuple[np.ndarray, str]:
    """``spec`` is a store path (all its rows) or ``column=value`` filtering the training stores' metadata
    (case-insensitive, e.g. ``emotion=neutral``)."""
    if is_store(spec):
        embeddings, _ = read_store(spec)
        return embeddings, f"store {spec}"
    if "=" not in spec:
        raise InputError(f"--neutral {spec!r}: neither an embedding store nor a metadata filter like emotion=neutral")
    column, value = (s.strip() for s in spec.split("=", 1))
    chosen = []
    for embeddings, frame in frames.values():
        if column in frame.columns:
            mask = frame[column].astype("string").str.strip().str.lower().eq(value.lower()).fillna(False).to_numpy()
            chosen.append(embeddings[mask])
    if not chosen:
        raise InputError(f"--neutral {spec!r}: no training store has a metadata column {column!r}")
    matrix = np.concatenate(chosen)
    if not len(matrix):
        raise InputError(f"--neutral {spec!r}: no rows match; check the column value")
    return matrix, f"filter {column}={value}"


def _start_at_target_means(heads: FusedHeads, data: StageData) -> None:
    """Set each fresh head's output bias to the mean of its training targets, so the first epochs learn
    the signal instead of the offset (the outputs of a fresh head sit near 0, the targets near 3.5)."""
    w = data.weights[data.train_idx]
    totals = w.sum(0)
    means = np.divide((w * data.targets[data.train_idx]).sum(0), totals, out=np.zeros(len(totals)), where=totals > 0)
    with torch.no_grad():
        heads.biases[-1][:, 0] = torch.from_numpy(means.astype(np.float32))


def _load_stages(
    pretrain: str | Path | None, finetune: str | Path | None, config: TrainConfig, notes: list[str]
) -> tuple[dict[str, StageData], dict[str, tuple[np.ndarray, pd.DataFrame]], dict[str, Any]]:
    """Read the given stores: per stage its data, (embeddings, metadata) for ``--neutral`` filters, and
    the encoder settings. Stores of different embedding widths fail here, before any training."""
    stages: dict[str, StageData] = {}
    frames: dict[str, tuple[np.ndarray, pd.DataFrame]] = {}
    encoders: dict[str, Any] = {}
    for name, store, kind in (("pretrain", pretrain, "ratings"), ("finetune", finetune, "votes")):
        if store is None:
            continue
        data, frame = _load_stage(store, name, kind, config.val_fraction, config.seed)
        stages[name] = data
        frames[name] = (data.embeddings, frame)
        encoders[name] = read_manifest(store).get("encoder", {})
    dims = {name: d.embeddings.shape[1] for name, d in stages.items()}
    if len(set(dims.values())) > 1:
        raise InputError(f"stores have different embedding widths {dims}; embed both with the same --encoder")
    if len({json.dumps(e, sort_keys=True) for e in encoders.values()}) > 1:
        notes.append("pretrain and finetune stores were embedded with different encoder settings")
        warnings.warn(notes[-1], stacklevel=3)
    return stages, frames, encoders


def _train_stages(
    stages: dict[str, StageData], config: TrainConfig, widths: tuple[int, ...], progress: bool
) -> tuple[FusedHeads, dict[str, StageResult]]:
    """Fresh heads, started at the first stage's target means, trained by each stage in turn."""
    arch = HeadArchitecture(next(iter(stages.values())).embeddings.shape[1], widths, config.dropout)
    heads = FusedHeads(HEAD_KEYS, arch)
    stage_configs = {"pretrain": config.pretrain, "finetune": config.finetune}
    _start_at_target_means(heads, next(iter(stages.values())))
    results = {
        name: train_stage(heads, data, stage_configs[name], device=config.device, seed=config.seed, progress=progress)
        for name, data in stages.items()
    }
    return heads, results


def _drop_untrained(heads: FusedHeads, stages: dict[str, StageData], device: str, notes: list[str]) -> FusedHeads:
    """Heads that no stage gave a training target still hold their random start, so they are not exported."""
    trained = np.zeros(len(HEAD_KEYS), dtype=bool)
    for data in stages.values():
        trained |= data.weights[data.train_idx].sum(0) > 0
    untrained = [k for k, t in zip(HEAD_KEYS, trained) if not t]
    if not untrained:
        return heads
    notes.append(f"no training targets for {len(untrained)} head(s), not exported: {', '.join(untrained)}")
    warnings.warn(notes[-1], stacklevel=3)
    keep = [k for k, t in zip(HEAD_KEYS, trained) if t]
    kept = FusedHeads.from_state_dicts({k: heads.head_state_dict(k) for k in keep})
    kept.arch = heads.arch
    kept.to(device)
    return kept


def _set_neutral(
    heads: FusedHeads,
    neutral: str | None,
    frames: dict[str, tuple[np.ndarray, pd.DataFrame]],
    device: str,
    notes: list[str],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Set the neutral means from the ``--neutral`` rows (scores are reported relative to them); returns
    the source for ``training.json`` and the per-head neutral statistics saved with the heads."""
    neutral_info: dict[str, Any] = {"source": None, "count": 0}
    std = np.full(len(heads.keys), np.nan)
    if neutral:
        matrix, source = neutral_embeddings(neutral, frames)
        raw = predict(heads, matrix, device)
        with torch.no_grad():
            heads.neutral_mean.copy_(torch.from_numpy(raw.mean(0).astype(np.float32)))
        std = raw.std(0, ddof=1) if len(raw) > 1 else np.zeros(len(heads.keys))
        neutral_info = {"source": source, "count": len(matrix)}
    else:
        notes.append("no --neutral given: neutral means are 0, so centred scores equal raw scores")
        warnings.warn(notes[-1], stacklevel=3)
    extra = {k: {"std": float(s), "count": neutral_info["count"]} for k, s in zip(heads.keys, std)}
    return neutral_info, extra


def _write_metrics(
    heads: FusedHeads, stages: dict[str, StageData], results: dict[str, StageResult], out: Path
) -> pd.DataFrame:
    """Per-epoch metrics (CSV and plot) and the final validation report; returns the report."""
    metrics = pd.DataFrame([row for r in results.values() for row in r.rows])
    metrics.to_csv(out / "metrics.csv", index=False)
    plot_metrics(metrics, out / "metrics.png")
    report = validation_report(heads, stages)
    report.to_csv(out / "validation_report.csv", index=False)
    return report


def _stage_summaries(stages: dict[str, StageData], results: dict[str, StageResult]) -> dict[str, dict[str, Any]]:
    """The ``stages`` entry of ``training.json``: how long each stage ran, on how many rows, best epochs."""
    return {
        name: {
            "epochs_run": r.epochs_run,
            "seconds": r.seconds,
            "embeddings_per_second": r.samples_per_second,
            "rows_train": len(stages[name].train_idx),
            "rows_val": len(stages[name].val_idx),
            "best_epoch": dict(zip(HEAD_KEYS, map(int, r.best_epoch))),
        }
        for name, r in results.items()
    }


def train_heads(
    out: str | Path,
    *,
    pretrain: str | Path | None = None,
    finetune: str | Path | None = None,
    config: TrainConfig | None = None,
    neutral: str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Run the two stages (either may be skipped) and write everything under ``out``."""
    config = config or TrainConfig()
    if pretrain is None and finetune is None:
        raise InputError("nothing to train: pass --pretrain BIG_STORE and/or --finetune BINARY_STORE")
    # the validation metrics (ROC-AUC, kappa): fail before hours of training, not at the first report
    require_extra("sklearn.metrics", feature="emonet-face train", extra="train", package="scikit-learn")
    widths = config.widths  # an unknown --arch fails before any store is read
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    notes: list[str] = []
    stages, frames, encoders = _load_stages(pretrain, finetune, config, notes)
    heads, results = _train_stages(stages, config, widths, progress)
    heads = _drop_untrained(heads, stages, config.device, notes)
    heads.eval()
    neutral_info, extra = _set_neutral(heads, neutral, frames, config.device, notes)
    heads.cpu()
    save_heads(heads, out / RELEASED_DIR, layout="released", extra_stats=extra)
    save_heads(heads, out / SAFETENSORS_DIR, layout="safetensors", extra_stats=extra)
    report = _write_metrics(heads, stages, results, out)
    summary = {
        "config": {**asdict(config), "widths": list(config.widths)},
        "seed": config.seed,
        "stores": {"pretrain": str(pretrain) if pretrain else None, "finetune": str(finetune) if finetune else None},
        "encoder": next(iter(encoders.values()), {}),
        "neutral": neutral_info,
        "stages": _stage_summaries(stages, results),
        "exported_heads": list(heads.keys),
        "outputs": {"released": RELEASED_DIR, "safetensors": SAFETENSORS_DIR},
        "notes": notes,
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    return TrainResult(heads, out, report, results, stages)
