"""Face detection on real photos shipped with scikit-image, crops at borders, the --faces policy,
and the detector registry / weights loading (local file, offline Hub cache)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emonet_face.errors import EmoNetError, ModelLoadError
from emonet_face.faces import (
    DEFAULT_MARGIN,
    Face,
    FaceMode,
    available_detectors,
    crop_face,
    face_regions,
    get_detector,
    square_box,
)
from emonet_face.hub import resolve_model_file

# The astronaut's face (Eileen Collins) in skimage.data.astronaut(), 512×512, found by inspection
# on a 10-px grid zoomed 3×: cheek to cheek x 178–266, forehead under the fringe (y 75) to the chin
# (y 180). Box (x, y, w, h).
ASTRONAUT_FACE = (178.0, 75.0, 88.0, 105.0)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def detector():
    return get_detector("dlib")


def test_dlib_finds_the_astronaut(astronaut, detector):
    faces = detector.detect(astronaut)
    assert len(faces) == 1, faces
    box = (faces[0].box_x, faces[0].box_y, faces[0].box_w, faces[0].box_h)
    assert iou(box, ASTRONAUT_FACE) > 0.5, box


def test_boxes_are_in_original_pixels_of_a_large_photo(astronaut, detector):
    """Big photos are detected on a shrunk copy; boxes must come back in the original's pixels."""
    big = astronaut.resize((2048, 2048))
    (face,) = detector.detect(big)
    box = (face.box_x / 4, face.box_y / 4, face.box_w / 4, face.box_h / 4)
    assert iou(box, ASTRONAUT_FACE) > 0.5, box


def test_no_face_in_generated_images(detector):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    gradient = Image.fromarray(np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))).convert("RGB")
    assert detector.detect(noise) == []
    assert detector.detect(gradient) == []


def test_no_face_in_a_real_photo_without_people(detector):
    from skimage import data

    assert detector.detect(Image.fromarray(data.coffee())) == []


def test_many_faces_in_reading_order(astronaut, detector):
    group = Image.new("RGB", (1024, 512))
    group.paste(astronaut, (0, 0))
    group.paste(astronaut, (512, 0))
    faces = detector.detect(group)
    assert len(faces) == 2
    assert faces[0].box_x < faces[1].box_x
    assert faces[1].box_x - faces[0].box_x == pytest.approx(512, abs=8)


def test_square_box_margin():
    left, top, side = square_box(Face(100, 100, 50, 80, 1.0), margin=0.25)
    assert side == 120  # 80 × (1 + 2·0.25)
    assert (left + side / 2, top + side / 2) == (125, 140)  # centred on the box
    with pytest.raises(ValueError):
        square_box(Face(0, 0, 10, 10, 1.0), margin=-0.1)


def test_crop_near_border_is_shifted_inside_not_dropped():
    image = Image.fromarray(np.arange(200 * 300 * 3, dtype=np.uint32).reshape(200, 300, 3).astype(np.uint8))
    crop = crop_face(image, Face(0, 0, 40, 40, 1.0), margin=0.5)  # 80-px square reaching outside
    assert crop.size == (80, 80)
    assert np.array_equal(np.asarray(crop), np.asarray(image)[:80, :80])


def test_crop_larger_than_image_is_padded_with_edge_pixels():
    image = Image.new("RGB", (100, 60), (10, 20, 30))
    image.paste((200, 0, 0), (0, 0, 100, 1))  # top row red
    crop = crop_face(image, Face(20, 5, 60, 50, 1.0), margin=DEFAULT_MARGIN)
    side = round(60 * (1 + 2 * DEFAULT_MARGIN))
    assert crop.size == (side, side)
    arr = np.asarray(crop)
    assert (arr[0] == (200, 0, 0)).all()  # padding repeats the edge row: no black bars
    assert not (arr == 0).all(axis=2).any()


def test_face_regions_modes(astronaut, detector):
    (region,) = face_regions(astronaut, detector, "detect")
    assert region.ids["face"] == 0 and region.ids["region"] == "face"
    assert region.image.width == region.image.height
    assert region.ids["det_score"] > 0
    whole = face_regions(astronaut, None, FaceMode.none)
    assert whole[0].image is astronaut and whole[0].ids == {}

    blank = Image.new("RGB", (256, 256), (120, 120, 120))
    (nothing,) = face_regions(blank, detector, "detect")
    assert nothing.image is None and nothing.ids["face"] is None
    (portrait,) = face_regions(blank, detector, "auto")  # small and square: scored whole, and said so
    assert portrait.image is blank and portrait.ids["region"] == "whole_image"
    assert (portrait.ids["box_w"], portrait.ids["box_h"]) == (256.0, 256.0)
    wide = Image.new("RGB", (1600, 600), (120, 120, 120))
    (landscape,) = face_regions(wide, detector, "auto")  # a wide photo with no face is not a portrait
    assert landscape.image is None and landscape.ids["face"] is None


def test_registry_and_unknown_detector():
    assert {"blazeface", "dlib", "haar", "lbp", "yunet"} <= set(available_detectors())
    with pytest.raises(EmoNetError, match="unknown face detector"):
        get_detector("nope")


def test_lbp_detector_runs_on_the_astronaut(astronaut):
    faces = get_detector("lbp").detect(astronaut)
    best = max(iou((f.box_x, f.box_y, f.box_w, f.box_h), ASTRONAUT_FACE) for f in faces)
    assert best > 0.4


