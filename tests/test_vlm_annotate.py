"""`emonet-face vlm annotate` end to end against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import types
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from emonet_face import faces
from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS, Emotion, resolve_emotion
from emonet_face.vlm.annotate import read_log
from emonet_face.vlm.prompts import build_prompt
from helpers_cli import emonet_command, run_cli, subprocess_env
from vlm_fakes import FakeVLM, Reply, Seen, answer, make_images, ok, wait_until

KEY = "sk-test-DO-NOT-LEAK-0123456789"


def vlm_cli(args: list[str], key: str | None = KEY):
    """The command with ``OPENAI_API_KEY=key`` (empty for ``None``), exceptions raised as they are."""
    return run_cli(*args, env={"OPENAI_API_KEY": key or ""}, catch_exceptions=False)


def annotate_args(server: FakeVLM, inputs: list[str], out: Path, *extra: str) -> list[str]:
    return [
        "vlm",
        "annotate",
        *inputs,
        "--model",
        "test-model",
        "--base-url",
        server.url,
        "--prompt",
        "zero-shot",
        "--out",
        str(out),
        "--retry-base-delay",
        "0.001",
        "--quiet",
        *extra,
    ]


def image_records(log: Path) -> list[dict]:
    return [r for r in read_log(log) if r.get("type") == "image"]


def mixed_behaviour(seen: Seen) -> Reply:
    """Image i exercises case i; every retry/repair of it then gets a valid answer."""
    index, first = seen.image, seen.previous_for_image == 0
    if index == 0:  # valid JSON, whose reason echoes the Authorization header (must be redacted)
        data = answer(0)
        data["emotions"]["Elation"]["reason"] = f"header was {seen.headers.get('Authorization')}"
        return Reply(content=json.dumps(data))
    if index == 1:  # JSON inside a code fence with prose around it
        return Reply(content="Here you go:\n```json\n" + json.dumps(answer(1), indent=2) + "\n```\nDone.")
    if index == 2 and first:  # missing emotions -> repair
        data = answer(2)
        for name in ("Awe", "Shame", "Pain"):
            del data["emotions"][name]
        return Reply(content=json.dumps(data))
    if index == 3 and first:  # out-of-range rating -> repair
        return Reply(content=json.dumps(answer(3, overrides={"Anger": 9})))
    if index == 4 and first:
        return Reply(status=429, content="rate limited", headers={"Retry-After": "0.2"})
    if index == 5 and first:
        return Reply(status=500, content="internal error")
    if index == 6 and first:
        return Reply(content=json.dumps(answer(6)), delay=5.0)  # past the timeout
    if index == 7:  # never valid -> fails after the repairs
        return Reply(content="I am sorry, I cannot rate emotions.")
    return ok(index)


def test_annotate_handles_every_server_behaviour_and_writes_hq_rows(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 9)
    out = tmp_path / "vlm.csv"
    with FakeVLM(mixed_behaviour) as server:
        result = vlm_cli(annotate_args(server, [str(tmp_path / "imgs")], out, "--concurrency", "3", "--timeout", "1.5"))
    assert result.exit_code == 1, result.output  # one image failed for good
    counts = {i: len(server.requests_for(i)) for i in range(9)}
    assert counts == {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 3, 8: 1}

    # The repair request shows the model its own answer and what was wrong with it.
    repair = server.requests_for(2)[1].body["messages"]
    assert [m["role"] for m in repair] == ["user", "assistant", "user"]
    assert 'missing emotions (3): "Awe", "Shame", "Pain"' in repair[2]["content"]
    assert "outside 0..7" in server.requests_for(3)[1].body["messages"][2]["content"]
    # Retry-After was honoured.
    four = server.requests_for(4)
    assert four[1].time - four[0].time >= 0.18

    frame = pd.read_csv(out)
    assert list(frame.columns) == ["image", "annotator", "human", "annotations"]
    assert sorted(frame["image"]) == [f"img_{i:03d}.png" for i in range(9) if i != 7]
    assert set(frame["annotator"]) == {"test-model ZS"}
    assert frame["human"].tolist() == [False] * 8
    for _, row in frame.iterrows():
        index = int(row["image"][4:7])
        expected = answer(index)
        annotations = ast.literal_eval(row["annotations"])
        assert len(annotations) == 44
        for key, value in annotations.items():
            item = resolve_emotion(key)
            assert key == item.annotation_key
            table = expected["emotions"] if isinstance(item, Emotion) else expected["extra_dimensions"]
            assert value == table[item.name]["rating"]

    records = image_records(tmp_path / "vlm.log.jsonl")
    failed = [r for r in records if r["status"] == "error"]
    assert [r["image"] for r in failed] == ["img_007.png"]
    assert len(failed[0]["attempts"]) == 3 and "invalid answer after 3 attempts" in failed[0]["error"]
    good = {r["image"]: r for r in records if r["status"] == "ok"}
    assert good["img_002.png"]["attempts"][0]["error"].startswith("missing emotions")
    assert good["img_004.png"]["attempts"][0]["http_attempts"] == 2
    assert good["img_006.png"]["attempts"][0]["http_attempts"] == 2
    assert good["img_000.png"]["usage"] == {"prompt_tokens": 1000, "completion_tokens": 400, "total_tokens": 1400}
    assert good["img_002.png"]["usage"]["prompt_tokens"] == 2000
    assert good["img_001.png"]["ratings"]["Elation"] == answer(1)["emotions"]["Elation"]["rating"]
    assert good["img_001.png"]["reasons"]["Elation"] == "because 0"
    assert all(r["prompt_sha256"] == build_prompt("zero-shot").sha256 for r in records)
    run = next(r for r in read_log(tmp_path / "vlm.log.jsonl") if r["type"] == "run")
    assert run["prompt_text"] == build_prompt("zero-shot").text
    summary = [r for r in read_log(tmp_path / "vlm.log.jsonl") if r["type"] == "summary"][-1]
    assert (summary["annotated"], summary["failed"], summary["skipped"]) == (8, 1, 0)
    assert summary["nonzero_counts"] == {"3": 8}
    assert "failed 1" in result.output and "non-zero emotions per annotation" in result.output

    # The API key never reaches a file or the terminal (the server even echoed it back).
    assert "[REDACTED]" in good["img_000.png"]["reasons"]["Elation"]
    for path in tmp_path.iterdir():
        if path.is_file():
            assert KEY not in path.read_text(encoding="utf-8"), path
    assert KEY not in result.output
    assert server.seen[0].headers["Authorization"] == f"Bearer {KEY}"  # it was sent, only to the server


def test_output_joins_human_rows_in_the_hq_layout(tmp_path: Path) -> None:
    """What `bench hq` reads: our rows concatenated with human rows parse the same way."""
    make_images(tmp_path / "imgs", 3)
    out = tmp_path / "vlm.csv"
    with FakeVLM(lambda seen: ok(seen.image, nonzero=2)) as server:
        assert vlm_cli(annotate_args(server, [str(tmp_path / "imgs")], out, "--name", "My VLM")).exit_code == 0
    humans = pd.DataFrame(
        {
            "image": [f"img_{i:03d}.png" for i in range(3)],
            "annotator": ["expert-1"] * 3,
            "human": [True] * 3,
            "annotations": [repr({EMOTIONS[0].annotation_key: 5, EMOTIONS[1].annotation_key: 2})] * 3,
        }
    )
    both = tmp_path / "hq.csv"
    pd.concat([humans, pd.read_csv(out)]).to_csv(both, index=False)
    table = pd.read_csv(both)
    assert table["human"].tolist() == [True] * 3 + [False] * 3
    assert set(table["annotator"]) == {"expert-1", "My VLM"}
    parsed = table["annotations"].map(ast.literal_eval)
    for values in parsed:
        assert all(isinstance(v, int) and resolve_emotion(k).annotation_key == k for k, v in values.items())
    model_rows = parsed[~table["human"]]
    for values in model_rows:
        assert {k for k in values if k.startswith("Extra Dimensions|")} == {d.annotation_key for d in EXTRA_DIMENSIONS}
        assert sum(1 for e in EMOTIONS if values[e.annotation_key] != 0) == 2


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_limits_requests_in_flight(tmp_path: Path, concurrency: int) -> None:
    make_images(tmp_path / "imgs", 6)
    with FakeVLM(lambda seen: Reply(content=json.dumps(answer(seen.image)), delay=0.3)) as server:
        result = vlm_cli(
            annotate_args(server, [str(tmp_path / "imgs")], tmp_path / "o.csv", "--concurrency", str(concurrency))
        )
    assert result.exit_code == 0, result.output
    assert len(server.seen) == 6
    assert server.max_in_flight == concurrency


def test_resume_after_kill_sends_no_duplicate_requests(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 8)
    out, log = tmp_path / "vlm.csv", tmp_path / "vlm.log.jsonl"
    state = {"block_after": 3}

    def behaviour(seen: Seen) -> Reply:
        if state["block_after"] is not None and seen.number >= state["block_after"]:
            return Reply(content=json.dumps(answer(seen.image)), delay=60)  # hangs until the kill
        return ok(seen.image)

    with FakeVLM(behaviour) as server:
        args = annotate_args(server, [str(tmp_path / "imgs")], out, "--concurrency", "1")
        env = subprocess_env(OPENAI_API_KEY=KEY)
        proc = subprocess.Popen(emonet_command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_until(lambda: len(server.seen) >= 4 and len(image_records(log)) >= 3, timeout=60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        done_first = {r["image"] for r in image_records(log) if r["status"] == "ok"}
        assert len(done_first) == 3
        first_run = len(server.seen)

        state["block_after"] = None
        result = vlm_cli(args)
        assert result.exit_code == 0, result.output
        second = server.seen[first_run:]
        asked_again = {f"img_{s.image:03d}.png" for s in second}
        assert len(second) == 5 and not asked_again & done_first
        assert "skipped 3 already done" in result.output

        again = vlm_cli(args)  # a third run has nothing left to do
        assert again.exit_code == 0 and len(server.seen) == first_run + 5
        assert "skipped 8 already done" in again.output

        # Another prompt means another hash: nothing is skipped for it.
        before = len(server.seen)
        other = vlm_cli([("multi-shot" if a == "zero-shot" else a) for a in args])
        assert other.exit_code == 0 and len(server.seen) == before + 8

    frame = pd.read_csv(out)
    assert len(frame) == 16 and not frame.duplicated(["image", "annotator"]).any()
    assert sorted(frame["annotator"].unique()) == ["test-model MS", "test-model ZS"]
    assert KEY not in out.read_text() + log.read_text()


def test_torn_log_line_from_a_kill_is_survived(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 2)
    out, log = tmp_path / "vlm.csv", tmp_path / "vlm.log.jsonl"
    with FakeVLM(lambda seen: ok(seen.image)) as server:
        args = annotate_args(server, [str(tmp_path / "imgs" / "img_000.png")], out)
        assert vlm_cli(args).exit_code == 0
        with log.open("a") as handle:
            handle.write('{"type": "image", "status": "ok", "ima')  # killed mid-write
        with out.open("a") as handle:
            handle.write("img_9")
        args = annotate_args(server, [str(tmp_path / "imgs")], out)
        assert vlm_cli(args).exit_code == 0
    assert len(server.seen) == 2
    assert sorted(pd.read_csv(out)["image"]) == ["img_000.png", "img_001.png"]
    assert len(image_records(log)) == 2


def test_fatal_endpoint_error_stops_the_run(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 5)
    with FakeVLM(lambda seen: Reply(status=401, content="invalid api key")) as server:
        result = vlm_cli(annotate_args(server, [str(tmp_path / "imgs")], tmp_path / "o.csv", "--concurrency", "1"))
    assert result.exit_code == 2
    assert "error:" in result.output and "HTTP 401" in result.output
    assert len(server.seen) == 1
    assert pd.read_csv(tmp_path / "o.csv").empty


def test_bad_image_gets_a_log_row_and_the_batch_goes_on(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "imgs" / "clip.mp4").write_bytes(b"\x00" * 64)  # folders give images only: videos are skipped
    with FakeVLM(lambda seen: ok(seen.image)) as server:
        result = vlm_cli(annotate_args(server, [str(tmp_path / "imgs")], tmp_path / "o.csv"))
    assert result.exit_code == 1
    assert len(server.seen) == 2
    (bad,) = [r for r in image_records(tmp_path / "o.log.jsonl") if r["status"] == "error"]
    assert bad["image"] == "broken.png" and "not a readable image" in bad["error"]
    assert len(pd.read_csv(tmp_path / "o.csv")) == 2


def test_input_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    make_images(tmp_path / "a", 1)
    make_images(tmp_path / "b", 1)
    with FakeVLM(lambda seen: ok(0)) as server:
        dup = vlm_cli(annotate_args(server, [str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "o.csv"))
        missing = vlm_cli(annotate_args(server, [str(tmp_path / "nope")], tmp_path / "o.csv"))
    assert dup.exit_code == 2 and "share the file name 'img_000.png'" in dup.output
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
    assert server.seen == []
    no_url = vlm_cli(["vlm", "annotate", str(tmp_path / "a"), "--model", "m", "--out", str(tmp_path / "x.csv")])
    assert no_url.exit_code == 2 and "--base-url is required" in no_url.output


def test_faces_crops_are_annotated_one_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plumbing only, with a stand-in cropper: each face is its own request and row, and resumable."""
    make_images(tmp_path / "imgs", 2)
    calls: list[str] = []

    def face_regions(image: Image.Image, detector: object, mode: str, **crop: object) -> list[types.SimpleNamespace]:
        calls.append(mode)
        red = image.getpixel((0, 0))[0]
        count = 1 if red == 0 else 2
        return [types.SimpleNamespace(image=image.copy(), ids={"face": i}) for i in range(count)]

    monkeypatch.setattr(faces, "get_detector", lambda spec=None, **options: "stub-detector")
    monkeypatch.setattr(faces, "face_regions", face_regions)
    with FakeVLM(lambda seen: ok(seen.image)) as server:
        args = annotate_args(server, [str(tmp_path / "imgs")], tmp_path / "o.csv", "--faces", "auto")
        assert vlm_cli(args).exit_code == 0
        assert vlm_cli(args).exit_code == 0  # resumed: no new requests
    assert calls == ["auto"] * 4 and len(server.seen) == 3
    assert sorted(pd.read_csv(tmp_path / "o.csv")["image"]) == ["img_000.png", "img_001.png#face0", "img_001.png#face1"]


