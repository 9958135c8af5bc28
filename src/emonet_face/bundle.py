"""Model bundles: one self-contained folder that runs with no network and no Hugging Face cache.

``emonet-face download`` writes it; ``predict``/``serve``/``score --model DIR``, ``embed --encoder DIR``
and the Ray engine run it. A cache is not a thing one can copy, pin and check (it mixes revisions and
lives under ``HF_HOME``); a bundle is::

    bundle.json            the manifest: format version, Hub ids + resolved commits, licences,
                           package and library versions, and the size and SHA-256 of every file
    encoder/               the vision tower only (config.json + model.safetensors) and the image
                           processor (preprocessor_config.json): a checkpoint folder transformers loads
    heads/                 the fused heads (model.safetensors + config.json with the neutral means)
    openvino/              optional (--with-openvino): the converted encoder (encoder.xml + .bin), so
                           the first CPU run does not convert

Loading checks every file it reads against the manifest before reading it (a truncated, edited,
missing or unlisted file is refused, naming it); ``download --check`` checks them all. With a stored
OpenVINO graph in use, the PyTorch weights are neither read nor hashed (and the other way round).
The encoder weights are copied tensor by tensor from the source checkpoint (the text tower is left
out), so a bundle scores exactly as the Hub model it was made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emonet_face._version import __version__
from emonet_face.errors import ModelLoadError, format_size
from emonet_face.heads import FusedHeads, load_heads, save_heads
from emonet_face.hub import (
    DEFAULT_ENCODER,
    HEADS_PATTERNS,
    MODELS,
    release_refs,
    resolve_model_dir,
    snapshot_commit,
)
from emonet_face.runfolder import (
    ManifestFormat,
    atomic_write_json,
    refuse_if_in_use,
    require_new_folder,
    staged_folder,
    utc_timestamp,
    versions,
)
from emonet_face.runtime.backends import (
    VisionTower,
    compiled_cache_dir,
    convert_onnx,
    convert_openvino,
    load_encoder,
    pixel_size,
)
from emonet_face.runtime.device import asks_int8, resolve_backend, resolve_device
from emonet_face.runtime.encoder import EncoderCheckpoint
from emonet_face.runtime.int8 import int8_scheme, quantize_int8

__all__ = [
    "BUNDLE_FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "Bundle",
    "BundleError",
    "is_bundle",
    "open_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "emonet-face-bundle"
FORMAT_VERSION = 1
"""Bump when a reader of the previous version would misread a new bundle; readers refuse newer ones."""
MANIFEST_FILE = "bundle.json"
ENCODER_DIR, HEADS_DIR, OPENVINO_DIR, INT8_DIR = "encoder", "heads", "openvino", "onnx-int8"
OPENVINO_GRAPH = "encoder.xml"
INT8_GRAPH = "encoder.onnx"
PARTS = (ENCODER_DIR, HEADS_DIR, OPENVINO_DIR, INT8_DIR)
_CHUNK = 8 * 1024 * 1024


class BundleError(ModelLoadError):
    """A bundle that cannot be used: missing, damaged, or written by a newer format."""


_FORMAT = ManifestFormat(
    BUNDLE_FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    "an emonet-face bundle",
    "bundle",
    hint="write one with `emonet-face download`",
    redo="write the bundle again",
    version_key="format_version",
    error=BundleError,
)


def is_bundle(path: str | Path) -> bool:
    """True for a folder with a bundle manifest (whatever its version: :func:`open_bundle` judges that),
    and for one whose manifest no longer parses (cut short, overwritten): :func:`open_bundle` then names
    the damaged file, where the folder would otherwise pass for an unknown model."""
    if _FORMAT.is_in(path):
        return True
    try:
        json.loads((Path(path) / MANIFEST_FILE).read_bytes())
    except OSError:
        return False
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return True
    return False


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """An opened (and, by :func:`open_bundle`, verified) bundle folder."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def encoder_dir(self) -> Path:
        return self.folder / ENCODER_DIR

    @property
    def heads_dir(self) -> Path:
        return self.folder / HEADS_DIR

    @property
    def openvino_graph(self) -> Path | None:
        """The stored OpenVINO encoder (L2 normalisation inside), if the bundle has one."""
        return self.folder / OPENVINO_DIR / OPENVINO_GRAPH if self.manifest.get("openvino") else None

    @property
    def int8_graph(self) -> Path | None:
        """The stored int8 encoder (ONNX Runtime dynamic quantisation, ``download --with-int8``), if any."""
        return self.folder / INT8_DIR / INT8_GRAPH if self.manifest.get("int8") else None

    def verify(self, part: str | None = None, *, skip: tuple[str, ...] = ()) -> None:
        """Check the files of ``part`` (a folder: ``"encoder"``, ``"heads"``, ``"openvino"``, ``"onnx-int8"``; ``None``:
        all) against the manifest, except those under the ``skip`` prefixes (see :func:`verify_bundle`)."""
        verify_bundle(self, part, skip=skip)

    def load_heads(self) -> FusedHeads:
        """The heads, after checking their files."""
        self.verify(HEADS_DIR)
        return load_heads(self.heads_dir)

    def encoder_kwargs(self, dtype: str | None = None) -> dict[str, Any]:
        """:func:`~emonet_face.runtime.load_encoder` arguments that load this bundle's encoder (and use its
        stored OpenVINO graph, or for ``dtype="int8"`` its int8 graph, if any, instead of converting),
        for callers that pass them on (Ray actors); check the files first (:meth:`verify`)."""
        int8 = asks_int8(dtype) and self.int8_graph is not None
        return {"ref": self.encoder_dir, "revision": None, "converted": self.int8_graph if int8 else self.openvino_graph}

    def describe(self) -> dict[str, Any]:
        """Provenance for output metadata: where the bundle is and what it was made from."""
        parts = {k: self.manifest[k] for k in ("encoder", "heads")}
        return {
            "path": str(self.folder),
            "format_version": self.manifest["format_version"],
            **{k: {f: v.get(f) for f in ("id", "revision", "commit")} for k, v in parts.items()},
        }

    def summary(self) -> list[str]:
        """What the bundle holds, one line per part, then every file (for ``download --check``)."""
        m = self.manifest
        enc, heads, ov, int8 = m["encoder"], m["heads"], m.get("openvino"), m.get("int8")
        files = m["files"]
        total = sum(f["size"] for f in files.values())
        lines = [
            f"{self.folder}: emonet-face bundle (format {m['format_version']}), written by emonet-face "
            f"{m.get('emonet_face', '?')} on {m.get('created', '?')}",
            f"  model     {m.get('model') or 'custom'}",
            f"  encoder   {_ref(enc)}  licence: {enc.get('license')}  "
            f"({enc.get('model_type')}, {enc.get('dim')}-dim features, {_size(enc.get('image_size'))} px)",
            f"  heads     {_ref(heads)}  licence: {heads.get('license')}  "
            f"({heads.get('count')} heads, {' > '.join(map(str, heads.get('widths', [])))})",
            f"  openvino  {'stored: ' + ov['folder'] + '/' + ov['graph'] + ' (OpenVINO ' + str(ov.get('openvino')) + ')' if ov else 'not stored (the first CPU run converts)'}",
            f"  int8      {'stored: ' + int8['folder'] + '/' + int8['graph'] if int8 else 'not stored (the first --dtype int8 run quantises)'}",
            f"  files     {len(files)} files, {format_size(total)}, all SHA-256 checksums match",
        ]
        lines += [f"    {f['sha256'][:16]}  {format_size(f['size']):>10}  {name}" for name, f in sorted(files.items())]
        return lines


