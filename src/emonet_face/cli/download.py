"""`emonet-face download`: one self-contained bundle folder for air-gapped machines and containers
(see :mod:`emonet_face.bundle`), and `download --check` to verify one.

Exit codes: 0 written / verified, 2 usage or load error (including a bundle that fails its check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import fail, user_errors
from emonet_face.cli.options import CacheOpt, EncoderOpt, HeadsOpt, RevisionOpt


def register(app: typer.Typer) -> None:
    """Attach this module's command to the main app."""
    # the usage names --out/--check before [model]: "[OPTIONS] [model]" reads as a Markdown reference link
    # in the generated CLI reference (mkdocs build --strict fails on it)
    app.command("download", options_metavar="[OPTIONS] (--out DIR | --check DIR)")(download)


def download(
    model: Annotated[str, typer.Argument(help="Released model: large or small.")] = "large",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Bundle folder to create (new or empty).")] = None,
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    with_openvino: Annotated[
        bool,
        typer.Option(
            "--with-openvino", help="Also store the encoder converted for OpenVINO: the first CPU run does not convert."
        ),
    ] = False,
    with_int8: Annotated[
        bool,
        typer.Option(
            "--with-int8",
            help="Also store the encoder quantised to int8 (ONNX Runtime dynamic): --dtype int8 runs do not quantise.",
        ),
    ] = False,
    check: Annotated[
        Path | None,
        typer.Option("--check", help="Verify a bundle's files against its manifest and print what it holds."),
    ] = None,
) -> None:
    """Write a model folder that runs offline.

    Write MODEL's encoder and heads into one folder that runs with no network (predict/serve --model DIR)."""
    if check is not None:
        if out is not None:
            fail("--check verifies an existing bundle; drop --out")
        with user_errors():
            from emonet_face.bundle import open_bundle, verify_bundle

            bundle = open_bundle(check, verify=False)
            verify_bundle(bundle, rehash=True)  # every byte, whatever earlier checks recorded
            for line in bundle.summary():
                typer.echo(line)
        return
    if out is None:
        fail("--out is required: the bundle folder to create (or --check DIR to verify one)")
    with user_errors():
        from emonet_face.bundle import write_bundle
        from emonet_face.errors import format_size
        from emonet_face.runtime import quiet_transformers

        with quiet_transformers():
            bundle = write_bundle(
                out,
                model=model,
                encoder=encoder,
                heads=heads,
                revision=revision,
                cache_dir=cache_dir,
                with_openvino=with_openvino,
                with_int8=with_int8,
                log=lambda line: typer.echo(line, err=True),
            )
        size = sum(f["size"] for f in bundle.manifest["files"].values())
        typer.echo(f"{out}: bundle written ({len(bundle.manifest['files'])} files, {format_size(size)})", err=True)
        typer.echo(f"run it offline: emonet-face predict PHOTOS --model {out}", err=True)
