"""BlazeFace, the default detector: decoding and NMS against hand-checked numbers, and detection
on photos that installed packages ship (expected counts) and on face-free ones."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from emonet_face.faces import DEFAULT_DETECTOR, Face, crop_face, face_regions, get_detector
from emonet_face.faces.blazeface import (
    BLAZEFACE_ANCHORS,
    Detections,
    decode_detections,
    input_shape,
    level_side,
    model_path,
    pyramid_scales,
    resized_model,
    ssd_anchors,
    weighted_nms,
)


def test_anchor_grid_is_mediapipes_full_range_layout():
    # 48×48 cells of 4 px on the 192-px input, one anchor per cell, row by row, centred in the cell
    assert BLAZEFACE_ANCHORS.shape == (2304, 2)
    assert BLAZEFACE_ANCHORS[0].tolist() == pytest.approx([0.5 / 48, 0.5 / 48])
    assert BLAZEFACE_ANCHORS[1].tolist() == pytest.approx([1.5 / 48, 0.5 / 48])
    assert BLAZEFACE_ANCHORS[48].tolist() == pytest.approx([0.5 / 48, 1.5 / 48])


def test_decoding_of_one_box_and_its_keypoints_by_hand():
    raw = np.zeros((2304, 16), np.float32)
    logits = np.full(2304, -10.0, np.float32)
    # anchor at column 20, row 10: centre (20.5/48, 10.5/48) = (0.427083, 0.21875)
    i = 10 * 48 + 20
    raw[i, :4] = [9.6, -19.2, 38.4, 48.0]  # centre +0.05, -0.1; size 0.2 × 0.25 (in 192-px units)
    raw[i, 4:6] = [-19.2, 0.0]  # keypoint 0 (right eye): 0.1 left of the anchor centre
    raw[i, 6:8] = [19.2, 9.6]  # keypoint 1 (left eye): 0.1 right, 0.05 down
    logits[i] = 2.0  # sigmoid(2) = 0.880797
    raw[i + 1 : i + 4, 2:4] = 10.0
    logits[i + 1] = 0.0  # 0.5: at the threshold, kept
    logits[i + 2] = -0.01  # just below: dropped
    raw[i + 3, 2] = 0.0  # a box of zero width is not a detection, whatever its score
    logits[i + 3] = 5.0
    found = decode_detections(raw, logits, threshold=0.5)
    assert len(found) == 2
    first = int(np.argmax(found.scores))
    assert found.scores[first] == pytest.approx(0.880797, abs=1e-6)
    assert found.boxes[first].tolist() == pytest.approx([0.377083, -0.00625, 0.577083, 0.24375], abs=1e-5)
    assert found.keypoints[first, 0].tolist() == pytest.approx([0.327083, 0.21875], abs=1e-5)
    assert found.keypoints[first, 1].tolist() == pytest.approx([0.527083, 0.26875], abs=1e-5)
    assert found.keypoints[first, 2].tolist() == pytest.approx([0.427083, 0.21875], abs=1e-5)  # zero offset


def test_weighted_nms_merges_overlapping_boxes_by_score():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [3.0, 3.0, 4.0, 4.0]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    points[1] += 1.0
    found = weighted_nms(Detections(boxes, points, np.array([0.9, 0.6, 0.7], np.float32)))
    assert len(found) == 2
    assert found.scores.tolist() == pytest.approx([0.9, 0.7])  # the best score of a group stays
    # x0 = (0.9·0 + 0.6·0.1) / 1.5 = 0.04; x1 = (0.9·1 + 0.6·1.1) / 1.5 = 1.04
    assert found.boxes[0].tolist() == pytest.approx([0.04, 0.0, 1.04, 1.0], abs=1e-6)
    assert found.keypoints[0, 0].tolist() == pytest.approx([0.4, 0.4], abs=1e-6)
    assert found.boxes[1].tolist() == pytest.approx([3.0, 3.0, 4.0, 4.0])


def test_decoding_on_a_non_square_input_scales_x_and_y_by_their_own_side():
    anchors = ssd_anchors(192, 384)  # 48 rows × 96 columns
    assert anchors.shape == (48 * 96, 2) and anchors[1].tolist() == pytest.approx([1.5 / 96, 0.5 / 48])
    raw = np.zeros((len(anchors), 16), np.float32)
    logits = np.full(len(anchors), -10.0, np.float32)
    i = 10 * 96 + 20  # centre (20.5/96, 10.5/48) = (82, 42) in input pixels
    raw[i, :4] = [8.0, -4.0, 40.0, 20.0]  # centre (90, 38), 40 × 20 px
    logits[i] = 3.0
    (box,) = decode_detections(raw, logits, anchors=anchors, side=(384, 192)).boxes
    assert (box * [384, 192, 384, 192]).tolist() == pytest.approx([70, 28, 110, 48], abs=1e-4)


def test_pyramid_levels_by_image_size():
    assert [level_side(g) for g in (1, 2, 3, 4)] == [192, 352, 480, 640]
    # the default: the whole photo in 192 px, then in 480 px (one pass each)
    assert pyramid_scales(1600, 1200) == pytest.approx([192 / 1600, 480 / 1600])
    assert pyramid_scales(1600, 1200, grid=2) == pytest.approx([192 / 1600, 352 / 1600])
    assert pyramid_scales(1600, 1200, grid=1) == pytest.approx([192 / 1600])
    # the finer level never enlarges past 192/256 (0.75) ...
    assert pyramid_scales(512, 340) == pytest.approx([192 / 512, 0.75])
    # ... and is dropped where it would not be 1.5× finer than the whole pass
    assert pyramid_scales(300, 200) == pytest.approx([192 / 300])
    # the padded model input of each level: sides multiples of 32 holding the scaled image
    assert input_shape(1600, 1200, 480 / 1600) == (480, 360, 384, 480)
    assert input_shape(1600, 1200, 192 / 1600) == (192, 144, 160, 192)


def test_resized_model_rewrites_the_three_upsampling_sizes_only():
    model = model_path().read_bytes()
    resized = resized_model(model, 256, 352)
    assert len(resized) == len(model)
    changed = np.flatnonzero(np.frombuffer(model, np.uint8) != np.frombuffer(resized, np.uint8))
    assert len(changed) <= 3 * 8  # three int32 (h, w) pairs, nothing else
    assert resized_model(model, 192, 192) == model
    with pytest.raises(ValueError, match="multiples of 32"):
        resized_model(model, 200, 192)


def test_one_pass_on_a_whole_level_finds_what_a_192_tile_of_it_finds(astronaut):
    """The resized model is the same network: a face seen in one 256×352 pass has the box, eyes and
    score that a 192-px tile cut from the same pixels gives (tile offset a multiple of the network's
    stride, 32, so both see the same grid), up to the context past the tile's edge."""
    detector = get_detector()
    level = cv2.resize(np.asarray(astronaut), (352, 352), interpolation=cv2.INTER_AREA)[:256]
    whole, tile = detector._pass(level), detector.run(np.ascontiguousarray(level[:192, 96:288]))
    (i, j) = int(np.argmax(whole.scores)), int(np.argmax(tile.scores))
    box = whole.boxes[i] * [352, 256, 352, 256]
    assert box.tolist() == pytest.approx((tile.boxes[j] * 192 + [96, 0, 96, 0]).tolist(), abs=1.0)
    assert (whole.keypoints[i] * [352, 256]).ravel().tolist() == pytest.approx(
        (tile.keypoints[j] * 192 + [96, 0]).ravel().tolist(), abs=1.0
    )
    assert whole.scores[i] == pytest.approx(tile.scores[j], abs=0.02)
    assert 110 < box[0] < 125 and 180 < box[2] < 200  # the astronaut's face (222 ± 45 px × 0.6875)


