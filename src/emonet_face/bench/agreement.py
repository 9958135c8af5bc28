"""Vectorised agreement statistics with exactly the semantics of the reference libraries.

* quadratic weighted Cohen's kappa = ``sklearn.metrics.cohen_kappa_score(a.astype(int), b.astype(int),
  weights="quadratic", labels=range(8))``: ratings truncated toward zero, pairs where either value
  falls outside 0..7 drop out, an undefined kappa is NaN. Confusion matrices for every
  (annotator pair, emotion) come from one ``np.bincount`` per chunk of pairs instead of a Python loop.
* Krippendorff's alpha (interval) = ``krippendorff.alpha(level_of_measurement="interval")``, from
  per-unit sufficient statistics, so bootstrap resamples of units are one matrix product.
* Spearman's rho = ``scipy.stats.spearmanr`` per column, all columns at once.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata

N_LABELS = 8
_QUADRATIC = (np.arange(N_LABELS)[:, None] - np.arange(N_LABELS)[None, :]).astype(float) ** 2
_CHUNK_ELEMENTS = 4_000_000


def rating_codes(values: np.ndarray) -> np.ndarray:
    """Ratings cast like ``astype(int)`` (truncation toward zero); -1 where missing or outside 0..7."""
    with np.errstate(invalid="ignore"):
        truncated = np.trunc(values)
        valid = np.isfinite(truncated) & (truncated >= 0) & (truncated < N_LABELS)
    return np.where(valid, truncated, -1).astype(np.int8)


def kappa_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Quadratic weighted kappa of stacked 8×8 confusion matrices (``...×8×8``); NaN where undefined."""
    confusion = confusion.astype(float)
    sum0 = confusion.sum(axis=-2)  # column sums, as sklearn's sum(axis=0)
    sum1 = confusion.sum(axis=-1)
    total = sum0.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = sum0[..., :, None] * sum1[..., None, :] / total[..., None, None]
        numerator = (_QUADRATIC * confusion).sum(axis=(-2, -1))
        denominator = (_QUADRATIC * expected).sum(axis=(-2, -1))
        kappa = 1 - numerator / denominator
    kappa[(total == 0) | (denominator == 0)] = np.nan
    return kappa


def pairwise_confusion(codes: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Confusion matrices (P, E, 8, 8) for annotator pairs over their shared, in-range ratings.

    ``codes``: (A, I, E) int8 from :func:`rating_codes`; ``pairs``: (P, 2) annotator indices.
    """
    n_images, n_emotions = codes.shape[1], codes.shape[2]
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.zeros((len(pairs), n_emotions, N_LABELS, N_LABELS), dtype=np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_images * n_emotions))
    for start in range(0, len(pairs), chunk):
        block = pairs[start : start + chunk]
        first = codes[block[:, 0]].astype(np.int32)
        second = codes[block[:, 1]].astype(np.int32)
        valid = (first >= 0) & (second >= 0)
        base = ((np.arange(len(block))[:, None] * n_emotions + np.arange(n_emotions)[None, :]) * N_LABELS**2)[
            :, None, :
        ]
        cells = (base + first * N_LABELS + second)[valid]
        counts = np.bincount(cells, minlength=len(block) * n_emotions * N_LABELS**2)
        out[start : start + len(block)] = counts.reshape(len(block), n_emotions, N_LABELS, N_LABELS)
    return out


def pairwise_quadratic_kappa(ratings: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kappa (P, E) for every pair and emotion, with the number of rating pairs used and dropped.

    ``ratings``: (A, I, E) floats, NaN where an annotator did not rate an image. A rating pair
    "drops out" when both annotators rated the image but either value is outside 0..7 after the cast.
    """
    codes = rating_codes(ratings)
    confusion = pairwise_confusion(codes, pairs)
    used = confusion.sum(axis=(-2, -1))
    present = ~np.isnan(ratings)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    shared = (present[pairs[:, 0]] & present[pairs[:, 1]]).sum(axis=1)
    return kappa_from_confusion(confusion), used, shared - used


def spearman_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho between matching columns of ``x`` and ``y`` (n, E); NaN for constant columns."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim == 1:
        return spearman_columns(x[:, None], y[:, None])[0]
    if len(x) < 2:
        return np.full(x.shape[1], np.nan)
    rx = rankdata(x, axis=0)
    ry = rankdata(y, axis=0)
    rx -= rx.mean(axis=0)
    ry -= ry.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=0) / np.sqrt((rx * rx).sum(axis=0) * (ry * ry).sum(axis=0))
    return np.clip(rho, -1.0, 1.0)


def alpha_unit_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit sufficient statistics of interval alpha over raters: values (R, U[, E]).

    Returns (m, s1, s2, d): count, sum and sum of squares of the pairable values of each unit
    (units with fewer than two values contribute nothing) and the within-unit disagreement
    ``Σ_{i≠j}(v_i − v_j)² / (m − 1)``.
    """
    present = ~np.isnan(values)
    m = present.sum(axis=0).astype(float)
    filled = np.where(present, values, 0.0)
    s1 = filled.sum(axis=0)
    s2 = (filled * filled).sum(axis=0)
    pairable = m >= 2
    m = np.where(pairable, m, 0.0)
    s1 = np.where(pairable, s1, 0.0)
    s2 = np.where(pairable, s2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(pairable, 2 * (m * s2 - s1 * s1) / (m - 1), 0.0)
    return m, s1, s2, d


def _alpha_from_totals(n: np.ndarray, t1: np.ndarray, t2: np.ndarray, d: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = 2 * (n * t2 - t1 * t1)
        alpha = 1 - (n - 1) * d / expected
    return np.where((n > 1) & (expected > 0), alpha, np.nan)


def krippendorff_alpha_interval(values: np.ndarray) -> np.ndarray | float:
    """Interval alpha of reliability data (raters R, units U[, E]); NaN where undefined."""
    m, s1, s2, d = alpha_unit_stats(np.asarray(values, dtype=float))
    alpha = _alpha_from_totals(m.sum(axis=0), s1.sum(axis=0), s2.sum(axis=0), d.sum(axis=0))
    return float(alpha) if np.ndim(alpha) == 0 else alpha


def resample_counts(n_units: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_units) multiplicities of a bootstrap resample of units with replacement."""
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    flat = (np.arange(n_boot)[:, None] * n_units + draws).ravel()
    return np.bincount(flat, minlength=n_boot * n_units).reshape(n_boot, n_units).astype(float)


def bootstrap_alpha_interval(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Alpha on ``n_boot`` resamples of units (R, U, E) → (n_boot, E): one matrix product per statistic."""
    m, s1, s2, d = alpha_unit_stats(np.asarray(values, dtype=float))
    weights = resample_counts(m.shape[0], n_boot, rng)
    return _alpha_from_totals(weights @ m, weights @ s1, weights @ s2, weights @ d)


def bootstrap_mean(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means (NaN-skipping) of ``n_boot`` resamples with replacement along the last axis → (..., n_boot)."""
    values = np.asarray(values, dtype=float)
    idx = rng.integers(0, values.shape[-1], size=(n_boot, values.shape[-1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values[..., idx], axis=-1)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along the last axis (NaN samples ignored)."""
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low = np.nanpercentile(samples, tail, axis=-1)
        high = np.nanpercentile(samples, 100 - tail, axis=-1)
    return low, high
