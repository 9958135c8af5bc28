"""Agreement and model scores by demographic group.

* :func:`agreement_by_group` runs the unchanged HQ protocol (:func:`run_hq_protocol`) on each group's
  images, so a group's kappa is exactly what `bench hq` gives on that group's rows alone. Whether an
  annotator's agreement differs across groups is a permutation test over images
  (:func:`kappa_permutation_test`): kappa on few images is noisier and biased low, so small groups
  agree "less" even when nothing differs; shuffling group labels over images (sizes kept) puts that in
  the null distribution. A test on per-emotion kappas (Kruskal–Wallis, Friedman) does not, and on
  synthetic data with no group effect it gave p < 1e-5 for every annotator.
* :func:`prediction_stats` gives a score table's mean centred score per emotion per group (bootstrap
  CIs over images) and, with HQ ratings, the model's gap between groups beside the humans' gap on the
  same images: both z-scored per emotion over those images, the difference tested by permuting group
  labels over images (Benjamini–Hochberg over emotions).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from emonet_face.bench.agreement import kappa_from_confusion, rating_codes
from emonet_face.bench.hq import HQData, load_hq
from emonet_face.bench.protocol import json_scalar, run_hq_protocol
from emonet_face.bench.readout import apply_readout
from emonet_face.bench.scores import load_score_table
from emonet_face.bench.tables import image_id
from emonet_face.errors import InputError
from emonet_face.stats.dataset import EMOTION_NAMES, join_meta, read_meta
from emonet_face.stats.demographics import FACTORS, UNKNOWN, DemographicTable, demographic_columns
from emonet_face.stats.report import by_group_markdown, write_by_group_outputs

__all__ = [
    "GroupAgreement",
    "PredictionStats",
    "agreement_by_group",
    "group_factors",
    "kappa_permutation_test",
    "parse_factors",
    "prediction_stats",
    "subset_hq",
]

def parse_factors(text: str) -> list[str]:
    factors = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in factors if f not in FACTORS]
    if bad or not factors:
        raise InputError(f"--by {text!r}: unknown factor(s) {', '.join(bad) or '(none)'}; use any of {', '.join(FACTORS)}")
    return factors


def group_factors(
    images: list[str], meta: str | Path | pd.DataFrame, table: DemographicTable | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The 4 factors for each of ``images`` (matched to META by file name, else stem); warnings."""
    frame = meta if isinstance(meta, pd.DataFrame) else read_meta(meta)
    raw, matched = join_meta(images, frame)
    if matched == 0:
        raise InputError(f"meta file {meta}: no image matches an image of the annotations by file name or stem")
    notes = []
    if matched < len(images):
        notes.append(f"meta file {meta}: {len(images) - matched} of {len(images)} images have no demographics (group 'unknown')")
    factors, unmapped = demographic_columns(raw, table)
    if unmapped:
        notes.append(f"ethnicity strings not in the FairFace table (group 'unknown'): {', '.join(map(repr, list(unmapped)[:5]))}")
    return factors, notes


def subset_hq(data: HQData, mask: np.ndarray) -> HQData:
    """The annotations of the images in ``mask`` only, as if the file held just those rows."""
    mask = np.asarray(mask, dtype=bool)
    ratings = data.ratings[:, mask]
    keep = ~np.isnan(ratings[:, :, 0]).all(axis=1)  # an annotator with no row left is not in the subset file
    return HQData(
        [a for a, k in zip(data.annotators, keep) if k],
        data.human[keep],
        [i for i, m in zip(data.images, mask) if m],
        ratings[keep],
        [],
    )


