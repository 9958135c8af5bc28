"""Vectorised agreement statistics against the independent references (sklearn, krippendorff, SciPy)."""

from __future__ import annotations

import itertools
import warnings

import krippendorff
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from emonet_face.bench.agreement import (
    bootstrap_alpha_interval,
    krippendorff_alpha_interval,
    pairwise_quadratic_kappa,
    resample_counts,
    spearman_columns,
)
from emonet_face.bench.readout import apply_readout, calibrate, human_rating_cdf


def _planted(rng: np.random.Generator, n_annotators: int = 6, n_images: int = 80, n_emotions: int = 5) -> np.ndarray:
    """Ratings with planted agreement plus every awkward case sklearn has to handle."""
    truth = rng.integers(0, 8, (n_images, n_emotions)).astype(float)
    ratings = np.clip(truth + rng.normal(0, 1.2, (n_annotators, n_images, n_emotions)), -2.5, 9.5)
    ratings[1] = ratings[1] - 1.3  # mean-subtracted-like: many negatives, some in (-1, 0) truncate to 0
    ratings[2] = np.round(ratings[2])
    ratings[3, :, 0] = 3.0  # constant column: kappa with anyone is undefined or 0
    ratings[4, :, 1] = 3.0
    ratings[3, :, 1] = 3.0  # both constant → NaN
    ratings[5, :, 2] = 12.0  # entirely out of range → nothing left → NaN
    missing = rng.random((n_annotators, n_images)) < 0.3
    ratings[missing] = np.nan  # annotator did not rate the image
    return ratings


def _sklearn_kappa(a: np.ndarray, b: np.ndarray) -> float:
    shared = ~np.isnan(a) & ~np.isnan(b)
    x, y = a[shared].astype(int), b[shared].astype(int)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cohen_kappa_score(x, y, weights="quadratic", labels=list(range(8)))
    except ValueError:  # no label of y1 in 0..7: the published loop treats this as undefined
        return np.nan


def test_kappa_equals_sklearn_pair_by_pair() -> None:
    ratings = _planted(np.random.default_rng(1))
    pairs = np.array(list(itertools.combinations(range(len(ratings)), 2)))
    kappa, used, dropped = pairwise_quadratic_kappa(ratings, pairs)
    checked_nan = 0
    for p, (a, b) in enumerate(pairs):
        for e in range(ratings.shape[2]):
            expected = _sklearn_kappa(ratings[a, :, e], ratings[b, :, e])
            if np.isnan(expected):
                checked_nan += 1
                assert np.isnan(kappa[p, e]), (a, b, e)
            else:
                assert kappa[p, e] == pytest.approx(expected, abs=1e-9), (a, b, e)
    assert checked_nan >= 2  # the undefined cases were really exercised
    # dropped = shared pairs where a value leaves 0..7 after truncation
    a, b = pairs[0]
    shared = ~np.isnan(ratings[a, :, 0]) & ~np.isnan(ratings[b, :, 0])
    ta, tb = np.trunc(ratings[a, shared, 0]), np.trunc(ratings[b, shared, 0])
    outside = (ta < 0) | (ta > 7) | (tb < 0) | (tb > 7)
    assert dropped[0, 0] == outside.sum() and used[0, 0] == (~outside).sum()


def test_alpha_equals_krippendorff_package() -> None:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 8, (120, 4))
    values = np.clip(truth + rng.integers(-2, 3, (6, 120, 4)), 0, 7).astype(float)
    values[rng.random(values.shape) < 0.5] = np.nan
    values[:, 0, :] = np.nan  # a unit nobody rated
    values[1:, 1, :] = np.nan  # a unit with a single value (not pairable)
    ours = krippendorff_alpha_interval(values)
    for e in range(values.shape[2]):
        reference = krippendorff.alpha(reliability_data=values[:, :, e], level_of_measurement="interval")
        assert ours[e] == pytest.approx(reference, abs=1e-9)
    assert ours[0] > 0.3  # planted agreement is visible


def test_alpha_bootstrap_is_alpha_of_resampled_units() -> None:
    rng = np.random.default_rng(3)
    values = np.clip(rng.integers(0, 8, (1, 50, 2)) + rng.integers(-1, 2, (4, 50, 2)), 0, 7).astype(float)
    values[rng.random(values.shape) < 0.3] = np.nan
    draws = bootstrap_alpha_interval(values, 3, np.random.default_rng(9))
    counts = resample_counts(50, 3, np.random.default_rng(9))
    for b in range(3):
        units = np.repeat(np.arange(50), counts[b].astype(int))
        for e in range(2):
            reference = krippendorff.alpha(reliability_data=values[:, units, e], level_of_measurement="interval")
            assert draws[b, e] == pytest.approx(reference, abs=1e-9)


def test_spearman_equals_scipy() -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 8, (200, 6)).astype(float)
    y = x + rng.normal(0, 2, x.shape)
    y[:, 3] = np.round(y[:, 3])  # ties on both sides
    y[:, 5] = 1.0  # constant → NaN like SciPy
    ours = spearman_columns(x, y)
    for e in range(6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = spearmanr(x[:, e], y[:, e]).statistic
        if np.isnan(reference):
            assert np.isnan(ours[e])
        else:
            assert ours[e] == pytest.approx(reference, abs=1e-9)
    assert ours[0] > 0.5


def test_calibrated_readout_matches_human_distribution_and_order() -> None:
    rng = np.random.default_rng(5)
    humans = rng.choice(8, size=(4, 400, 2), p=[0.6, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03]).astype(float)
    cdf = human_rating_cdf(humans)
    scores = rng.normal(-0.5, 1, (400, 2))  # mean-subtracted: half negative
    mapped = calibrate(scores, cdf)
    assert set(np.unique(mapped)) <= set(range(8))
    share = np.cumsum(np.bincount(mapped[:, 0].astype(int), minlength=8)) / 400
    assert np.abs(share - cdf[0]).max() < 0.01  # quantile matched
    order = np.argsort(scores[:, 0])
    assert np.all(np.diff(mapped[order, 0]) >= 0)  # monotone in the score
    ratings = np.concatenate([humans, scores[None]], axis=0)
    out = apply_readout(ratings, np.array([True] * 4 + [False]), "calibrated")
    np.testing.assert_array_equal(out[:4], humans)  # humans untouched
