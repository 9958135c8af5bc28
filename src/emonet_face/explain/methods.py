"""Saliency maps over the encoder's patch grid: which patches of the crop raise an emotion's score.

A map has one value per patch of the crop the encoder saw (``rows × cols``, row-major), in units of
the emotion's neutral-centred score: positive where the patch raises the score, negative where it
lowers it. Both methods compare the crop with a *baseline*, the same crop with patches replaced by
mid-grey (the value the encoder's normaliser maps to its centre), so that "removing" a patch means
the same thing for both:

* ``occlusion`` (perturbation): the score drop when a window of ``window × window`` patches is
  greyed, averaged over the windows that cover each patch. Needs forward passes only, so it runs on
  every encoder backend (OpenVINO, ONNX Runtime, PyTorch); all heads come out of each pass, so the
  cost does not grow with the number of emotions. Cost: one pass per window (577 for 24 × 24
  patches with ``window=1``).
* ``integrated-gradients`` (Sundararajan et al., 2017): ``(x − grey) · ∂score/∂x`` summed over
  each patch's pixels (identical to the same product on the patch tokens, the patch embedding being
  linear), the gradient averaged over ``steps`` points on the straight path from the grey crop to
  the crop (midpoint rule). With many steps the map sums to ``score(crop) − score(grey crop)``.
  Cost: per step one forward pass and one backward pass per emotion; needs the PyTorch encoder.

Plain gradient × input (the gradient at the crop itself, :meth:`Explainer.path_gradients` with
``alphas=[1.0]``) costs as much as one integrated-gradients step but is not offered: where a score
saturates its gradient vanishes, and on trained toy models it missed the cue on up to 23 % of the
pictures (62 % on one toy trained with grey patches; see ``benchmarks/bench_explain.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from emonet_face.errors import InputError, ModelLoadError
from emonet_face.heads import FusedHeads

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_STEPS",
    "GRADIENT_METHODS",
    "METHODS",
    "Explainer",
    "encoder_patch_size",
    "grey_pixels",
]

METHODS = ("integrated-gradients", "occlusion")
GRADIENT_METHODS = frozenset({"integrated-gradients"})
DEFAULT_METHOD = "integrated-gradients"
DEFAULT_STEPS = 2
"""Chosen with ``benchmarks/bench_explain.py`` (figures in docs/explain.md). On the trained toy models,
occlusion and integrated gradients with 2 or more steps found the square on every picture; 1 step
missed it on about a quarter of the pictures of 2 of 4 toys (its one gradient sits where the score
has saturated), and on the toys trained with grey patches since on up to 4 % (it passes the
validation there, less faithful than 2 steps). At real size on a 2-core AVX512_BF16/AMX CPU, 3
emotions cost 6.9 s per face with 2 steps (12.7 s while the machine was busier), 4.2–6.5 s with 1
step, 25–29 s with 4; 1-patch occlusion several minutes. So the default is the most faithful setting within 10 s among those that
pass the validation, and the cheapest that passes it when the machine is slower."""


def encoder_patch_size(encoder: Any) -> int:
    """The encoder's patch side in pixels (``patch_size`` of the runtime or of its vision config)."""
    size = getattr(encoder, "patch_size", None)
    if size is None:
        config = getattr(getattr(encoder, "vision_model", None), "config", None)
        size = getattr(config, "patch_size", None)
    if not size:
        raise ModelLoadError(
            f"{getattr(encoder, 'name', type(encoder).__name__)}: cannot tell the encoder's patch size; "
            "explain with a SigLIP/SigLIP2 encoder loaded by emonet_face.runtime.load_encoder"
        )
    return int(size)


def grey_pixels(encoder: Any, like: torch.Tensor) -> torch.Tensor:
    """The baseline: a mid-grey picture through the encoder's own preprocessing, shaped like ``like``
    (``(3, H, W)`` or ``(N, 3, H, W)``)."""
    height, width = like.shape[-2:]
    grey = encoder.preprocess([Image.new("RGB", (width, height), (128, 128, 128))])["pixel_values"][0]
    return grey.to(like.dtype).expand_as(like).clone()


