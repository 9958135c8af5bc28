"""Writing benchmark outputs: summary.json, CSV + LaTeX tables, figures and a Markdown report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from emonet_face.bench.groups import GROUP_LABELS
from emonet_face.errors import require_extra

READOUT_TEXT = """\
**Readouts.** Kappa needs ratings on 0..7. The *published* readout casts every value to int
(truncation toward zero) and, as scikit-learn does with `labels=range(8)`, silently drops every
rating pair where either value falls outside 0..7. Mean-subtracted model scores (Empathic Insight)
are negative for many images, so a large share of their pairs drop out (column `dropped_share`),
and the remaining pairs are a biased sample. The *calibrated* readout maps each model's scores per
emotion onto 0..7 by quantile matching to the pooled human rating distribution of that emotion
(ties share a rating), so a continuous-output model is judged on how it orders images rather than
on the offset of its scale. Both are always computed (`kappa_mean_published`,
`kappa_mean_calibrated`); `kappa_mean` follows `--readout`. Spearman's rho is rank-based and uses
the values as given.
"""


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _nan_to_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_null(v) for v in value]
    return value


def write_json(payload: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(_nan_to_null(payload), indent=2, default=_json_default, allow_nan=False) + "\n")
    return path


def write_report_table(
    frame: pd.DataFrame, out: Path, stem: str, *, latex: bool = True, float_format: str = "%.3f"
) -> list[Path]:
    """A report table as ``<out>/<stem>.csv`` and (``latex``) ``<stem>.tex``; returns the paths. (Score
    tables go through :func:`emonet_face.outputs.write_table`.)"""
    paths = [out / f"{stem}.csv"]
    frame.to_csv(paths[0])
    if latex:
        require_extra("jinja2", feature="the LaTeX tables of emonet-face bench", extra="bench", package="Jinja2")
        paths.append(out / f"{stem}.tex")
        paths[1].write_text(frame.to_latex(float_format=lambda v: float_format % v, na_rep="--"))
    return paths


def format_cell(value: Any, digits: int = 3) -> str:
    """A number as a Markdown table cell: ``digits`` decimals for floats, a dash for a missing or non-finite value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_hq_outputs(result, out: Path, *, figures: bool = True, by_group=None) -> dict[str, Any]:
    """Everything `bench hq` writes into ``out``; returns the summary. ``by_group``: an
    :class:`~emonet_face.stats.bygroup.GroupAgreement` (``--meta --by``) adds ``by``/``by_tests`` to the
    summary, and its own tables, figures and report section (``write_outputs``, ``markdown``)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    if by_group is not None:
        summary.update(by_group.summary())
    write_json(summary, out / "summary.json")
    pa = result.per_annotator
    headline = pa[
        [
            "group",
            "n_images",
            "kappa_mean",
            "kappa_ci_low",
            "kappa_ci_high",
            "kappa_std",
            "kappa_median",
            "kappa_top_emotion",
            "kappa_mean_published",
            "kappa_mean_calibrated",
            "kappa_mean_reliable",
            "dropped_pairs",
            "dropped_share",
            "spearman_mean",
            "spearman_ci_low",
            "spearman_ci_high",
            "could_be_annotator",
        ]
    ]
    headline = headline.sort_values("kappa_mean", ascending=False)
    write_report_table(headline, out, "annotators")
    write_report_table(result.kappa_per_emotion.T, out, "kappa_per_emotion", latex=False)
    write_report_table(result.spearman_per_emotion.T, out, "spearman_per_emotion", latex=False)
    write_report_table(result.pairwise_kappa, out, "pairwise_kappa", latex=False)
    write_report_table(result.alpha, out, "alpha")
    write_report_table(
        result.group_tests.set_index(["group_a", "group_b"]) if len(result.group_tests) else result.group_tests,
        out,
        "group_tests",
        float_format="%.4g",
    )
    write_report_table(
        pa[["group", "diff_vs_humans", "diff_ci_low", "diff_ci_high", "wilcoxon_p", "could_be_annotator"]],
        out,
        "could_be_annotator",
        float_format="%.4g",
    )
    if figures:
        from emonet_face.bench.figures import hq_figures  # loads matplotlib: only when figures are asked for

        hq_figures(result, out)
    report = _hq_markdown(result, summary, figures)
    if by_group is not None:  # its own tables, figures and report section (stats builds on bench, not back)
        by_group.write_outputs(out, figures=figures)
        report += by_group.markdown(figures)
    (out / "report.md").write_text(report)
    return summary


def _hq_markdown(result, summary: dict[str, Any], figures: bool) -> str:
    pa = result.per_annotator.sort_values("kappa_mean", ascending=False)
    lines = [
        "# EmoNet-Face HQ agreement report",
        "",
        f"{summary['n_images']} images, {summary['n_humans']} human experts, "
        f"{summary['n_annotators'] - summary['n_humans']} other annotators. Readout: **{result.readout}**; "
        f"seed {result.seed}; {result.n_boot} bootstrap draws for every CI.",
        "",
        "## Agreement with human experts",
        "",
        "Quadratic weighted Cohen's kappa per emotion and annotator pair (labels 0..7); a model's kappa "
        "per emotion is the mean over humans, a human's the mean over the other humans; the headline is "
        "the mean over emotions (95% CI: bootstrap over emotions). Spearman's rho is against the per-image "
        "median human rating (for a human: of the other humans).",
        "",
        "| annotator | group | kappa | 95% CI | published | calibrated | dropped | rho | could be annotator |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in pa.iterrows():
        cba = r["could_be_annotator"]
        lines.append(
            f"| {name} | {GROUP_LABELS[r['group']]} | {format_cell(r['kappa_mean'])} | "
            f"[{format_cell(r['kappa_ci_low'])}, {format_cell(r['kappa_ci_high'])}] | "
            f"{format_cell(r['kappa_mean_published'])} | {format_cell(r['kappa_mean_calibrated'])} | "
            f"{format_cell(r['dropped_share'] * 100, 1)}% | {format_cell(r['spearman_mean'])} | "
            f"{'–' if cba is None or pd.isna(cba) else ('yes' if cba else 'no')} |"
        )
    am = result.alpha_mean
    lines += [
        "",
        "`dropped` = share of rating pairs with the humans that fall outside 0..7 under the chosen readout "
        'and silently leave kappa. "Could be annotator": the 95% bootstrap CI of the mean per-emotion '
        "difference to human–human kappa reaches 0.",
        "",
        READOUT_TEXT,
        "## Inter-expert reliability",
        "",
        f"Krippendorff's alpha (interval) over the human experts, mean over emotions {format_cell(am['alpha_mean'])} "
        f"[{format_cell(am['ci_low'])}, {format_cell(am['ci_high'])}] (CIs: bootstrap over images). "
        "Per emotion: `alpha.csv`.",
        "",
        f"{len(result.reliable_emotions)} emotions reach alpha ≥ {result.reliable_alpha} (reliable): "
        f"{', '.join(result.reliable_emotions) or 'none'}; `kappa_mean_reliable` averages kappa over these only.",
        "",
        "## Groups",
        "",
        "Pairwise two-sided Mann–Whitney U on per-(annotator, emotion) kappas, with bootstrap CIs of the "
        "difference of means: `group_tests.csv`.",
        "",
    ]
    if figures:
        for stem, title in (
            ("pairwise_kappa_heatmap", "Pairwise kappa"),
            ("agreement_per_emotion", "Agreement per emotion"),
            ("group_boxplot", "Groups"),
            ("spearman_bars", "Spearman's rho"),
            ("alpha_per_emotion", "Krippendorff's alpha"),
        ):
            lines += [f"![{title}]({stem}.png)", ""]
    if result.warnings:
        lines += ["## Warnings", "", *[f"- {w}" for w in result.warnings], ""]
    return "\n".join(lines)


def write_transfer_outputs(result, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    write_json(summary, out / "summary.json")
    result.per_image.to_csv(out / "per_image.csv", index=False)
    per_class = pd.DataFrame({"accuracy": summary["per_class"], "n": summary["n_per_class"]})
    per_class.index.name = "class"
    write_report_table(per_class, out, "per_class")
    return summary


def write_binary_outputs(result, out: Path, *, figures: bool = True) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    write_json(summary, out / "summary.json")
    write_report_table(result.per_emotion, out, "per_emotion")
    write_report_table(result.annotators, out, "annotators")
    if len(result.pairs):
        write_report_table(result.pairs.set_index(["annotator_a", "annotator_b"]), out, "annotator_pairs")
    if figures and len(result.per_emotion):
        from emonet_face.bench.figures import binary_stacked_bars  # loads matplotlib: only for figures

        binary_stacked_bars(result.per_emotion, out)
    return summary
