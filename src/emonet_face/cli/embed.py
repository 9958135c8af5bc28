"""`emonet-face embed DATASET --out STORE`: embed a dataset once into a resumable embedding store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import fail
from emonet_face.cli.options import ActorsOpt, CpusPerActorOpt, EngineOpt, GpusPerActorOpt, RayAddressOpt


def embed(
    dataset: Annotated[
        str,
        typer.Argument(
            help="hq | binary | big (the EmoNet-Face Hub datasets), a Hub dataset id, a folder of .parquet shards, "
            "WebDataset .tar shards (file, folder, glob or brace pattern), a targets .csv, or an image folder."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Store folder to create (or continue with --resume).")],
    encoder: Annotated[
        str,
        typer.Option(help="SigLIP/SigLIP2 encoder: Hub id, local folder, or an `emonet-face download` bundle folder."),
    ] = "",
    revision: Annotated[str | None, typer.Option(help="Encoder revision (branch, tag or commit).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per encoder batch.")] = 32,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps …")] = "cpu",
    backend: Annotated[
        str,
        typer.Option(
            help="Encoder backend: auto (PyTorch on CUDA, OpenVINO on CPU), torch, openvino, onnx. Backend, "
            "precision and device are recorded in the store's manifest.json (encoder)."
        ),
    ] = "auto",
    dtype: Annotated[
        str,
        typer.Option(
            help="Encoder precision: auto (bfloat16 on CPUs with AVX512_BF16/AMX and bf16 GPUs, else float32), "
            "float32 (exact), bfloat16, float16, int8 (EXPERIMENTAL: ONNX Runtime dynamic quantisation)."
        ),
    ] = "auto",
    num_workers: Annotated[int, typer.Option(min=0, help="Threads decoding + preprocessing images.")] = 2,
    resume: Annotated[
        bool, typer.Option(help="Continue a killed run: finished shards are kept, their ids skipped.")
    ] = False,
    shard_size: Annotated[int, typer.Option(min=1, help="Rows per Parquet shard (the resume granularity).")] = 4096,
    targets: Annotated[Path | None, typer.Option(help="Targets CSV for an image-folder DATASET.")] = None,
    images: Annotated[
        Path | None, typer.Option(help="Image folder for a .csv DATASET (default: the CSV's folder).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Override the dataset kind: big, binary, hq.")] = None,
    split: Annotated[str | None, typer.Option(help="Only shards whose path contains this (e.g. train).")] = None,
    dataset_revision: Annotated[str | None, typer.Option(help="Revision of a Hub dataset.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = 1,
    gpus_per_actor: GpusPerActorOpt = 0.0,
    cpus_per_actor: CpusPerActorOpt = 1.0,
) -> None:
    """Embed every image of DATASET with the encoder into Parquet shards + manifest.json (resumable)."""
    from emonet_face.data.store import is_store, read_manifest
    from emonet_face.engines import RayOptions
    from emonet_face.engines.embed import embed_dataset, encoder_kwargs
    from emonet_face.errors import EmoNetError

    try:
        run = embed_dataset(
            dataset, out, encoder=encoder_kwargs(encoder, revision=revision, backend=backend, device=device, dtype=dtype),
            engine=engine, ray=RayOptions(ray_address, actors, gpus_per_actor, cpus_per_actor), batch_size=batch_size,
            shard_size=shard_size, num_workers=num_workers, resume=resume, progress=progress,
            targets=targets, images=images, kind=kind, revision=dataset_revision, split=split,
        )
    except EmoNetError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        saved = read_manifest(out)["count"] if is_store(out) else 0
        typer.echo(f"interrupted: {saved} rows are safe in finished shards of {out}; re-run with --resume", err=True)
        raise typer.Exit(130) from None
    for note in run.notes:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(run.summary())


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("embed")(embed)
