"""The check-precision picture: float32 against the checked precision, one panel per emotion family
(and one for the 4 extra dimensions), every face's centred score a dot; on the diagonal when equal."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from emonet_face import taxonomy as tx
from emonet_face.runfolder import atomic_path
from emonet_face.viz.charts import FAMILY_COLOURS

__all__ = ["precision_scatter"]


def precision_scatter(reference: pd.DataFrame, candidate: pd.DataFrame, path: Path, *, label: str = "int8") -> Path:
    """Centred scores (columns = head keys, rows = faces) of float32 (x) against ``label`` (y), one
    panel per family, written atomically as a PNG to ``path``."""
    families = {family: [e.key for e in tx.EMOTIONS if e.family == family] for family in tx.FAMILIES}
    families[tx.EXTRA_FAMILY] = list(tx.EXTRA_KEYS)
    panels = {name: [k for k in keys if k in reference.columns] for name, keys in families.items()}
    panels = {name: keys for name, keys in panels.items() if keys}
    columns = 4
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (name, keys) in zip(axes.flat, panels.items()):
        x, y = reference[keys].to_numpy().ravel(), candidate[keys].to_numpy().ravel()
        ax.scatter(x, y, s=6, alpha=0.6, color=FAMILY_COLOURS.get(name, "#999999"))
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([low, high], [low, high], color="black", linewidth=0.6)
        ax.set_title(f"{name} ({len(keys)})", fontsize=9)
        ax.set_xlabel("float32", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    figure.suptitle(f"Centred scores: float32 against {label}", fontsize=11)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path