def _ref(part: dict[str, Any]) -> str:
    commit = part.get("commit")
    revision = part.get("revision")
    at = f" @ {commit}" if commit else " (local folder)"
    return f"{part.get('id')}{at}" + (f" (revision {revision})" if revision and revision != commit else "")


def _size(size: Any) -> str:
    return "x".join(map(str, size)) if isinstance(size, (list, tuple)) else "?"


# --- reading --------------------------------------------------------------------------------------
def open_bundle(folder: str | Path, *, verify: bool = True) -> Bundle:
    """Read a bundle's manifest, refuse a newer format and unlisted files, and (``verify``) check every
    file's size and SHA-256 against it; without ``verify``, loading checks the files it reads
    (:meth:`Bundle.load_heads`, :func:`load_bundle_encoder`). Errors are one-line :class:`BundleError`
    naming the file."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    manifest = _FORMAT.read(folder)
    files = manifest.get("files")
    parts_ok = all(isinstance(manifest.get(k), dict) and manifest[k].get("id") for k in ("encoder", "heads"))
    files_ok = isinstance(files, dict) and all(
        isinstance(v, dict) and {"size", "sha256"} <= set(v) for v in files.values()
    )
    if not (parts_ok and files_ok):
        raise BundleError(f"{path}: incomplete bundle manifest (encoder, heads and files are required); write it again")
    bundle = Bundle(folder, manifest)
    _refuse_unlisted(bundle)
    if verify:
        verify_bundle(bundle)
    return bundle


def _refuse_unlisted(bundle: Bundle) -> None:
    """No file beside the listed ones in the parts' folders: an extra weights or index file could
    change what loads. Entries must stay inside the bundle."""
    listed = bundle.manifest["files"]
    for name in listed:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{bundle.folder / MANIFEST_FILE}: file entry {name!r} points outside the bundle")
    for part in PARTS:
        root = bundle.folder / part
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.relative_to(bundle.folder).as_posix() not in listed:
                raise BundleError(f"{path}: not listed in the bundle manifest; remove it (it could change what loads)")


def verify_bundle(bundle: Bundle, part: str | None = None, *, skip: tuple[str, ...] = (), rehash: bool = False) -> None:
    """Every listed file of ``part`` (``None``: all) present with its size and SHA-256, except names
    starting with a ``skip`` prefix (weights the chosen runtime does not read).

    A file hashed before and not touched since (same size, modification and change times, inode:
    see :func:`_stamp`) is not hashed again, as git trusts its index; ``rehash`` hashes every file.
    """
    listed: dict[str, dict[str, Any]] = bundle.manifest["files"]
    for name, expected in listed.items():
        if (part is not None and not name.startswith(f"{part}/")) or name.startswith(skip):
            continue
        path = bundle.folder / name
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle; copy the whole bundle folder again")
        stat = path.stat()
        if stat.st_size != expected["size"]:
            raise BundleError(
                f"{path}: {stat.st_size} bytes, the manifest says {expected['size']} (truncated or replaced); "
                "copy the bundle again"
            )
        stamp = _stamp(path, stat, expected["sha256"])
        if not rehash and _read_stamp(stamp[0]) == stamp[1]:
            continue
        if sha256_file(path) != expected["sha256"]:
            raise BundleError(
                f"{path}: SHA-256 does not match the manifest (the file was changed); copy the bundle again"
            )
        _write_stamp(*stamp, stat)


STAMP_DIR = "checked-files"
_RACY_S = 2.0
"""A file modified this recently is not stamped: a second edit within the file system's timestamp
granularity could leave size and times unchanged (git's "racy clean" problem)."""


def _stamp(path: Path, stat: os.stat_result, sha256: str) -> tuple[Path, dict[str, Any]]:
    """Where the record of a successful check of ``path`` lives (in the emonet-face cache folder), and
    what it must say for the file to count as checked: its state (size, modification and change times,
    inode, device) and the digest it was checked against."""
    resolved = str(path.resolve())
    where = compiled_cache_dir() / STAMP_DIR / f"{hashlib.sha256(resolved.encode()).hexdigest()[:32]}.json"
    state = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]
    return where, {"path": resolved, "state": state, "sha256": sha256}


