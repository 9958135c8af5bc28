"""`emonet-face train --pretrain BIG_STORE --finetune BINARY_STORE --arch large|small --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import fail
from emonet_face.cli.options import ProgressOpt


def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (heads in both layouts, metrics, report).")],
    pretrain: Annotated[
        Path | None, typer.Option(help="Stage 1 store: BIG (generated 0–7 ratings), from `emonet-face embed big`.")
    ] = None,
    finetune: Annotated[
        Path | None, typer.Option(help="Stage 2 store: BINARY (expert votes), from `emonet-face embed binary`.")
    ] = None,
    arch: Annotated[str, typer.Option(help="Head size as released: large (1024,512,256) or small (128,32).")] = "large",
    hidden: Annotated[str | None, typer.Option(help="Custom hidden widths, e.g. 256,64 (overrides --arch).")] = None,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Dropout after each hidden ReLU.")] = 0.1,
    epochs: Annotated[int, typer.Option(min=0, help="Stage 1 maximum epochs.")] = 30,
    finetune_epochs: Annotated[int, typer.Option(min=0, help="Stage 2 maximum epochs.")] = 20,
    lr: Annotated[float, typer.Option(help="Stage 1 AdamW learning rate.")] = 1e-3,
    finetune_lr: Annotated[float, typer.Option(help="Stage 2 AdamW learning rate.")] = 3e-4,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (both stages).")] = 1e-2,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Embeddings per step.")] = 256,
    patience: Annotated[int, typer.Option(min=1, help="Early stopping: epochs without improvement, per head.")] = 5,
    schedule: Annotated[str, typer.Option(help="Learning-rate schedule: cosine or plateau.")] = "cosine",
    seed: Annotated[int, typer.Option(help="Seed for the split, initialisation, shuffling and dropout.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Held-out fraction of each store for validation.")] = 0.1,
    neutral: Annotated[
        str | None,
        typer.Option(
            help="Neutral faces for the neutral statistics: a store, or a metadata filter like emotion=neutral."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps …")] = "cpu",
    progress: ProgressOpt = True,
) -> None:
    """Train all 44 heads on EmoNet-Face data.

    Train all heads as one stacked model: pre-train on BIG ratings, fine-tune on BINARY votes, export."""
    from emonet_face.errors import EmoNetError
    from emonet_face.train import StageConfig, TrainConfig, train_heads

    try:
        widths = tuple(int(w) for w in hidden.split(",")) if hidden else None
    except ValueError:
        fail(f"--hidden {hidden!r}: expected comma-separated integers such as 256,64")
    if schedule not in ("cosine", "plateau"):
        fail(f"--schedule {schedule!r}: use cosine or plateau")
    config = TrainConfig(
        arch=arch,
        hidden=widths,
        dropout=dropout,
        seed=seed,
        val_fraction=val_fraction,
        device=device,
        pretrain=StageConfig(epochs, lr, weight_decay, batch_size, patience, schedule),
        finetune=StageConfig(finetune_epochs, finetune_lr, weight_decay, batch_size, patience, schedule),
    )
    try:
        result = train_heads(
            out, pretrain=pretrain, finetune=finetune, config=config, neutral=neutral, progress=progress
        )
    except EmoNetError as exc:
        fail(str(exc))
    report = result.report
    for stage, stage_result in result.stages.items():
        typer.echo(f"{stage}: {stage_result.epochs_run} epoch(s), {stage_result.samples_per_second:,.0f} embeddings/s")
    for column in ("spearman", "roc_auc", "kappa_votes"):
        if column in report and report[column].notna().any():
            typer.echo(
                f"validation {column}: median {report[column].median():.3f} over {report[column].notna().sum()} heads"
            )
    typer.echo(f"heads: {out / 'released'} (released layout), {out / 'safetensors'} (safetensors)")
    typer.echo(f"report: {out / 'validation_report.csv'}, metrics: {out / 'metrics.csv'}, {out / 'metrics.png'}")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("train")(train)