@dataclass
class GroupAgreement:
    factors: list[str]
    groups: dict[str, dict[str, Any]]
    """factor → value → {n_images, per_annotator (frame), kappa_per_emotion (frame)}."""
    tests: dict[str, pd.DataFrame]
    """factor → one row per annotator: groups, statistic (weighted variance of group kappas), p, n_perm."""
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:

        by: dict[str, Any] = {}
        for factor, values in self.groups.items():
            by[factor] = {}
            for value, g in values.items():
                pa = g["per_annotator"]
                by[factor][value] = {
                    "n_images": g["n_images"],
                    "kappa_mean": {a: json_scalar(v) for a, v in pa["kappa_mean"].items()},
                    "kappa_ci": {a: [json_scalar(pa.at[a, "kappa_ci_low"]), json_scalar(pa.at[a, "kappa_ci_high"])] for a in pa.index},
                    "spearman_mean": {a: json_scalar(v) for a, v in pa["spearman_mean"].items()},
                    "spearman_ci": {
                        a: [json_scalar(pa.at[a, "spearman_ci_low"]), json_scalar(pa.at[a, "spearman_ci_high"])] for a in pa.index
                    },
                }
        tests = {
            factor: {a: {k: json_scalar(v) for k, v in row.items()} for a, row in frame.to_dict("index").items()}
            for factor, frame in self.tests.items()
        }
        return {"by": by, "by_tests": tests, "by_warnings": list(self.warnings)}

    def write_outputs(self, out: Path, *, figures: bool = True) -> list[Path]:
        """The ``bench hq --by`` tables and figures, written beside the HQ report."""
        return write_by_group_outputs(self, out, figures=figures)

    def markdown(self, figures: bool) -> str:
        """The "Agreement by group" section of the HQ report."""
        return by_group_markdown(self, figures)

    def long_table(self) -> pd.DataFrame:
        rows = []
        for factor, values in self.groups.items():
            for value, g in values.items():
                pa = g["per_annotator"]
                for a in pa.index:
                    rows.append(
                        {
                            "factor": factor,
                            "group": value,
                            "annotator": a,
                            "n_images": g["n_images"],
                            **{c: pa.at[a, c] for c in ("kappa_mean", "kappa_ci_low", "kappa_ci_high", "spearman_mean", "spearman_ci_low", "spearman_ci_high")},
                        }
                    )
        return pd.DataFrame(rows)


def agreement_by_group(
    data: HQData,
    factors_frame: pd.DataFrame,
    factors: list[str],
    *,
    readout: str = "published",
    seed: int = 42,
    n_boot: int = 1000,
    reliable_alpha: float = 0.3,
    n_perm: int = 200,
) -> GroupAgreement:
    """The HQ protocol on each group's images (same seed and settings as the full run), plus a permutation
    test per annotator of whether its kappa differs across the groups (``unknown`` left out)."""

    notes: list[str] = []
    groups: dict[str, dict[str, Any]] = {}
    tests: dict[str, pd.DataFrame] = {}
    for factor in factors:
        labels = factors_frame[factor].to_numpy()
        groups[factor] = {}
        for value in sorted(pd.unique(labels), key=lambda v: (v == UNKNOWN, str(v))):
            mask = labels == value
            sub = subset_hq(data, mask)
            try:
                result = run_hq_protocol(sub, readout=readout, seed=seed, n_boot=n_boot, reliable_alpha=reliable_alpha)
            except InputError as exc:
                notes.append(f"{factor}={value}: {int(mask.sum())} images, no agreement ({exc})")
                continue
            groups[factor][str(value)] = {
                "n_images": int(mask.sum()),
                "per_annotator": result.per_annotator,
                "kappa_per_emotion": result.kappa_per_emotion,
            }
        tests[factor] = kappa_permutation_test(data, labels, readout=readout, n_perm=n_perm, seed=seed)
    return GroupAgreement(factors, groups, tests, notes)


def kappa_permutation_test(
    data: HQData, labels: np.ndarray, *, readout: str = "published", n_perm: int = 200, seed: int = 42
) -> pd.DataFrame:
    """Per annotator: does its kappa with the humans differ across groups more than chance allows?

    Statistic: the size-weighted variance of the annotator's group kappa means (mean over emotions of
    the kappa vs humans, as in the protocol) over the groups of ``labels`` (``unknown`` left out).
    Null: group labels shuffled over images, group sizes kept. Each permutation rebuilds every
    (annotator pair, emotion, group) confusion matrix with one ``np.bincount``. Under ``calibrated``
    the readout is fitted once on all images (the by-group tables refit it per group).
    """

    human = data.human.astype(bool)
    keep = labels != UNKNOWN
    values, groups = np.unique(labels[keep].astype(str), return_inverse=True)
    n_a, n_g, n_e = len(data.annotators), len(values), data.ratings.shape[2]
    columns = ["groups", "statistic", "p", "n_perm"]
    if n_g < 2:
        return pd.DataFrame(np.nan, index=pd.Index(data.annotators, name="annotator"), columns=columns)
    codes = rating_codes(apply_readout(data.ratings, human, readout)[:, keep])
    pairs = np.array([(a, b) for a in range(n_a) for b in range(a + 1, n_a) if human[a] or human[b]], dtype=np.int64)
    first, second = codes[pairs[:, 0]], codes[pairs[:, 1]]
    valid = (first >= 0) & (second >= 0)
    p_idx, i_idx, e_idx = np.nonzero(valid)
    cell = first[valid].astype(np.int64) * 8 + second[valid]
    base = (p_idx * n_e + e_idx) * n_g
    sizes = np.bincount(groups, minlength=n_g).astype(float)

    def spread(group_of_image: np.ndarray) -> np.ndarray:
        index = (base + group_of_image[i_idx]) * 64 + cell
        confusion = np.bincount(index, minlength=len(pairs) * n_e * n_g * 64).reshape(len(pairs), n_e, n_g, 8, 8)
        kappa = kappa_from_confusion(confusion)  # (P, E, G)
        full = np.full((n_a, n_a, n_e, n_g), np.nan)
        full[pairs[:, 0], pairs[:, 1]] = full[pairs[:, 1], pairs[:, 0]] = kappa
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(np.nanmean(full[:, human], axis=1), axis=1)  # (A, G): as the protocol's kappa_mean
        weight = np.where(np.isfinite(means), sizes, 0.0)
        total = weight.sum(axis=1)
        centre = (weight * np.nan_to_num(means)).sum(axis=1) / np.where(total > 0, total, 1)
        var = (weight * (np.nan_to_num(means) - centre[:, None]) ** 2).sum(axis=1) / np.where(total > 0, total, 1)
        return np.where((weight > 0).sum(axis=1) >= 2, var, np.nan)

    observed = spread(groups)
    rng = np.random.default_rng([seed, 13])
    exceed = np.zeros(n_a)
    for _ in range(n_perm):
        exceed += spread(rng.permutation(groups)) >= observed - 1e-15
    p = np.where(np.isfinite(observed), (1 + exceed) / (n_perm + 1), np.nan)
    frame = pd.DataFrame(
        {"groups": n_g, "statistic": observed, "p": p, "n_perm": n_perm}, index=pd.Index(data.annotators, name="annotator")
    )
    return frame


