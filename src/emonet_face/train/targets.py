"""Training targets derived from a store: stage-1 intensities and stage-2 expert votes.

Stage 1 (BIG, generated ratings): the target is the rating itself (0–7 for emotions, the
dimension's own scale for the 4 extra dimensions), weight 1 where present, masked where missing.

Stage 2 (BINARY, expert votes): each image was judged for its target emotion and one
contrastive emotion by 1–3 experts (yes/no). We derive, per (image, emotion) with ``y`` yes and
``n`` no votes:

* target ``7 · y / (y + n)`` on the same 0–7 intensity scale as stage 1: unanimous yes → 7
  (present), any unanimous no (typically the contrastive emotion) → 0 (absent), split votes → the
  vote share (e.g. 1 of 2 → 3.5), so disagreement is neither forced to present nor absent;
* weight ``y + n``: a judgement three experts made counts more than a single vote;
* every other emotion of that image is masked (no vote ≠ absent).

The loss stays a weighted MSE (regression toward 0 or 7) rather than a BCE on a new logit scale:
the heads keep one output scale across both stages, so stage 1 is a real pre-training of stage 2
and the released post-processing (subtract the neutral mean, softmax over the 40 emotions) keeps
its meaning. The shares are exactly the soft targets a BCE would use, rescaled by 7.
"""

from __future__ import annotations

import numpy as np

from emonet_face.taxonomy import EMOTION_KEYS

__all__ = ["VOTE_SCALE", "rating_targets", "vote_targets"]

VOTE_SCALE = 7.0
"""Vote shares are mapped onto the 0–7 intensity scale of the stage-1 targets."""


def rating_targets(ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, weights)``: NaN ratings → weight 0 (target 0, never used)."""
    present = ~np.isnan(ratings)
    return np.where(present, ratings, 0.0).astype(np.float32), present.astype(np.float32)


def vote_targets(votes_yes: np.ndarray, votes_no: np.ndarray, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, weights)`` from vote counts as documented above; extra dimensions get no votes."""
    total = (votes_yes + votes_no).astype(np.float32)
    share = np.divide(votes_yes, total, out=np.zeros_like(total), where=total > 0)
    weights = total.copy()
    emotion_columns = np.array([k in EMOTION_KEYS for k in keys])
    weights[:, ~emotion_columns] = 0.0
    return (VOTE_SCALE * share).astype(np.float32), weights
