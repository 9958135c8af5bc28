"""`emonet-face embed DATASET --out STORE`: embed a dataset once into a resumable embedding store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emonet_face.cli._common import fail
from emonet_face.cli.options import ActorsOpt, CpusPerActorOpt, EngineOpt, GpusPerActorOpt, RayAddressOpt

if TYPE_CHECKING:
    from emonet_face.engines.ray_engine import DescribedEncoder
    from emonet_face.runtime import Encoder


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
    import contextlib
    import warnings

    from emonet_face.bundle import is_bundle, open_bundle
    from emonet_face.data import open_dataset
    from emonet_face.data.store import is_store, read_manifest, write_store
    from emonet_face.errors import EmoNetError
    from emonet_face.hub import DEFAULT_ENCODER
    from emonet_face.runtime import load_encoder

    if engine not in ("local", "ray"):
        fail(f"--engine {engine}: use local or ray")
    try:
        data = open_dataset(dataset, targets=targets, images=images, kind=kind, revision=dataset_revision, split=split)
        encoder_kwargs: dict[str, Any] = {
            "ref": encoder or DEFAULT_ENCODER,
            "backend": backend,
            "device": device,
            "dtype": None if dtype == "auto" else dtype,
            "revision": revision,
        }
        if encoder and is_bundle(encoder):  # checked once here; Ray actors get plain load_encoder arguments
            if revision is not None:
                fail(f"--revision {revision}: a bundle holds a fixed encoder revision; drop --revision")
            encoder_kwargs |= open_bundle(encoder).encoder_kwargs()
        with contextlib.ExitStack() as stack, warnings.catch_warnings(record=True) as caught:
            embedder = None
            model: Encoder | DescribedEncoder
            if engine == "ray":
                from emonet_face.engines import RayOptions
                from emonet_face.engines.ray_engine import describe_encoder, ray_embedder, ray_session

                options = RayOptions(ray_address, actors, gpus_per_actor, cpus_per_actor, batch_size=batch_size)
                stack.enter_context(ray_session(options))
                embedder = ray_embedder(data, encoder_kwargs, options)
                model = describe_encoder(encoder_kwargs)
            else:
                model = load_encoder(**encoder_kwargs)
            warnings.simplefilter("always")
            manifest = write_store(
                data,
                out,
                model,
                batch_size=batch_size,
                shard_size=shard_size,
                num_workers=num_workers,
                resume=resume,
                progress=progress,
                embedder=embedder,
            )
    except EmoNetError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        saved = read_manifest(out)["count"] if is_store(out) else 0
        typer.echo(f"interrupted: {saved} rows are safe in finished shards of {out}; re-run with --resume", err=True)
        raise typer.Exit(130) from None
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    report = data.coverage_report()
    if report:
        for line in report.splitlines():
            typer.echo(f"warning: {line}", err=True)
    typer.echo(
        f"{out}: {manifest['count']} embeddings (dim {manifest['dim']}) in {len(manifest['shards'])} shard(s)"
        + (f", {len(manifest['skipped'])} image(s) skipped" if manifest["skipped"] else "")
    )


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("embed")(embed)
