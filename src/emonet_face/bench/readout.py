"""Readouts: how a model's values become 0..7 ratings before kappa.

``published``: values as they are (cast to int inside kappa). Mean-subtracted scores below 0 then
fall outside 0..7 and silently drop out of kappa — the known pitfall, which we count and report.

``calibrated``: per model and emotion, map the continuous scores onto 0..7 by quantile matching
to the pooled human rating distribution of that emotion: the share of images a model puts at or
below rating k equals the share of human ratings at or below k. Ties share one rating. This judges
continuous-output models by their ranking of images, not by the arbitrary offset of their scale.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from emonet_face.bench.agreement import N_LABELS, rating_codes

READOUTS = ("published", "calibrated")


def human_rating_cdf(human_ratings: np.ndarray) -> np.ndarray:
    """Cumulative share of pooled human ratings at or below 0..7, per emotion: (E, 8).

    ``human_ratings``: (H, I, E), NaN where not rated; ratings are cast like kappa casts them.
    """
    codes = rating_codes(human_ratings).reshape(-1, human_ratings.shape[-1])
    cdf = np.zeros((human_ratings.shape[-1], N_LABELS))
    for e in range(codes.shape[1]):
        counts = np.bincount(codes[codes[:, e] >= 0, e], minlength=N_LABELS).astype(float)
        cdf[e] = np.cumsum(counts) / counts.sum() if counts.sum() else np.linspace(1 / N_LABELS, 1, N_LABELS)
    return cdf


def calibrate(values: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Quantile-map one annotator's values (I, E) onto 0..7 given the human CDF (E, 8); NaN rows stay NaN."""
    out = np.full(values.shape, np.nan)
    rated = ~np.isnan(values).any(axis=1)
    if rated.sum() == 0:
        return out
    scores = values[rated]
    quantile = (rankdata(scores, axis=0) - 0.5) / len(scores)  # mid-rank: ties map together
    mapped = np.empty(scores.shape)
    for e in range(scores.shape[1]):
        mapped[:, e] = np.searchsorted(cdf[e], quantile[:, e] - 1e-12, side="left")
    out[rated] = np.minimum(mapped, N_LABELS - 1)
    return out


def apply_readout(ratings: np.ndarray, human: np.ndarray, readout: str) -> np.ndarray:
    """Ratings (A, I, E) as kappa should see them under ``readout``; humans are never changed."""
    if readout == "published":
        return ratings
    if readout != "calibrated":
        raise ValueError(f"unknown readout {readout!r}; expected one of {READOUTS}")
    cdf = human_rating_cdf(ratings[human])
    out = ratings.copy()
    for a in np.flatnonzero(~human):
        out[a] = calibrate(ratings[a], cdf)
    return out
