"""Figures of `emonet-face stats` (PNG + PDF, matplotlib Agg).

The world map draws country outlines from the SVG world map shipped in the ``pygal_maps_world``
wheel (the optional ``[stats]`` extra, ~0.4 MB; paths parsed with ``svgpath2mpl``): nothing is
downloaded at run time. Without the extra, the map falls back to one labelled circle per FairFace
region at its rough position on a longitude/latitude grid, and says so in the figure.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emonet_face.bench.figures import save_figure
from emonet_face.stats.dataset import DEFINITIONS
from emonet_face.stats.demographics import UNKNOWN, DemographicTable

__all__ = [
    "MAP_EXTRA_HINT",
    "agreement_by_group_figure",
    "dataset_figures",
    "gap_figure",
    "mean_score_figure",
    "world_map",
    "world_map_paths",
]

MAP_EXTRA_HINT = "install emonet-face[stats] (pygal_maps_world + svgpath2mpl) for country outlines"
FACTOR_TITLES = {"gender": "Gender", "age_group": "Age group (FairFace bins)", "fairface": "FairFace group", "ethnicity": "Ethnicity (as found)"}
GROUP_COLORS = dict(
    zip(
        ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"),
        ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#EE8833"),
    )
)
# Rough centre (longitude, latitude) of each group's map region, for the outline-free fallback.
REGION_CENTRES = {
    "White": (15, 52),
    "Black": (20, -5),
    "Latino_Hispanic": (-65, -10),
    "East Asian": (115, 38),
    "Southeast Asian": (110, 5),
    "Indian": (78, 22),
    "Middle Eastern": (35, 27),
}


def demographic_bars(counts: dict[str, pd.Series], out: Path) -> list[Path]:
    factors = [f for f in ("gender", "age_group", "fairface", "ethnicity") if f in counts]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, factor in zip(axes.ravel(), factors):
        series = counts[factor]
        if factor in ("gender", "ethnicity"):
            series = series.sort_values(ascending=False)
        colors = [
            "lightgrey" if k == UNKNOWN else GROUP_COLORS.get(str(k), "tab:blue") if factor == "fairface" else "tab:blue"
            for k in series.index
        ]
        ax.bar(range(len(series)), series.to_numpy(), color=colors)
        ax.set_xticks(range(len(series)), [str(k) for k in series.index], rotation=45 if len(series) > 4 else 0, ha="right" if len(series) > 4 else "center", fontsize=8)
        total = series.sum()
        for x, v in enumerate(series.to_numpy()):
            ax.text(x, v, f"{v / total:.0%}" if total else "", ha="center", va="bottom", fontsize=7)
        ax.set_title(FACTOR_TITLES[factor])
        ax.set_ylabel("images")
        ax.margins(y=0.12)
    fig.suptitle("Images per demographic group")
    return save_figure(fig, out, "demographics")


def age_histogram(ages: pd.Series, groups: pd.Series, table: DemographicTable, out: Path) -> list[Path]:
    """Histogram of numeric ages with FairFace's bin edges (bars of the bins when ages are not numeric)."""
    numeric = pd.to_numeric(ages.astype(str).str.extract(r"(\d+(?:\.\d+)?)")[0], errors="coerce").dropna()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    edges = [lo for lo, _, _ in table.age_bins] + [max(100, float(numeric.max()) + 1 if len(numeric) else 100)]
    if len(numeric):
        ax.hist(numeric, bins=np.arange(0, edges[-1] + 1, 1).tolist(), color="tab:blue", alpha=0.45, label="age (1-year bins)")
        ax2 = ax
        counts, _ = np.histogram(numeric, bins=edges)
        widths = np.diff(edges)
        ax2.step(edges, np.append(counts / widths, 0), where="post", color="black", lw=1.2, label="FairFace bin (images per year)")
        ax.legend(fontsize=8)
        ax.set_xlabel("age (years)")
    else:
        labels = table.age_labels
        series = groups.value_counts().reindex(labels, fill_value=0)
        ax.bar(range(len(labels)), series.to_numpy(), color="tab:blue")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("FairFace age bin")
    for edge in edges[1:-1]:
        ax.axvline(edge, color="grey", lw=0.4, ls=":") if len(numeric) else None
    ax.set_ylabel("images")
    ax.set_title("Age distribution (dotted lines: FairFace bin edges)" if len(numeric) else "Age groups")
    return save_figure(fig, out, "age_histogram")