def test_the_model_ships_inside_the_package_with_its_licence():
    path = model_path()
    assert path.is_file() and path.stat().st_size > 1_000_000
    notice = (path.parent / "LICENSE-blazeface.txt").read_text()
    assert "Apache License" in notice and "MediaPipe" in notice


# --- on real photos that packages ship ---------------------------------------------------------
@pytest.fixture(scope="module")
def detector():
    assert DEFAULT_DETECTOR == "blazeface"
    return get_detector()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def grace_hopper() -> Image.Image:
    import matplotlib.cbook

    return Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")


def test_finds_the_face_and_the_eyes_in_package_photos(detector, astronaut, grace_hopper):
    (face,) = detector.detect(astronaut)
    # Eileen Collins' face in the 512×512 picture: centre near (222, 115), about 90 px wide
    assert 190 < face.box_x + face.box_w / 2 < 250 and 80 < face.box_y + face.box_h / 2 < 150
    assert 60 < face.box_w < 130 and face.score > 0.8
    left_x, left_y, right_x, right_y = face.eyes
    assert left_x > right_x  # the person's left eye is on the image's right
    assert abs(left_y - right_y) < 15 and face.box_y < left_y < face.box_y + face.box_h / 2
    (hopper,) = detector.detect(grace_hopper)
    assert hopper.box_w > 100 and hopper.score > 0.8