# -- model scores by group ---------------------------------------------------------------------------------------


@dataclass
class PredictionStats:
    n_images: int
    counts: dict[str, pd.Series]
    means: dict[str, pd.DataFrame]
    """factor → long frame: group, emotion, mean, ci_low, ci_high, n."""
    gaps: dict[str, pd.DataFrame] = field(default_factory=dict)
    """factor → long frame: group, emotion, model_gap, human_gap, model_gap_z, human_gap_z, excess_z, p, q, flagged."""
    n_common: int = 0
    n_perm: int = 0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:

        out: dict[str, Any] = {
            "kind": "predictions",
            "n_images": self.n_images,
            "by": {f: {str(k): int(v) for k, v in c.items()} for f, c in self.counts.items()},
            "mean_score": {
                f: {
                    g: {r.emotion: {"mean": json_scalar(r.mean), "ci": [json_scalar(r.ci_low), json_scalar(r.ci_high)]} for r in part.itertuples()}
                    for g, part in frame.groupby("group", sort=False)
                }
                for f, frame in self.means.items()
            },
        }
        if self.gaps:
            out["gap_definition"] = (
                "per emotion, model centred scores and mean human ratings are z-scored over the images both cover; "
                "gap = mean z in the group minus mean z in the other group(s); excess_z = model gap - human gap; "
                f"p: two-sided permutation test of excess_z over images ({self.n_perm} permutations); "
                "q: Benjamini-Hochberg over all tests of the factor; flagged: q < 0.05"
            )
            out["n_images_with_ratings"] = self.n_common
            out["gap"] = {
                f: {
                    g: {
                        r.emotion: {k: json_scalar(getattr(r, k)) for k in ("model_gap", "human_gap", "model_gap_z", "human_gap_z", "excess_z", "p", "q", "flagged")}
                        for r in part.itertuples()
                    }
                    for g, part in frame.groupby("group", sort=False)
                }
                for f, frame in self.gaps.items()
            }
            out["flagged"] = [
                {"factor": f, "group": r.group, "emotion": r.emotion, "excess_z": json_scalar(r.excess_z), "q": json_scalar(r.q)}
                for f, frame in self.gaps.items()
                for r in frame[frame["flagged"]].itertuples()
            ]
        out["warnings"] = list(self.warnings)
        return out


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(values)
    if n < 2:
        nan = np.full(values.shape[1], np.nan)
        return nan, nan
    draws = np.empty((n_boot, values.shape[1]))
    for start in range(0, n_boot, 100):
        idx = rng.integers(0, n, size=(min(100, n_boot - start), n))
        draws[start : start + len(idx)] = values[idx].mean(axis=1)
    return np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)