class Explainer:
    """Maps for preprocessed crops: ``explain(pixels, targets)`` → one ``(len(targets[i]), rows, cols)``
    array per crop.

    ``encoder`` is any encoder runtime (its forward passes serve ``occlusion`` and the reported
    scores); ``torch_encoder`` the PyTorch :class:`~emonet_face.runtime.ImageEncoder` the gradient
    methods differentiate (default: ``encoder`` when it is one). ``batch_size``: crops per forward
    pass (occluded copies, or path points for integrated gradients). ``window``/``stride``: occlusion
    window side and step, in patches. ``steps``: integrated-gradients path points.
    """

    def __init__(
        self,
        encoder: Any,
        heads: FusedHeads,
        *,
        method: str = DEFAULT_METHOD,
        torch_encoder: Any | None = None,
        batch_size: int = 8,
        window: int = 1,
        stride: int | None = None,
        steps: int = DEFAULT_STEPS,
    ) -> None:
        if method not in METHODS:
            raise InputError(f"--method {method}: use one of {', '.join(METHODS)}")
        if batch_size < 1 or window < 1 or (stride is not None and stride < 1) or steps < 1:
            raise InputError("explain: batch size, window, stride and steps must be at least 1")
        self.encoder = encoder
        self.heads = heads
        self.method = method
        self.batch_size = batch_size
        self.window = window
        self.stride = stride or window
        self.steps = steps
        self.patch = encoder_patch_size(encoder)
        self.torch_encoder = torch_encoder or (encoder if hasattr(encoder, "vision_model") else None)
        if method in GRADIENT_METHODS and self.torch_encoder is None:
            raise ModelLoadError(
                f"--method {method} needs the PyTorch encoder (gradients); use --method occlusion or --backend torch"
            )
        self.neutral_mean = heads.neutral_mean.detach().cpu().double().numpy()

    def grid(self, pixels: torch.Tensor) -> tuple[int, int]:
        """(rows, cols) of the patch grid for preprocessed pixels ``(…, H, W)``."""
        height, width = pixels.shape[-2:]
        if height % self.patch or width % self.patch:
            raise InputError(f"encoder input {height}×{width} is not a whole number of {self.patch}-px patches")
        return height // self.patch, width // self.patch

    # --- scores --------------------------------------------------------------------------------
    @torch.inference_mode()
    def raw_scores(self, pixels: torch.Tensor) -> np.ndarray:
        """Raw head outputs ``(N, H)`` float64 for preprocessed pixels, in batches of ``batch_size``."""
        out = []
        for chunk in pixels.split(self.batch_size):
            encoded = self.encoder.encode({"pixel_values": chunk})
            out.append(encoded.head_outputs(self._heads_on_features).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.heads.keys)))

    def _heads_on_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.heads(features.to(self.heads.neutral_mean.device, torch.float32))

    def centred_scores(self, pixels: torch.Tensor) -> np.ndarray:
        return self.raw_scores(pixels) - self.neutral_mean[None, :]

    # --- maps ----------------------------------------------------------------------------------
    def explain(self, pixels: torch.Tensor, targets: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Maps for crops ``pixels (N, 3, H, W)`` and per crop the head indexes to explain: one
        ``float32 (len(targets[i]), rows, cols)`` array per crop."""
        if pixels.ndim != 4:
            raise InputError(f"explain needs fixed-size pixel batches (N, 3, H, W), got shape {tuple(pixels.shape)}")
        if len(targets) != len(pixels):
            raise InputError(f"{len(targets)} target lists for {len(pixels)} crops")
        if self.method == "occlusion":
            return self._occlusion(pixels, targets)
        return self.path_gradients(pixels, targets, [(k + 0.5) / self.steps for k in range(self.steps)])

    def _windows(self, rows: int, cols: int) -> list[tuple[int, int]]:
        """Top-left patch of every occlusion window; the last row/column of windows ends at the edge."""
        w = min(self.window, rows, cols)

        def starts(n: int) -> list[int]:
            out = list(range(0, n - w + 1, self.stride))
            return out if out[-1] == n - w else [*out, n - w]

        return [(r, c) for r in starts(rows) for c in starts(cols)]

    def _occlusion(self, pixels: torch.Tensor, targets: Sequence[Sequence[int]]) -> list[np.ndarray]:
        rows, cols = self.grid(pixels)
        p, w = self.patch, min(self.window, rows, cols)
        windows = self._windows(rows, cols)
        grey = grey_pixels(self.encoder, pixels[0])
        base = self.raw_scores(pixels)
        maps = []
        for i, image in enumerate(pixels):
            keys = list(targets[i])
            copies = image.unsqueeze(0).repeat(len(windows), 1, 1, 1)
            for n, (r, c) in enumerate(windows):
                copies[n, :, r * p : (r + w) * p, c * p : (c + w) * p] = grey[
                    :, r * p : (r + w) * p, c * p : (c + w) * p
                ]
            drop = base[i, keys][None, :] - self.raw_scores(copies)[:, keys]  # (windows, E)
            total = np.zeros((len(keys), rows, cols))
            count = np.zeros((rows, cols))
            for n, (r, c) in enumerate(windows):
                total[:, r : r + w, c : c + w] += drop[n][:, None, None]
                count[r : r + w, c : c + w] += 1
            maps.append((total / count[None]).astype(np.float32))
        return maps

    @staticmethod
    @contextlib.contextmanager
    def _attention_for_gradients(encoder: Any) -> Iterator[None]:
        """On a CPU, run attention eagerly while differentiating: PyTorch's fused attention (SDPA) has a
        slow backward pass there (so400m bf16, 2 cores: backward 1.9 s with SDPA, 1.3 s eager; forward
        1.1 s vs 1.3 s). The model's own setting is put back afterwards."""
        model = getattr(encoder, "vision_model", None)
        config = getattr(model, "config", None)
        device = getattr(encoder, "device", torch.device("cpu"))
        previous = getattr(config, "_attn_implementation", None)
        if model is None or config is None or device.type != "cpu" or previous in (None, "eager"):
            yield
            return

        def use(name: str) -> None:
            if hasattr(model, "set_attn_implementation"):  # transformers ≥ 4.56
                model.set_attn_implementation(name)
            else:
                config._attn_implementation = name

        try:
            use("eager")
        except (ValueError, ImportError):  # a model without an eager path: keep what it has
            yield
            return
        try:
            yield
        finally:
            use(previous)

    def _torch_raw(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw head outputs with gradients: the PyTorch tower, pooling, normalisation, heads."""
        encoder = self.torch_encoder
        assert encoder is not None, "__init__ refuses the gradient methods without a PyTorch encoder"
        features = encoder.vision_model(pixel_values=pixels).pooler_output.float()
        if getattr(encoder, "normalize", True):
            features = torch.nn.functional.normalize(features, dim=-1)
        return self.heads(features.to(self.heads.neutral_mean.device))

    def path_gradients(
        self, pixels: torch.Tensor, targets: Sequence[Sequence[int]], alphas: Sequence[float]
    ) -> list[np.ndarray]:
        """Σ over each patch's pixels of ``(x − grey) · mean_α ∂score/∂x(grey + α (x − grey))``:
        integrated gradients for midpoints ``alphas``; gradient × input for ``[1.0]``."""
        if self.torch_encoder is None or not hasattr(self.torch_encoder, "vision_model"):
            raise ModelLoadError("gradients need the PyTorch encoder (pass torch_encoder)")
        encoder = self.torch_encoder
        rows, cols = self.grid(pixels)
        dtype, device = getattr(encoder, "dtype", torch.float32), getattr(encoder, "device", torch.device("cpu"))
        x = pixels.to(device, torch.float32)
        grey = grey_pixels(encoder, x)
        delta = x - grey
        n_targets = max((len(t) for t in targets), default=0)
        grads = torch.zeros(len(x), n_targets, *x.shape[1:], dtype=torch.float32, device=device)
        jobs = [(i, a) for i in range(len(x)) for a in alphas]
        with torch.enable_grad(), self._attention_for_gradients(encoder):
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start : start + self.batch_size]
                index = torch.tensor([i for i, _ in chunk], device=device)
                alpha = torch.tensor([a for _, a in chunk], device=device, dtype=torch.float32).view(-1, 1, 1, 1)
                points = (grey[index] + alpha * delta[index]).to(dtype).requires_grad_(True)
                raw = self._torch_raw(points)
                for k in range(n_targets):
                    rows_k = [n for n, (i, _) in enumerate(chunk) if k < len(targets[i])]
                    if not rows_k:
                        continue
                    picked = raw[rows_k, [targets[chunk[n][0]][k] for n in rows_k]]
                    (grad,) = torch.autograd.grad(picked.sum(), points, retain_graph=k < n_targets - 1)
                    for n in rows_k:
                        grads[chunk[n][0], k] += grad[n].float()
        attribution = (delta.unsqueeze(1) * grads / len(alphas)).sum(dim=2)  # (N, E, H, W)
        per_patch = attribution.reshape(len(x), n_targets, rows, self.patch, cols, self.patch).sum(dim=(3, 5))
        return [per_patch[i, : len(targets[i])].cpu().numpy().astype(np.float32) for i in range(len(x))]
