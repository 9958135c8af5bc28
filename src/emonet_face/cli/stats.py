"""`emonet-face stats`: dataset statistics and a demographic audit (or a score table's scores by group)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import user_errors
from emonet_face.cli.options import FiguresOpt, MetaOpt, NBootOpt, SeedOpt, SplitOpt


def stats(
    dataset: Annotated[
        str,
        typer.Argument(
            help="hq/binary/big, a Hub dataset id, local Parquet (either layout), a targets CSV, or a score table "
            "from predict/score (then: scores by group)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (summary.json, tables, figures, report.md).")
    ],
    meta: MetaOpt = None,
    by: Annotated[str, typer.Option("--by", help="Score tables: factors, comma-separated (gender, age_group, ethnicity, fairface).")] = "gender",
    hq: Annotated[
        Path | None, typer.Option("--hq", help="Score tables: HQ annotations; adds the model's gap vs the humans' gap per group.")
    ] = None,
    ethnicity_table: Annotated[
        Path | None, typer.Option("--ethnicity-table", help="A copy of the demographic table (JSON) extended with your strings.")
    ] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="Hub dataset revision.")] = None,
    split: SplitOpt = None,
    seed: SeedOpt = 42,
    n_boot: NBootOpt = 1000,
    n_perm: Annotated[int, typer.Option("--n-perm", min=99, help="Permutations for the gap test.")] = 2000,
    figures: FiguresOpt = True,
) -> None:
    """Statistics and audit of a dataset.

    Demographic balance, per-emotion counts and figures of a dataset, streamed shard by shard."""
    with user_errors():
        from emonet_face.stats import is_score_table, load_demographic_table

        table = load_demographic_table(ethnicity_table)
        if is_score_table(dataset):
            from emonet_face.stats.bygroup import parse_factors, prediction_stats
            from emonet_face.stats.report import write_prediction_outputs

            result = prediction_stats(
                dataset, parse_factors(by), meta=meta, hq=hq, table=table, n_boot=n_boot, n_perm=n_perm, seed=seed
            )
            summary = write_prediction_outputs(result, out, figures=figures)
            _warn(summary["warnings"])
            typer.echo(f"{summary['n_images']} scored images; groups: {summary['by']}")
            for item in summary.get("flagged", []):
                typer.echo(
                    f"flagged: {item['emotion']} ({item['factor']} {item['group']}): model gap exceeds the humans' by "
                    f"{item['excess_z']:+.2f} SD (q={item['q']:.3g})"
                )
            typer.echo(f"wrote {out}/summary.json, tables, {'figures, ' if figures else ''}report.md")
            return
        if hq is not None:
            typer.echo("warning: --hq applies to score tables only; ignored", err=True)
        from emonet_face.stats.dataset import dataset_stats
        from emonet_face.stats.report import write_dataset_outputs

        counted = dataset_stats(dataset, meta=meta, table=table, revision=revision, split=split)
        summary = write_dataset_outputs(counted, out, figures=figures)
        _warn(summary["warnings"])
        typer.echo(f"{summary['n_images']} images ({summary['layout']})")
        for factor in ("gender", "age_group", "fairface"):
            balance = summary["balance"][factor]["balance"]
            counts = ", ".join(f"{k} {v}" for k, v in summary["by"][factor].items() if v)
            typer.echo(f"  {factor:<9} balance {'–' if balance is None else f'{balance:.3f}'}: {counts}")
        if figures:
            from emonet_face.stats.figures import world_map_paths

            if world_map_paths() is None:
                from emonet_face.stats.figures import MAP_EXTRA_HINT

                typer.echo(f"note: world map drawn without country outlines; {MAP_EXTRA_HINT}", err=True)
        typer.echo(f"wrote {out}/summary.json, tables, {'figures, ' if figures else ''}report.md")


def _warn(messages: list[str]) -> None:
    for message in messages:
        typer.echo(f"warning: {message}", err=True)


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