def test_counts_in_a_collage_with_small_grey_and_tilted_faces(detector, astronaut, grace_hopper):
    head = astronaut.crop((150, 30, 300, 200))
    canvas = Image.new("RGB", (960, 640), (120, 130, 125))
    canvas.paste(grace_hopper.resize((250, 293)), (20, 20))
    canvas.paste(head.resize((110, 125)).convert("L").convert("RGB"), (500, 100))  # a grey face of ~77 px
    canvas.paste(head.rotate(30, expand=False, fillcolor=(120, 130, 125)), (700, 400))  # tilted 30°
    canvas.paste(head.resize((90, 102)), (350, 480))
    faces = detector.detect(canvas)
    assert len(faces) == 4, faces
    assert [round(f.box_x) // 100 for f in faces] == sorted(round(f.box_x) // 100 for f in faces)  # reading order


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_odd_image_modes(detector, astronaut, mode):
    assert len(detector.detect(astronaut.convert(mode))) == 1


def test_large_photo_boxes_in_original_pixels(detector, astronaut):
    (small,) = detector.detect(astronaut)
    (big,) = detector.detect(astronaut.resize((3072, 3072)))  # shrunk to 1600 for detection
    assert big.box_x == pytest.approx(small.box_x * 6, abs=25) and big.box_w == pytest.approx(small.box_w * 6, rel=0.1)


FACE_FREE = ["coffee", "rocket", "brick", "text", "moon", "page", "coins", "horse", "hubble_deep_field", "chelsea"]


@pytest.mark.parametrize("name", FACE_FREE)
def test_no_face_in_face_free_package_pictures(detector, name):
    from skimage import data

    array = getattr(data, name)()
    image = Image.fromarray(array if array.dtype == np.uint8 else (array * 255).astype(np.uint8))
    assert detector.detect(image) == []


def test_matplotlib_sample_pictures_without_faces(detector):
    import matplotlib.cbook

    for name in ("Minduka_Present_Blue_Pack.png", "logo2.png"):
        image = Image.open(matplotlib.cbook.get_sample_data(name))
        assert detector.detect(image) == [], name


def test_min_score_trades_recall_for_precision(astronaut):
    assert get_detector(threshold=0.99).detect(astronaut) == []
    assert len(get_detector(threshold=0.5).detect(astronaut)) == 1


def test_align_levels_the_eyes_of_a_tilted_face(detector, astronaut):
    tilted = astronaut.rotate(-25, resample=Image.Resampling.BICUBIC, center=(222, 115))  # clockwise 25°
    (face,) = detector.detect(tilted)
    left_x, left_y, right_x, right_y = face.eyes
    assert np.degrees(np.arctan2(left_y - right_y, left_x - right_x)) == pytest.approx(25, abs=8)
    upright = crop_face(tilted, face, align=True)
    (again,) = detector.detect(upright)
    lx, ly, rx, ry = again.eyes
    assert abs(np.degrees(np.arctan2(ly - ry, lx - rx))) < 6
    assert upright.size == crop_face(tilted, face).size


def test_eye_columns_in_face_regions(detector, astronaut):
    (region,) = face_regions(astronaut, detector, "detect")
    assert {"eye_left_x", "eye_left_y", "eye_right_x", "eye_right_y"} <= set(region.ids)
    assert region.ids["eye_left_x"] > region.ids["eye_right_x"]
    dlib_region = face_regions(astronaut, get_detector("dlib"), "detect")[0]
    assert dlib_region.ids["eye_left_x"] is None  # detectors without landmarks leave them empty


def test_a_local_model_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path):
    from emonet_face.errors import ModelLoadError

    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="not a usable BlazeFace"):
        get_detector(f"blazeface:{bogus}")


def test_face_dataclass_scales_its_eyes():
    face = Face(1, 2, 3, 4, 0.9, eyes=(10, 20, 30, 40))
    assert face.scaled(2).eyes == (20, 40, 60, 80)


def test_exif_rotated_phone_photo_is_detected_upright(tmp_path: Path, detector, astronaut):
    from emonet_face.inputs import load_image

    stored = astronaut.rotate(90, expand=True)  # as a phone stores it: on its side, EXIF says how to turn it
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: turn 90° clockwise to display
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    (face,) = detector.detect(load_image(tmp_path / "phone.jpg"))
    assert 190 < face.box_x + face.box_w / 2 < 250 and 80 < face.box_y + face.box_h / 2 < 150
    assert face.eyes[0] > face.eyes[2]  # upright: the person's left eye on the image's right
