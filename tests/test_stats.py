"""`emonet-face stats` and `bench hq --meta --by`: counts against pandas, the FairFace mapping, by-group
agreement against `bench hq` on the subset, and the model-vs-human gap test on planted data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emonet_face.bench.synthetic import make_synthetic_hq
from emonet_face.stats import load_demographic_table
from emonet_face.stats.bygroup import gap_test
from emonet_face.taxonomy import EMOTION_KEYS, EMOTIONS, resolve_emotion
from helpers_cli import one_line_error, run_cli
from hf_layout import write_card_shards, write_shards

# The ethnicity strings of the EmoNet-Face generation prompts (the public release's prompt script).
RELEASE_ETHNICITIES = (
    "Asian",
    "Black or African American",
    "Hispanic or Latino",
    "American Indian or Alaska Native",
    "Indian",
    "Native Hawaiian or Other Pacific Islander",
    "White",
    "white caucasian european",
    "white caucasian north american",
    "Middle Eastern",
    "North African",
    "South Asian",
    "arabic",
    "Southeast Asian",
)
# Written out here, independently of the shipped table, for the group-by references.
EXPECTED_FAIRFACE = {
    "Asian": "East Asian",
    "Black or African American": "Black",
    "Hispanic or Latino": "Latino_Hispanic",
    "American Indian or Alaska Native": "unknown",
    "Indian": "Indian",
    "Native Hawaiian or Other Pacific Islander": "unknown",
    "White": "White",
    "white caucasian european": "White",
    "white caucasian north american": "White",
    "Middle Eastern": "Middle Eastern",
    "North African": "Middle Eastern",
    "South Asian": "Indian",
    "arabic": "Middle Eastern",
    "Southeast Asian": "Southeast Asian",
    "Martian": "unknown",
}
AGE_EDGES = [0, 3, 10, 20, 30, 40, 50, 60, 70, 1000]
AGE_LABELS = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]


def _age_groups(ages: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(ages, errors="coerce")
    return pd.cut(numeric, AGE_EDGES, right=False, labels=AGE_LABELS).astype(object).fillna("unknown")


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().items()}


def _nonzero(d: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in d.items() if v}


def test_mapping_covers_every_release_string() -> None:
    table = load_demographic_table()
    for text in RELEASE_ETHNICITIES:
        group, known = table.fairface(text)
        assert known, f"{text!r} is not in the table"
        assert group == EXPECTED_FAIRFACE[text]
        assert table.fairface(f"  {text.upper()} ") == (group, True)  # case and spacing do not matter
    assert table.fairface("Martian") == ("unknown", False)
    assert table.fairface(None) == ("unknown", True)
    assert set(table.ethnicity.values()) <= {*table.fairface_groups, "unknown"}
    assert table.fairface_groups == (
        "White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"
    )  # fmt: skip
    assert [table.age_group(a) for a in (0, "2", "3", 19.5, "of 20 years", "29", "70", 95, "70+", "", "old")] == [
        "0-2", "0-2", "3-9", "10-19", "20-29", "20-29", "70+", "70+", "70+", "unknown", "unknown"
    ]  # fmt: skip
    every_country = [c for codes in table.regions.values() for c in codes]
    assert len(every_country) == len(set(every_country))  # a country shades one group only


def test_mapping_extends_by_data(tmp_path: Path) -> None:
    payload = json.loads((Path(__file__).parents[1] / "src/emonet_face/stats/demographics.json").read_text())
    payload["ethnicity"]["martian"] = "Middle Eastern"
    path = tmp_path / "table.json"
    path.write_text(json.dumps(payload))
    assert load_demographic_table(path).fairface("Martian") == ("Middle Eastern", True)
    payload["ethnicity"]["martian"] = "Martians"
    path.write_text(json.dumps(payload))
    with pytest.raises(Exception, match="not FairFace groups"):
        load_demographic_table(path)


def _hub_frame(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(folder.rglob("*.parquet"))], ignore_index=True)


def test_hub_layout_counts_equal_pandas_group_by(tmp_path: Path) -> None:
    ethnicities = (*RELEASE_ETHNICITIES, "Martian")
    write_shards(tmp_path / "binary", "binary", 45, shards=3, ethnicities=ethnicities)
    out = tmp_path / "out"
    result = run_cli("stats", str(tmp_path / "binary"), "--out", str(out), "--no-figures")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    frame = _hub_frame(tmp_path / "binary")
    assert summary["n_images"] == len(frame) == 45
    assert summary["by"]["ethnicity"] == _counts(frame["ethnicity"])
    assert summary["by"]["gender"] == _counts(frame["gender"])
    assert _nonzero(summary["by"]["fairface"]) == _counts(frame["ethnicity"].map(EXPECTED_FAIRFACE))
    assert set(summary["by"]["fairface"]) == {*load_demographic_table().fairface_groups, "unknown"}
    assert _nonzero(summary["by"]["age_group"]) == _counts(_age_groups(frame["age"]))
    assert summary["unmapped_ethnicity"] == {"Martian": 3}
    # per emotion = images with at least one yes vote, from the raw labels
    yes: dict[str, set[int]] = {}
    votes: dict[str, list[int]] = {}
    raters_per_image = []
    for row, label in enumerate(frame["label"]):
        raters = json.loads(label)[0]
        raters_per_image.append(len(raters))
        for votes_of_rater in raters.values():
            for name, vote in votes_of_rater.items():
                key = resolve_emotion(name).name
                votes.setdefault(key, [0, 0])[0 if vote else 1] += 1
                if vote:
                    yes.setdefault(key, set()).add(row)
    assert "yes vote" in summary["per_emotion_definition"]
    assert _nonzero(summary["per_emotion"]) == {k: len(v) for k, v in yes.items()}
    assert {k: [v["yes"], v["no"]] for k, v in summary["vote_distribution"].items() if v["yes"] + v["no"]} == votes
    assert summary["annotators_per_image"]["distribution"] == {
        str(k): v for k, v in sorted(pd.Series(raters_per_image).value_counts().items())
    }
    # emotion x group table = crosstab of the same definition
    by_group = pd.read_csv(out / "emotion_by_fairface.csv", index_col=0)
    groups = frame["ethnicity"].map(EXPECTED_FAIRFACE)
    for emotion, rows in yes.items():
        expected = groups.iloc[sorted(rows)].value_counts()
        assert by_group.loc[emotion][expected.index].tolist() == expected.tolist()
        assert by_group.loc[emotion].sum() == len(rows)
    assert (out / "demographics.tex").read_text().startswith("\\begin{tabular}")
    assert "FairFace" in (out / "report.md").read_text()


def test_card_layout_counts_equal_pandas_group_by(tmp_path: Path) -> None:
    write_card_shards(tmp_path / "card", 30, ethnicities=RELEASE_ETHNICITIES[:7])
    out = tmp_path / "out"
    result = run_cli("stats", str(tmp_path / "card"), "--out", str(out), "--no-figures")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    frame = _hub_frame(tmp_path / "card")
    demo = pd.json_normalize(frame["demographics"].tolist())
    assert summary["layout"].startswith("parquet (card")
    assert summary["n_images"] == 30
    assert _nonzero(summary["by"]["gender"]) == _counts(demo["gender"].str.lower().map({"man": "male", "woman": "female"}))
    assert _nonzero(summary["by"]["age_group"]) == _counts(_age_groups(demo["age"]))
    assert _nonzero(summary["by"]["fairface"]) == _counts(demo["ethnicity"].map(EXPECTED_FAIRFACE))
    positive: dict[str, int] = {}
    ratings: dict[str, dict[str, int]] = {}
    n_raters = []
    for raters in frame["annotations"]:
        given = {r: v for r, v in raters.items() if v is not None}
        n_raters.append(len(given))
        for key in given[next(iter(given))]:
            name = resolve_emotion(key).name
            values = [v[key] for v in given.values()]
            positive[name] = positive.get(name, 0) + int(max(values) > 0)
            for v in values:
                ratings.setdefault(name, {}).setdefault(str(int(v)), 0)
                ratings[name][str(int(v))] += 1
    assert "rating > 0" in summary["per_emotion_definition"]
    assert _nonzero(summary["per_emotion"]) == _nonzero(positive)
    assert {k: v for k, v in summary["rating_distribution"].items() if v} == ratings
    assert summary["annotators"]["n"] == 3
    assert summary["annotators_per_image"]["distribution"] == {
        str(k): v for k, v in sorted(pd.Series(n_raters).value_counts().items())
    }
    assert summary["ratings_per_image"]["mean"] == pytest.approx(np.mean(n_raters) * 6)


def test_real_binary_votes_with_meta(release_data: Path, tmp_path: Path) -> None:
    votes_csv = release_data / "emonet-face_binary.csv"
    votes = pd.read_csv(votes_csv, dtype={"path": str})
    ids = sorted(votes["path"].unique())
    rng = np.random.default_rng(0)
    meta = pd.DataFrame(
        {"image": [f"{i}.jpg" for i in ids], "gender": rng.choice(["man", "woman"], len(ids)), "age": rng.integers(20, 81, len(ids))}
    )
    meta.to_csv(tmp_path / "meta.csv", index=False)
    out = tmp_path / "out"
    result = run_cli("stats", str(votes_csv), "--meta", str(tmp_path / "meta.csv"), "--out", str(out), "--no-figures")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == votes["path"].nunique() == 19999
    yes = votes[votes["value"].astype(str).str.lower() == "true"]
    expected = yes.assign(e=yes["emotion"].map(lambda n: resolve_emotion(n).name)).groupby("e")["path"].nunique()
    assert _nonzero(summary["per_emotion"]) == {k: int(v) for k, v in expected.items()}
    assert summary["annotators"]["n"] == votes["annotator"].nunique() == 7
    assert summary["ratings_per_image"]["mean"] == pytest.approx(len(votes) / 19999)
    assert _nonzero(summary["by"]["gender"]) == _counts(meta["gender"].map({"man": "male", "woman": "female"}))
    assert summary["by"]["fairface"]["unknown"] == 19999  # BINARY's CSV and this meta carry no ethnicity


def test_figures_and_world_map_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from emonet_face.stats import figures

    write_shards(tmp_path / "hq", "hq", 24, shards=2, ethnicities=RELEASE_ETHNICITIES)
    out = tmp_path / "out"
    result = run_cli("stats", str(tmp_path / "hq"), "--out", str(out))
    assert result.exit_code == 0, result.output
    for stem in ("per_emotion", "demographics", "age_histogram", "emotion_by_group", "balance", "world_map"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").exists()
        assert f"{stem}.png" in (out / "report.md").read_text()
    assert figures.world_map_paths() is not None, "the [stats] extra (country outlines) is part of the test extra"
    assert {"cn", "fr", "in", "ng", "br"} <= set(figures.world_map_paths())
    # without the [stats] extra: circles on a lon/lat grid, and the CLI says how to get outlines
    monkeypatch.setattr(figures, "world_map_paths", lambda: None)
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    counts = pd.Series({"White": 3, "Black": 1, "unknown": 2})
    assert [p.name for p in figures.world_map(counts, load_demographic_table(), fallback)] == ["world_map.png", "world_map.pdf"]
    result = run_cli("stats", str(tmp_path / "hq"), "--out", str(tmp_path / "again"), "--no-figures")
    assert result.exit_code == 0 and "without country outlines" not in result.output  # no figures, no note


@pytest.fixture(scope="module")
def hq_with_meta(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("hq_by")
    frame = make_synthetic_hq(
        n_images=48, n_humans=5, humans_per_image=3, models=("Empathic Insight Face Large", "Gemini 2.0 Flash ZS"), seed=4
    )
    frame.to_csv(folder / "hq.csv", index=False)
    images = sorted(frame["image"].unique())
    meta = pd.DataFrame(
        {
            "image": images,
            "gender": ["woman" if i % 2 else "man" for i in range(len(images))],
            "ethnicity": [RELEASE_ETHNICITIES[i % 3] for i in range(len(images))],
            "age": [25 + 10 * (i % 4) for i in range(len(images))],
        }
    )
    meta.to_csv(folder / "meta.csv", index=False)
    return folder / "hq.csv", folder / "meta.csv", frame


def test_by_group_kappa_equals_bench_hq_on_the_subset(hq_with_meta, tmp_path: Path) -> None:
    hq_csv, meta_csv, frame = hq_with_meta
    args = ["--n-boot", "60", "--seed", "5", "--no-figures"]
    result = run_cli(
        "bench", "hq", str(hq_csv), "--meta", str(meta_csv), "--by", "gender,fairface", "--n-perm", "49",
        "--out", str(tmp_path / "all"), *args
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    meta = pd.read_csv(meta_csv)
    for factor, value, images in (
        ("gender", "female", meta.loc[meta["gender"] == "woman", "image"]),
        ("fairface", "Black", meta.loc[meta["ethnicity"] == "Black or African American", "image"]),
    ):
        subset = tmp_path / f"{value}.csv"
        frame[frame["image"].isin(set(images))].to_csv(subset, index=False)
        result = run_cli("bench", "hq", str(subset), "--out", str(tmp_path / value), *args)
        assert result.exit_code == 0, result.output
        alone = json.loads((tmp_path / value / "summary.json").read_text())
        group = summary["by"][factor][value]
        assert group["n_images"] == alone["n_images"] == len(images)
        # equal up to the order in which floats are summed (annotators appear in another order in the subset file)
        for key in ("kappa_mean", "spearman_mean", "kappa_ci", "spearman_ci"):
            assert set(group[key]) == set(alone[key])
            for a, value in alone[key].items():
                assert group[key][a] == pytest.approx(value, rel=1e-12, abs=1e-12), (key, a)
    assert set(summary["by"]["fairface"]) == {"East Asian", "Black", "Latino_Hispanic"}
    # the permutation test's observed statistic (its own bincount path) = the size-weighted variance of the
    # protocol's group kappas, so the test sees exactly the numbers in the table
    for factor in ("gender", "fairface"):
        groups = summary["by"][factor]
        for annotator, row in summary["by_tests"][factor].items():
            kappa = np.array([groups[g]["kappa_mean"][annotator] for g in groups], dtype=float)
            n = np.array([groups[g]["n_images"] for g in groups], dtype=float)
            centre = (n * kappa).sum() / n.sum()
            assert row["statistic"] == pytest.approx((n * (kappa - centre) ** 2).sum() / n.sum(), rel=1e-9, abs=1e-15)
            assert 0 < row["p"] <= 1 and row["n_perm"] == 49
    assert summary["kappa_mean"]  # the full protocol is still there


def test_by_group_figures_and_hq_dataset_as_meta(hq_with_meta, tmp_path: Path) -> None:
    hq_csv, meta_csv, _ = hq_with_meta
    # META may be the HQ dataset itself (Parquet, image struct + demographic columns)
    meta = pd.read_csv(meta_csv)
    parquet = tmp_path / "hq_dataset.parquet"
    pd.DataFrame(
        {
            "path": [{"bytes": b"", "path": f"images/{n}"} for n in meta["image"]],
            "gender": meta["gender"],
            "age": meta["age"].astype(str),
            "ethnicity": meta["ethnicity"],
        }
    ).to_parquet(parquet)
    out = tmp_path / "out"
    result = run_cli("bench", "hq", str(hq_csv), "--meta", str(parquet), "--by", "age_group", "--out", str(out), "--n-boot", "30", "--n-perm", "19")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert {k: v["n_images"] for k, v in summary["by"]["age_group"].items()} == {"20-29": 12, "30-39": 12, "40-49": 12, "50-59": 12}
    assert (out / "agreement_by_age_group.png").stat().st_size > 0
    assert "Agreement by group" in (out / "report.md").read_text()


def test_permutation_test_finds_a_group_where_a_model_fails(hq_with_meta) -> None:
    from emonet_face.bench.hq import load_hq
    from emonet_face.stats.bygroup import kappa_permutation_test

    hq_csv, meta_csv, _ = hq_with_meta
    data = load_hq(hq_csv)
    meta = pd.read_csv(meta_csv).set_index("image")
    labels = meta.loc[data.images, "gender"].to_numpy()
    quiet = kappa_permutation_test(data, labels, n_perm=199, seed=1)
    model = data.annotators.index("Empathic Insight Face Large")
    rng = np.random.default_rng(0)
    women = labels == "woman"
    data.ratings[model][women] = rng.permutation(data.ratings[model][women])  # right ratings, wrong faces
    found = kappa_permutation_test(data, labels, n_perm=199, seed=1)
    assert found.at["Empathic Insight Face Large", "p"] <= 0.01
    assert quiet.at["Empathic Insight Face Large", "p"] > 0.05
    humans = [a for a, h in zip(data.annotators, data.human) if h]
    assert (found.loc[humans, "p"] > 0.01).all()  # humans untouched


def _planted(bias: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 240
    labels = np.array(["female", "male"] * (n // 2))
    human = rng.integers(0, 8, (n, len(EMOTIONS))).astype(float)
    model = 0.4 * human + rng.normal(0, 1.5, human.shape)
    anger = [e.name for e in EMOTIONS].index("Anger")
    model[labels == "female", anger] += bias
    return model, human, labels


def test_gap_test_finds_a_planted_bias_and_stays_quiet_without() -> None:
    for seed in range(3):
        found = gap_test(*_planted(bias=2.0, seed=seed), n_perm=999, seed=seed)
        assert found.loc[found["flagged"], "emotion"].tolist() == ["Anger"]
        row = found.set_index("emotion").loc["Anger"]
        assert row["excess_z"] > 0 and row["group"] == "female vs male"
        quiet = gap_test(*_planted(bias=0.0, seed=seed), n_perm=999, seed=seed)
        assert not quiet["flagged"].any()
        assert quiet["p"].min() > 0.001


def test_stats_predictions_with_hq(tmp_path: Path) -> None:
    model, human, labels = _planted(bias=2.0, seed=1)
    images = [f"img_{i:04d}.jpg" for i in range(len(labels))]
    rows = []
    for i, image in enumerate(images):
        for h in range(2):  # two experts with the same ratings: their mean is the planted human signal
            items = {e.annotation_key: int(human[i, k]) for k, e in enumerate(EMOTIONS)}
            rows.append((image, f"human-{h + 1}", True, repr(items)))
    pd.DataFrame(rows, columns=["image", "annotator", "human", "annotations"]).to_csv(tmp_path / "hq.csv", index=False)
    scores = pd.DataFrame(model, columns=list(EMOTION_KEYS))
    scores.insert(0, "path", [f"/data/{n}" for n in images])
    scores.insert(1, "top1", "anger")
    scores.to_csv(tmp_path / "scores.csv", index=False)
    pd.DataFrame({"image": images, "gender": labels}).to_csv(tmp_path / "meta.csv", index=False)
    out = tmp_path / "out"
    result = run_cli(
        "stats", str(tmp_path / "scores.csv"), "--meta", str(tmp_path / "meta.csv"), "--by", "gender",
        "--hq", str(tmp_path / "hq.csv"), "--out", str(out), "--n-boot", "200", "--n-perm", "999"
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "flagged: Anger" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by"]["gender"] == {"female": 120, "male": 120}
    female = summary["mean_score"]["gender"]["female"]["Anger"]
    assert female["mean"] == pytest.approx(model[labels == "female", 0 + [e.name for e in EMOTIONS].index("Anger")].mean())
    assert female["ci"][0] < female["mean"] < female["ci"][1]
    assert [f["emotion"] for f in summary["flagged"]] == ["Anger"]
    for stem in ("gap_gender", "mean_score_by_gender"):
        assert (out / f"{stem}.png").stat().st_size > 0


def test_malformed_inputs_give_one_line_errors(tmp_path: Path, hq_with_meta) -> None:
    hq_csv, meta_csv, _ = hq_with_meta
    bad_meta = tmp_path / "bad_meta.csv"
    pd.DataFrame({"name": ["x.jpg"], "colour": ["red"]}).to_csv(bad_meta, index=False)
    assert "'image' column" in one_line_error(run_cli("bench", "hq", str(hq_csv), "--meta", str(bad_meta), "--out", str(tmp_path / "o")))
    no_demo = tmp_path / "no_demo.csv"
    pd.DataFrame({"image": ["x.jpg"], "colour": ["red"]}).to_csv(no_demo, index=False)
    assert "no demographic column" in one_line_error(run_cli("bench", "hq", str(hq_csv), "--meta", str(no_demo), "--out", str(tmp_path / "o")))
    other = tmp_path / "other.csv"
    pd.DataFrame({"image": ["x.jpg"], "gender": ["man"]}).to_csv(other, index=False)
    assert "no image matches" in one_line_error(run_cli("bench", "hq", str(hq_csv), "--meta", str(other), "--out", str(tmp_path / "o")))
    assert "unknown factor" in one_line_error(run_cli("bench", "hq", str(hq_csv), "--meta", str(meta_csv), "--by", "race", "--out", str(tmp_path / "o")))
    assert "needs --meta" in one_line_error(run_cli("bench", "hq", str(hq_csv), "--by", "gender", "--out", str(tmp_path / "o")))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    assert "not a readable Parquet" in one_line_error(run_cli("stats", str(broken), "--out", str(tmp_path / "o")))
    assert "not found" in one_line_error(run_cli("stats", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")))
    table = tmp_path / "table.json"
    table.write_text("[1, 2]")
    assert "demographic table" in one_line_error(
        run_cli("stats", str(tmp_path / "nothing"), "--ethnicity-table", str(table), "--out", str(tmp_path / "o"))
    )
    scores = tmp_path / "scores.csv"
    pd.DataFrame({"path": ["a.jpg"], "top1": ["anger"], "anger": [0.1]}).to_csv(scores, index=False)
    assert "--meta" in one_line_error(run_cli("stats", str(scores), "--out", str(tmp_path / "o")))
