"""The terminal table of ``emonet-face live``: one line per person (track), refreshed as frames are
scored. Emotions and dimensions are shown by their display names (the taxonomy, as the page shows
them), and the table fits a 120-column terminal without cutting a header: the three top emotions
share one column, a line each, wrapped rather than cut where a name is long."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from emonet_face import taxonomy as tx

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

    from emonet_face.live.scorer import LiveStats

__all__ = ["TRACK_SHOWN_S", "LiveBoard"]

TRACK_SHOWN_S = 10.0
"""Tracks unseen for this long leave the table."""


class LiveBoard:
    """The latest row of each track seen in the last :data:`TRACK_SHOWN_S` seconds, as a rich table."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.dimensions = [d for d in tx.EXTRA_DIMENSIONS if d.key in keys]
        self.tracks: dict[Any, dict[str, Any]] = {}
        self.last_frame: int | None = None

    def add(self, table: pd.DataFrame, now: float | None = None) -> None:
        """Take a frame's rows (rows without scores are left out) and forget tracks unseen for long."""
        now = time.monotonic() if now is None else now
        for row in table.to_dict("records"):
            if row.get("error") or row.get("top1") is None or row.get("top1") != row.get("top1"):
                continue
            key = row.get("track")
            key = "-" if key is None or key != key else int(key)
            entry = self.tracks.setdefault(key, {"frames": 0})
            entry.update(row=row, seen=now, frames=entry["frames"] + 1)
        self.tracks = {k: v for k, v in self.tracks.items() if now - v["seen"] <= TRACK_SHOWN_S}
        self.last_frame = int(table["frame"].iloc[0]) if len(table) else self.last_frame

    def render(self, stats: LiveStats | None) -> Table:
        """The table, with the counts so far as its caption (``None``: before the first frame)."""
        from rich.table import Table

        caption = "waiting for the first frame…"
        if stats is not None:
            caption = (
                f"frame {self.last_frame} · {stats.scored} scored ({stats.scored_per_second:.1f}/s) · "
                f"{stats.skipped} skipped · latency p50 {stats.latency_p50_ms:.0f} ms · Ctrl-C ends"
            )
        view = Table(title="emonet-face live", caption=caption, title_justify="left", caption_justify="left")
        for header in ("track", "time", "frames"):
            view.add_column(header, no_wrap=True, justify="right")
        view.add_column("top emotions", overflow="fold", ratio=1)
        for dim in self.dimensions:  # a two-word name on two lines: "Emotional / Vulnerability"
            view.add_column(dim.name.replace(" ", "\n"), no_wrap=True, justify="right")
        for track, entry in sorted(self.tracks.items(), key=lambda kv: str(kv[0])):
            row = entry["row"]
            view.add_row(
                str(track), f"{row.get('time', 0):.1f}s", str(entry["frames"]), _top_emotions(row),
                *(f"{row.get(f'raw.{d.key}', float('nan')):+.2f}" for d in self.dimensions),
            )  # fmt: skip
        return view


def _top_emotions(row: dict[str, Any]) -> str:
    """``top1..top3`` by display name with their probabilities, one per line (``" 35% Joy"``)."""
    lines = []
    for column in ("top1", "top2", "top3"):
        key = row.get(column)
        if isinstance(key, str) and key:
            name = tx.emotion(key).name if key in tx.EMOTION_KEYS else key
            lines.append(f"{row.get(f'prob.{key}', float('nan')):>4.0%} {name}")
    return "\n".join(lines)