def _read_stamp(where: Path) -> dict[str, Any] | None:
    try:
        return json.loads(where.read_text())
    except (OSError, ValueError):
        return None


def _write_stamp(where: Path, record: dict[str, Any], stat: os.stat_result) -> None:
    """Best effort (a read-only cache only means hashing again next time); written atomically."""
    if time.time() - max(stat.st_mtime, stat.st_ctime) < _RACY_S:
        return
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(where, record)
    except OSError:
        return


def load_bundle_encoder(
    bundle: Bundle,
    *,
    backend: str = "auto",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    normalize: bool = True,
    compiled_dir: str | Path | None = None,
    force_precision: bool = False,
) -> Any:
    """The bundle's encoder on the requested backend, after checking the files it reads: OpenVINO runs
    the stored graph when there is one (the PyTorch weights are then neither read nor hashed), other
    runtimes the weights in ``encoder/`` (the stored graph is then not hashed); ``--dtype int8`` runs
    the stored int8 graph when there is one (``download --with-int8``)."""
    graph = bundle.openvino_graph
    if graph is not None and not _runs_stored_graph(bundle, backend, device, dtype, normalize):
        graph = None
    if asks_int8(dtype) and normalize and bundle.int8_graph is not None:
        graph = bundle.int8_graph
    if graph is not None:
        bundle.verify(ENCODER_DIR, skip=(f"{ENCODER_DIR}/model",))  # configs and processor only
        bundle.verify(graph.parent.name)
    else:
        bundle.verify(ENCODER_DIR)
    return load_encoder(
        **{**bundle.encoder_kwargs(), "converted": graph},
        backend=backend,
        device=device,
        dtype=dtype,
        local_files_only=True,
        normalize=normalize,
        compiled_dir=compiled_dir,
        force_precision=force_precision,
    )


