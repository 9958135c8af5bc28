"""``emonet-face check-precision``: how far a reduced precision (int8, bfloat16) moves the scores of
the user's own photos away from float32, with a pass/fail verdict that later int8 runs read.

The photos are scored twice through the same pipeline (faces, crops, preprocessing, heads): once in
float32 (the reference) and once in the asked precision. The reference is float32 on the **same
backend family** as the candidate (int8 → ONNX Runtime float32, the very graph the int8 one is
quantised from; bfloat16 on OpenVINO → OpenVINO float32), so the difference is the precision's alone,
not that of two runtimes (float32 backends agree within 1e-4 in centred scores, tests/test_backends.py).

Thresholds (:class:`PrecisionThresholds`), chosen so that a pass means "the same answers, up to
near-ties":

* Pearson of the centred scores, all heads and rows pooled, at least 0.999 (the figure the issue
  holds int8 to), and per head at least 0.99 where there are enough rows (5) and the head's float32
  scores spread enough (a tenth of the median head's spread) for a correlation to mean something;
* the largest change of an emotion probability at most 0.02 (two percentage points);
* a changed top-1 (or top-3 set) only between near-ties: the emotion int8 ranks in is at most
  0.01 below the one it displaces *in float32's own probabilities*. A swap of two emotions whose
  float32 probabilities differ by less than one percentage point is noise any precision may flip;
  one across a wider margin means int8 changed an answer a user would read.

The pooled Pearson is dominated by the differences between heads (their offsets after centring);
the per-head figure is what sees a drift within a head: on the planted-outlier model of
tests/test_precision.py the pooled Pearson is still 0.998 while the heads' fall below 0.

Spearman's rho and the largest change of a centred score are reported, not judged: the first adds
little to Pearson on these scores, the second has each model's own scale.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from emonet_face.errors import InputError
from emonet_face.options import FaceOptions, MediaOptions, ModelOptions
from emonet_face.pipeline.model import EmoNetFace
from emonet_face.runfolder import atomic_write_json, atomic_write_text
from emonet_face.runtime import record_precision_check
from emonet_face.taxonomy import EMOTION_KEYS, EMOTIONS, EXTRA_FAMILY

__all__ = ["PrecisionCheck", "PrecisionReport", "PrecisionThresholds", "check_precision", "compare_scores"]

ID_COLUMNS = ("path", "face", "frame", "key", "index")
RECORDED = ("passed", "summary", "rows", "overall", "failures", "thresholds")
"""What the conversion cache keeps of a report (the per-head table stays in ``--out``)."""


@dataclass(frozen=True)
class PrecisionThresholds:
    """What a pass needs (see the module docstring for why these values)."""

    pearson: float = 0.999
    head_pearson: float = 0.99
    head_min_rows: int = 5
    head_min_spread: float = 0.1
    """Per-head Pearson is judged only for heads whose float32 scores spread (standard deviation over the
    rows) at least this fraction of the median head's: a head that barely moves on these photos has a
    correlation that measures the precision's noise, not its scores (its changes still count below)."""
    max_prob_delta: float = 0.02
    tie_margin: float = 0.01


@dataclass
class PrecisionReport:
    """The comparison of one precision with float32 on the same rows."""

    rows: int
    overall: dict[str, float]
    heads: pd.DataFrame
    """One row per head: key, family, pearson, spearman, max_abs_centred, max_abs_prob."""
    changes: list[dict[str, Any]]
    """Top-1 / top-3 changes beyond a near-tie: the row's ids, k, float32 margin, both choices."""
    failures: list[str]
    thresholds: PrecisionThresholds = field(default_factory=PrecisionThresholds)
    reference: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """The figures in one line (also what a refused int8 run shows)."""
        o = self.overall
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.failures)
        return (
            f"{self.rows} rows, Pearson {o['pearson']:.5f}, Spearman {o['spearman']:.5f}, top-1 {o['top1']:.1%}, "
            f"top-3 {o['top3']:.1%}, max |delta centred| {o['max_abs_centred']:.2g}, "
            f"max |delta prob| {o['max_abs_prob']:.2g}: {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "summary": self.summary(),
            "rows": self.rows,
            "overall": self.overall,
            "failures": self.failures,
            "thresholds": dataclasses.asdict(self.thresholds),
            "changes": self.changes,
            "heads": json.loads(self.heads.to_json(orient="records")),
            "reference": self.reference,
            "candidate": self.candidate,
        }


def _pearson_spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Both correlations, NaN where one side is constant (no correlation to measure)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    return float(stats.pearsonr(a, b)[0]), float(stats.spearmanr(a, b)[0])


