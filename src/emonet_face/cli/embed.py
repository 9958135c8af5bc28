"""`emonet-face embed DATASET --out STORE`: embed a dataset once into a resumable embedding store.

Exit codes: 0 every image embedded, 1 some images could not be read (skipped: listed in the store's
manifest, the first named on stderr), 2 the run could not start, 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import EXIT_INTERRUPTED, EXIT_ROW_ERRORS, fail, os_error_text
from emonet_face.cli.options import (
    ActorsOpt,
    BackendOpt,
    BatchSizeOpt,
    CacheOpt,
    CpusPerActorOpt,
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    EngineOpt,
    ForcePrecisionOpt,
    GpusPerActorOpt,
    NoNormalizeOpt,
    NumWorkersOpt,
    RayAddressOpt,
    ResumeOpt,
    model_options,
)


def embed(
    dataset: Annotated[
        str,
        typer.Argument(
            help="hq | binary | big (the EmoNet-Face Hub datasets), a Hub dataset id, a folder of .parquet shards, "
            "WebDataset .tar shards (file, folder, glob or brace pattern), a targets .csv, or an image folder."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Store folder to create (or continue with --resume).")],
    encoder: EncoderOpt = None,
    revision: Annotated[str | None, typer.Option("--revision", help="Encoder revision (branch, tag or commit).")] = None,
    cache_dir: CacheOpt = None,
    batch_size: BatchSizeOpt = 32,
    device: DeviceOpt = None,
    backend: BackendOpt = "auto",
    dtype: DtypeOpt = "auto",
    no_normalize: NoNormalizeOpt = False,
    force_precision: ForcePrecisionOpt = False,
    num_workers: NumWorkersOpt = None,
    resume: ResumeOpt = False,
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
    """Embed a dataset's images into Parquet shards.

    Embed every image of DATASET with the encoder into Parquet shards + manifest.json (resumable)."""
    from emonet_face.data.store import is_store, read_manifest
    from emonet_face.engines import RayOptions
    from emonet_face.engines.embed import embed_dataset, encoder_kwargs
    from emonet_face.errors import EmoNetError

    try:
        run = embed_dataset(
            dataset, out,
            encoder=encoder_kwargs(
                model_options(
                    encoder=encoder, revision=revision, cache_dir=cache_dir, device=device, backend=backend, dtype=dtype,
                    no_normalize=no_normalize, force_precision=force_precision,
                )
            ),
            engine=engine, ray=RayOptions(ray_address, actors, gpus_per_actor, cpus_per_actor), batch_size=batch_size,
            shard_size=shard_size, num_workers=num_workers, resume=resume, progress=progress,
            targets=targets, images=images, kind=kind, revision=dataset_revision, split=split,
        )
    except EmoNetError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error_text(exc))
    except KeyboardInterrupt:
        saved = read_manifest(out)["count"] if is_store(out) else 0
        typer.echo(f"interrupted: {saved} rows are safe in finished shards of {out}; re-run with --resume", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    for note in run.notes:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(run.summary())
    if run.manifest["skipped"]:
        raise typer.Exit(EXIT_ROW_ERRORS)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("embed")(embed)
