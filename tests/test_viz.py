"""The pictures' content: every emotion drawn in its family colour, extra dimensions on their own
scales, labels inside the picture and apart from each other and the faces, timelines of the most
probable emotions."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
from PIL import Image

from emonet_face import taxonomy as tx
from emonet_face.viz import FAMILY_COLOURS, FaceScores, face_bar_chart, face_scores, image_overview, timeline_chart
from emonet_face.viz.labels import overlap, place_labels


def scores(seed: int = 0) -> FaceScores:
    probs = np.random.default_rng(seed).dirichlet(np.ones(40))
    extras = {d.key: d.high + 10 if d.key == "arousal" else (d.low + d.high) / 2 for d in tx.EXTRA_DIMENSIONS}
    return FaceScores(dict(zip(tx.EMOTION_KEYS, probs)), extras)


def test_bar_chart_has_every_emotion_in_its_family_colour_and_extras_on_their_scales():
    face = scores()
    fig = face_bar_chart(face, "t")
    bars_ax, *dim_axes = fig.axes
    labels = [t.get_text() for t in bars_ax.get_yticklabels()]
    assert labels == [e.name for family in tx.FAMILIES for e in tx.EMOTIONS if e.family == family]
    widths = {label: patch.get_width() for label, patch in zip(labels, bars_ax.patches)}
    colours = {label: mcolors.to_hex(patch.get_facecolor()) for label, patch in zip(labels, bars_ax.patches)}
    for emo in tx.EMOTIONS:
        assert widths[emo.name] == face.probs[emo.key]
        assert colours[emo.name] == mcolors.to_hex(FAMILY_COLOURS[emo.family])
    assert len(dim_axes) == len(tx.EXTRA_DIMENSIONS)
    for ax, dim in zip(dim_axes, tx.EXTRA_DIMENSIONS):
        assert ax.get_xlim() == (dim.low, dim.high)
        assert ax.get_ylabel().startswith(dim.name)
    arousal_marker = dim_axes[0].lines[-1].get_xdata()[0]
    assert arousal_marker == tx.EXTRA_DIMENSIONS[0].high  # out-of-scale values are pinned to the end…
    assert dim_axes[0].get_ylabel().endswith(f"{tx.EXTRA_DIMENSIONS[0].high + 10:.2f}")  # …and shown as is


def test_overview_labels_stay_inside_the_picture():
    image = Image.new("RGB", (300, 200), (200, 200, 200))
    boxed = FaceScores(scores(1).probs, {}, box=(100, 150, 40, 40), label="face 0")
    whole = FaceScores(scores(2).probs, {}, box=None, label="whole image")
    for face in (boxed, whole):
        fig = image_overview(image, [face])
        ax = fig.axes[0]
        texts = ax.texts
        assert len(texts) == 4  # the face label and its top-3 emotions
        for text in texts:
            x, y = text.get_position()
            assert 0 <= x <= 300 and 0 <= y <= 200, (text.get_text(), x, y)
        top1 = max(face.probs, key=face.probs.get)
        assert texts[1].get_text().startswith(tx.emotion(top1).name)


def test_timeline_shows_the_most_probable_emotions():
    keys = tx.EMOTION_KEYS
    probs = {k: [0.01, 0.01, 0.01] for k in keys}
    probs[keys[5]] = [0.5, 0.6, 0.4]
    probs[keys[9]] = [0.2, 0.1, 0.3]
    fig = timeline_chart([0.0, 0.5, 1.0], probs, k=2)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [tx.emotion(keys[5]).name, tx.emotion(keys[9]).name]


def test_timeline_rows_of_a_table_read_from_csv_raise_no_pandas_warning(tmp_path):
    """``plot`` on a video's CSV: pandas reads one block per column, and adding a column to such a frame
    printed a PerformanceWarning on every run."""
    import warnings

    import pandas as pd

    from emonet_face.outputs import build_score_table, read_table, write_table
    from emonet_face.viz.pictures import main_face_rows

    ids = [
        {"path": "clip.mp4", "frame": f, "time": f / 2, "face": i, "box_x": 0, "box_y": 0, "box_w": 10 + 20 * i, "box_h": 10}
        for f in range(4)
        for i in range(2)
    ]
    raw = np.random.default_rng(0).normal(size=(len(ids), len(tx.HEAD_KEYS)))
    write_table(build_score_table(ids, raw, [None] * len(ids), tx.HEAD_KEYS, np.zeros(len(tx.HEAD_KEYS))), tmp_path / "v.csv")
    table = read_table(tmp_path / "v.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        main = main_face_rows(table)
    assert main["frame"].tolist() == [0, 1, 2, 3] and main["face"].tolist() == [1, 1, 1, 1]  # the larger face
    assert list(main.columns) == list(table.columns)


# --- label placement (the overview's labels; the page follows the same rules) --------------------------
def test_a_label_by_the_picture_edge_stays_inside_it():
    width, height = 400, 300
    corners = [(370, 270, 30, 30), (0, 0, 30, 30), (360, 0, 40, 40), (0, 260, 40, 40)]  # each in a corner
    for box in corners:
        (spot,) = place_labels([box], [[(120, 50)]], width, height)
        x, y, w, h = spot.rect
        assert x >= 0 and x + w <= width and y >= 0 and y + h <= height, (box, spot)
        assert spot.cost == 0 and overlap(spot.rect, box) == 0, (box, spot)  # beside the face, not over it


def test_two_close_faces_labels_do_not_overlap_each_other_or_the_faces():
    boxes = [(100, 100, 60, 60), (170, 100, 60, 60)]  # 10 px apart: both labels want the same place
    spots = place_labels(boxes, [[(150, 45)], [(150, 45)]], 500, 400)
    assert overlap(spots[0].rect, spots[1].rect) == 0, spots
    assert all(overlap(s.rect, b) == 0 for s in spots for b in boxes), spots


def test_a_crowded_picture_gets_shorter_labels_where_the_full_ones_cover_something():
    boxes = [(10 + 60 * i, 20, 50, 50) for i in range(5)]  # five faces in a row, a strip of a picture
    spots = place_labels(boxes, [[(170, 60), (170, 20), (40, 12)]] * 5, 310, 100)
    assert {s.choice for s in spots} - {0}, spots  # some faces fall back to a shorter label…
    for i, spot in enumerate(spots):  # …and none covers another label or a face
        assert spot.cost == 0 and all(overlap(spot.rect, b) == 0 for b in boxes), spot
        assert all(overlap(spot.rect, other.rect) == 0 for other in spots[i + 1 :]), spots


def test_overview_of_a_group_keeps_every_label_inside_and_apart():
    image = Image.new("RGB", (900, 300), (200, 200, 200))
    boxes = [(10, 100, 110, 110), (150, 90, 120, 120), (300, 100, 110, 110), (440, 95, 120, 120), (790, 100, 110, 110)]
    faces = [FaceScores(scores(i).probs, {}, box=b, label=f"face {i}") for i, b in enumerate(boxes)]
    fig = image_overview(image, faces)
    fig.canvas.draw()
    ax = fig.axes[0]
    inside = ax.get_window_extent()
    shown = [t.get_bbox_patch().get_window_extent() for t in ax.texts]
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("face")] == [f"face {i}" for i in range(5)]
    for i, bbox in enumerate(shown):
        assert inside.x0 - 1 <= bbox.x0 and bbox.x1 <= inside.x1 + 1 and inside.y0 - 1 <= bbox.y0 and bbox.y1 <= inside.y1 + 1
        for other in shown[i + 1 :]:  # label boxes may touch (one block's lines), never cover each other
            assert min(bbox.x1, other.x1) - max(bbox.x0, other.x0) <= 1 or min(bbox.y1, other.y1) - max(bbox.y0, other.y0) <= 1


def test_pictures_number_faces_as_the_table_face_column(tmp_path):
    from emonet_face.viz import PictureWriter

    probs = scores(3).probs
    rows = pd.DataFrame(  # face 2 of a picture alone (e.g. the rows of a filtered table): its first row
        [{"path": "group.png", "face": 2, "box_x": 20.0, "box_y": 20.0, "box_w": 40.0, "box_h": 40.0, "region": "face",
          **{f"prob.{k}": p for k, p in probs.items()}}]
    )  # fmt: skip
    written = PictureWriter(tmp_path).image("group.png", rows, Image.new("RGB", (200, 100)))
    assert sorted(p.name for p in written) == ["group.face2.bars.png", "group.png"]
    faces = [face_scores(row) for _, row in rows.iterrows()]
    texts = [t.get_text() for t in image_overview(Image.new("RGB", (200, 100)), faces).axes[0].texts]
    assert [t for t in texts if t.startswith("face")] == ["face 2"]
