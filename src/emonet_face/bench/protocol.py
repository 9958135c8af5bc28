"""The EmoNet-Face HQ agreement protocol on an :class:`HQData`, reproducible from one seed."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emonet_face.bench.agreement import (
    bootstrap_alpha_interval,
    bootstrap_mean,
    krippendorff_alpha_interval,
    pairwise_quadratic_kappa,
    percentile_ci,
    spearman_columns,
)
from emonet_face.bench.groups import annotator_group, compare_groups, could_be_annotator
from emonet_face.bench.hq import HQData
from emonet_face.bench.readout import READOUTS, apply_readout
from emonet_face.errors import InputError
from emonet_face.taxonomy import EMOTIONS

EMOTION_NAMES = [e.name for e in EMOTIONS]

# Independent random streams per statistic: adding a statistic never shifts another's draws.
_STREAM = {"kappa": 1, "spearman": 2, "alpha": 3, "groups": 4, "could_be": 5}


@dataclass
class PairwiseKappa:
    kappa: np.ndarray
    """(A, A, E), NaN on the diagonal and where undefined."""
    dropped: np.ndarray
    """(A, A) rating pairs (over emotions) that dropped out: both rated, either outside 0..7."""
    shared: np.ndarray
    """(A, A) rating pairs (over emotions) both annotators gave."""


@dataclass
class HQResult:
    data: HQData
    readout: str
    seed: int
    n_boot: int
    per_annotator: pd.DataFrame
    kappa_per_emotion: pd.DataFrame
    spearman_per_emotion: pd.DataFrame
    pairwise_kappa: pd.DataFrame
    alpha: pd.DataFrame
    alpha_mean: dict[str, float]
    group_tests: pd.DataFrame
    group_values: dict[str, np.ndarray]
    reliable_alpha: float = 0.3
    reliable_emotions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (NaN → null); emotions by display name, annotators as in the file."""
        pa = self.per_annotator

        def column(name: str) -> dict[str, Any]:
            return {a: json_scalar(v) for a, v in pa[name].items()}

        return {
            "protocol": "EmoNet-Face HQ",
            "readout": self.readout,
            "seed": self.seed,
            "n_boot": self.n_boot,
            "n_images": len(self.data.images),
            "n_annotators": len(self.data.annotators),
            "n_humans": int(self.data.human.sum()),
            "annotators": {
                a: {"group": pa.at[a, "group"], "human": bool(pa.at[a, "human"]), "n_images": int(pa.at[a, "n_images"])}
                for a in pa.index
            },
            "kappa_mean": column("kappa_mean"),
            "kappa_ci": {
                a: [json_scalar(pa.at[a, "kappa_ci_low"]), json_scalar(pa.at[a, "kappa_ci_high"])] for a in pa.index
            },
            "kappa_std": column("kappa_std"),
            "kappa_median": column("kappa_median"),
            "kappa_top_emotion": column("kappa_top_emotion"),
            "kappa_per_emotion": _frame_dict(self.kappa_per_emotion),
            "kappa_mean_published": column("kappa_mean_published"),
            "kappa_mean_calibrated": column("kappa_mean_calibrated"),
            "dropped_pairs": column("dropped_pairs"),
            "dropped_share": column("dropped_share"),
            "dropped_pairs_published": column("dropped_pairs_published"),
            "spearman_mean": column("spearman_mean"),
            "spearman_ci": {
                a: [json_scalar(pa.at[a, "spearman_ci_low"]), json_scalar(pa.at[a, "spearman_ci_high"])]
                for a in pa.index
            },
            "spearman_per_emotion": _frame_dict(self.spearman_per_emotion),
            "alpha": {e: json_scalar(v) for e, v in self.alpha["alpha"].items()},
            "alpha_ci": {e: [json_scalar(r.ci_low), json_scalar(r.ci_high)] for e, r in self.alpha.iterrows()},
            "alpha_mean": {k: json_scalar(v) for k, v in self.alpha_mean.items()},
            "reliable_alpha": self.reliable_alpha,
            "reliable_emotions": list(self.reliable_emotions),
            "kappa_mean_reliable": column("kappa_mean_reliable"),
            "could_be_annotator": {a: (None if pd.isna(v) else bool(v)) for a, v in pa["could_be_annotator"].items()},
            "vs_humans": {
                a: {
                    "mean_diff": json_scalar(pa.at[a, "diff_vs_humans"]),
                    "ci": [json_scalar(pa.at[a, "diff_ci_low"]), json_scalar(pa.at[a, "diff_ci_high"])],
                    "wilcoxon_p": json_scalar(pa.at[a, "wilcoxon_p"]),
                }
                for a in pa.index
            },
            "group_tests": [{k: json_scalar(v) for k, v in row.items()} for row in self.group_tests.to_dict("records")],
            "warnings": list(self.warnings),
        }