def _runs_stored_graph(
    bundle: Bundle, backend: str, device: str | torch.device | None, dtype: str | torch.dtype | None, normalize: bool
) -> bool:
    """Whether :func:`~emonet_face.runtime.load_encoder` will run the stored OpenVINO graph: the backend
    resolves to OpenVINO, features are L2-normalised (inside the graph), the precision is not the int8
    path (ONNX Runtime) and the tower takes pixels only (not SigLIP2 NaFlex, which runs on PyTorch)."""
    if not normalize or asks_int8(dtype):
        return False
    if str(bundle.manifest["encoder"].get("model_type", "")).startswith("siglip2"):
        return False
    return resolve_backend(backend, resolve_device(device)) == "openvino"


# --- writing --------------------------------------------------------------------------------------
def write_bundle(
    out: str | Path,
    *,
    model: str = "large",
    encoder: str | Path | None = None,
    heads: str | Path | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    with_openvino: bool = False,
    with_int8: bool = False,
    log: Callable[[str], None] | None = None,
) -> Bundle:
    """Fetch (or take from the cache / local folders) ``model``'s encoder and heads and write a bundle
    into the new folder ``out``; returns it opened. ``encoder``/``heads`` override the released model's
    (Hub ids with ``@revision``, or local folders); ``revision`` applies to the heads repository. The
    folder is built beside ``out`` and renamed into place, so an interrupted run leaves no half bundle.
    """
    say = log or (lambda _: None)
    out = require_new_folder(out)
    refuse_if_in_use(out)  # before fetching; staged_folder holds out while it is built
    enc_ref, enc_rev, heads_ref, heads_rev = release_refs(model, encoder, heads, revision)
    heads_src, fused, checkpoint = _fetch_parts(
        (enc_ref, enc_rev, heads_ref, heads_rev), cache_dir=cache_dir, local_files_only=local_files_only, say=say
    )
    with staged_folder(out) as tmp:
        say("writing the vision tower and image processor")
        vision = _write_encoder(checkpoint, tmp / ENCODER_DIR)
        save_heads(fused, tmp / HEADS_DIR, layout="safetensors")
        openvino = None
        if with_openvino:
            say("converting the encoder for OpenVINO")
            openvino = _write_openvino(tmp / ENCODER_DIR, tmp / OPENVINO_DIR)
        int8 = None
        if with_int8:
            say("quantising the encoder to int8 (ONNX Runtime dynamic)")
            int8 = _write_int8(tmp / ENCODER_DIR, tmp / INT8_DIR)
        manifest = {
            **_FORMAT.header(),
            "created": utc_timestamp(zulu=True),
            "emonet_face": __version__,
            "model": model if encoder is None and heads is None else None,
            "encoder": {**_part(enc_ref, enc_rev, snapshot_commit(checkpoint.folder), "encoder"), **vision},
            "heads": {
                **_part(heads_ref, heads_rev, snapshot_commit(heads_src), "heads"),
                "count": len(fused.keys),
                "widths": list(fused.arch.widths),
                "neutral_means": "heads/config.json",
            },
            "openvino": openvino,
            "int8": int8,
            "normalize": True,
            "versions": versions("openvino", "safetensors", missing=True),
            "license_notes": "The encoder and heads keep their own licences (released model: Apache-2.0 SigLIP2 "
            "encoder by Google, CC-BY-4.0 heads by LAION: credit them when you redistribute); emonet-face code: MIT.",
            "files": {
                p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            },
        }
        _FORMAT.write(tmp, manifest)
    return open_bundle(out, verify=False)


def _fetch_parts(
    refs: tuple[Any, str | None, Any, str | None],
    *,
    cache_dir: str | Path | None,
    local_files_only: bool | None,
    say: Callable[[str], None],
) -> tuple[Path, FusedHeads, EncoderCheckpoint]:
    """The heads (their folder, loaded) and the encoder checkpoint of ``refs`` (encoder ref and revision,
    heads ref and revision), fetched or taken from the cache / local folders; they must fit each other."""
    enc_ref, enc_rev, heads_ref, heads_rev = refs
    say(f"heads:   {heads_ref}" + (f" @ {heads_rev}" if heads_rev else ""))
    heads_src = resolve_model_dir(
        heads_ref,
        revision=heads_rev,
        cache_dir=cache_dir,
        allow_patterns=HEADS_PATTERNS,
        local_files_only=local_files_only,
        what="heads",
    )
    fused = load_heads(heads_src)
    say(f"encoder: {enc_ref}" + (f" @ {enc_rev}" if enc_rev else ""))
    checkpoint = EncoderCheckpoint.resolve(
        enc_ref, revision=enc_rev, cache_dir=cache_dir, local_files_only=local_files_only
    )
    if checkpoint.dim != fused.in_dim:
        raise ModelLoadError(
            f"encoder {enc_ref} gives {checkpoint.dim}-dim features but the heads expect {fused.in_dim}; "
            "use the encoder the heads were trained on (--encoder)"
        )
    return heads_src, fused, checkpoint


