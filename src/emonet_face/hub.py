"""Resolve a model reference (Hub id or local folder) to a local folder, the Hugging Face way:
cache, revision, offline mode (``HF_HUB_OFFLINE=1``) and local paths all behave as in
transformers. Model names are data: see :data:`MODELS`. Every download of weights (encoder, heads,
detector files, datasets) goes through this module."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from emonet_face.errors import EmoNetError, InputError, ModelLoadError
from emonet_face.heads import FusedHeads, load_heads

__all__ = [
    "DEFAULT_ENCODER",
    "MODELS",
    "ModelSpec",
    "fetch_heads",
    "release_refs",
    "resolve_model_dir",
    "resolve_model_file",
    "snapshot_commit",
    "split_revision",
]

DEFAULT_ENCODER = "google/siglip2-so400m-patch16-384"


@dataclass(frozen=True)
class ModelSpec:
    """A released model: its heads repository and the encoder it was trained on."""

    heads: str
    encoder: str = DEFAULT_ENCODER
    license: str = "CC-BY-4.0 (heads), Apache-2.0 (SigLIP2 encoder)"
    heads_license: str = "CC-BY-4.0"
    encoder_license: str = "Apache-2.0"


MODELS: dict[str, ModelSpec] = {
    "large": ModelSpec(heads="laion/Empathic-Insight-Face-Large"),
    "small": ModelSpec(heads="laion/Empathic-Insight-Face-Small"),
}

RELEASED_REPOS = frozenset({DEFAULT_ENCODER, *(spec.heads for spec in MODELS.values())})
"""Hub ids that never name a local folder (the released models and their encoder)."""
HEADS_PATTERNS = ("*.pth", "neutral_stats*", "*.json", "*.safetensors")
LOCAL_HINTS = {
    "heads": "a local heads folder with --heads DIR",
    "encoder": "a local encoder folder with --encoder DIR",
    "dataset": "a local folder or file of .parquet shards",
    "YuNet face detector weights": "a local file with --detector yunet:/path/to/model.onnx",
}
"""How to use local files instead, by what is missing: the end of the offline error."""
FOLDER_SOURCES = {"heads": MODELS["large"].heads, "encoder": DEFAULT_ENCODER}
"""Where the local folder a name may have meant comes from (``hf download ID --local-dir NAME``)."""
ENCODER_PATTERNS = ("config.json", "preprocessor_config.json", "*.safetensors", "*.safetensors.index.json")


@contextmanager
def _hub_errors(
    text: str, *, what: str, revision: str | None, offline: bool, how_to_get: str, error: type[EmoNetError],
    folder_too: bool = False,
) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one-line ``error``s that say what to do. ``folder_too``:
    ``text`` may have meant a local folder as well (see :func:`resolve_model_dir`): where the Hub has
    no such repository, or cannot be asked, the error names both readings."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass
        how = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the Hub could not be reached"
        if folder_too:
            cause = "offline mode is on: HF_HUB_OFFLINE=1" if offline else "the Hub could not be reached"
            raise _both_readings(
                text, what, f"the Hub repository is not in the local Hugging Face cache ({cause})",
                f"run once with network access (or `{how_to_get}`)", error,
            ) from None
        raise error(
            f"{text}: {what} not in the local Hugging Face cache and {how}; run once with network access "
            f"(or `{how_to_get}`), or pass {LOCAL_HINTS.get(what, 'a local path')}"
        ) from None
    except EntryNotFoundError:
        raise error(f"{text}: no such file in the {what} repository on the Hub; check the path") from None
    except GatedRepoError:  # before RepositoryNotFoundError: it is a subclass
        raise error(
            f"{text}: gated {what} repository; accept its terms on the Hub and log in (`hf auth login`)"
        ) from None
    except RepositoryNotFoundError:
        if folder_too:
            raise _both_readings(
                text, what, f"no such {what} repository on the Hub (or it is private)", "check the id", error
            ) from None
        raise error(f"{text}: no such {what} repository on the Hub (or it is private); check the id") from None
    except RevisionNotFoundError:
        raise error(f"{text}: revision {revision!r} not found; check --revision") from None
    except Exception as exc:
        if not isinstance(exc, (HfHubHTTPError, OSError, *_transport_errors())):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
        failed = f"could not download the {what} ({type(exc).__name__}: {first})"
        if folder_too:
            raise _both_readings(text, what, f"the Hub {failed}", "retry (a new run resumes from the cache)", error) from None
        raise error(
            f"{text}: {failed}; retry (a new run resumes from the cache) or pass {LOCAL_HINTS.get(what, 'a local path')}"
        ) from None


def _both_readings(text: str, what: str, hub: str, fix_hub: str, error: type[EmoNetError]) -> EmoNetError:
    """``text`` is neither a folder here nor a repository the Hub gives: one line naming both readings
    (``hub``: what the Hub said) and how to get each (``fix_hub``: for the Hub repository)."""
    parent = Path(text).parent
    where = f" ({parent}/ has no {Path(text).name})" if parent.is_dir() else ""
    source = FOLDER_SOURCES.get(what)
    make = f"`hf download {source} --local-dir {text}` makes it" if source else "check the path"
    return error(f"{text}: {what} folder not found{where}, and {hub}; for a folder, {make}; for a Hub id, {fix_hub}")


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection failures of the HTTP client under huggingface_hub (httpx2 from 2.0, httpx in 1.x; the
    requests errors of 0.x are OSErrors): a server that goes away mid-download raises these."""
    import importlib

    found = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def resolve_model_dir(
    ref: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    allow_patterns: Sequence[str] | None = None,
    local_files_only: bool | None = None,
    what: str = "model",
    repo_type: str = "model",
    error: type[EmoNetError] = ModelLoadError,
) -> Path:
    """Return a local folder holding ``ref``.

    ``ref`` is an existing folder (used as is) or a Hub repo id, fetched with
    :func:`huggingface_hub.snapshot_download` into the HF cache (only ``allow_patterns``; for the
    encoder that skips tokenizer files). Offline mode (``HF_HUB_OFFLINE=1`` or
    ``local_files_only=True``) serves from the cache only; a miss is a one-line ``error``
    (:class:`ModelLoadError` by default) saying how to get the files. ``repo_type="dataset"``
    fetches datasets the same way.

    A name that is not an existing folder is a folder path when it starts with ``.``, ``/`` or ``~``
    or has other than one ``/`` (``folder not found``). ``owner/name`` reads both ways (the docs'
    ``models/eif-large`` is a folder made by ``hf download --local-dir``): it is tried on the Hub,
    and when the Hub has no such repository (or cannot be asked) the error names both readings (and
    how to make the folder). The released models' ids and ``@revision`` names read as Hub ids only.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    text = str(ref)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise error(f"{text}: {what} folder not found, and not a Hub repo id of the form 'owner/name'")

    from huggingface_hub import constants, snapshot_download

    offline = bool(local_files_only) or constants.HF_HUB_OFFLINE
    flag = "" if repo_type == "model" else f" --repo-type {repo_type}"
    with _hub_errors(
        text, what=what, revision=revision, offline=offline, how_to_get=f"hf download {text}{flag}", error=error,
        folder_too=revision is None and text not in RELEASED_REPOS,
    ):
        folder = snapshot_download(
            repo_id=text,
            repo_type=repo_type,
            revision=revision,
            cache_dir=str(cache_dir) if cache_dir else None,
            allow_patterns=list(allow_patterns) if allow_patterns else None,
            local_files_only=offline,
        )
    if not Path(folder).is_dir():  # the repository holds nothing the patterns ask for
        wanted = f" ({', '.join(allow_patterns)})" if allow_patterns else ""
        raise error(f"{text}: no {what} files in this repository{wanted}; check the id and the revision")
    return Path(folder)


def resolve_model_file(source: str | Path, *, what: str, revision: str | None = None) -> Path:
    """A local file, or ``owner/repo/path/in/repo`` fetched with ``hf_hub_download`` into the HF
    cache (offline mode serves the cache only). Errors are one-line :class:`ModelLoadError`."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    text = str(source)
    parts = text.split("/")
    if path.exists() or text.startswith((".", "/", "~")) or len(parts) < 3 or not all(parts):
        raise ModelLoadError(f"{text}: {what} file not found; pass an existing file or a Hub path 'owner/repo/file'")
    from huggingface_hub import constants, hf_hub_download

    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    offline = constants.HF_HUB_OFFLINE
    with _hub_errors(
        text,
        what=what,
        revision=revision,
        offline=offline,
        how_to_get=f"hf download {repo_id} {filename}",
        error=ModelLoadError,
    ):
        weights = hf_hub_download(repo_id, filename, revision=revision, local_files_only=offline)
    return Path(weights)