def test_yunet_local_file_that_is_not_a_model_gives_a_clear_error(tmp_path):
    bogus = tmp_path / "yunet.onnx"
    bogus.write_bytes(b"not an onnx model")
    with pytest.raises(ModelLoadError, match="not a usable YuNet ONNX model"):
        get_detector(f"yunet:{bogus}")
    with pytest.raises(ModelLoadError, match="weights file not found"):
        get_detector(f"yunet:{tmp_path / 'missing.onnx'}")


def test_yunet_weights_offline_cache_miss_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        get_detector("yunet")


def test_weights_resolved_from_the_hub_cache_offline(tmp_path, monkeypatch):
    """The Hub path goes through hf_hub_download: a file already in the HF cache is served offline."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--opencv--face_detection_yunet" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "face_detection_yunet_2023mar.onnx").write_bytes(b"weights")
    refs = cache / "models--opencv--face_detection_yunet" / "refs"
    refs.mkdir()
    (refs / "main").write_text("a" * 40)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(fd.constants, "HF_HUB_CACHE", str(cache), raising=False)
    path = resolve_model_file(
        "opencv/face_detection_yunet/face_detection_yunet_2023mar.onnx", what="YuNet face detector"
    )
    assert path.read_bytes() == b"weights"


def test_haar_detector_works_on_opencv4_or_says_what_to_install(astronaut):
    import cv2

    if hasattr(cv2, "CascadeClassifier") and hasattr(cv2, "data") and cv2.data.haarcascades:
        faces = get_detector("haar").detect(astronaut)
        assert max(iou((f.box_x, f.box_y, f.box_w, f.box_h), ASTRONAUT_FACE) for f in faces) > 0.5
    else:  # OpenCV 5 dropped the cascades
        with pytest.raises(EmoNetError, match=r"opencv-python-headless<5"):
            get_detector("haar")


def fake_yunet(path):
    """A YuNet-shaped ONNX file (the 12 outputs cls/obj/bbox/kps at strides 8, 16, 32 that
    ``cv2.FaceDetectorYN`` decodes) whose "face" score is the brightness of each 32-px cell and whose
    box is that cell: it proves loading, decoding and the mapping back to original pixels without
    the real weights (which need a download)."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inits = [], []
    for name, value in (("zero", 0.0), ("half", 0.5), ("inv255", 1 / 255)):
        inits.append(helper.make_tensor(name, TensorProto.FLOAT, [], [value]))
    inits.append(helper.make_tensor("shape", TensorProto.INT64, [3], [1, -1, 1]))
    inits.append(helper.make_tensor("axes", TensorProto.INT64, [1], [1]))
    for s in (8, 16, 32):
        nodes += [
            helper.make_node("AveragePool", ["input"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("ReduceMean", [f"pool{s}", "axes"], [f"mean{s}"], keepdims=1),
            helper.make_node("Reshape", [f"mean{s}", "shape"], [f"flat{s}"]),
            helper.make_node("Mul", [f"flat{s}", "inv255" if s == 32 else "zero"], [f"cls_{s}"]),
            helper.make_node("Identity", [f"cls_{s}"], [f"obj_{s}"]),
            helper.make_node("Mul", [f"flat{s}", "zero"], [f"z{s}"]),
            helper.make_node("Add", [f"z{s}", "half"], [f"h{s}"]),  # box centre = cell centre
            helper.make_node("Concat", [f"h{s}", f"h{s}", f"z{s}", f"z{s}"], [f"bbox_{s}"], axis=2),  # size = cell
            helper.make_node("Concat", [f"z{s}"] * 10, [f"kps_{s}"], axis=2),
        ]
    width = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
    outputs = [
        helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [1, f"n{s}", width[kind]])
        for kind in width
        for s in (8, 16, 32)
    ]
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])
    graph = helper.make_graph(nodes, "fake_yunet", [image], outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_yunet_from_a_local_file_detects_and_maps_boxes_back(tmp_path):
    detector = get_detector(f"yunet:{fake_yunet(tmp_path / 'yunet.onnx')}")
    image = Image.new("RGB", (640, 384))
    image.paste((255, 255, 255), (128, 64, 160, 96))  # one bright 32-px cell
    (face,) = detector.detect(image)
    assert (face.box_x, face.box_y, face.box_w, face.box_h) == (128, 64, 32, 32)
    assert face.score == pytest.approx(1.0)
    big = Image.new("RGB", (2560, 1536))  # detected on a copy shrunk to 1280 px
    big.paste((255, 255, 255), (256, 128, 320, 192))
    (face,) = detector.detect(big)
    assert (face.box_x, face.box_y, face.box_w, face.box_h) == pytest.approx((256, 128, 64, 64))
    assert detector.detect(Image.new("RGB", (640, 384))) == []


def test_detector_help_lists_every_registered_detector():
    from emonet_face.cli.options import DETECTOR_NAMES
    from helpers_cli import run_cli

    assert DETECTOR_NAMES.split(", ") == available_detectors()
    result = run_cli("predict", "--help", terminal_width=200)
    flat = " ".join(result.output.replace("│", " ").split())
    assert all(name in flat for name in available_detectors()), flat
