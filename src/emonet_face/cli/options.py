"""Options shared by several commands, declared once: every command that loads a model takes the
model options below, every command that finds faces the face options, with the same help and checks.

The values are checked by the dataclasses they fill (:class:`~emonet_face.options.ModelOptions`,
:class:`~emonet_face.options.FaceOptions`, :class:`~emonet_face.options.MediaOptions`), built with
:func:`model_options` / :func:`face_options` / :func:`media_options` from a command's arguments, so a
bad value gives the same one-line error from every command. Options those checks cover carry no
typer range (``min=``): typer's range error is a usage box, not one line, and its ``[x>=0]`` in the
help could disagree with the check. ``tests/test_cli_options.py`` walks every
command and fails where two describe or check one of these options differently.

Nothing here imports torch: ``emonet-face --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from emonet_face.options import FaceOptions, MediaOptions, ModelOptions

# --- model options (every command that loads a model) -------------------------------------------
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Released model (large, small), a bundle folder written by `emonet-face download` (runs with no "
        "network), or a folder written by `emonet-face export` (one graph, run by ONNX Runtime or OpenVINO).",
    ),
]
EncoderOpt = Annotated[
    str | None, typer.Option("--encoder", help="Encoder: Hub id (owner/name, or owner/name@rev) or local folder.")
]
HeadsOpt = Annotated[
    str | None,
    typer.Option(
        "--heads", help="Heads: Hub id (owner/name, or owner/name@rev) or local folder; default: the --model heads."
    ),
]
RevisionOpt = Annotated[str | None, typer.Option("--revision", help="Hub revision (branch, tag, commit) of the heads.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Hugging Face cache folder.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N (default: cuda if available).")]
BACKEND_HELP = (
    "Encoder backend: auto (PyTorch on CUDA, OpenVINO on CPU), torch, openvino or onnx (ONNX Runtime). "
    "Converted models are cached in $EMONET_FACE_CACHE or ~/.cache/emonet-face (first start converts, "
    "later starts reuse). Backend, precision and device are recorded in Parquet schema metadata."
)
BackendOpt = Annotated[str, typer.Option("--backend", help=BACKEND_HELP)]
DTYPE_HELP = (
    "Encoder precision: auto (bfloat16 on CPUs with AVX512_BF16/AMX and on bf16 GPUs, float32 elsewhere; "
    "ONNX Runtime float32; never int8), float32 (exact float32 on every backend), bfloat16, float16, or int8 "
    "(CPU: ONNX Runtime dynamic quantisation, the encoder up to ~1.9x float32's speed on AVX2 CPUs; check it on "
    "your photos first with `emonet-face check-precision PHOTOS --dtype int8`)."
)
DtypeOpt = Annotated[str, typer.Option("--dtype", help=DTYPE_HELP)]
ForcePrecisionOpt = Annotated[
    bool,
    typer.Option(
        "--force-precision",
        help="Run --dtype int8 even where `emonet-face check-precision` recorded a failure for this model on this CPU.",
    ),
]
NoNormalizeOpt = Annotated[
    bool, typer.Option("--no-normalize", help="Do not L2-normalise image features (released usage normalises).")
]

# --- face options (every command that finds faces) ----------------------------------------------
FacesOpt = Annotated[
    str,
    typer.Option(
        "--faces",
        help="detect: one row per detected face; none: score whole images (pre-cropped faces, EmoNet-Face "
        "datasets); auto: detect, and score a face-less close-up portrait whole (region=whole_image).",
    ),
]
DETECTOR_NAMES = "blazeface, dlib, haar, lbp, yunet"
"""Listed literally (building the registry at CLI import would load numpy and the hub client);
tests/test_faces.py checks that it names every registered detector."""
DetectorOpt = Annotated[
    str | None,
    typer.Option(
        "--detector",
        help=f"Face detector: {DETECTOR_NAMES} (default: blazeface, offline CNN shipped with the package); "
        "yunet:/path/model.onnx or blazeface:/path/model.tflite for a local weights file.",
    ),
]
MinFaceScoreOpt = Annotated[
    float | None,
    typer.Option(
        "--min-face-score",
        help="Keep faces the detector scores at least this, 0 or more (default: the detector's own threshold; "
        "blazeface: 0.5 on 0..1). Lower finds more faces, higher makes fewer mistakes.",
    ),
]
AlignOpt = Annotated[
    bool,
    typer.Option("--align", help="Rotate each face crop so the eyes are level (detectors with eye landmarks)."),
]
MarginOpt = Annotated[
    float, typer.Option("--margin", help="Context around each face, as a fraction of its box side (0 or more).")
]

# --- inputs: videos and shards --------------------------------------------------------------------
InputsArg = Annotated[
    list[str],
    typer.Argument(
        help="Image/video files, WebDataset .tar or Parquet image shards, folders (recursive), glob or "
        "brace patterns (shards/{00000..00099}.tar)."
    ),
]
FPS_HELP = "Video: frames scored per second, any number > 0 (0.5: one frame every 2 s)."
FpsOpt = Annotated[float, typer.Option("--fps", help=FPS_HELP)]
LIVE_FPS_HELP = "Score at most this many frames per second, any number > 0 (default: as many as possible)."
LiveFpsOpt = Annotated[float | None, typer.Option("--fps", help=LIVE_FPS_HELP)]
"""``live``'s ``--fps`` is a ceiling on the scoring rate, not a video's sampling rate: its own help,
the same check (:func:`emonet_face.options.check_fps`)."""
MaxFramesOpt = Annotated[
    int | None, typer.Option("--max-frames", help="Video: score at most this many frames per video (1 or more).")
]
ImageColumnOpt = Annotated[
    str | None,
    typer.Option("--image-column", help="Parquet shards: the image column (default: the only binary/image column)."),
]
CarryJsonOpt = Annotated[
    bool, typer.Option("--carry-json/--no-carry-json", help="Tar shards: carry the scalar .json fields as columns.")
]

# --- runs ------------------------------------------------------------------------------------------
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per encoder batch.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Skip inputs already in --out and append the rest.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]
SmoothOpt = Annotated[
    float, typer.Option("--smooth", min=0.0, help="Video timelines: moving average over SECONDS.")
]
NumWorkersOpt = Annotated[
    int | None, typer.Option("--num-workers", min=0, help="Image decoding workers (default: cores-1, max 4).")
]
EngineOpt = Annotated[
    str, typer.Option("--engine", help="local (this process) or ray (Ray Data; --out is then a folder of parts).")
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", help="Ray cluster: auto (join the running one) or ray://host:port; default: local."),
]
ActorsOpt = Annotated[int, typer.Option("--actors", min=1, help="Ray: encoder actors (one model load each).")]
GpusPerActorOpt = Annotated[float, typer.Option("--gpus-per-actor", min=0.0, help="Ray: GPUs per encoder actor.")]
CpusPerActorOpt = Annotated[
    float,
    typer.Option("--cpus-per-actor", min=0.0, help="Ray: CPUs per encoder actor (its preprocessing threads)."),
]


# --- analyses: bench and stats ---------------------------------------------------------------------
FiguresOpt = Annotated[bool, typer.Option("--figures/--no-figures", help="Draw PNG/PDF figures.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every bootstrap and permutation test.")]
NBootOpt = Annotated[int, typer.Option("--n-boot", min=10, help="Bootstrap draws for every confidence interval.")]
MetaOpt = Annotated[
    Path | None,
    typer.Option(
        "--meta",
        help="Per-image demographics: CSV/Parquet with an 'image' column and gender/age/ethnicity, or a dataset "
        "that holds them (hq, binary, big, Parquet shards).",
    ),
]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Only shards whose path contains this (e.g. train).")]


def model_options(**values: Any) -> ModelOptions:
    """:class:`~emonet_face.options.ModelOptions` from a command's arguments (those it does not have
    keep their defaults; ``no_normalize`` is the flag's spelling of ``normalize``)."""
    from emonet_face.options import ModelOptions

    if "no_normalize" in values:
        values["normalize"] = not values.pop("no_normalize")
    return ModelOptions(**values)


def face_options(**values: Any) -> FaceOptions:
    """:class:`~emonet_face.options.FaceOptions` from a command's arguments."""
    from emonet_face.options import FaceOptions

    return FaceOptions(**values)


def media_options(**values: Any) -> MediaOptions:
    """:class:`~emonet_face.options.MediaOptions` from a command's arguments."""
    from emonet_face.options import MediaOptions

    return MediaOptions(**values)
