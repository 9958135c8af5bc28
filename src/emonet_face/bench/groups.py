"""Annotator groups and the tests between them.

Groups follow the published naming conventions; a name that fits none lands in ``other`` (never an
error), so a user's own model simply appears as one more annotator.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, wilcoxon

from emonet_face.bench.agreement import bootstrap_mean, percentile_ci

GROUP_ORDER = ("humans", "ours", "proprietary", "vlm_ms", "vlm_zs", "random", "other")
GROUP_LABELS = {
    "humans": "Human experts",
    "ours": "Empathic Insight (ours)",
    "proprietary": "Proprietary (Hume Face*)",
    "vlm_ms": "VLM multi-shot (… MS)",
    "vlm_zs": "VLM zero-shot (… ZS)",
    "random": "Random baseline",
    "other": "Other",
}


def annotator_group(name: str, human: bool) -> str:
    """The group of an annotator from its name (published conventions)."""
    if human:
        return "humans"
    if "Empathic Insight" in name:
        return "ours"
    if name.startswith("Hume Face"):
        return "proprietary"
    if name.endswith(" MS"):
        return "vlm_ms"
    if name.endswith(" ZS"):
        return "vlm_zs"
    if "random" in name.lower():
        return "random"
    return "other"


def compare_groups(values: dict[str, np.ndarray], n_boot: int, rng: np.random.Generator) -> pd.DataFrame:
    """Pairwise two-sided Mann–Whitney U and bootstrap CI of the difference of means (a − b)."""
    rows = []
    names = [g for g in GROUP_ORDER if g in values and np.isfinite(values[g]).sum() > 0]
    for a, b in itertools.combinations(names, 2):
        va = values[a][np.isfinite(values[a])]
        vb = values[b][np.isfinite(values[b])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            test = mannwhitneyu(va, vb, alternative="two-sided")
        diffs = bootstrap_mean(va, n_boot, rng) - bootstrap_mean(vb, n_boot, rng)
        low, high = percentile_ci(diffs)
        rows.append(
            {
                "group_a": a,
                "group_b": b,
                "n_a": len(va),
                "n_b": len(vb),
                "mean_a": float(va.mean()),
                "mean_b": float(vb.mean()),
                "mean_diff": float(va.mean() - vb.mean()),
                "diff_ci_low": float(low),
                "diff_ci_high": float(high),
                "mannwhitney_u": float(test.statistic),
                "p_value": float(test.pvalue),
            }
        )
    return pd.DataFrame(rows)


def could_be_annotator(
    kappa_per_emotion: np.ndarray, human: np.ndarray, n_boot: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Is each annotator's agreement with humans distinguishable from human–human agreement?

    Per emotion, compare the annotator's kappa with humans to the mean human–human kappa (for a
    human: the mean over the *other* humans). The annotator "could be an annotator" when the 95%
    bootstrap CI (over emotions) of the mean difference reaches 0 or above, i.e. it is not
    detectably worse than a human expert.
    """
    human_rows = kappa_per_emotion[human]
    rows = []
    for a in range(len(kappa_per_emotion)):
        others = human_rows if not human[a] else kappa_per_emotion[human & (np.arange(len(human)) != a)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = np.nanmean(others, axis=0) if len(others) else np.full(kappa_per_emotion.shape[1], np.nan)
        diff = kappa_per_emotion[a] - reference
        finite = diff[np.isfinite(diff)]
        if len(finite) == 0:
            rows.append(
                {
                    "mean_diff": np.nan,
                    "diff_ci_low": np.nan,
                    "diff_ci_high": np.nan,
                    "wilcoxon_p": np.nan,
                    "could_be_annotator": None,
                }
            )
            continue
        low, high = percentile_ci(bootstrap_mean(finite, n_boot, rng))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p_value = float(wilcoxon(finite).pvalue) if np.any(finite != 0) else 1.0
        except ValueError:
            p_value = np.nan
        rows.append(
            {
                "mean_diff": float(finite.mean()),
                "diff_ci_low": float(low),
                "diff_ci_high": float(high),
                "wilcoxon_p": p_value,
                "could_be_annotator": bool(high >= 0),
            }
        )
    return pd.DataFrame(rows)
