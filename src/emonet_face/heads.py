"""Empathic-Insight-Face emotion heads: loading the released format and scoring all heads fused.

The release ships one ``model_<key>_best.pth`` per head: a state dict of an ``nn.Sequential``
named ``layers`` (Linear → ReLU → Dropout → … → Linear(·, 1)). Calling 44 tiny modules one by one
wastes most of the time on dispatch, so :class:`FusedHeads` stacks every head's weights and
evaluates all of them as one matrix product per layer. The same module trains (issue: two-stage
training) and exports back to the released layout, so there is a single head implementation.
"""

from __future__ import annotations

import itertools
import json
import math
import pickle
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emonet_face.errors import ModelLoadError, damaged_file
from emonet_face.taxonomy import (
    EMOTION_KEYS,
    HEAD_KEYS,
    NEUTRAL_STATS_FILENAME,
    head_file_name,
    head_key_from_file_name,
    head_stats_key,
)

__all__ = [
    "HEAD_ARCHITECTURES",
    "FusedHeads",
    "HeadArchitecture",
    "build_head_module",
    "is_heads_folder",
    "load_head_state_dict",
    "load_heads",
    "load_neutral_stats",
    "postprocess_scores",
    "save_heads",
]

SAFETENSORS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "emonet-face-fused-heads"


@dataclass(frozen=True)
class HeadArchitecture:
    """An MLP head: ``in_dim`` → hidden… → 1, ReLU + Dropout between layers (as released)."""

    in_dim: int
    hidden: tuple[int, ...]
    dropout: float = 0.0

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.in_dim, *self.hidden, 1)


HEAD_ARCHITECTURES: dict[str, tuple[int, ...]] = {
    "large": (1024, 512, 256),
    "small": (128, 32),
}
"""Released hidden widths by size name (input width comes from the encoder, 1152 for SigLIP2 so400m)."""


def build_head_module(arch: HeadArchitecture) -> nn.Module:
    """One head as released: a module whose ``layers`` Sequential has the released key names
    (``layers.0/3/6/…``). Used to check the fused path and by the reference implementations."""
    mods: list[nn.Module] = []
    widths = arch.widths
    for i in range(len(widths) - 1):
        mods.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            mods += [nn.ReLU(), nn.Dropout(arch.dropout)]
    module = nn.Module()
    module.layers = nn.Sequential(*mods)
    module.forward = module.layers.forward
    return module


def _linear_keys(state: Mapping[str, torch.Tensor]) -> list[int]:
    idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("layers.") and k.endswith(".weight")})
    return idx


def architecture_from_state_dict(state: Mapping[str, torch.Tensor], source: str = "state dict") -> HeadArchitecture:
    """Infer input width and hidden widths from the weight shapes (so Large, Small and any custom
    width load without being told which)."""
    idx = _linear_keys(state)
    if not idx:
        raise ModelLoadError(f"{source}: no 'layers.N.weight' tensors; not an Empathic-Insight-Face head state dict")
    shapes = [tuple(state[f"layers.{i}.weight"].shape) for i in idx]
    if any(len(s) != 2 for s in shapes) or shapes[-1][0] != 1:
        raise ModelLoadError(f"{source}: unexpected layer shapes {shapes}; expected Linear layers ending in one output")
    for (out_prev, _), (_, in_next) in itertools.pairwise(shapes):
        if out_prev != in_next:
            raise ModelLoadError(f"{source}: layer shapes {shapes} do not chain")
    expected = [3 * i for i in range(len(idx))]
    if idx != expected:
        raise ModelLoadError(
            f"{source}: linear layers at indices {idx}, expected {expected} (Linear, ReLU, Dropout, …)"
        )
    return HeadArchitecture(in_dim=shapes[0][1], hidden=tuple(s[0] for s in shapes[:-1]))


