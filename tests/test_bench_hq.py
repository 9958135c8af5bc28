"""`bench hq`: loading, the protocol against a plain sklearn/krippendorff/SciPy loop, CLI outputs, predictions."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from emonet_face.bench.hq import load_hq
from emonet_face.bench.protocol import run_hq_protocol
from emonet_face.bench.synthetic import make_synthetic_hq
from emonet_face.taxonomy import EMOTIONS
from helpers_cli import one_line_error, run_cli

MODELS = ("Empathic Insight Face Large", "Hume Face*", "Gemini 2.0 Flash ZS", "Random Baseline")
ANGER = next(e for e in EMOTIONS if e.key == "anger")
SURPRISE = next(e for e in EMOTIONS if e.key == "astonishment_surprise")


@pytest.fixture(scope="module")
def hq_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hq") / "hq.csv"
    make_synthetic_hq(n_images=60, n_humans=6, humans_per_image=4, models=MODELS, seed=3).to_csv(path, index=False)
    return path


def _reference_ratings(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """The published reading, written plainly: dict literal per row, Hume × 7, missing key = 0."""
    out = {}
    for row in pd.read_csv(path).itertuples():
        values = ast.literal_eval(row.annotations)
        scale = 7.0 if row.annotator.startswith("Hume Face") else 1.0
        out[(row.annotator, row.image)] = {e.name: float(values.get(e.annotation_key, 0)) * scale for e in EMOTIONS}
    return out


def test_loader_applies_published_normalisation(tmp_path: Path) -> None:
    rows = [
        ("a.jpg", "human-1", True, repr({ANGER.annotation_key: 5, "Extra Dimensions|Valence": -2})),
        ("a.jpg", "human-2", "true", json.dumps({ANGER.annotation_key: 4})),
        ("a.jpg", "Hume Face*", False, repr({ANGER.annotation_key: 0.5})),
        ("a.jpg", "Hume Face*", False, repr({ANGER.annotation_key: 0.7})),  # duplicate → averaged
        ("b.jpg", "human-1", True, repr({SURPRISE.annotation_key: 2})),
    ]
    path = tmp_path / "hq.csv"
    pd.DataFrame(rows, columns=["image", "annotator", "human", "annotations"]).to_csv(path, index=False)
    data = load_hq(path)
    a, img = data.annotators.index("Hume Face*"), data.images.index("a.jpg")
    e_anger, e_surprise = EMOTIONS.index(ANGER), EMOTIONS.index(SURPRISE)
    assert data.ratings[a, img, e_anger] == pytest.approx(0.6 * 7)
    assert data.ratings[data.annotators.index("human-2"), img, e_anger] == 4
    assert data.ratings[data.annotators.index("human-2"), img, e_surprise] == 0  # missing key counts 0
    assert np.isnan(data.ratings[a, data.images.index("b.jpg")]).all()  # not rated
    assert list(data.human) == [True, True, False]
    assert any("duplicate" in w for w in data.warnings)


def test_loader_reads_hf_label_layout(tmp_path: Path) -> None:
    rows = [
        {
            "image": {"path": "x/one.jpg"},
            "label": [{"rater-a": {ANGER.annotation_key: 3}}, {"rater-b": {ANGER.annotation_key: 6}}],
        },
        {"image": {"path": "x/two.jpg"}, "label": [{"rater-a": {SURPRISE.annotation_key: 1}}]},
    ]
    path = tmp_path / "hf.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = load_hq(path)
    assert data.images == ["one.jpg", "two.jpg"] and data.human.all()
    assert data.ratings[data.annotators.index("rater-b"), 0, EMOTIONS.index(ANGER)] == 6
    pd.DataFrame(rows).to_parquet(tmp_path / "hf.parquet")  # Parquet pads lists of structs with None
    from_parquet = load_hq(tmp_path / "hf.parquet")
    np.testing.assert_array_equal(from_parquet.ratings, data.ratings)
    assert from_parquet.annotators == data.annotators and not from_parquet.warnings


def test_protocol_matches_plain_reference_loop(hq_file: Path) -> None:
    result = run_hq_protocol(load_hq(hq_file), n_boot=50)
    ratings = _reference_ratings(hq_file)
    humans = sorted({a for a, _ in ratings if a.startswith("human")})
    images = sorted({i for _, i in ratings})

    def column(annotator: str, emotion: str) -> pd.Series:
        return pd.Series({i: ratings[(annotator, i)][emotion] for i in images if (annotator, i) in ratings})

    def kappa(a: str, b: str, emotion: str) -> float:
        x, y = column(a, emotion), column(b, emotion)
        shared = x.index.intersection(y.index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return cohen_kappa_score(
                    x[shared].astype(int), y[shared].astype(int), weights="quadratic", labels=range(8)
                )
            except ValueError:
                return np.nan

    for annotator in ("Empathic Insight Face Large", "Hume Face*", humans[0]):
        others = [h for h in humans if h != annotator]
        for emotion in (ANGER.name, SURPRISE.name, EMOTIONS[0].name):
            expected = np.nanmean([kappa(annotator, h, emotion) for h in others])
            assert result.kappa_per_emotion.at[annotator, emotion] == pytest.approx(expected, abs=1e-9)
    for emotion in (ANGER.name, EMOTIONS[5].name):
        table = np.array([[ratings.get((h, i), {}).get(emotion, np.nan) for i in images] for h in humans])
        reference = krippendorff.alpha(reliability_data=table, level_of_measurement="interval")
        assert result.alpha.at[emotion, "alpha"] == pytest.approx(reference, abs=1e-9)
        median = np.nanmedian(table, axis=0)
        model = column("Gemini 2.0 Flash ZS", emotion)[images].to_numpy()
        assert result.spearman_per_emotion.at["Gemini 2.0 Flash ZS", emotion] == pytest.approx(
            spearmanr(model, median).statistic, abs=1e-9
        )
    reliable = result.alpha.index[result.alpha["alpha"] >= 0.3]
    assert len(reliable) > 0 and list(reliable) == result.reliable_emotions
    assert result.per_annotator.at["Hume Face*", "kappa_mean_reliable"] == pytest.approx(
        result.kappa_per_emotion.loc["Hume Face*", reliable].mean(), abs=1e-12
    )
    headline = result.per_annotator["kappa_mean"]
    assert headline["Empathic Insight Face Large"] > 0.2 > headline["Random Baseline"]  # planted signal


def test_cli_hq_writes_outputs_reproducibly(hq_file: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    for out, figures in ((first, "--figures"), (second, "--no-figures")):
        result = run_cli("bench", "hq", str(hq_file), "--out", str(out), "--n-boot", "100", "--seed", "7", figures)
        assert result.exit_code == 0, result.output
    summary = json.loads((first / "summary.json").read_text())
    assert (first / "summary.json").read_text() == (second / "summary.json").read_text()
    assert summary["seed"] == 7 and summary["readout"] == "published"
    for key in ("kappa_mean", "kappa_per_emotion", "spearman_mean", "alpha"):
        assert key in summary
    assert set(summary["kappa_mean"]) == set(pd.read_csv(hq_file)["annotator"])
    assert "Astonishment/Surprise" in summary["alpha"]
    assert "Astonishment/Surprise" in summary["kappa_per_emotion"]["Hume Face*"]
    assert summary["dropped_pairs"]["Empathic Insight Face Large"] > 0  # mean-subtracted negatives drop out
    assert summary["dropped_pairs"]["Gemini 2.0 Flash ZS"] == 0
    for stem in (
        "pairwise_kappa_heatmap",
        "agreement_per_emotion",
        "group_boxplot",
        "spearman_bars",
        "alpha_per_emotion",
    ):
        assert (first / f"{stem}.png").stat().st_size > 0 and (first / f"{stem}.pdf").exists()
    assert (first / "annotators.tex").read_text().startswith("\\begin{tabular}")
    assert "calibrated" in (first / "report.md").read_text()


def test_calibrated_readout_removes_dropouts(hq_file: Path) -> None:
    data = load_hq(hq_file)
    published = run_hq_protocol(data, n_boot=20).summary()
    calibrated = run_hq_protocol(data, readout="calibrated", n_boot=20).summary()
    name = "Empathic Insight Face Large"
    assert calibrated["dropped_pairs"][name] == 0 < published["dropped_pairs"][name]
    assert calibrated["kappa_mean"][name] == calibrated["kappa_mean_calibrated"][name]
    assert published["kappa_mean_calibrated"][name] == calibrated["kappa_mean"][name]
    for human in (a for a, v in published["annotators"].items() if v["human"]):
        assert calibrated["kappa_mean"][human] == published["kappa_mean"][human]


def _bench_with_predictions(hq_file: Path, pred: Path, name: str, out: Path) -> dict:
    """`bench hq` with a predictions file scored as annotator ``name``: its summary.json."""
    result = run_cli("bench", "hq", hq_file, "--predictions", pred, "--name", name, "--out", out, "--n-boot", "20", "--no-figures")
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text())


def test_predictions_score_table_joins_as_annotator(hq_file: Path, tmp_path: Path) -> None:
    """A score table carrying an existing annotator's values must reproduce that annotator's kappas."""
    data = load_hq(hq_file)
    a = data.annotators.index("Empathic Insight Face Large")
    columns: dict[str, object] = {"path": [f"/photos/{Path(i).stem}.png" for i in data.images]}  # re-encoded copies
    for e, emotion in enumerate(EMOTIONS):
        columns[emotion.key] = data.ratings[a, :, e]
        columns[f"raw.{emotion.key}"] = 99.0  # must be ignored
        columns[f"prob.{emotion.key}"] = 0.5
    columns["top1"] = "anger"
    table = pd.DataFrame(columns)
    pred = tmp_path / "scores.parquet"
    table.to_parquet(pred)
    out = tmp_path / "out"
    summary = _bench_with_predictions(hq_file, pred, "My model", out)
    assert summary["annotators"]["My model"]["group"] == "other"
    assert summary["kappa_per_emotion"]["My model"] == summary["kappa_per_emotion"]["Empathic Insight Face Large"]


def test_predictions_in_hq_layout_with_json_annotations(hq_file: Path, tmp_path: Path) -> None:
    source = pd.read_csv(hq_file)
    vlm = source[source["annotator"] == "Gemini 2.0 Flash ZS"].copy()
    vlm["annotations"] = [json.dumps(ast.literal_eval(v)) for v in vlm["annotations"]]  # the VLM helper may write JSON
    vlm["annotator"] = "whatever"
    pred = tmp_path / "vlm.csv"
    vlm.to_csv(pred, index=False)
    out = tmp_path / "out"
    summary = _bench_with_predictions(hq_file, pred, "Copy ZS", out)
    assert summary["annotators"]["Copy ZS"]["group"] == "vlm_zs"
    assert summary["kappa_mean"]["Copy ZS"] == summary["kappa_mean"]["Gemini 2.0 Flash ZS"]


def test_malformed_inputs_give_one_line_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing_cols.csv"
    pd.DataFrame({"image": ["a"], "rater": ["x"]}).to_csv(missing, index=False)
    assert "lacks column" in one_line_error(run_cli("bench", "hq", str(missing), "--out", str(tmp_path / "o")))
    assert "does not exist" in one_line_error(
        run_cli("bench", "hq", str(tmp_path / "nope.csv"), "--out", str(tmp_path))
    )
    garbage = tmp_path / "garbage.csv"
    pd.DataFrame(
        {"image": ["a", "b"], "annotator": ["h1", "h2"], "human": [True, True], "annotations": ["{not a dict", "[1, 2"]}
    ).to_csv(garbage, index=False)
    assert "no row could be parsed" in one_line_error(
        run_cli("bench", "hq", str(garbage), "--out", str(tmp_path / "o"))
    )
    only_models = tmp_path / "models.csv"
    pd.DataFrame(
        {"image": ["a"], "annotator": ["m"], "human": [False], "annotations": [repr({ANGER.annotation_key: 1})]}
    ).to_csv(only_models, index=False)
    assert "human annotators" in one_line_error(run_cli("bench", "hq", str(only_models), "--out", str(tmp_path / "o")))
    bad_pred = tmp_path / "pred.csv"
    pd.DataFrame({"path": ["zzz.jpg"], "anger": [1.0]}).to_csv(bad_pred, index=False)
    good = tmp_path / "good.csv"
    make_synthetic_hq(n_images=12, n_humans=4, humans_per_image=3, models=("Random Baseline",), seed=1).to_csv(
        good, index=False
    )
    error = one_line_error(
        run_cli("bench", "hq", str(good), "--predictions", str(bad_pred), "--out", str(tmp_path / "o"))
    )
    assert "matches" in error


def test_bad_rows_no_overlap_and_out_of_range_are_reported(tmp_path: Path) -> None:
    frame = make_synthetic_hq(n_images=15, n_humans=4, humans_per_image=3, models=("Random Baseline",), seed=2)
    extra = pd.DataFrame(
        [
            ("other.jpg", "Lonely ZS", False, repr({ANGER.annotation_key: 3})),  # shares no image with humans
            (frame["image"][0], "human-1", True, "{oops"),  # unparsable dict
            (frame["image"][1], "human-9", True, repr({ANGER.annotation_key: 11})),  # out of range
            (frame["image"][2], "Nan ZS", False, repr({ANGER.annotation_key: float("nan")})),  # Python's bare nan
        ],
        columns=frame.columns,
    )
    path = tmp_path / "hq.csv"
    pd.concat([frame, extra]).to_csv(path, index=False)
    out = tmp_path / "out"
    result = run_cli("bench", "hq", str(path), "--out", str(out), "--n-boot", "20", "--no-figures")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    text = " ".join(summary["warnings"])
    assert "skipped 1 rows" in text and "Lonely ZS" in text and "not integers in 0..7" in text
    assert "1 non-numeric or non-finite ratings counted as 0" in text
    assert summary["kappa_mean"]["Lonely ZS"] is None
    assert "warning:" in result.output


def test_face_tables_judge_each_image_by_its_largest_face(tmp_path: Path) -> None:
    from emonet_face.bench.scores import load_score_table
    from emonet_face.taxonomy import EMOTION_KEYS

    rows = []
    for image, faces in (
        ("a.jpg", [(10, 1.0), (50, 2.0), (20, 3.0)]),
        ("b.jpg", [(30, 4.0)]),
        ("c.jpg", [(None, None)]),
    ):
        for i, (side, value) in enumerate(faces):
            row = {"path": image, "face": i if side else None, "box_w": side, "box_h": side}
            row.update({key: value for key in EMOTION_KEYS})
            rows.append(row)
    path = tmp_path / "faces.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    table = load_score_table(path)
    assert table.images == ["a.jpg", "b.jpg"]
    assert table.scores[EMOTION_KEYS[0]].tolist() == [2.0, 4.0]
    assert any("extra face rows" in w for w in table.warnings)