def _comparisons(labels: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(name, mask of the group): one comparison for a two-valued factor, each value vs the rest otherwise."""
    values = sorted(v for v in pd.unique(labels) if v != UNKNOWN)
    if len(values) < 2:
        return []
    if len(values) == 2:
        return [(f"{values[0]} vs {values[1]}", labels == values[0])]
    return [(f"{v} vs rest", labels == v) for v in values]


def gap_test(
    model: np.ndarray, human: np.ndarray, labels: np.ndarray, *, n_perm: int = 2000, seed: int = 42
) -> pd.DataFrame:
    """Model gap vs human gap between groups, per emotion, with a permutation test over images.

    ``model``, ``human``: (I, E) on the same images; ``labels``: (I,) group per image (``unknown`` rows
    take part in neither side of a comparison).
    """
    known = labels != UNKNOWN
    model, human, labels = model[known], human[known], labels[known]

    def z(x: np.ndarray) -> np.ndarray:
        sd = x.std(axis=0, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sd > 0, (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)

    zm, zh = z(model), z(human)
    diff = zm - zh
    rng = np.random.default_rng([seed, 7])
    perms = np.argsort(rng.random((n_perm, len(labels))), axis=1)
    rows = []
    for name, mask in _comparisons(labels):
        n_in, n_out = int(mask.sum()), int((~mask).sum())
        if n_in < 2 or n_out < 2:
            continue
        weights = np.where(mask, 1.0 / n_in, -1.0 / n_out)

        model_gap, human_gap, model_z, human_z, observed = (weights @ x for x in (model, human, zm, zh, diff))
        null = weights[perms] @ diff  # (n_perm, E): the same statistic with group labels shuffled over images
        p = (1 + (np.abs(null) >= np.abs(observed)[None, :] - 1e-12).sum(axis=0)) / (n_perm + 1)
        for e, emotion in enumerate(EMOTION_NAMES[: model.shape[1]]):
            rows.append(
                {
                    "group": name,
                    "emotion": emotion,
                    "n_group": n_in,
                    "n_rest": n_out,
                    "model_gap": float(model_gap[e]),
                    "human_gap": float(human_gap[e]),
                    "model_gap_z": float(model_z[e]),
                    "human_gap_z": float(human_z[e]),
                    "excess_z": float(observed[e]),
                    "p": float(p[e]),
                }
            )
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["q"] = sps.false_discovery_control(frame["p"].to_numpy(), method="bh")
        frame["flagged"] = frame["q"] < 0.05
    return frame


def prediction_stats(
    predictions: str | Path,
    factors: list[str],
    *,
    meta: str | Path | None = None,
    hq: str | Path | None = None,
    table: DemographicTable | None = None,
    n_boot: int = 1000,
    n_perm: int = 2000,
    seed: int = 42,
) -> PredictionStats:
    """Mean centred score per emotion per group (bootstrap CIs over images); with ``hq``, model vs human gaps."""

    scores = load_score_table(predictions)
    notes = list(scores.warnings)
    images = [image_id(i) or i for i in scores.images]
    if meta is not None:
        frame, more = group_factors(images, meta, table)
        notes += more
    else:
        own = scores.frame.rename(columns=str.lower)
        if not any(c in own.columns for c in ("gender", "age", "ethnicity")):
            raise InputError(f"score table {predictions} has no demographic columns; pass --meta FILE (image + gender/age/ethnicity)")
        frame, unmapped = demographic_columns(own, table)
        if unmapped:
            notes.append(f"ethnicity strings not in the FairFace table (group 'unknown'): {', '.join(map(repr, list(unmapped)[:5]))}")
    values = scores.scores.to_numpy(dtype=float)
    rng = np.random.default_rng([seed, 11])
    counts, means = {}, {}
    for factor in factors:
        labels = frame[factor].to_numpy()
        counts[factor] = pd.Series(labels).value_counts()
        rows = []
        for value in sorted(pd.unique(labels), key=lambda v: (v == UNKNOWN, str(v))):
            part = values[labels == value]
            low, high = _bootstrap_means(part, n_boot, rng)
            for e, emotion in enumerate(EMOTION_NAMES):
                rows.append({"group": str(value), "emotion": emotion, "n": len(part), "mean": part[:, e].mean(), "ci_low": low[e], "ci_high": high[e]})
        means[factor] = pd.DataFrame(rows)
    result = PredictionStats(len(images), counts, means, warnings=notes, n_perm=n_perm)
    if hq is not None:
        data = load_hq(hq)
        notes += data.warnings
        human = data.human.astype(bool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            human_mean = np.nanmean(data.ratings[human], axis=0)  # (I_hq, E)
        position = {image_id(n) or n: i for i, n in enumerate(data.images)}
        pairs = [(r, position[n]) for r, n in enumerate(images) if n in position and np.isfinite(human_mean[position[n], 0])]
        if len(pairs) < 4:
            raise InputError(f"--hq {hq}: only {len(pairs)} images of {predictions} have human ratings; need at least 4")
        rows_pred, rows_hq = (np.array(x) for x in zip(*pairs))
        result.n_common = len(pairs)
        for factor in factors:
            labels = frame[factor].to_numpy()[rows_pred]
            result.gaps[factor] = gap_test(values[rows_pred], human_mean[rows_hq], labels, n_perm=n_perm, seed=seed)
            if result.gaps[factor].empty:
                notes.append(f"{factor}: fewer than 2 known groups with 2+ rated images; no gap test")
    return result