def emotion_heatmap(tables: dict[str, pd.DataFrame], counts: dict[str, pd.Series], out: Path) -> list[Path]:
    """Share of each group's images labelled with each emotion; a cell with no image is marked ×."""
    factors = [f for f in ("gender", "age_group", "fairface") if f in tables]
    widths = [max(2, sum(counts[f].drop(UNKNOWN, errors="ignore") > 0)) for f in factors]
    fig, axes = plt.subplots(1, len(factors), figsize=(4 + 0.55 * sum(widths), 12), gridspec_kw={"width_ratios": widths}, sharey=True)
    axes = np.atleast_1d(axes)
    image = None
    vmax = 0.0
    shares = {}
    for factor in factors:
        keep = [c for c in tables[factor].columns if c != UNKNOWN and counts[factor][c] > 0]
        shares[factor] = tables[factor][keep] / counts[factor][keep].to_numpy()[None, :]
        vmax = max(vmax, float(np.nanmax(shares[factor].to_numpy())) if shares[factor].size else 0.0)
    for ax, factor in zip(axes, factors):
        share = shares[factor]
        image = ax.imshow(share.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=vmax or 1)
        ax.set_xticks(range(share.shape[1]), share.columns, rotation=60, ha="right", fontsize=8)
        ax.set_title(FACTOR_TITLES[factor], fontsize=9)
        for (r, c) in zip(*np.nonzero(tables[factor][share.columns].to_numpy() == 0)):
            ax.text(c, r, "×", ha="center", va="center", color="white", fontsize=7)
    axes[0].set_yticks(range(len(share.index)), share.index, fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.5, label="share of the group's images labelled with the emotion")
    fig.suptitle("Is every emotion shown across groups? (× = no image)", y=0.93)
    paths = []
    for fmt in ("png", "pdf"):
        path = out / f"emotion_by_group.{fmt}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def balance_bars(balance: pd.DataFrame, out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(balance))
    ax.bar(x - 0.18, balance["balance"].astype(float).fillna(0), width=0.36, label="over the groups present")
    ax.bar(x + 0.18, balance["balance_design"].astype(float).fillna(0), width=0.36, label="over all design groups (FairFace: 7 races, 9 age bins)")
    ax.axhline(1.0, color="black", ls="--", lw=1, label="ideal (equal counts)")
    labels = [f"{FACTOR_TITLES[f]}\n({int(balance.at[f, 'categories'])} present / {int(balance.at[f, 'design_categories'])})" for f in balance.index]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.35)
    ax.set_yticks(np.arange(0, 1.01, 0.2))
    ax.set_ylabel("normalised entropy H / log K")
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    ax.set_title("Balance index per factor (unknown left out)")
    return save_figure(fig, out, "balance")


@lru_cache(maxsize=1)
def world_map_paths() -> dict[str, list] | None:
    """Country code → matplotlib paths from the ``pygal_maps_world`` SVG, or ``None`` without the extra."""
    try:
        from svgpath2mpl import parse_path

        svg = resources.files("pygal_maps_world").joinpath("worldmap.svg").read_text(encoding="utf-8")
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        return None
    countries: dict[str, list] = {}
    for code, body in re.findall(r'<g class="([a-z]{2}) country[^"]*">(.*?)</g>', svg, flags=re.S):
        countries[code] = [parse_path(d) for d in re.findall(r'\bd="([^"]+)"', body)]
    return countries or None


