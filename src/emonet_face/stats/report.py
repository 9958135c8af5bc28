"""Writing `emonet-face stats` outputs: summary.json, CSV + LaTeX tables, figures, report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from emonet_face.bench.report import format_cell, write_json, write_report_table
from emonet_face.stats.demographics import FACTORS

__all__ = ["by_group_markdown", "write_by_group_outputs", "write_dataset_outputs", "write_prediction_outputs"]


def write_dataset_outputs(stats, out: Path, *, figures: bool = True) -> dict[str, Any]:
    """Everything `stats DATASET` writes into ``out``; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = stats.summary()
    write_json(summary, out / "summary.json")
    n = summary["n_images"]
    rows = [
        {"factor": f, "group": g, "images": c, "share": c / n if n else float("nan")}
        for f in FACTORS
        for g, c in summary["by"][f].items()
    ]
    write_report_table(pd.DataFrame(rows).set_index(["factor", "group"]), out, "demographics")
    balance = stats.balance()
    write_report_table(balance, out, "balance")
    tables = ["demographics", "balance"]
    if stats.definition:
        per_emotion = pd.DataFrame({"images": stats.labelled.sum(), "share": stats.labelled.mean()})
        if "vote_distribution" in summary:
            per_emotion["yes_votes"] = stats.vote_counts[:, 0]
            per_emotion["no_votes"] = stats.vote_counts[:, 1]
        per_emotion.index.name = "emotion"
        write_report_table(per_emotion, out, "per_emotion")
        tables.append("per_emotion")
        for factor in ("gender", "age_group", "fairface"):
            write_report_table(stats.emotion_by(factor), out, f"emotion_by_{factor}", float_format="%d")
            tables.append(f"emotion_by_{factor}")
    if "rating_distribution" in summary:
        dist = pd.DataFrame(summary["rating_distribution"]).T.fillna(0).astype(int)
        dist.index.name = "emotion"
        write_report_table(dist[sorted(dist.columns, key=float)], out, "rating_distribution", latex=False)
        tables.append("rating_distribution")
    if summary["unmapped_ethnicity"]:
        unmapped = pd.Series(summary["unmapped_ethnicity"], name="images")
        unmapped.index.name = "ethnicity"
        unmapped.to_frame().to_csv(out / "unmapped_ethnicity.csv")
    figure_stems: list[str] = []
    if figures:
        from emonet_face.stats.figures import dataset_figures  # loads matplotlib: only for figures

        figure_stems = list(dict.fromkeys(p.stem for p in dataset_figures(stats, out)))
    (out / "report.md").write_text(_dataset_markdown(stats, summary, tables, figure_stems))
    return summary


def _dataset_markdown(stats, summary: dict[str, Any], tables: list[str], figures: list[str]) -> str:
    n = summary["n_images"]
    lines = [
        f"# Dataset statistics: {summary['dataset']}",
        "",
        f"{n} images ({summary['layout']}); demographics from {summary['demographic_source']}.",
        "",
        "## Demographics",
        "",
        "| factor | group | images | share |",
        "|---|---|---|---|",
    ]
    for f in FACTORS:
        for g, c in summary["by"][f].items():
            lines.append(f"| {f} | {g} | {c} | {format_cell(c / n if n else None)} |")
    lines += [
        "",
        "`fairface`: the raw `ethnicity` strings mapped to FairFace's 7 groups by the shipped table "
        f"(`{summary['ethnicity_table']}`); `unknown` = missing, or a group FairFace does not have. "
        f"Age groups are FairFace's bins.",
        "",
        "## Balance",
        "",
        "Normalised entropy H / log K per factor (1 = equal counts; `unknown` left out): over the groups present "
        "and over the design's groups (FairFace: 7 groups, 9 age bins).",
        "",
        "| factor | balance (present) | balance (design) | groups present |",
        "|---|---|---|---|",
    ]
    for f, row in summary["balance"].items():
        lines.append(f"| {f} | {format_cell(row['balance'])} | {format_cell(row['balance_design'])} | {row['categories']} |")
    if summary["unmapped_ethnicity"]:
        lines += ["", "Ethnicity strings not in the table (counted `unknown`; add them to the table): "
                  + ", ".join(f"`{k}` ({v})" for k, v in summary["unmapped_ethnicity"].items())]
    if summary.get("per_emotion_definition"):
        lines += ["", "## Emotions", "", f"Per emotion: {summary['per_emotion_definition']}.", ""]
    for key, label in (("annotators_per_image", "Annotators per image"), ("ratings_per_image", "Ratings/votes per image")):
        if key in summary:
            lines.append(f"- {label}: mean {format_cell(summary[key]['mean'], 2)}, distribution {summary[key]['distribution']}")
    if "annotators" in summary:
        lines.append(f"- Annotators: {summary['annotators']['n']}")
    lines += ["", "## Tables", "", *[f"- [{t}]({t}.csv)" + (f" ([LaTeX]({t}.tex))" if (t != "rating_distribution") else "") for t in tables]]
    if figures:
        lines += ["", "## Figures", ""]
        for stem in figures:
            lines += [f"![{stem}]({stem}.png) ([PDF]({stem}.pdf))", ""]
    if summary["warnings"]:
        lines += ["## Warnings", "", *[f"- {w}" for w in summary["warnings"]], ""]
    return "\n".join(lines) + "\n"


