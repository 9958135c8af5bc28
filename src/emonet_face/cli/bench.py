"""`emonet-face bench hq|transfer|binary`: the EmoNet-Face benchmark from the command line.

Heavy imports (pandas, SciPy, matplotlib) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from emonet_face.cli._common import user_errors
from emonet_face.cli.options import FiguresOpt, MetaOpt, NBootOpt, SeedOpt
from emonet_face.errors import InputError

app = typer.Typer(
    help="Compare models with the EmoNet-Face experts.\n\n"
    "Benchmark models against EmoNet-Face expert ratings (HQ protocol, transfer, BINARY votes).",
    no_args_is_help=True,
)


class Readout(str, Enum):
    published = "published"
    calibrated = "calibrated"


class Dataset(str, Enum):
    ferd = "ferd"
    affectnet = "affectnet"


def _run(action: Callable[[], Any]) -> Any:
    """Run a command body; user-fixable problems become one `error:` line and exit code 2."""
    with user_errors():
        return action()


def _warn(messages: list[str]) -> None:
    for message in messages:
        typer.echo(f"warning: {message}", err=True)


@app.command("hq")
def hq(
    annotations: Annotated[Path, typer.Argument(help="HQ annotation file (hq.csv layout or the HF dataset layout).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (summary.json, tables, figures, report.md).")
    ],
    predictions: Annotated[
        list[Path] | None,
        typer.Option("--predictions", help="Score table from `predict`/`score`, or an HQ-layout file; repeatable."),
    ] = None,
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Annotator name for each --predictions (in order).")
    ] = None,
    readout: Annotated[
        Readout, typer.Option("--readout", help="How model values become 0..7 for kappa.")
    ] = Readout.published,
    seed: SeedOpt = 42,
    n_boot: NBootOpt = 1000,
    reliable_alpha: Annotated[
        float, typer.Option("--reliable-alpha", help="Human alpha at which an emotion counts as reliable.")
    ] = 0.3,
    figures: FiguresOpt = True,
    meta: MetaOpt = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Factors for agreement by group (with --meta): gender,age_group,fairface,ethnicity.")
    ] = None,
    n_perm: Annotated[
        int, typer.Option("--n-perm", min=19, help="Permutations of the test of agreement differing across groups.")
    ] = 200,
) -> None:
    """Agreement of each annotator with the experts.

    Agreement of every annotator with the human experts (kappa, Spearman, alpha, groups)."""

    def body() -> None:
        from emonet_face.bench.hq import add_predictions, load_hq
        from emonet_face.bench.protocol import run_hq_protocol
        from emonet_face.bench.report import write_hq_outputs

        data = load_hq(annotations)
        names = list(name or [])
        for k, pred in enumerate(predictions or []):
            add_predictions(data, pred, names[k] if k < len(names) else None)
        if name and len(names) > len(predictions or []):
            data.warnings.append("more --name than --predictions; extra names ignored")
        result = run_hq_protocol(data, readout=readout.value, seed=seed, n_boot=n_boot, reliable_alpha=reliable_alpha)
        by_group = None
        if meta is not None or by is not None:
            from emonet_face.stats.bygroup import agreement_by_group, group_factors, parse_factors

            if meta is None:
                raise InputError("--by needs --meta FILE (per-image demographics, or the HQ dataset)")
            factors, notes = group_factors(data.images, meta)
            by_group = agreement_by_group(
                data,
                factors,
                parse_factors(by or "gender,age_group,fairface"),
                readout=readout.value,
                seed=seed,
                n_boot=n_boot,
                reliable_alpha=reliable_alpha,
                n_perm=n_perm,
            )
            by_group.warnings[:0] = notes
        summary = write_hq_outputs(result, out, figures=figures, by_group=by_group)
        _warn(result.warnings + (by_group.warnings if by_group else []))
        _print_hq(summary)
        typer.echo(f"wrote {out}/summary.json, tables, {'figures, ' if figures else ''}report.md")

    _run(body)


def _print_hq(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    table = Table(title=f"EmoNet-Face HQ ({summary['readout']} readout)")
    for column in ("annotator", "group", "kappa", "rho", "dropped"):
        table.add_column(column)
    order = sorted(summary["kappa_mean"], key=lambda a: -(summary["kappa_mean"][a] or -9))
    for a in order:
        share = summary["dropped_share"][a]
        table.add_row(
            a,
            summary["annotators"][a]["group"],
            fmt(summary["kappa_mean"][a]),
            fmt(summary["spearman_mean"][a]),
            "–" if share is None else f"{share:.0%}",
        )
    Console().print(table)


@app.command("transfer")
def transfer(
    predictions: Annotated[Path, typer.Argument(help="Release results JSONL or a score table with a class column.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (summary.json, tables).")],
    dataset: Annotated[Dataset, typer.Option("--dataset", help="Which class mapping to use.")] = Dataset.ferd,
    class_column: Annotated[
        str | None, typer.Option("--class-column", help="Column with the true class (default: class/label/...).")
    ] = None,
    mappings: Annotated[
        Path | None, typer.Option("--mappings", help="Head → class maps JSON (default: the release's, shipped).")
    ] = None,
) -> None:
    """Accuracy of the heads on other datasets.

    Cross-dataset transfer: map the 40 heads to basic classes and score accuracy."""

    def body() -> None:
        from emonet_face.bench.report import write_transfer_outputs
        from emonet_face.bench.transfer import evaluate_transfer

        result = evaluate_transfer(predictions, dataset.value, class_column=class_column, mappings_path=mappings)
        summary = write_transfer_outputs(result, out)
        _warn(result.warnings)
        typer.echo(f"{dataset.value}: accuracy {summary['accuracy']:.4f} on {summary['n']} images")
        for cls, acc in summary["per_class"].items():
            typer.echo(f"  {cls:<10} {acc:.3f}")
        typer.echo(f"wrote {out}/summary.json")

    _run(body)


@app.command("binary")
def binary(
    votes: Annotated[Path, typer.Argument(help="BINARY votes: path,annotator,value,emotion rows.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (summary.json, tables, figures).")],
    figures: FiguresOpt = True,
) -> None:
    """How often the experts' BINARY votes agree.

    Share of unanimous / 2:1 / 1:1 expert votes per emotion, plus annotator statistics."""

    def body() -> None:
        from emonet_face.bench.binary import analyse_binary
        from emonet_face.bench.report import write_binary_outputs

        result = analyse_binary(votes)
        summary = write_binary_outputs(result, out, figures=figures)
        _warn(result.warnings)
        overall = summary["overall"]
        typer.echo(
            f"{overall['n']} items with ≥ 2 votes: agreement {overall['agreement']:.3f}, "
            f"partial {overall['partial']:.3f}, disagreement {overall['disagreement']:.3f}"
        )
        typer.echo(f"wrote {out}/summary.json")

    _run(body)