def json_scalar(value: Any) -> Any:
    """A NumPy or pandas scalar as the plain Python value JSON can hold: NaN, infinities and NA become None."""
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def _frame_dict(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {str(i): {str(c): json_scalar(v) for c, v in row.items()} for i, row in frame.iterrows()}


def all_pairs_kappa(ratings: np.ndarray) -> PairwiseKappa:
    """Kappa for every annotator pair and emotion, as a symmetric (A, A, E) array."""
    n = ratings.shape[0]
    upper = np.array([(a, b) for a in range(n) for b in range(a + 1, n)], dtype=np.int64).reshape(-1, 2)
    kappa, used, dropped = pairwise_quadratic_kappa(ratings, upper)
    full = np.full((n, n, ratings.shape[2]), np.nan)
    drop = np.zeros((n, n), dtype=np.int64)
    shared = np.zeros((n, n), dtype=np.int64)
    full[upper[:, 0], upper[:, 1]] = kappa
    full[upper[:, 1], upper[:, 0]] = kappa
    drop[upper[:, 0], upper[:, 1]] = drop[upper[:, 1], upper[:, 0]] = dropped.sum(axis=1)
    total = (used + dropped).sum(axis=1)
    shared[upper[:, 0], upper[:, 1]] = shared[upper[:, 1], upper[:, 0]] = total
    return PairwiseKappa(full, drop, shared)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def kappa_vs_humans(pairwise: np.ndarray, human: np.ndarray) -> np.ndarray:
    """(A, E): a model's kappa = mean over humans; a human's = mean over the other humans."""
    columns = pairwise[:, human, :]  # diagonal is NaN, so a human never averages itself
    return _nanmean(columns, axis=1)


def human_medians(ratings: np.ndarray, human: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Per-image median of all human ratings (I, E), and leave-one-out medians for each human."""
    humans = np.flatnonzero(human)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        overall = np.nanmedian(ratings[humans], axis=0)
        loo = {h: np.nanmedian(ratings[humans[humans != h]], axis=0) for h in humans.tolist()} if len(humans) > 1 else {}
    return overall, loo


def spearman_vs_humans(ratings: np.ndarray, human: np.ndarray) -> np.ndarray:
    """(A, E) Spearman's rho between each annotator and the per-image human median (humans: of the others)."""
    overall, loo = human_medians(ratings, human)
    out = np.full((ratings.shape[0], ratings.shape[2]), np.nan)
    for a in range(ratings.shape[0]):
        median = loo.get(a, overall) if human[a] else overall
        if human[a] and a not in loo:
            continue
        mask = ~np.isnan(ratings[a, :, 0]) & ~np.isnan(median[:, 0])
        if mask.sum() >= 2:
            out[a] = spearman_columns(ratings[a][mask], median[mask])
    return out


def _summarise_kappa(kappa_e: np.ndarray, rng: np.random.Generator, n_boot: int) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(kappa_e, axis=1)
        std = np.nanstd(kappa_e, axis=1, ddof=1)
        median = np.nanmedian(kappa_e, axis=1)
    low, high = percentile_ci(bootstrap_mean(kappa_e, n_boot, rng))
    top = [EMOTION_NAMES[int(np.nanargmax(row))] if np.isfinite(row).any() else None for row in kappa_e]
    return {
        "kappa_mean": mean,
        "kappa_std": std,
        "kappa_median": median,
        "kappa_ci_low": low,
        "kappa_ci_high": high,
        "kappa_top_emotion": np.array(top, dtype=object),
    }


def _stream(seed: int, statistic: str) -> np.random.Generator:
    """The random stream of one statistic (see ``_STREAM``)."""
    return np.random.default_rng([seed, _STREAM[statistic]])


def _human_mask(data: HQData, readout: str) -> np.ndarray:
    """Which annotators are human experts; fails early on an unknown readout or fewer than 2 humans."""
    if readout not in READOUTS:
        raise InputError(f"unknown readout {readout!r}; use one of {', '.join(READOUTS)}")
    human = data.human.astype(bool)
    if human.sum() < 2:
        raise InputError(
            f"the annotation file has {int(human.sum())} human annotators; the protocol needs at least 2 "
            "(check the 'human' column)"
        )
    return human


def _isolated_annotators(names: list[str], rated: np.ndarray, human: np.ndarray) -> list[str]:
    """A warning for each annotator that shares no image with any (other) human: its agreement is null."""
    humans_per_image = rated[human].sum(axis=0)
    warn = []
    for a, name in enumerate(names):
        other_humans = humans_per_image - (rated[a] if human[a] else 0)
        if not (rated[a] & (other_humans > 0)).any():
            warn.append(f"annotator {name!r} shares no image with any human expert; its agreement is undefined (null)")
    return warn


def _dropped_vs_humans(pk: PairwiseKappa, human: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per annotator: rating pairs with the humans that dropped out of kappa, and their share of all shared pairs."""
    dropped = pk.dropped[:, human].sum(axis=1)
    shared = pk.shared[:, human].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dropped, np.where(shared > 0, dropped / np.maximum(shared, 1), np.nan)


@dataclass
class _Readouts:
    """Pairwise kappa under the chosen readout, and per annotator what each readout gives and drops."""

    chosen: PairwiseKappa
    kappa_mean_published: np.ndarray
    kappa_mean_calibrated: np.ndarray
    dropped_pairs: np.ndarray
    dropped_share: np.ndarray
    dropped_pairs_published: np.ndarray

    @classmethod
    def compute(cls, ratings: np.ndarray, human: np.ndarray, readout: str) -> _Readouts:
        """Both readouts are always computed, so a report can show how much the choice matters."""
        published = all_pairs_kappa(ratings)
        calibrated = all_pairs_kappa(apply_readout(ratings, human, "calibrated"))
        chosen = published if readout == "published" else calibrated
        return cls(
            chosen,
            _nanmean(kappa_vs_humans(published.kappa, human), axis=1),
            _nanmean(kappa_vs_humans(calibrated.kappa, human), axis=1),
            *_dropped_vs_humans(chosen, human),
            _dropped_vs_humans(published, human)[0],
        )

    def dropout_warnings(self, readout: str, names: list[str]) -> list[str]:
        """Kappa on the pairs left after many drop out is a biased sample; say whose, and what to try."""
        heavy = [f"{names[a]} ({self.dropped_share[a]:.0%})" for a in range(len(names)) if self.dropped_share[a] > 0.05]
        if not heavy:
            return []
        return [
            f"{readout} readout: ratings outside 0..7 drop out of kappa for {', '.join(heavy)}; "
            "see dropped_pairs (try --readout calibrated)"
        ]


def _summarise_spearman(spearman_e: np.ndarray, rng: np.random.Generator, n_boot: int) -> dict[str, np.ndarray]:
    """Mean Spearman's rho over emotions per annotator with its bootstrap CI."""
    low, high = percentile_ci(bootstrap_mean(spearman_e, n_boot, rng))
    return {"spearman_mean": _nanmean(spearman_e, axis=1), "spearman_ci_low": low, "spearman_ci_high": high}


def _human_alpha(
    human_ratings: np.ndarray, rng: np.random.Generator, n_boot: int
) -> tuple[np.ndarray, pd.DataFrame, dict[str, float]]:
    """Krippendorff's alpha among the humans: per emotion (array and table with CIs) and its mean with CI."""
    alpha = np.atleast_1d(krippendorff_alpha_interval(human_ratings))
    alpha_boot = bootstrap_alpha_interval(human_ratings, n_boot, rng)
    a_low, a_high = percentile_ci(alpha_boot.T)
    m_low, m_high = percentile_ci(_nanmean(alpha_boot, axis=1))
    frame = pd.DataFrame({"alpha": alpha, "ci_low": a_low, "ci_high": a_high}, index=EMOTION_NAMES)
    frame.index.name = "emotion"
    mean = {"alpha_mean": float(_nanmean(alpha, axis=0)), "ci_low": float(m_low), "ci_high": float(m_high)}
    return alpha, frame, mean


def _reliable_kappa(kappa_e: np.ndarray, alpha: np.ndarray, reliable_alpha: float) -> tuple[list[str], np.ndarray]:
    """The emotions the humans agree on (alpha ≥ ``reliable_alpha``) and each annotator's mean kappa over them."""
    reliable = [EMOTION_NAMES[e] for e in np.flatnonzero(alpha >= reliable_alpha)]
    if not reliable:
        return reliable, np.full(kappa_e.shape[0], np.nan)
    return reliable, _nanmean(kappa_e[:, alpha >= reliable_alpha], axis=1)


def _kappa_by_group(
    kappa_e: np.ndarray, names: list[str], human: np.ndarray
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Each annotator's group, and per group all its (annotator, emotion) kappas pooled."""
    groups = [annotator_group(n, bool(h)) for n, h in zip(names, human)]
    values = {g: kappa_e[[i for i, x in enumerate(groups) if x == g]].ravel() for g in dict.fromkeys(groups)}
    return groups, values


def run_hq_protocol(
    data: HQData, *, readout: str = "published", seed: int = 42, n_boot: int = 1000, reliable_alpha: float = 0.3
) -> HQResult:
    """Run every statistic of the protocol; the same data and seed give the same numbers to the last digit.

    ``reliable_alpha``: emotions whose human alpha reaches it also get a headline of their own
    (``kappa_mean_reliable``), since kappa on emotions experts themselves disagree on is mostly noise.
    """
    human = _human_mask(data, readout)
    names, ratings, rated = data.annotators, data.ratings, data.rated()
    readouts = _Readouts.compute(ratings, human, readout)
    warn = [*data.warnings, *_isolated_annotators(names, rated, human), *readouts.dropout_warnings(readout, names)]
    kappa_e = kappa_vs_humans(readouts.chosen.kappa, human)
    spearman_e = spearman_vs_humans(ratings, human)
    alpha, alpha_frame, alpha_mean = _human_alpha(ratings[human], _stream(seed, "alpha"), n_boot)
    reliable, kappa_reliable = _reliable_kappa(kappa_e, alpha, reliable_alpha)
    groups, group_values = _kappa_by_group(kappa_e, names, human)
    group_tests = compare_groups(group_values, n_boot, _stream(seed, "groups"))
    cba = could_be_annotator(kappa_e, human, n_boot, _stream(seed, "could_be"))
    per_annotator = pd.DataFrame(
        {
            "group": groups,
            "human": human,
            "n_images": rated.sum(axis=1),
            **_summarise_kappa(kappa_e, _stream(seed, "kappa"), n_boot),
            "kappa_mean_published": readouts.kappa_mean_published,
            "kappa_mean_calibrated": readouts.kappa_mean_calibrated,
            "kappa_mean_reliable": kappa_reliable,
            "dropped_pairs": readouts.dropped_pairs,
            "dropped_share": readouts.dropped_share,
            "dropped_pairs_published": readouts.dropped_pairs_published,
            **_summarise_spearman(spearman_e, _stream(seed, "spearman"), n_boot),
            "diff_vs_humans": cba["mean_diff"].to_numpy(),
            "diff_ci_low": cba["diff_ci_low"].to_numpy(),
            "diff_ci_high": cba["diff_ci_high"].to_numpy(),
            "wilcoxon_p": cba["wilcoxon_p"].to_numpy(),
            "could_be_annotator": cba["could_be_annotator"].to_numpy(),
        },
        index=pd.Index(names, name="annotator"),
    )
    return HQResult(
        data=data,
        readout=readout,
        seed=seed,
        n_boot=n_boot,
        per_annotator=per_annotator,
        kappa_per_emotion=pd.DataFrame(kappa_e, index=per_annotator.index, columns=EMOTION_NAMES),
        spearman_per_emotion=pd.DataFrame(spearman_e, index=per_annotator.index, columns=EMOTION_NAMES),
        pairwise_kappa=pd.DataFrame(_nanmean(readouts.chosen.kappa, axis=2), index=per_annotator.index, columns=names),
        alpha=alpha_frame,
        alpha_mean=alpha_mean,
        reliable_alpha=reliable_alpha,
        reliable_emotions=reliable,
        group_tests=group_tests,
        group_values=group_values,
        warnings=warn,
    )