def load_head_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load one released ``.pth`` head safely (``weights_only=True``) and unwrap ``{"state_dict": …}``.

    A file that needs arbitrary pickled objects is refused: the released example's plain
    ``torch.load`` would execute code from a downloaded file.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: head file not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" not in str(exc):  # not a refusal: a file cut short or overwritten
            raise damaged_file(path, first) from None
        raise ModelLoadError(
            f"{path}: refused to load: not a plain tensor state dict loadable with weights_only=True ({first}); "
            "use the released head files or re-export them as state dicts"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    state = {str(k).removeprefix("module."): v for k, v in obj.items()}
    architecture_from_state_dict(state, str(path))
    return state


def _read_neutral_stats(folder: str | Path) -> dict[str, object] | None:
    """The neutral-stats JSON of a heads folder (released name, or with ``.json``, or
    ``neutral_stats.json``); ``None`` when there is none."""
    path = Path(folder) / NEUTRAL_STATS_FILENAME
    for candidate in (path, path.with_name(path.name + ".json"), Path(folder) / "neutral_stats.json"):
        if candidate.is_file():
            try:
                stats = json.loads(candidate.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise damaged_file(candidate, f"neutral stats file is not valid JSON: {exc}") from None
            if not isinstance(stats, Mapping):
                raise ModelLoadError(f"{candidate}: neutral stats file holds a {type(stats).__name__}, not an object")
            return dict(stats)
    return None


def load_neutral_stats(folder: str | Path, keys: Sequence[str]) -> dict[str, float]:
    """Per-head neutral means from the released stats JSON; a missing file or key gives 0.0 with a
    warning (as the release does), so raw scores stay usable."""
    stats = _read_neutral_stats(folder)
    if stats is None:
        stats = {}
        warnings.warn(
            f"{folder}: no neutral stats file ({NEUTRAL_STATS_FILENAME}); using mean 0.0 for every head", stacklevel=2
        )
    means: dict[str, float] = {}
    missing = []
    for key in keys:
        entry = stats.get(head_stats_key(key), stats.get(key))
        if isinstance(entry, Mapping) and "mean" in entry:
            means[key] = float(entry["mean"])
        elif isinstance(entry, (int, float)):
            means[key] = float(entry)
        else:
            means[key] = 0.0
            missing.append(key)
    if stats and missing:
        warnings.warn(
            f"{folder}: neutral stats lack {len(missing)} head(s) ({', '.join(missing[:5])}…); using mean 0.0",
            stacklevel=2,
        )
    return means


def _order_keys(keys: Sequence[str]) -> list[str]:
    """Released head order first, then any unknown keys alphabetically."""
    known = [k for k in HEAD_KEYS if k in keys]
    return known + sorted(k for k in keys if k not in HEAD_KEYS)


class FusedHeads(nn.Module):
    """All emotion heads of one architecture as stacked weights.

    Layer ``l`` holds ``weight_l`` of shape ``(H, out, in)`` and ``bias_l`` of shape ``(H, out)``
    (the released per-head ``(out, in)`` layout, stacked). The first layer of every head reads
    the same embedding, so it runs as a single ``(H·out, D) @ (D, N)`` product; later layers are
    one batched product each. Rows are processed in chunks to bound the ``H·out × N`` activation.
    """

    neutral_mean: torch.Tensor  # a registered buffer (typed here: nn.Module.__getattr__ says Tensor | Module)

    def __init__(
        self,
        keys: Sequence[str],
        arch: HeadArchitecture,
        neutral_mean: Sequence[float] | None = None,
        chunk_size: int = 512,
        *,
        initialise: bool = True,
    ) -> None:
        """``initialise=False`` leaves the weights unset, for callers that load them next (the random
        ``nn.Linear``-style initialisation of the Large heads costs 0.5 s of every start)."""
        super().__init__()
        self.keys: tuple[str, ...] = tuple(keys)
        self.arch = arch
        self.chunk_size = chunk_size
        n_heads = len(self.keys)
        widths = arch.widths
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(widths):
            weight = torch.empty(n_heads, fan_out, fan_in)
            bias = torch.empty(n_heads, fan_out)
            if initialise:
                bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per head
                nn.init.uniform_(weight, -bound, bound)
                nn.init.uniform_(bias, -bound, bound)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))
        means = (
            torch.zeros(n_heads) if neutral_mean is None else torch.as_tensor(list(neutral_mean), dtype=torch.float32)
        )
        self.register_buffer("neutral_mean", means)

    @property
    def in_dim(self) -> int:
        return self.arch.in_dim

    @property
    def emotion_index(self) -> list[int]:
        """Positions of the 40 emotions (the softmax runs over these only)."""
        return [i for i, k in enumerate(self.keys) if k in EMOTION_KEYS]

    # --- conversion from / to per-head state dicts (the released layout) ---------------------
    @classmethod
    def from_state_dicts(
        cls,
        states: Mapping[str, Mapping[str, torch.Tensor]],
        neutral_means: Mapping[str, float] | None = None,
    ) -> FusedHeads:
        """Stack per-head released state dicts (``{key: state_dict}``)."""
        if not states:
            raise ModelLoadError("no heads to stack")
        keys = _order_keys(list(states))
        archs = {key: architecture_from_state_dict(states[key], key) for key in keys}
        distinct = set(archs.values())
        if len(distinct) > 1:
            detail = ", ".join(f"{k}: {a.widths}" for k, a in list(archs.items())[:4])
            raise ModelLoadError(f"heads have different architectures ({detail}, …); load one model size at a time")
        arch = distinct.pop()
        means = [float((neutral_means or {}).get(k, 0.0)) for k in keys]
        fused = cls(keys, arch, means, initialise=False)
        for layer in range(len(fused.weights)):
            idx = 3 * layer
            fused.weights[layer] = nn.Parameter(torch.stack([states[k][f"layers.{idx}.weight"].float() for k in keys]))
            fused.biases[layer] = nn.Parameter(torch.stack([states[k][f"layers.{idx}.bias"].float() for k in keys]))
        return fused

    def head_state_dict(self, key: str) -> dict[str, torch.Tensor]:
        """The released-layout state dict of one head (``layers.0.weight`` …)."""
        h = self.keys.index(key)
        out: dict[str, torch.Tensor] = {}
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"layers.{3 * layer}.weight"] = w[h].detach().cpu().clone()
            out[f"layers.{3 * layer}.bias"] = b[h].detach().cpu().clone()
        return out

    def head_module(self, key: str) -> nn.Module:
        """One head as a plain released-style module (for references and debugging)."""
        module = build_head_module(self.arch)
        module.load_state_dict(self.head_state_dict(key))
        return module.eval()

    # --- scoring ------------------------------------------------------------------------------
    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Raw head outputs, shape ``(N, H)``. Dropout is active only in training mode."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.in_dim:
            raise ValueError(f"embeddings must have shape (N, {self.in_dim}), got {tuple(embeddings.shape)}")
        small = embeddings.shape[0] <= self.cpu_stacked_max_rows
        if embeddings.device.type == "cpu" and not torch.is_grad_enabled() and not self.training and not small:
            return self._forward_cpu_inference(embeddings)
        if embeddings.shape[0] <= self.chunk_size or torch.is_grad_enabled():
            return self._forward_chunk(embeddings)
        return torch.cat([self._forward_chunk(part) for part in embeddings.split(self.chunk_size)])

    cpu_stacked_max_rows: int = 32
    """CPU inference on this many rows or fewer takes the stacked path (a handful of products instead
    of 3 per head: at 1–16 rows it was 1.1–6x faster for small and large heads, e.g. an HTTP
    server's batches; the per-head path wins from ~64–256 rows on)."""
    cpu_block_rows: int = 1024
    """Rows per block on the CPU inference path: one head's activations for a block stay in cache."""

    def _forward_cpu_inference(self, x: torch.Tensor) -> torch.Tensor:
        """CPU inference: head by head, rows in blocks, activations kept as ``(out, rows)``.

        Measured on a 2-core AVX-512 CPU (see ``benchmarks/bench_heads.py``): the all-heads first
        layer is fastest on paper, but its ``H·1024 × N`` output leaves the cache and the later
        layers then run memory-bound; per-head ``nn.Linear`` modules run near the FLOP peak for
        large batches yet pay transposed-weight GEMMs and dispatch at small ones. Here each head's
        weights (contiguous ``(out, in)`` slices of the stacked parameters: no copy, nothing to
        invalidate) multiply a ``(in, rows)`` block from the left, so the weights stream once per
        block and the block's activations stay in L2. Results equal the per-head modules (≤ 1e-5).
        """
        weights = [w.detach() for w in self.weights]
        biases = [b.detach() for b in self.biases]
        x = x.to(weights[0].dtype)
        n_rows, last = x.shape[0], len(weights) - 1
        columns = x.T  # (D, N) view; BLAS reads it transposed, no copy
        out = x.new_empty(len(self.keys), n_rows)
        step = max(1, self.cpu_block_rows)
        for h in range(len(self.keys)):
            head = [(w[h], b[h].unsqueeze(-1)) for w, b in zip(weights, biases)]
            for start in range(0, n_rows, step):
                act = columns[:, start : start + step]
                for layer, (w, b) in enumerate(head):
                    act = torch.addmm(b, w, act)
                    if layer < last:
                        act.relu_()
                out[h, start : start + step] = act[0]
        return out.T.contiguous()

    def _forward_chunk(self, x: torch.Tensor) -> torch.Tensor:
        n_heads, n_rows = len(self.keys), x.shape[0]
        w0, b0 = self.weights[0], self.biases[0]
        x = x.to(w0.dtype)
        # First layer shared by all heads: (H*out, D) @ (D, N) -> (H, out, N).
        h = torch.addmm(b0.reshape(-1, 1), w0.reshape(-1, w0.shape[-1]), x.T).view(n_heads, -1, n_rows)
        for w, b in zip(self.weights[1:], self.biases[1:]):
            h = torch.relu(h)
            if self.training and self.arch.dropout > 0:
                h = nn.functional.dropout(h, self.arch.dropout, training=True)
            h = torch.baddbmm(b.unsqueeze(-1), w, h)  # (H, out, in) @ (H, in, N)
        return h.squeeze(1).T  # (N, H)


