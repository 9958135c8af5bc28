"""`emonet-face vlm cost` and `annotate --dry-run`: request and token estimates, resume-aware."""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image

from emonet_face.vlm.cost import estimate_cost, image_tokens, text_tokens
from emonet_face.vlm.prompts import build_prompt
from helpers_cli import run_cli
from vlm_fakes import FakeVLM, make_images, ok


def test_image_tokens_match_openais_documented_examples() -> None:
    assert image_tokens(1024, 1024) == 765  # OpenAI vision docs: 1024x1024 high detail
    assert image_tokens(2048, 4096) == 1105  # OpenAI vision docs: 2048x4096 high detail
    assert image_tokens(512, 512) == 255  # one tile: 85 + 170
    assert image_tokens(300, 200) == image_tokens(200, 300)


def test_estimate_counts_requests_and_bounds_tokens(tmp_path: Path) -> None:
    for index, size in enumerate([(1024, 1024), (512, 512), (2048, 4096)]):
        Image.new("RGB", size, (index, 0, 0)).save(tmp_path / f"i{index}.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    prompt = build_prompt("zero-shot")
    est = estimate_cost([str(tmp_path)], prompt, max_tokens=1000, repair_attempts=2)
    assert (est.images, est.unreadable, est.skipped) == (3, 1, 0)
    assert (est.requests_min, est.requests_max) == (3, 9)
    assert est.image_tokens_total == 765 + 255 + 1105
    assert est.prompt_tokens_per_request == math.ceil(len(prompt.text) / 4) + 10
    assert est.input_tokens_min == 3 * est.prompt_tokens_per_request + est.image_tokens_total
    assert est.input_tokens_max > 3 * est.input_tokens_min
    assert est.output_tokens_max == 9 * 1000
    assert 0 < est.output_tokens_typical < est.output_tokens_max
    priced = estimate_cost(
        [str(tmp_path)], prompt, max_tokens=1000, price_input_per_million=2.5, price_output_per_million=10
    )
    assert priced.cost_min_usd == (priced.input_tokens_min * 2.5 + priced.output_tokens_typical * 10) / 1e6
    assert priced.cost_min_usd < priced.cost_max_usd
    no_repairs = estimate_cost([str(tmp_path)], prompt, repair_attempts=0, max_tokens=1000)
    assert no_repairs.requests_max == 3 and no_repairs.input_tokens_max == no_repairs.input_tokens_min
    assert text_tokens("abcd" * 10) == 10


def test_multi_shot_prompt_costs_more_input(tmp_path: Path) -> None:
    make_images(tmp_path, 2)
    zs = estimate_cost([str(tmp_path)], build_prompt("zero-shot"))
    ms = estimate_cost([str(tmp_path)], build_prompt("multi-shot"))
    assert ms.prompt_tokens_per_request > zs.prompt_tokens_per_request


def test_cost_cli_and_dry_run_skip_what_is_done(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 4)
    out = tmp_path / "o.csv"
    cost = run_cli("vlm", "cost", str(tmp_path / "imgs"), "--json")
    assert cost.exit_code == 0, cost.output
    assert json.loads(cost.stdout)["requests_min"] == 4
    with FakeVLM(lambda seen: ok(seen.image)) as server:
        common = ["--model", "m", "--base-url", server.url, "--out", str(out), "--quiet"]
        first = run_cli("vlm", "annotate", str(tmp_path / "imgs" / "img_000.png"), *common)
        assert first.exit_code == 0, first.output
        dry = run_cli("vlm", "annotate", str(tmp_path / "imgs"), *common, "--dry-run")
        assert len(server.seen) == 1  # the dry run sent nothing
    assert dry.exit_code == 0 and "images to send: 3 (skipped 1 already done" in dry.stdout
    left = run_cli("vlm", "cost", str(tmp_path / "imgs"), "--model", "m", "--out", str(out), "--json")
    assert json.loads(left.stdout)["skipped"] == 1
    priced = run_cli("vlm", "cost", str(tmp_path / "imgs"), "--price-input", "2.5", "--price-output", "10")
    assert priced.exit_code == 0 and "cost: about $" in priced.stdout