def snapshot_commit(folder: Path) -> str | None:
    """The commit hash a folder from the Hugging Face cache holds (``…/snapshots/<commit>``); ``None``
    for a folder outside the cache (a local checkpoint has no commit to record)."""
    folder = Path(folder)
    if folder.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", folder.name):
        return folder.name
    return None


def split_revision(ref: str | Path, revision: str | None) -> tuple[str | Path, str | None]:
    """``owner/name@rev`` (a Hub id with a revision) → (id, rev); local folders are left alone."""
    if isinstance(ref, str) and "@" in ref and not Path(ref).expanduser().exists():
        ref, _, rev = ref.rpartition("@")
        return ref, rev or revision
    return ref, revision


def fetch_heads(
    ref: str | Path, revision: str | None, *, cache_dir: str | Path | None, local_files_only: bool | None
) -> FusedHeads:
    """Heads from a Hub id or a local folder (released layout or our safetensors export)."""
    folder = resolve_model_dir(
        ref,
        revision=revision,
        cache_dir=cache_dir,
        allow_patterns=HEADS_PATTERNS,
        local_files_only=local_files_only,
        what="heads",
    )
    return load_heads(folder)


def release_refs(
    model: str, encoder: str | Path | None, heads: str | Path | None, revision: str | None
) -> tuple[str | Path, str | None, str | Path, str | None]:
    """``(encoder ref, its revision, heads ref, their revision)`` for a released ``model`` with optional
    overrides (``owner/name@rev`` or folders); ``revision`` applies to the heads. Unknown model: one line."""
    if model not in MODELS:
        raise InputError(f"{model}: unknown model; choose one of {', '.join(MODELS)}")
    spec = MODELS[model]
    enc_ref, enc_rev = split_revision(encoder or spec.encoder, None)
    heads_ref, heads_rev = split_revision(heads or spec.heads, revision)
    return enc_ref, enc_rev, heads_ref, heads_rev
