"""Speed of `emonet-face bench hq` against a straightforward scikit-learn/krippendorff/SciPy loop.

Generates a synthetic HQ file of the real size (2,500 images, 8 humans with 4 per image, the 14
published model annotators in their value formats), then times, side by side:

* ours, full protocol: load + every statistic with all bootstrap CIs + tables + figures + report;
* ours, point estimates: kappa with humans (per emotion), Spearman vs the human median, alpha;
* the loop: the same point estimates pair by pair with `cohen_kappa_score`, `spearmanr` and
  `krippendorff.alpha`, as the published analysis does (same parsed data, so parsing is not counted);
* the loop's bootstrap CIs for alpha, extrapolated from a few timed draws (running 1000 would take long).

It also checks that both give the same numbers. Run: `python benchmarks/bench_hq_speed.py`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from emonet_face.bench.agreement import krippendorff_alpha_interval
from emonet_face.bench.hq import HQData, load_hq
from emonet_face.bench.protocol import all_pairs_kappa, kappa_vs_humans, run_hq_protocol, spearman_vs_humans
from emonet_face.bench.report import write_hq_outputs
from emonet_face.bench.synthetic import make_synthetic_hq


def ours_point_estimates(data: HQData) -> dict[str, np.ndarray]:
    kappa = kappa_vs_humans(all_pairs_kappa(data.ratings).kappa, data.human)
    return {
        "kappa": kappa,
        "spearman": spearman_vs_humans(data.ratings, data.human),
        "alpha": krippendorff_alpha_interval(data.ratings[data.human]),
    }


def loop_point_estimates(
    tables: dict[str, pd.DataFrame], humans: list[str], emotions: list[int]
) -> dict[str, np.ndarray]:
    """The straightforward way: one library call per (annotator, human, emotion)."""
    names = list(tables)
    kappa = np.full((len(names), len(emotions)), np.nan)
    spearman = np.full((len(names), len(emotions)), np.nan)
    alpha = np.full(len(emotions), np.nan)
    human_table = pd.concat({h: tables[h] for h in humans}, axis=1)
    for e in emotions:
        per_human = human_table.xs(e, axis=1, level=1)
        median_all = per_human.median(axis=1)
        for a, name in enumerate(names):
            values = []
            for h in humans:
                if h == name:
                    continue
                shared = tables[name].index.intersection(tables[h].index)
                x = tables[name].loc[shared, e].astype(int)
                y = tables[h].loc[shared, e].astype(int)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        values.append(cohen_kappa_score(x, y, weights="quadratic", labels=list(range(8))))
                except ValueError:
                    values.append(np.nan)
            kappa[a, e] = np.nanmean(values) if np.isfinite(values).any() else np.nan
            median = per_human.drop(columns=name).median(axis=1) if name in humans else median_all
            shared = tables[name].index.intersection(median.dropna().index)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                spearman[a, e] = spearmanr(tables[name].loc[shared, e], median[shared]).statistic
        alpha[e] = krippendorff.alpha(reliability_data=per_human.T.to_numpy(), level_of_measurement="interval")
    return {"kappa": kappa, "spearman": spearman, "alpha": alpha}


def loop_alpha_bootstrap_seconds(tables: dict[str, pd.DataFrame], humans: list[str], draws: int) -> float:
    human_table = pd.concat({h: tables[h] for h in humans}, axis=1)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(draws):
        sample = human_table.iloc[rng.integers(0, len(human_table), len(human_table))]
        for e in range(40):
            krippendorff.alpha(
                reliability_data=sample.xs(e, axis=1, level=1).T.to_numpy(), level_of_measurement="interval"
            )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2500)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--loop-boot-draws", type=int, default=5, help="timed loop bootstrap draws to extrapolate from")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hq.csv"
        frame = make_synthetic_hq(n_images=args.images, seed=0)
        frame.to_csv(path, index=False)
        print(
            f"synthetic HQ file: {len(frame)} rows, {frame['image'].nunique()} images, "
            f"{frame['annotator'].nunique()} annotators ({path.stat().st_size / 1e6:.1f} MB)"
        )

        start = time.perf_counter()
        data = load_hq(path)
        t_load = time.perf_counter() - start
        result = run_hq_protocol(data, n_boot=args.n_boot)
        t_protocol = time.perf_counter() - start - t_load
        write_hq_outputs(result, Path(tmp) / "out")
        t_full = time.perf_counter() - start

        timings = []
        for _ in range(3):
            start = time.perf_counter()
            ours = ours_point_estimates(data)
            timings.append(time.perf_counter() - start)
        t_ours = min(timings)

        emotions = list(range(data.ratings.shape[2]))
        rated = data.rated()
        tables = {
            name: pd.DataFrame(data.ratings[a, rated[a]], index=np.array(data.images)[rated[a]], columns=emotions)
            for a, name in enumerate(data.annotators)
        }
        humans = [n for n, h in zip(data.annotators, data.human) if h]
        start = time.perf_counter()
        loop = loop_point_estimates(tables, humans, emotions)
        t_loop = time.perf_counter() - start
        t_loop_boot = (
            loop_alpha_bootstrap_seconds(tables, humans, args.loop_boot_draws) / args.loop_boot_draws * args.n_boot
        )

    diffs = {k: float(np.nanmax(np.abs(np.asarray(ours[k]) - loop[k]))) for k in ours}
    same_nan = all(np.array_equal(np.isnan(ours[k]), np.isnan(loop[k])) for k in ours)
    print()
    print(f"{'step':<58}{'ours (s)':>10}{'loop (s)':>10}{'ratio':>8}")
    print(
        f"{'point estimates (kappa, Spearman, alpha; 40 emotions)':<58}{t_ours:>10.2f}{t_loop:>10.2f}{t_loop / t_ours:>7.0f}x"
    )
    print(
        f"{'alpha bootstrap CIs, ' + str(args.n_boot) + ' draws (loop extrapolated)':<58}{'-':>10}{t_loop_boot:>10.0f}"
    )
    print(
        f"{'full bench hq: load + all stats + all CIs + outputs':<58}{t_full:>10.2f}{t_loop + t_loop_boot:>10.0f}"
        f"{(t_loop + t_loop_boot) / t_full:>7.0f}x"
    )
    print(
        f"  of which load {t_load:.2f} s, protocol with all {args.n_boot}-draw CIs {t_protocol:.2f} s, "
        f"tables/figures/report {t_full - t_load - t_protocol:.2f} s"
    )
    print("max |ours - loop|: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) + f"; same NaNs: {same_nan}")
    print(
        f"targets: full protocol < 60 s: {'met' if t_full < 60 else 'MISSED'}; "
        f"point estimates >= 20x: {'met' if t_loop / t_ours >= 20 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