def world_map(counts: pd.Series, table: DemographicTable, out: Path) -> list[Path]:
    """Regions of the FairFace groups, shaded by each group's share of the images."""
    from matplotlib.patches import PathPatch

    total = counts.sum()
    share = {g: (counts.get(g, 0) / total if total else 0.0) for g in table.fairface_groups}
    countries = world_map_paths()
    fig, ax = plt.subplots(figsize=(13, 7))
    handles = []
    top = max(share.values()) or 1.0
    if countries is not None:
        from matplotlib.path import Path as MplPath

        group_of = {c: g for g, codes in table.regions.items() for c in codes}
        layers: dict[str | None, list] = {}
        for code, paths in countries.items():
            group = group_of.get(code)
            layers.setdefault(group if group in share else None, []).extend(paths)
        for group, paths in layers.items():  # one compound path per colour: 7 patches instead of ~250
            color = GROUP_COLORS.get(group, "#eeeeee") if group else "#e6e6e6"
            alpha = 0.2 + 0.8 * share[group] / top if group else 1.0
            patch = PathPatch(
                MplPath.make_compound_path(*paths), facecolor=color, alpha=alpha, edgecolor="white", lw=0.2,
                transform=ax.transData,
            )
            ax.add_artist(patch)  # not add_patch: the limits are fixed, and Bezier extents cost seconds
        ax.set_xlim(0, 2475)
        ax.set_ylim(1388, 0)
        ax.set_aspect("equal")
        note = "darker = larger share; grey: no FairFace group; outlines from pygal_maps_world"
    else:
        ax.set_xlim(-180, 180)
        ax.set_ylim(-60, 80)
        ax.grid(color="#dddddd", lw=0.5)
        for group, (lon, lat) in REGION_CENTRES.items():
            size = 200 + 4000 * share.get(group, 0) / top
            ax.scatter([lon], [lat], s=size, color=GROUP_COLORS[group], alpha=0.8)
            ax.annotate(f"{group}\n{share.get(group, 0):.0%}", (lon, lat), ha="center", va="center", fontsize=8)
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        note = "circle size = share; no country outlines: pip install 'emonet-face[stats]'"
    for group in table.fairface_groups:
        handles.append(
            plt.Rectangle((0, 0), 1, 1, color=GROUP_COLORS.get(group, "grey"), label=f"{group}: {counts.get(group, 0)} ({share[group]:.1%})")
        )
    unknown = counts.get(UNKNOWN, 0)
    ax.legend(handles=handles, loc="lower left", fontsize=8, title=f"FairFace group: images (unknown: {unknown})")
    ax.set_xticks([]) if countries is not None else None
    ax.set_yticks([]) if countries is not None else None
    ax.set_title(f"Regions of the FairFace groups by share of images ({note})", fontsize=10)
    return save_figure(fig, out, "world_map")


def per_emotion_bars(labelled: pd.Series, definition: str, out: Path) -> list[Path]:
    series = labelled.sort_values(ascending=False)
    fig, ax = plt.subplots(figsize=(14, 4.5))
    ax.bar(range(len(series)), series.to_numpy(), color="tab:blue")
    ax.set_xticks(range(len(series)), series.index, rotation=90, fontsize=7)
    ax.set_ylabel("images")
    ax.set_title(f"Images per emotion ({definition})", fontsize=10)
    return save_figure(fig, out, "per_emotion")


def dataset_figures(stats, out: Path) -> list[Path]:
    """All `stats DATASET` figures for a :class:`~emonet_face.stats.dataset.DatasetStats`; the demographic
    ones only when some image has a known group."""

    paths = []
    if stats.definition:
        paths += per_emotion_bars(stats.labelled.sum(), DEFINITIONS[stats.definition].split(" (")[0], out)
    counts = {f: stats.counts(f) for f in ("gender", "age_group", "fairface", "ethnicity")}
    known = [f for f in ("gender", "age_group", "fairface") if counts[f].drop(UNKNOWN, errors="ignore").sum() > 0]
    if not known and counts["ethnicity"].drop(UNKNOWN, errors="ignore").sum() == 0:
        return paths
    paths += demographic_bars(counts, out)
    paths += age_histogram(stats.images["age"], stats.images["age_group"], stats.table, out)
    if stats.definition and known:
        paths += emotion_heatmap({f: stats.emotion_by(f) for f in known}, counts, out)
    paths += balance_bars(stats.balance(), out)
    paths += world_map(counts["fairface"], stats.table, out)
    return paths


