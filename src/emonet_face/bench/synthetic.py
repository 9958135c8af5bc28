"""Synthetic HQ annotation files with planted agreement, in the published layout and value formats.

Used by the tests and the speed benchmark (the real HQ file is not redistributed here). Each image
has a sparse latent intensity per emotion; humans and models are noisy views of it, written in
the value formats of the published annotators.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS

# The 14 model annotators of the published file, by value format.
PUBLISHED_MODELS = (
    "Empathic Insight Face Large",
    "Empathic Insight Face Small",
    "Hume Face*",
    "Gemini 2.0 Flash ZS",
    "Gemini 2.0 Flash MS",
    "Gemini 2.5 Flash ZS",
    "Gemini 2.5 Flash MS",
    "Gemini 2.5 Pro 03-25 ZS",
    "GPT-4o ZS",
    "Claude 3.7 MS",
    "Qwen Plus ZS",
    "Pixtral Large ZS",
    "Nova Pro ZS",
    "Random Baseline",
)


def _model_values(name: str, latent: np.ndarray, rng: np.random.Generator, skill: float) -> np.ndarray:
    noise = rng.normal(0, 1, latent.shape)
    if name.startswith("Empathic Insight"):
        raw = skill * latent + (1 - skill) * 2 * noise + 1.0
        return raw - raw.mean(axis=0)  # mean-subtracted floats, many negative
    if name.startswith("Hume Face"):
        return np.clip((skill * latent + (1 - skill) * 2 * noise) / 7, 0, 1)  # 0-1 floats
    if "Random" in name:
        return rng.integers(0, 8, latent.shape).astype(float)
    return np.clip(np.rint(skill * latent + (1 - skill) * 3 * noise), 0, 7)  # VLM integers


def make_synthetic_hq(
    n_images: int = 2500,
    n_humans: int = 8,
    humans_per_image: int = 4,
    models: tuple[str, ...] = PUBLISHED_MODELS,
    seed: int = 0,
    extra_dimensions: bool = True,
) -> pd.DataFrame:
    """A table in the ``hq.csv`` layout: ``image, annotator, human, annotations`` (dict literal strings)."""
    rng = np.random.default_rng(seed)
    n_emotions = len(EMOTIONS)
    active = rng.random((n_images, n_emotions)) < 0.2
    latent = np.where(active, rng.uniform(1, 7, (n_images, n_emotions)), 0.0)
    keys = [e.annotation_key for e in EMOTIONS]
    extra_keys = [d.annotation_key for d in EXTRA_DIMENSIONS] if extra_dimensions else []
    images = [f"hq_{i:05d}.jpg" for i in range(n_images)]
    rows: list[tuple[str, str, bool, str]] = []

    def emit(image: str, annotator: str, human: bool, values: np.ndarray, as_int: bool) -> None:
        items = {k: int(v) if as_int else round(float(v), 6) for k, v in zip(keys, values) if not (as_int and v == 0)}
        for k in extra_keys:
            items[k] = int(rng.integers(0, 4))
        rows.append((image, annotator, human, repr(items)))

    # Emotions differ in how hard they are to read; experts differ in leniency.
    difficulty = rng.uniform(0.6, 2.6, n_emotions)
    leniency = rng.normal(0, 0.4, (n_humans, 1, n_emotions))
    human_noise = rng.normal(0, 1, (n_humans, n_images, n_emotions)) * difficulty + leniency
    for i, image in enumerate(images):
        for h in rng.choice(n_humans, humans_per_image, replace=False):
            values = np.clip(np.rint(latent[i] + human_noise[h, i]), 0, 7)
            emit(image, f"human-{h + 1}", True, values, as_int=True)
    skills = np.linspace(0.9, 0.2, len(models))
    for name, skill in zip(models, skills):
        values = _model_values(name, latent, rng, float(skill))
        as_int = not (name.startswith("Empathic Insight") or name.startswith("Hume Face"))
        for i, image in enumerate(images):
            emit(image, name, False, values[i], as_int)
    return pd.DataFrame(rows, columns=["image", "annotator", "human", "annotations"])
