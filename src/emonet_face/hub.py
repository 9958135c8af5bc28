"""Resolve a model reference (Hub id or local folder) to a local folder, the Hugging Face way:
cache, revision, offline mode (``HF_HUB_OFFLINE=1``) and local paths all behave as in
transformers. Model names are data: see :data:`MODELS`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emonet_face.errors import EmoNetError, ModelLoadError

__all__ = ["DEFAULT_ENCODER", "MODELS", "ModelSpec", "resolve_model_dir"]

DEFAULT_ENCODER = "google/siglip2-so400m-patch16-384"


@dataclass(frozen=True)
class ModelSpec:
    """A released model: its heads repository and the encoder it was trained on."""

    heads: str
    encoder: str = DEFAULT_ENCODER
    license: str = "CC-BY-4.0 (heads), Apache-2.0 (SigLIP2 encoder)"


MODELS: dict[str, ModelSpec] = {
    "large": ModelSpec(heads="laion/Empathic-Insight-Face-Large"),
    "small": ModelSpec(heads="laion/Empathic-Insight-Face-Small"),
}

HEADS_PATTERNS = ("*.pth", "neutral_stats*", "*.json", "*.safetensors")
ENCODER_PATTERNS = ("config.json", "preprocessor_config.json", "*.safetensors", "*.safetensors.index.json")


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
    ``local_files_only=True``) serves from the cache only; a miss is a one-line
    :class:`ModelLoadError` saying how to get the files.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    text = str(ref)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise error(f"{text}: {what} folder not found, and not a Hub repo id of the form 'owner/name'")

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = bool(local_files_only) or constants.HF_HUB_OFFLINE
    try:
        folder = snapshot_download(
            repo_id=text,
            repo_type=repo_type,
            revision=revision,
            cache_dir=str(cache_dir) if cache_dir else None,
            allow_patterns=list(allow_patterns) if allow_patterns else None,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError:
        how = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the Hub could not be reached"
        flag = "" if repo_type == "model" else f" --repo-type {repo_type}"
        raise error(
            f"{text}: {what} not in the local Hugging Face cache and {how}; run once with network access "
            f"(or `hf download {text}{flag}`), or pass a local folder"
        ) from None
    except GatedRepoError:
        raise error(
            f"{text}: gated {what} repository; accept its terms on the Hub and log in (`hf auth login`)"
        ) from None
    except RepositoryNotFoundError:
        raise error(f"{text}: no such {what} repository on the Hub (or it is private); check the id") from None
    except RevisionNotFoundError:
        raise error(f"{text}: revision {revision!r} not found; check --revision") from None
    except (HfHubHTTPError, OSError) as exc:
        raise error(
            f"{text}: could not download the {what} ({type(exc).__name__}: {exc}); retry or pass a local folder"
        ) from None
    return Path(folder)