def _group_colours(values: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {v: GROUP_COLORS.get(v, "lightgrey" if v == UNKNOWN else cycle[i % len(cycle)]) for i, v in enumerate(values)}


def agreement_by_group_figure(result, factor: str, out: Path) -> list[Path]:
    """Kappa with human experts per annotator, one dot (95% bootstrap CI) per group of ``factor``."""
    values = list(result.groups[factor])
    frames = {v: result.groups[factor][v]["per_annotator"] for v in values}
    annotators = list(dict.fromkeys(a for f in frames.values() for a in f.index))
    overall = pd.concat([f["kappa_mean"] for f in frames.values()], axis=1).mean(axis=1)
    annotators.sort(key=lambda a: -np.nan_to_num(overall.get(a, np.nan), nan=-9))
    colours = _group_colours(values)
    fig, ax = plt.subplots(figsize=(max(7, 0.5 * len(annotators) + 3), 4.8))
    width = 0.8 / max(1, len(values))
    for k, value in enumerate(values):
        frame = frames[value].reindex(annotators)
        mean = frame["kappa_mean"].to_numpy(dtype=float)
        err = np.abs(np.vstack([mean - frame["kappa_ci_low"].to_numpy(dtype=float), frame["kappa_ci_high"].to_numpy(dtype=float) - mean]))
        x = np.arange(len(annotators)) - 0.4 + width * (k + 0.5)
        ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="o", ms=4, capsize=2, color=colours[value],
                    label=f"{value} (n={result.groups[factor][value]['n_images']})")
    tests = result.tests.get(factor)
    labels = []
    for a in annotators:
        p = tests.at[a, "p"] if tests is not None and a in tests.index else np.nan
        labels.append(f"{a}\n(p={p:.2g})" if np.isfinite(p) else a)
    ax.set_xticks(range(len(annotators)), labels, rotation=90, fontsize=7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("kappa with human experts (95% CI)")
    ax.legend(fontsize=7, title=FACTOR_TITLES.get(factor, factor), title_fontsize=8, ncol=2 if len(values) > 5 else 1)
    ax.set_title(f"Agreement by {FACTOR_TITLES.get(factor, factor).lower()} (p: permutation test over images)", fontsize=9)
    return save_figure(fig, out, f"agreement_by_{factor}")


def mean_score_figure(frame: pd.DataFrame, factor: str, out: Path) -> list[Path]:
    """Mean centred score per emotion, one dot (95% CI) per group."""
    values = list(dict.fromkeys(frame["group"]))
    emotions = list(dict.fromkeys(frame["emotion"]))
    colours = _group_colours(values)
    fig, ax = plt.subplots(figsize=(15, 5))
    width = 0.8 / max(1, len(values))
    for k, value in enumerate(values):
        part = frame[frame["group"] == value].set_index("emotion").reindex(emotions)
        mean = part["mean"].to_numpy(dtype=float)
        err = np.abs(np.vstack([mean - part["ci_low"].to_numpy(dtype=float), part["ci_high"].to_numpy(dtype=float) - mean]))
        x = np.arange(len(emotions)) - 0.4 + width * (k + 0.5)
        ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="o", ms=3, capsize=1.5, color=colours[value], label=f"{value} (n={int(part['n'].iloc[0])})")
    ax.set_xticks(range(len(emotions)), emotions, rotation=90, fontsize=7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("mean centred score (95% CI)")
    ax.legend(fontsize=7, title=FACTOR_TITLES.get(factor, factor), title_fontsize=8)
    ax.set_title(f"Model scores by {FACTOR_TITLES.get(factor, factor).lower()}")
    return save_figure(fig, out, f"mean_score_by_{factor}")


def gap_figure(frame: pd.DataFrame, factor: str, out: Path) -> list[Path]:
    """Model gap vs human gap (z units) per emotion and comparison; flagged emotions named."""
    comparisons = list(dict.fromkeys(frame["group"]))
    fig, axes = plt.subplots(1, len(comparisons), figsize=(max(6.5, 5.2 * len(comparisons)), 5.6), squeeze=False)
    for ax, name in zip(axes[0], comparisons):
        part = frame[frame["group"] == name]
        flagged = part["flagged"].to_numpy(dtype=bool)
        ax.scatter(part["human_gap_z"], part["model_gap_z"], s=14, color="tab:blue", alpha=0.7, label="emotion")
        ax.scatter(part["human_gap_z"][flagged], part["model_gap_z"][flagged], s=40, color="tab:red", label="flagged (q < 0.05)")
        for r in part[flagged].itertuples():
            ax.annotate(r.emotion, (r.human_gap_z, r.model_gap_z), fontsize=7, xytext=(3, 3), textcoords="offset points")
        lim = float(np.nanmax(np.abs(part[["human_gap_z", "model_gap_z"]].to_numpy()))) * 1.15 or 1.0
        ax.plot([-lim, lim], [-lim, lim], color="grey", lw=0.8, ls="--", label="model gap = human gap")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.axhline(0, color="grey", lw=0.4)
        ax.axvline(0, color="grey", lw=0.4)
        ax.set_xlabel("human gap (z units)")
        ax.set_ylabel("model gap (z units)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Does the model see a group difference the experts do not?\n({FACTOR_TITLES.get(factor, factor)})", fontsize=11)
    return save_figure(fig, out, f"gap_{factor}")