def test_without_a_key_no_authorization_header_is_sent(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 1)
    with FakeVLM(lambda seen: ok(0)) as server:
        result = vlm_cli(annotate_args(server, [str(tmp_path / "imgs")], tmp_path / "o.csv"), key=None)
    assert result.exit_code == 0 and "OPENAI_API_KEY is not set" in result.output
    assert "Authorization" not in server.seen[0].headers


def test_multi_shot_enforces_top5_with_a_repair(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 1)

    def behaviour(seen: Seen) -> Reply:
        return ok(0, nonzero=25) if seen.previous_for_image == 0 else ok(0, nonzero=5)

    with FakeVLM(behaviour) as server:
        args = annotate_args(server, [str(tmp_path / "imgs")], tmp_path / "o.csv")
        args[args.index("zero-shot")] = "multi-shot"
        result = vlm_cli(args)
    assert result.exit_code == 0, result.output
    assert len(server.seen) == 2
    assert "25 emotions are non-zero but at most 5" in server.seen[1].body["messages"][2]["content"]
    assert pd.read_csv(tmp_path / "o.csv")["annotator"].tolist() == ["test-model MS"]


def test_faces_through_face_regions_logs_the_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The faces module's ``face_regions(image, detector, mode)`` shape, with a stand-in detector."""
    make_images(tmp_path / "imgs", 2)

    def face_regions(image: Image.Image, detector: object, mode: str, **crop: object) -> list[types.SimpleNamespace]:
        assert detector == "stub-detector" and mode == "detect"
        if image.getpixel((0, 0))[0] == 0:  # img_000: no face -> a row without a crop
            return [types.SimpleNamespace(image=None, ids={"face": None})]
        box = {"face": 0, "box_x": 1.0, "box_y": 2.0, "box_w": 10.0, "box_h": 12.0, "det_score": 0.9}
        return [types.SimpleNamespace(image=image.crop((1, 2, 11, 14)), ids=box)]

    monkeypatch.setattr(faces, "get_detector", lambda spec=None, **options: "stub-detector")
    monkeypatch.setattr(faces, "face_regions", face_regions)
    with FakeVLM(lambda seen: ok(1)) as server:
        result = vlm_cli(annotate_args(server, [str(tmp_path / "imgs")], tmp_path / "o.csv", "--faces", "detect"))
    assert result.exit_code == 1 and len(server.seen) == 1
    records = {r["image"]: r for r in image_records(tmp_path / "o.log.jsonl")}
    assert records["img_000.png"]["error"].endswith("no face found")
    assert records["img_001.png"]["region"] == {
        "box_x": 1.0,
        "box_y": 2.0,
        "box_w": 10.0,
        "box_h": 12.0,
        "det_score": 0.9,
    }
    assert pd.read_csv(tmp_path / "o.csv")["image"].tolist() == ["img_001.png"]


