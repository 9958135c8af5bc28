"""Synthetic embeddings with a planted signal, in the BIG (ratings) and BINARY (votes) formats.

Each head has a hidden unit direction ``u_h``; an embedding ``z`` has intensity
``3.5 + 1.5 · (z · u_h)`` plus noise (clipped to 0–7) for BIG, and experts vote "yes" on
emotion ``h`` with probability ``sigmoid(4 · z · u_h)`` for BINARY (one target and one contrastive
emotion per image, 1–3 votes each, as in the real CSV). Shuffling the rows of the targets
destroys the signal and must leave every metric at chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emonet_face.data.store import write_embeddings
from emonet_face.taxonomy import EMOTION_KEYS, HEAD_KEYS


def directions(dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(len(HEAD_KEYS), dim))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def big_arrays(n: int, dim: int, seed: int = 1, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, dim)).astype(np.float32)
    signal = z @ directions(dim).T
    ratings = np.clip(3.5 + 1.5 * signal + noise * rng.normal(size=signal.shape), 0, 7).astype(np.float32)
    return z, ratings


def binary_arrays(n: int, dim: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, dim)).astype(np.float32)
    signal = z @ directions(dim).T
    yes = np.zeros((n, len(HEAD_KEYS)), np.int16)
    no = np.zeros_like(yes)
    n_emotions = len(EMOTION_KEYS)
    target = rng.integers(0, n_emotions, n)
    contrast = (target + rng.integers(1, n_emotions, n)) % n_emotions
    for col in (target, contrast):
        p = 1 / (1 + np.exp(-4 * signal[np.arange(n), col]))
        n_votes = rng.integers(1, 4, n)
        y = rng.binomial(n_votes, p)
        yes[np.arange(n), col] = y
        no[np.arange(n), col] = n_votes - y
    metadata = pd.DataFrame({"emotion": [EMOTION_KEYS[t] for t in target]})
    metadata.loc[: n // 20, "emotion"] = "neutral"
    return z, yes, no, metadata


def make_stores(
    root: Path, dim: int = 32, n_big: int = 3000, n_binary: int = 3000, shuffle: bool = False
) -> tuple[Path, Path]:
    z_big, ratings = big_arrays(n_big, dim)
    z_bin, yes, no, meta = binary_arrays(n_binary, dim)
    if shuffle:
        rng = np.random.default_rng(99)
        ratings = ratings[rng.permutation(n_big)]
        perm = rng.permutation(n_binary)
        yes, no = yes[perm], no[perm]
    big = root / "big-store"
    binary = root / "binary-store"
    write_embeddings(big, z_big, ratings=ratings, shard_size=1000)
    write_embeddings(binary, z_bin, votes_yes=yes, votes_no=no, metadata=meta, shard_size=1000)
    return big, binary
