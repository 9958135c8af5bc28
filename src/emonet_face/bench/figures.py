"""Benchmark figures (PNG and PDF), drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emonet_face.bench.groups import GROUP_LABELS, GROUP_ORDER

FORMATS = ("png", "pdf")


def save_figure(fig: plt.Figure, out: Path, stem: str, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``out/stem.<format>`` for every format and close it (figures pile up in memory otherwise)."""
    paths = []
    fig.tight_layout()
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        fig.savefig(path, dpi=150)
        paths.append(path)
    plt.close(fig)
    return paths


def kappa_heatmap(pairwise: pd.DataFrame, out: Path) -> list[Path]:
    n = len(pairwise)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * n + 3), max(5, 0.45 * n + 2)))
    image = ax.imshow(
        pairwise.to_numpy(dtype=float), cmap="viridis", vmin=min(0, np.nanmin(pairwise.to_numpy())), vmax=1
    )
    ax.set_xticks(range(n), pairwise.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(n), pairwise.index, fontsize=7)
    fig.colorbar(image, ax=ax, label="mean quadratic weighted kappa over emotions")
    ax.set_title("Pairwise agreement between annotators")
    return save_figure(fig, out, "pairwise_kappa_heatmap")


def agreement_per_emotion(kappa: pd.DataFrame, groups: pd.Series, out: Path) -> list[Path]:
    """One line per group (mean over its annotators), emotions sorted by human agreement."""
    order = (
        kappa[groups == "humans"].mean().sort_values(ascending=False).index
        if (groups == "humans").any()
        else kappa.columns
    )
    fig, ax = plt.subplots(figsize=(14, 5))
    for group in GROUP_ORDER:
        members = kappa[groups == group]
        if members.empty:
            continue
        ax.plot(range(len(order)), members[order].mean().to_numpy(), marker="o", ms=3, label=GROUP_LABELS[group])
    ax.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
    ax.set_ylabel("kappa with human experts")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=8)
    ax.set_title("Agreement with human experts per emotion")
    return save_figure(fig, out, "agreement_per_emotion")


def group_boxplot(group_values: dict[str, np.ndarray], out: Path) -> list[Path]:
    names = [g for g in GROUP_ORDER if g in group_values and np.isfinite(group_values[g]).any()]
    data = [group_values[g][np.isfinite(group_values[g])] for g in names]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), [GROUP_LABELS[g] for g in names], rotation=20, fontsize=8)
    ax.set_ylabel("kappa with human experts (per annotator × emotion)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("Agreement by annotator group")
    return save_figure(fig, out, "group_boxplot")


def spearman_bars(per_annotator: pd.DataFrame, out: Path) -> list[Path]:
    frame = per_annotator.sort_values("spearman_mean", ascending=False)
    mean = frame["spearman_mean"].to_numpy(dtype=float)
    err = np.vstack(
        [mean - frame["spearman_ci_low"].to_numpy(dtype=float), frame["spearman_ci_high"].to_numpy(dtype=float) - mean]
    )
    fig, ax = plt.subplots(figsize=(max(7, 0.4 * len(frame) + 2), 4.5))
    colors = ["tab:blue" if h else "tab:orange" for h in frame["human"]]
    ax.bar(range(len(frame)), np.nan_to_num(mean), yerr=np.nan_to_num(np.abs(err)), color=colors, capsize=2)
    ax.set_xticks(range(len(frame)), frame.index, rotation=90, fontsize=7)
    ax.set_ylabel("Spearman's rho vs human median (95% CI)")
    ax.set_title("Rank agreement with the human median (blue: humans, leave-one-out)")
    return save_figure(fig, out, "spearman_bars")


def alpha_per_emotion(alpha: pd.DataFrame, out: Path) -> list[Path]:
    frame = alpha.sort_values("alpha", ascending=False)
    value = frame["alpha"].to_numpy(dtype=float)
    err = np.vstack([value - frame["ci_low"].to_numpy(dtype=float), frame["ci_high"].to_numpy(dtype=float) - value])
    fig, ax = plt.subplots(figsize=(14, 4.5))
    ax.errorbar(range(len(frame)), value, yerr=np.nan_to_num(np.abs(err)), fmt="o", ms=4, capsize=2)
    ax.set_xticks(range(len(frame)), frame.index, rotation=90, fontsize=7)
    ax.set_ylabel("Krippendorff's alpha (interval, 95% CI)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("Inter-expert reliability per emotion")
    return save_figure(fig, out, "alpha_per_emotion")


def binary_stacked_bars(per_emotion: pd.DataFrame, out: Path) -> list[Path]:
    frame = per_emotion.sort_values("agreement", ascending=False)
    x = np.arange(len(frame))
    fig, ax = plt.subplots(figsize=(max(8, 0.3 * len(frame) + 2), 4.5))
    bottom = np.zeros(len(frame))
    for column, color in (("agreement", "tab:green"), ("partial", "tab:orange"), ("disagreement", "tab:red")):
        share = frame[column].to_numpy(dtype=float) * 100
        ax.bar(x, share, bottom=bottom, color=color, label=column)
        bottom += share
    ax.set_xticks(x, frame.index, rotation=90, fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of items with ≥ 2 votes")
    ax.legend(fontsize=8)
    ax.set_title("EmoNet-Face BINARY: expert vote agreement per emotion")
    return save_figure(fig, out, "binary_agreement")


def hq_figures(result, out: Path) -> list[Path]:
    """All HQ protocol figures for an :class:`~emonet_face.bench.protocol.HQResult`."""
    groups = result.per_annotator["group"]
    return [
        *kappa_heatmap(result.pairwise_kappa, out),
        *agreement_per_emotion(result.kappa_per_emotion, groups, out),
        *group_boxplot(result.group_values, out),
        *spearman_bars(result.per_annotator, out),
        *alpha_per_emotion(result.alpha, out),
    ]