def test_bench_hq_reads_vlm_output_with_human_rows(tmp_path: Path) -> None:
    """The VLM annotator file joins real-layout human rows and goes through `bench hq` as one more annotator."""
    import numpy as np

    n_images = 8
    make_images(tmp_path / "imgs", n_images)
    out = tmp_path / "vlm.csv"
    with FakeVLM(lambda seen: ok(seen.image, nonzero=3)) as server:
        assert vlm_cli(annotate_args(server, [str(tmp_path / "imgs")], out, "--name", "My VLM")).exit_code == 0
    rng = np.random.default_rng(0)
    human_rows = [
        {
            "image": f"img_{i:03d}.png",
            "annotator": f"expert-{j}",
            "human": True,
            "annotations": repr({e.annotation_key: int(rng.integers(0, 8)) for e in EMOTIONS}),
        }
        for i in range(n_images)
        for j in range(3)
    ]
    both = tmp_path / "hq.csv"
    pd.concat([pd.DataFrame(human_rows), pd.read_csv(out)]).to_csv(both, index=False)
    result = vlm_cli(["bench", "hq", str(both), "--out", str(tmp_path / "bench"), "--no-figures", "--n-boot", "20"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert set(summary["kappa_mean"]) == {"expert-0", "expert-1", "expert-2", "My VLM"}
    assert set(summary["kappa_per_emotion"]["My VLM"]) == {e.name for e in EMOTIONS}
