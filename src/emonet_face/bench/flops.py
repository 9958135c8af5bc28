"""FLOPs of one SigLIP vision-tower forward, counted from its config (no model is built).

A FLOP is one add or one multiply: a multiply-add of the matrix products counts 2, as
``torch.utils.flop_counter.FlopCounterMode`` counts them (tests check the two agree on a tiny and on
the so400m config). Only the matrix products are counted (patch embedding, Q/K/V/output projections,
the two attention products, MLPs, the attention-pooling head); layer norms, softmax, GELU and the
residual adds are a fraction of a percent and not FMAs, so they are left out, as in the usual
transformer FLOP counts. For google/siglip2-so400m-patch16-384 (hidden 1152, MLP 4304, 27 layers,
24 x 24 patches) this gives 518.9 GFLOP per image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["siglip_vision_flops"]


def siglip_vision_flops(vision_config: Mapping[str, Any], image_size: int | None = None) -> int:
    """FLOPs per image of a SigLIP vision tower (``vision_config`` as in a checkpoint's config.json).

    Args:
        vision_config: ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``, ``patch_size``,
            ``image_size``, ``num_channels`` (default 3), ``vision_use_head`` (default true).
        image_size: the side the processor resizes to, when it differs from the config's.

    Returns:
        Matrix-product FLOPs of one forward for one image.
    """
    hidden, mlp = int(vision_config["hidden_size"]), int(vision_config["intermediate_size"])
    layers, patch = int(vision_config["num_hidden_layers"]), int(vision_config["patch_size"])
    side = int(image_size or vision_config.get("image_size", 224))
    channels = int(vision_config.get("num_channels", 3))
    tokens = (side // patch) ** 2
    patch_embedding = 2 * tokens * channels * patch * patch * hidden
    projections = 2 * tokens * hidden * hidden * 4  # Q, K, V, output
    attention = 2 * tokens * tokens * hidden * 2  # Q·Kᵀ and softmax·V over all heads
    layer = projections + attention + 2 * tokens * hidden * mlp * 2
    head = 0
    if vision_config.get("vision_use_head", True):
        # one learned probe attends over all tokens: K/V projections of every token, Q and output of one
        head = 2 * tokens * hidden * hidden * 2 + 2 * hidden * hidden * 2 + 2 * tokens * hidden * 2
        head += 2 * hidden * mlp * 2  # the head's MLP on the pooled token
    return patch_embedding + layers * layer + head