def postprocess_scores(
    raw: np.ndarray | torch.Tensor, neutral_mean: Sequence[float] | np.ndarray, emotion_index: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Centre raw scores by the neutral means and softmax the 40 emotions (float64, as a reference).

    Returns ``(centred (N, H), probs (N, len(emotion_index)))``.
    """
    raw64 = raw.detach().cpu().double().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw, dtype=np.float64)
    centred = raw64 - np.asarray(neutral_mean, dtype=np.float64)[None, :]
    logits = centred[:, list(emotion_index)]
    logits = logits - logits.max(axis=1, keepdims=True)
    expo = np.exp(logits)
    return centred, expo / expo.sum(axis=1, keepdims=True)


def load_heads(folder: str | Path, chunk_size: int = 512, *, subset: bool = False) -> FusedHeads:
    """Load a heads folder: the released layout (``model_<key>_best.pth`` + neutral stats JSON) or
    our single-file export (``model.safetensors`` + ``config.json``, preferred when present).

    A released-layout folder must hold all 44 heads: one with some missing is almost always an
    incomplete download or copy, and would silently score fewer emotions (the probabilities are a
    softmax over the heads present). It loads when ``subset=True``, or when its neutral-stats file
    names exactly the heads present (what :func:`save_heads` writes for a subset, e.g. a training
    run whose data had no targets for some heads). Extra heads with other keys are kept.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: heads folder not found; pass a released heads folder or Hub id to --heads")
    model_type = _transformers_model_type(folder)
    if model_type is not None:  # e.g. the SigLIP encoder's folder given as --heads
        what = "a SigLIP encoder" if model_type.startswith("siglip") else "a Hugging Face model"
        raise ModelLoadError(
            f"{folder}: holds {what} (config.json model_type {model_type!r}), not emonet-face heads; pass it as "
            "--encoder, and to --heads the folder with the model_<key>_best.pth files"
        )
    if (folder / SAFETENSORS_FILE).is_file() and (folder / CONFIG_FILE).is_file():
        return _load_safetensors(folder, chunk_size)
    files = sorted(p for p in folder.glob("model_*_best.pth"))
    if not files:
        raise ModelLoadError(
            f"{folder}: no model_<key>_best.pth head files (nor model.safetensors + config.json); "
            "point --heads at a released Empathic-Insight-Face folder"
        )
    keys = [head_key_from_file_name(p.name) or p.stem for p in files]
    states = {key: load_head_state_dict(p) for key, p in zip(keys, files)}  # an unsafe file is refused first
    if not subset:
        _check_complete(folder, keys)
    means = load_neutral_stats(folder, list(states))
    fused = FusedHeads.from_state_dicts(states, means)
    fused.chunk_size = chunk_size
    return fused.eval()


def is_heads_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds heads: released ``model_<key>_best.pth`` files or our safetensors
    export (so that a heads folder given as an encoder gets an error that says so)."""
    folder = Path(folder)
    if any(folder.glob("model_*_best.pth")):
        return True
    config = _read_config(folder)
    return config is not None and config.get("format") == FORMAT_NAME


def _transformers_model_type(folder: Path) -> str | None:
    """The ``model_type`` of a Hugging Face model folder (its config.json), ``None`` for anything else."""
    config = _read_config(folder)
    if config is None or config.get("format") == FORMAT_NAME:
        return None
    model_type = config.get("model_type")
    return model_type if isinstance(model_type, str) else None


def _read_config(folder: Path) -> dict | None:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def _check_complete(folder: Path, keys: Sequence[str]) -> None:
    """Refuse a released-layout folder that lacks some of the 44 heads (see :func:`load_heads`)."""
    missing = [k for k in HEAD_KEYS if k not in keys]
    if not missing:
        return
    stats = _read_neutral_stats(folder)
    if stats is not None and {head_key_from_file_name(k) or k for k in stats} == set(keys):
        return  # a subset on purpose: the stats file was written for exactly these heads
    shown = ", ".join(head_file_name(k) for k in missing[:3]) + (", …" if len(missing) > 3 else "")
    raise ModelLoadError(
        f"{folder}: holds {len(HEAD_KEYS) - len(missing)} of the {len(HEAD_KEYS)} heads (missing {len(missing)}: {shown}); "
        "copy the whole released folder (every model_<key>_best.pth and the neutral-stats file), "
        "or, for a subset on purpose, load_heads(folder, subset=True) (save_heads of it writes a folder every command loads)"
    )


def _load_safetensors(folder: Path, chunk_size: int) -> FusedHeads:
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / CONFIG_FILE).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise damaged_file(folder / CONFIG_FILE, exc) from None
    try:
        if config.get("format") != FORMAT_NAME:
            raise KeyError("format")
        arch = HeadArchitecture(in_dim=int(config["in_dim"]), hidden=tuple(int(h) for h in config["hidden"]))
        keys = list(config["keys"])
        means = [float(config.get("neutral_mean", {}).get(k, 0.0)) for k in keys]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder / CONFIG_FILE}: not an emonet-face heads config ({exc!r})") from None
    try:
        tensors = load_file(str(folder / SAFETENSORS_FILE))
    except Exception as exc:  # SafetensorError (no common base): a file cut short or overwritten
        raise damaged_file(folder / SAFETENSORS_FILE, exc) from None
    fused = FusedHeads(keys, arch, means, chunk_size=chunk_size, initialise=False)
    try:
        fused.load_state_dict({**tensors, "neutral_mean": torch.tensor(means)})
    except RuntimeError as exc:
        raise ModelLoadError(f"{folder / SAFETENSORS_FILE}: tensors do not match config.json ({exc})") from None
    return fused.eval()


def save_heads(
    heads: FusedHeads,
    folder: str | Path,
    layout: str = "released",
    extra_stats: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Write heads so that :func:`load_heads` (and the released example code) reads them back.

    ``layout="released"``: one ``model_<key>_best.pth`` state dict per head + the neutral stats JSON.
    ``layout="safetensors"``: one ``model.safetensors`` with the stacked tensors + ``config.json``.
    ``extra_stats`` adds fields (e.g. ``std``) per key to the neutral stats entries.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    means = heads.neutral_mean.detach().cpu().tolist()
    if layout == "released":
        for key in heads.keys:
            torch.save(heads.head_state_dict(key), folder / head_file_name(key))
        stats = {
            head_stats_key(k): {"mean": m, **dict((extra_stats or {}).get(k, {}))} for k, m in zip(heads.keys, means)
        }
        (folder / NEUTRAL_STATS_FILENAME).write_text(json.dumps(stats, indent=2))
    elif layout == "safetensors":
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items() if k != "neutral_mean"}
        save_file(tensors, str(folder / SAFETENSORS_FILE))
        config = {
            "format": FORMAT_NAME,
            "in_dim": heads.arch.in_dim,
            "hidden": list(heads.arch.hidden),
            "keys": list(heads.keys),
            "neutral_mean": dict(zip(heads.keys, means)),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    else:
        raise ValueError(f"unknown layout {layout!r}; use 'released' or 'safetensors'")
    return folder
