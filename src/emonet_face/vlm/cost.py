"""Estimate requests and tokens of a VLM run before spending money (``emonet-face vlm cost``).

Estimates, not quotes: text tokens are counted as characters / 4 (the usual rule of thumb for
English with OpenAI-style tokenizers; no tokenizer download needed) and image tokens follow
OpenAI's published high-detail formula (fit in 2048×2048, shortest side scaled to 768, 170 tokens
per 512-px tile plus 85). Other vendors count image tokens differently; the request counts and the
lower/upper bounds hold for every server.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from emonet_face.inputs import IMAGE_SUFFIXES, discover_inputs
from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS
from emonet_face.vlm.prompts import Prompt

__all__ = ["CostEstimate", "estimate_cost", "image_tokens", "text_tokens"]

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 10
"""Role and formatting tokens per chat message."""
REPAIR_MESSAGE_TOKENS = 120
"""Our repair message (the error list plus the format reminder), roughly."""
_TYPICAL_REASON = "slightly raised mouth corners and relaxed eyes suggest it"


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def image_tokens(width: int, height: int) -> int:
    """OpenAI high-detail image tokens: 1024×1024 → 765, 2048×4096 → 1105 (their documented examples)."""
    scale = min(1.0, 2048 / max(width, height))
    fitted_w, fitted_h = width * scale, height * scale
    scale = min(1.0, 768 / min(fitted_w, fitted_h))
    fitted_w, fitted_h = fitted_w * scale, fitted_h * scale
    tiles = math.ceil(fitted_w / 512) * math.ceil(fitted_h / 512)
    return 85 + 170 * tiles


def typical_answer_tokens() -> int:
    """Tokens of a complete answer: 44 ratings, each with a one-line reason."""
    answer = {
        "emotions": {e.name: {"rating": 0, "reason": _TYPICAL_REASON} for e in EMOTIONS},
        "extra_dimensions": {d.name: {"rating": 0, "reason": _TYPICAL_REASON} for d in EXTRA_DIMENSIONS},
    }
    return text_tokens(json.dumps(answer, indent=1))


@dataclass
class CostEstimate:
    images: int
    """Images that would be sent (inputs minus those already done, minus unreadable ones)."""
    skipped: int
    unreadable: int
    prompt_tokens_per_request: int
    """Prompt text tokens of the first request (without the image)."""
    image_tokens_total: int
    requests_min: int
    """Every answer valid at once, no transport retries."""
    requests_max: int
    """Every repair attempt used (transport retries come on top, bounded by --max-retries)."""
    input_tokens_min: int
    input_tokens_max: int
    output_tokens_typical: int
    output_tokens_max: int
    cost_min_usd: float | None = None
    cost_max_usd: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"images to send: {self.images} (skipped {self.skipped} already done, {self.unreadable} unreadable)",
            f"requests: {self.requests_min} (no repairs) to {self.requests_max} (every repair used)",
            f"input tokens: {self.input_tokens_min:,} to {self.input_tokens_max:,} "
            f"(prompt {self.prompt_tokens_per_request:,}/request, images {self.image_tokens_total:,} in all)",
            f"output tokens: about {self.output_tokens_typical:,} (at most {self.output_tokens_max:,})",
        ]
        if self.cost_min_usd is not None and self.cost_max_usd is not None:
            out.append(f"cost: about ${self.cost_min_usd:,.2f} (at most ${self.cost_max_usd:,.2f})")
        return out


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as img:  # header only; no full decode
            return img.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def estimate_cost(
    inputs: list[str],
    prompt: Prompt,
    *,
    max_tokens: int | None = 4096,
    repair_attempts: int = 2,
    done_sources: set[str] | None = None,
    price_input_per_million: float | None = None,
    price_output_per_million: float | None = None,
) -> CostEstimate:
    """Requests and token bounds for annotating ``inputs`` (whole images; face crops are smaller)."""
    done_sources = done_sources or set()
    paths = discover_inputs(inputs, suffixes=IMAGE_SUFFIXES)
    todo = [p for p in paths if p.name not in done_sources]
    sizes = [_image_size(p) for p in todo]
    readable = [s for s in sizes if s is not None]
    n = len(readable)
    prompt_tokens = text_tokens(prompt.text) + MESSAGE_OVERHEAD_TOKENS
    image_total = sum(image_tokens(w, h) for w, h in readable)
    typical = typical_answer_tokens()
    longest = max_tokens if max_tokens is not None else typical
    # A repair resends the conversation: the first request, then per repair the previous answer + our message.
    per_repair = longest + REPAIR_MESSAGE_TOKENS + 2 * MESSAGE_OVERHEAD_TOKENS
    calls = repair_attempts + 1
    input_min = n * prompt_tokens + image_total
    input_max = calls * input_min + n * per_repair * (repair_attempts * (repair_attempts + 1) // 2)
    estimate = CostEstimate(
        images=n,
        skipped=len(paths) - len(todo),
        unreadable=len(sizes) - n,
        prompt_tokens_per_request=prompt_tokens,
        image_tokens_total=image_total,
        requests_min=n,
        requests_max=n * calls,
        input_tokens_min=input_min,
        input_tokens_max=input_max,
        output_tokens_typical=n * typical,
        output_tokens_max=n * calls * longest,
    )
    if price_input_per_million is not None and price_output_per_million is not None:
        estimate.cost_min_usd = (
            input_min * price_input_per_million + estimate.output_tokens_typical * price_output_per_million
        ) / 1e6
        estimate.cost_max_usd = (
            input_max * price_input_per_million + estimate.output_tokens_max * price_output_per_million
        ) / 1e6
    return estimate