def _head_figures(ref: pd.DataFrame, can: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    family = {e.key: e.family for e in EMOTIONS}
    rows = []
    for key in keys:
        pearson, spearman = _pearson_spearman(ref[key].to_numpy(), can[key].to_numpy())
        prob = f"prob.{key}"
        rows.append({
            "key": key,
            "family": family.get(key, EXTRA_FAMILY),
            "pearson": pearson,
            "spearman": spearman,
            "float32_std": float(ref[key].std(ddof=0)),
            "max_abs_centred": float(np.abs(ref[key] - can[key]).max()),
            "max_abs_prob": float(np.abs(ref[prob] - can[prob]).max()) if prob in ref else float("nan"),
        })
    return pd.DataFrame(rows)


def _top_k_changes(ref_probs: np.ndarray, can_probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: whether the top-``k`` sets agree, and float32's margin over the emotions the candidate
    ranks in instead (``kth float32 probability - float32 probability of the intruder``; 0 where agreeing)."""
    ref_top = np.argsort(-ref_probs, axis=1, kind="stable")[:, :k]
    can_top = np.argsort(-can_probs, axis=1, kind="stable")[:, :k]
    kth = np.take_along_axis(ref_probs, ref_top[:, -1:], axis=1)[:, 0]
    agree = np.zeros(len(ref_probs), bool)
    margin = np.zeros(len(ref_probs))
    for row, (r, c) in enumerate(zip(ref_top, can_top)):
        intruders = sorted(set(c) - set(r))
        agree[row] = not intruders
        if intruders:
            margin[row] = kth[row] - ref_probs[row, intruders].min()
    return agree, margin


def compare_scores(
    reference: pd.DataFrame, candidate: pd.DataFrame, keys: list[str], thresholds: PrecisionThresholds | None = None
) -> PrecisionReport:
    """Compare two score tables of the same rows (float32 ``reference``, the precision checked as
    ``candidate``); rows with an error in either are left out."""
    thresholds = thresholds or PrecisionThresholds()
    ids = [c for c in ID_COLUMNS if c in reference.columns]
    if len(reference) != len(candidate) or not reference[ids].equals(candidate[ids]):
        raise InputError("the two precisions scored different rows; check-precision needs the same inputs twice")
    scored = reference["error"].isna() & candidate["error"].isna() & reference[keys[0]].notna()
    ref, can = reference[scored].reset_index(drop=True), candidate[scored].reset_index(drop=True)
    if not len(ref):
        raise InputError("no face or image was scored in these inputs; give check-precision photos with faces")
    heads = _head_figures(ref, can, keys)
    pearson, spearman = _pearson_spearman(ref[keys].to_numpy().ravel(), can[keys].to_numpy().ravel())
    probs = [f"prob.{k}" for k in keys if k in EMOTION_KEYS]
    ref_probs, can_probs = ref[probs].to_numpy(), can[probs].to_numpy()
    overall = {"pearson": pearson, "spearman": spearman}
    changes: list[dict[str, Any]] = []
    emotion_keys = [p.removeprefix("prob.") for p in probs]
    for k in (1, 3):
        agree, margin = _top_k_changes(ref_probs, can_probs, k)
        overall[f"top{k}"] = float(agree.mean())
        overall[f"top{k}_near_ties"] = int((~agree & (margin <= thresholds.tie_margin)).sum())
        for row in np.flatnonzero(~agree & (margin > thresholds.tie_margin)):
            ids_of_row = {c: ref.at[row, c] for c in ids if pd.notna(ref.at[row, c])}
            changes.append({
                **{c: v.item() if hasattr(v, "item") else v for c, v in ids_of_row.items()},
                "k": k,
                "float32": [emotion_keys[i] for i in np.argsort(-ref_probs[row], kind="stable")[:k]],
                "candidate": [emotion_keys[i] for i in np.argsort(-can_probs[row], kind="stable")[:k]],
                "float32_margin": float(margin[row]),
            })
    overall["max_abs_centred"] = float(heads["max_abs_centred"].max())
    overall["max_abs_prob"] = float(np.nanmax(heads["max_abs_prob"])) if probs else 0.0
    report = PrecisionReport(len(ref), overall, heads, changes, [], thresholds)
    report.failures = _failures(report)
    return report


def _failures(report: PrecisionReport) -> list[str]:
    """One line per threshold the report misses."""
    t, o, failures = report.thresholds, report.overall, []
    if not o["pearson"] >= t.pearson and not np.isnan(o["pearson"]):
        failures.append(f"Pearson {o['pearson']:.5f} < {t.pearson}")
    if report.rows >= t.head_min_rows:
        heads = report.heads
        judged = heads[heads["float32_std"] >= t.head_min_spread * heads["float32_std"].median()]
        low = judged[judged["pearson"] < t.head_pearson]
        if len(low):
            worst = low.sort_values("pearson").iloc[0]
            failures.append(f"{len(low)} head(s) with Pearson < {t.head_pearson} (worst {worst['key']} {worst['pearson']:.4f})")
    if o["max_abs_prob"] > t.max_prob_delta:
        failures.append(f"max |delta prob| {o['max_abs_prob']:.3g} > {t.max_prob_delta}")
    for k in (1, 3):
        n = sum(1 for c in report.changes if c["k"] == k)
        if n:
            failures.append(f"{n} top-{k} change(s) beyond a near-tie (float32 margin > {t.tie_margin})")
    return failures


@dataclass
class PrecisionCheck:
    """A check-precision run: the report, both score tables and where its verdict was recorded."""

    report: PrecisionReport
    reference: pd.DataFrame
    candidate: pd.DataFrame
    keys: list[str]
    record: Path | None = None


def _scores(options: ModelOptions, paths: list[Path], run: dict[str, Any]) -> tuple[pd.DataFrame, EmoNetFace]:
    with warnings.catch_warnings():  # the int8 load's "not checked yet" line: this run is the check
        warnings.filterwarnings("ignore", message="--dtype int8")
        net = EmoNetFace.from_pretrained(options=options)
    return net.predict(paths, **run), net


def check_precision(
    paths: list[Path],
    *,
    model: ModelOptions,
    dtype: str,
    faces: FaceOptions,
    media: MediaOptions | None = None,
    batch_size: int = 16,
    num_workers: int | None = None,
    thresholds: PrecisionThresholds | None = None,
) -> PrecisionCheck:
    """Score ``paths`` in ``dtype`` and in float32 on the same backend family, compare them
    (:func:`compare_scores`) and record the verdict of an int8 run in the conversion cache."""
    run = {"faces": faces, "media": media, "batch_size": batch_size, "num_workers": num_workers}
    candidate, net = _scores(dataclasses.replace(model, dtype=dtype, force_precision=True), paths, run)
    described = net.describe()
    backend = described["encoder"].get("backend", model.backend)
    reference, ref_net = _scores(dataclasses.replace(model, dtype="float32", backend=backend), paths, run)
    report = compare_scores(reference, candidate, list(net.keys), thresholds)
    report.reference, report.candidate = ref_net.describe()["encoder"], described["encoder"]
    verdict = {k: v for k, v in report.to_dict().items() if k in RECORDED} | {"heads": str(net.heads_ref)}
    record = record_precision_check(net.encoder, verdict) if net.encoder is not None else None
    return PrecisionCheck(report, reference, candidate, list(net.keys), record)


def report_markdown(check: PrecisionCheck) -> str:
    """The report as Markdown: verdict, overall figures, thresholds, changes beyond near-ties, heads."""
    r = check.report
    lines = [
        f"# check-precision: {r.candidate.get('precision', '?')} against float32",
        "",
        f"**{'PASS' if r.passed else 'FAIL'}** on {r.rows} rows. Reference: {r.reference.get('backend')} "
        f"{r.reference.get('precision')}; checked: {r.candidate.get('backend')} {r.candidate.get('precision')}.",
        "",
        *[f"- fails: {f}" for f in r.failures],
        "",
        "| figure | value |",
        "| --- | ---: |",
        *[f"| {k} | {v:.6g} |" for k, v in r.overall.items()],
        "",
        "Thresholds: " + ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(r.thresholds).items()),
        "",
    ]
    if r.changes:
        lines += ["## Changes beyond a near-tie", "", "| row | k | float32 | checked | float32 margin |", "| --- | ---: | --- | --- | ---: |"]
        lines += [
            f"| {c.get('path', '')} {c.get('face', '')} | {c['k']} | {', '.join(c['float32'])} | "
            f"{', '.join(c['candidate'])} | {c['float32_margin']:.4f} |"
            for c in r.changes
        ]
        lines.append("")
    lines += ["## Per head", "", *_markdown_table(r.heads), ""]
    return "\n".join(lines)


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    cells = [[f"{v:.6g}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    header = [f"| {' | '.join(map(str, frame.columns))} |", f"|{' --- |' * len(frame.columns)}"]
    return header + [f"| {' | '.join(row)} |" for row in cells]


def write_precision_report(check: PrecisionCheck, out: Path) -> list[Path]:
    """``report.json``, ``report.md`` and ``scatter.png`` (float32 against the checked precision,
    one panel per emotion family) into the folder ``out``; returns the files written."""
    from emonet_face.viz.precision import precision_scatter  # matplotlib only when a picture is asked for

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", check.report.to_dict() | {"record": str(check.record) if check.record else None})
    atomic_write_text(out / "report.md", report_markdown(check))
    scored = check.reference["error"].isna() & check.candidate["error"].isna()
    precision_scatter(
        check.reference.loc[scored, check.keys], check.candidate.loc[scored, check.keys], out / "scatter.png",
        label=str(check.report.candidate.get("precision", "checked")),
    )
    return [out / "report.json", out / "report.md", out / "scatter.png"]