def write_by_group_outputs(result, out: Path, *, figures: bool = True) -> list[Path]:
    """`bench hq --by` extras: the long table, per-factor test tables, one figure per factor."""
    paths = write_report_table(result.long_table().set_index(["factor", "group", "annotator"]), out, "agreement_by_group", latex=False)
    for factor, frame in result.tests.items():
        paths += write_report_table(frame, out, f"group_difference_{factor}", float_format="%.4g")
    if figures:
        from emonet_face.stats.figures import agreement_by_group_figure  # loads matplotlib: only for figures

        for factor in result.factors:
            if result.groups.get(factor):
                paths += agreement_by_group_figure(result, factor, out)
    return paths


def by_group_markdown(result, figures: bool) -> str:
    lines = [
        "",
        "## Agreement by group",
        "",
        "The protocol above run on each group's images alone (same readout, seed and bootstrap); a group's "
        "kappa is what `bench hq` gives on that group's rows. `p`: does the annotator's kappa differ across "
        "groups more than chance allows (permutation test over images: group labels shuffled, sizes kept; "
        "statistic: size-weighted variance of the group kappas; `unknown` left out; not corrected for the number "
        "of annotators). Small groups get noisier, lower kappas by chance alone: compare groups through `p`. "
        "Long table: [agreement_by_group.csv](agreement_by_group.csv).",
        "",
    ]
    for factor in result.factors:
        groups = result.groups.get(factor, {})
        if not groups:
            continue
        values = list(groups)
        lines += [f"### {factor}", "", "| annotator | " + " | ".join(f"{v} (n={groups[v]['n_images']})" for v in values) + " | p |",
                  "|---" * (len(values) + 2) + "|"]
        tests = result.tests[factor]
        annotators = list(dict.fromkeys(a for v in values for a in groups[v]["per_annotator"].index))
        for a in annotators:
            cells = [format_cell(groups[v]["per_annotator"]["kappa_mean"].get(a)) for v in values]
            lines.append(f"| {a} | " + " | ".join(cells) + f" | {format_cell(tests.at[a, 'p'] if a in tests.index else None)} |")
        lines += ["", f"Tests: [group_difference_{factor}.csv](group_difference_{factor}.csv)", ""]
        if figures:
            lines += [f"![agreement by {factor}](agreement_by_{factor}.png)", ""]
    if result.warnings:
        lines += ["Warnings:", "", *[f"- {w}" for w in result.warnings], ""]
    return "\n".join(lines)


def write_prediction_outputs(result, out: Path, *, figures: bool = True) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    write_json(summary, out / "summary.json")
    lines = [
        "# Model scores by group",
        "",
        f"{result.n_images} images. Mean neutral-centred score per emotion per group, 95% bootstrap CIs over images.",
        "",
    ]
    for factor, frame in result.means.items():
        wide = frame.pivot(index="emotion", columns="group", values="mean").reindex(frame["emotion"].unique())
        write_report_table(frame.set_index(["group", "emotion"]), out, f"mean_score_by_{factor}", latex=False)
        write_report_table(wide, out, f"mean_score_by_{factor}_wide")
        lines += [f"- [{factor}: mean scores](mean_score_by_{factor}.csv) ([wide](mean_score_by_{factor}_wide.csv), [LaTeX](mean_score_by_{factor}_wide.tex))"]
    if result.gaps:
        lines += ["", "## Model gap vs human gap", "", summary["gap_definition"] + ".", ""]
        for factor, frame in result.gaps.items():
            if frame.empty:
                continue
            write_report_table(frame.set_index(["group", "emotion"]), out, f"gap_{factor}", float_format="%.4g")
            flagged = frame[frame["flagged"]]
            lines += [f"### {factor}", "", f"Table: [gap_{factor}.csv](gap_{factor}.csv) ([LaTeX](gap_{factor}.tex)). "
                      + (f"Flagged: {', '.join(f'{r.emotion} ({r.group}: excess {r.excess_z:+.2f} SD, q={r.q:.3g})' for r in flagged.itertuples())}."
                         if len(flagged) else "No emotion flagged (q < 0.05).")]
            if figures:
                from emonet_face.stats.figures import gap_figure  # loads matplotlib: only for figures

                gap_figure(frame, factor, out)
                lines += ["", f"![gap {factor}](gap_{factor}.png)"]
            lines.append("")
    if figures:
        from emonet_face.stats.figures import mean_score_figure  # loads matplotlib: only for figures

        for factor, frame in result.means.items():
            mean_score_figure(frame, factor, out)
            lines += ["", f"![mean scores by {factor}](mean_score_by_{factor}.png)"]
    if summary["warnings"]:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in summary["warnings"]]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return summary
