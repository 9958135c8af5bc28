"""How faithful a map is to the model: deletion and insertion curves (Petsiuk et al., 2018).

Patches are greyed (the baseline every method uses) in the order a map ranks them, and the score
is measured after each step:

* **deletion**: most salient patches greyed first. A faithful map makes the score fall at once:
  a small area under the curve.
* **insertion**: start from the all-grey crop and put back the most salient patches first. The
  score should rise at once: a large area. (Greying the *least* salient patches first is the same
  curve read from the other end: with k of n patches greyed, the n − k most salient remain. Its
  area is the insertion area.)

Scores are normalised per crop to ``(s − s_grey) / (s_crop − s_grey)``: 1 is the crop's own score,
0 the all-grey crop's, so curves of different crops and emotions average. Crops whose score barely
differs from the grey crop's (``|s_crop − s_grey| < min_gap``) say nothing and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from emonet_face.explain.methods import Explainer, grey_pixels

__all__ = ["FaithfulnessCurves", "faithfulness_curves"]


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Mean normalised score after greying (or restoring) a fraction of the patches."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    crops: int
    """Crops averaged (those with a score gap to the grey crop)."""

    @staticmethod
    def _area(fractions: np.ndarray, curve: np.ndarray) -> float:
        return float(np.sum((curve[1:] + curve[:-1]) * np.diff(fractions)) / 2.0)

    @property
    def deletion_auc(self) -> float:
        """Lower is better."""
        return self._area(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> float:
        """Higher is better."""
        return self._area(self.fractions, self.insertion)


def faithfulness_curves(
    explainer: Explainer,
    pixels: torch.Tensor,
    targets: Sequence[int],
    maps: Sequence[np.ndarray],
    *,
    points: int | None = None,
    min_gap: float = 1e-3,
) -> FaithfulnessCurves:
    """Curves for crops ``pixels (N, 3, H, W)``, one head index and one ``(rows, cols)`` map per crop.

    ``points``: how many patch counts to measure (evenly spaced from none to all; default every
    count, ``rows·cols + 1`` points). Forward passes only: any encoder backend.
    """
    rows, cols = explainer.grid(pixels)
    n_patches, p = rows * cols, explainer.patch
    counts = np.unique(np.linspace(0, n_patches, (points or n_patches + 1)).round().astype(int))
    grey = grey_pixels(explainer.encoder, pixels)
    curves: dict[str, list[np.ndarray]] = {"deletion": [], "insertion": []}
    for image, blank, head, saliency in zip(pixels, grey, targets, maps):
        order = np.argsort(-np.asarray(saliency, dtype=np.float64).reshape(-1), kind="stable")
        batches = {"deletion": (image, blank, order), "insertion": (blank, image, order)}
        ends = explainer.raw_scores(torch.stack([image, blank]))[:, head]
        gap = ends[0] - ends[1]
        if abs(gap) < min_gap:
            continue
        for name, (start, fill, ranked) in batches.items():
            copies = start.unsqueeze(0).repeat(len(counts), 1, 1, 1)
            for n, count in enumerate(counts):
                for patch in ranked[:count]:
                    r, c = divmod(int(patch), cols)
                    copies[n, :, r * p : (r + 1) * p, c * p : (c + 1) * p] = fill[
                        :, r * p : (r + 1) * p, c * p : (c + 1) * p
                    ]
            curves[name].append((explainer.raw_scores(copies)[:, head] - ends[1]) / gap)
    fractions = counts / n_patches
    mean = {k: np.mean(v, axis=0) if v else np.full(len(counts), np.nan) for k, v in curves.items()}
    return FaithfulnessCurves(fractions, mean["deletion"], mean["insertion"], len(curves["deletion"]))