def _part(ref: Any, revision: str | None, commit: str | None, part: str) -> dict[str, Any]:
    """A part's provenance in the manifest: where it came from, at which commit, under which licence."""
    folder = ENCODER_DIR if part == "encoder" else HEADS_DIR
    return {"id": str(ref), "revision": revision, "commit": commit, "license": _licence(str(ref), part), "folder": folder}


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _licence(ref: str, part: str) -> str:
    """The released parts' licences (from :data:`MODELS`); others: see their model cards."""
    if part == "encoder" and ref == DEFAULT_ENCODER:
        return next(iter(MODELS.values())).encoder_license
    for spec in MODELS.values():
        if part == "heads" and ref == spec.heads:
            return spec.heads_license
    return f"unknown: see the model card of {ref}"


def _write_encoder(checkpoint: EncoderCheckpoint, target: Path) -> dict[str, Any]:
    """The vision tower's config and tensors (copied unchanged from the checkpoint, text tower left
    out) + the image processor config, as a folder :class:`EncoderCheckpoint` loads."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoConfig

    target.mkdir(parents=True)
    config = AutoConfig.from_pretrained(str(checkpoint.folder))
    vision_config = getattr(config, "vision_config", config)
    vision_config.architectures = [
        {"siglip2_vision_model": "Siglip2VisionModel"}.get(vision_config.model_type, "SiglipVisionModel")
    ]
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(checkpoint.folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                if key.startswith("vision_model."):
                    tensors[key] = fh.get_tensor(key)
    if tensors:
        vision_config.save_pretrained(str(target))
        save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    else:  # no safetensors with the usual key names: let transformers load and save the tower
        checkpoint.load_vision_model(dtype=torch.float32).save_pretrained(str(target), safe_serialization=True)
    processor = checkpoint.folder / "preprocessor_config.json"
    if not processor.is_file():
        raise ModelLoadError(f"{checkpoint.folder}: no preprocessor_config.json; the bundle needs the image processor")
    shutil.copyfile(processor, target / processor.name)
    written = EncoderCheckpoint.resolve(target)
    return {
        "model_type": written.model_type,
        "dim": written.dim,
        "image_size": list(pixel_size(written.processor())),
        "weights_dtype": str(next(iter(tensors.values())).dtype).removeprefix("torch.") if tensors else "float32",
    }


def _write_int8(encoder_dir: Path, target: Path) -> dict[str, Any]:
    """The encoder as the int8 runtime builds it: float32 ONNX (dynamic batch, L2 norm inside),
    quantised by :func:`~emonet_face.runtime.int8.quantize_int8` into one file."""
    checkpoint = EncoderCheckpoint.resolve(encoder_dir)
    target.mkdir(parents=True)
    tower = VisionTower(checkpoint.load_vision_model(dtype=torch.float32), normalize=True)
    example = torch.zeros(1, 3, *pixel_size(checkpoint.processor()))
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        convert_onnx(tower, example, Path(scratch) / INT8_GRAPH, ["embedding"])
        quantize_int8(Path(scratch) / INT8_GRAPH, target / INT8_GRAPH)
    return {"folder": INT8_DIR, "graph": INT8_GRAPH, "quantisation": int8_scheme(), "onnxruntime": _version("onnxruntime")}


def _write_openvino(encoder_dir: Path, target: Path) -> dict[str, Any]:
    """The encoder converted as the runtime converts it (float32 IR, dynamic batch, L2 norm inside)."""
    checkpoint = EncoderCheckpoint.resolve(encoder_dir)
    target.mkdir(parents=True)
    tower = VisionTower(checkpoint.load_vision_model(dtype=torch.float32), normalize=True)
    example = torch.zeros(1, 3, *pixel_size(checkpoint.processor()))
    convert_openvino(tower, example, target / OPENVINO_GRAPH)
    return {
        "folder": OPENVINO_DIR,
        "graph": OPENVINO_GRAPH,
        "stored_precision": "float32",
        "normalize": True,
        "openvino": _version("openvino"),
    }
