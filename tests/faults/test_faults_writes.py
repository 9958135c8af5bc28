"""Faults of the disk and of other runs, injected for real (issue 26): a small tmpfs that fills up
(disk full), a read-only one, a second process holding the output, a lock left by a dead process.

Each test checks what the user sees (one ``error:`` line naming the output and the cause, no
traceback, the exit status) and the rows themselves: those written before the fault are readable,
and ``--resume`` ends with every input exactly once and no missing score. Mounting needs root (as
in CI); elsewhere the tmpfs tests skip and say so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emonet_face.outputs import read_table
from emonet_face.runfolder import lock_path
from helpers_cli import one_line_error, run_cli, subprocess_env

PICTURES = 96
"""Enough tiny pictures to fill the small disk: a batch of 16 rows is ~40 KB of CSV, a Parquet part ~90 KB."""

pytestmark = pytest.mark.usefixtures("one_thread")


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fault-pictures")
    rng = np.random.default_rng(26)
    for i in range(PICTURES):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f"p{i:03d}.png")
    return folder


def _mount(target: Path, options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)


def _remount(target: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 160 KB tmpfs, unmounted at the end whatever happens."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that fills up) needs root; CI runs as root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = _mount(disk, "size=160k")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); CI runs as root with mount allowed")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def _score_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if str(c).startswith(("raw.", "prob."))]


def assert_every_input_once(table: pd.DataFrame, count: int) -> None:
    """``count`` rows, one per picture, every one scored (no NaN where a score belongs, no error)."""
    assert len(table) == count and table["path"].nunique() == count, table["path"].value_counts().head()
    scores = table[_score_columns(table)]
    assert scores.shape[1] > 80 and not scores.isna().any().any()
    assert table["error"].isna().all()


def assert_disk_full(result, out: Path) -> None:
    line = one_line_error(result)  # exit 2, one error line, no traceback
    assert str(out) in line and "disk full" in line and "--resume" in line, line


# --- disk full --------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_on_a_full_disk_names_the_file_keeps_the_rows_and_resumes(small_disk, pictures, model_args, suffix):
    out = small_disk / f"scores{suffix}"
    args = ["predict", pictures, *model_args, "--faces", "none", "--out", out, "--quiet"]
    assert_disk_full(run_cli(*args), out)
    assert not lock_path(out).exists()  # released on the error path
    kept = pd.read_csv(out) if suffix == ".csv" else read_table(out)
    assert 0 < len(kept) < PICTURES
    assert_every_input_once(kept, len(kept))  # whole rows only: the batch that failed was taken back

    _remount(small_disk, "size=64m")
    result = run_cli(*args, "--resume")
    assert result.exit_code == 0, result.output
    final = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert_every_input_once(final, PICTURES)


def test_embed_on_a_full_disk_names_the_store_and_resumes(small_disk, pictures, tiny_encoder_dir):
    store = small_disk / "store"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 100_000)  # leaves room for a few shards of 8 embeddings, not for all 12
    args = ["embed", pictures, "--out", store, "--encoder", tiny_encoder_dir, "--device", "cpu", "--no-progress"]
    args += ["--num-workers", "0", "--batch-size", "8", "--shard-size", "8"]
    result = run_cli(*args)
    line = one_line_error(result)
    assert str(store) in line and "disk full" in line, line
    assert not lock_path(store).exists()

    from emonet_face.data.store import read_store

    kept, ids = read_store(store)  # the finished shards stay readable
    assert 0 < len(kept) < PICTURES and ids["id"].is_unique

    filler.unlink()
    result = run_cli(*args, "--resume")
    assert result.exit_code == 0, result.output
    embeddings, ids = read_store(store)
    assert len(embeddings) == PICTURES and ids["id"].nunique() == PICTURES and np.isfinite(embeddings).all()


def test_download_on_a_full_disk_leaves_no_half_bundle(small_disk, tiny_encoder_dir, tiny_heads_dir):
    (small_disk / "filler").write_bytes(b"\0" * 120_000)
    bundle = small_disk / "bundle"
    result = run_cli("download", "--out", bundle, "--encoder", tiny_encoder_dir, "--heads", tiny_heads_dir)
    line = one_line_error(result)
    assert str(bundle) in line and "disk full" in line and "nothing half-written" in line, line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no bundle, no temporary, no lock


def test_a_read_only_disk_is_said_plainly(small_disk, pictures, model_args):
    _remount(small_disk, "ro")
    out = small_disk / "scores.csv"
    line = one_line_error(run_cli("predict", pictures, *model_args, "--faces", "none", "--out", out, "--quiet"))
    assert str(out) in line and "read-only file system" in line, line


# --- one writer per output ------------------------------------------------------------------------
HOLDER = """
import contextlib, sys
from emonet_face.runfolder import claim_output
with contextlib.ExitStack() as claims:
    for path in sys.argv[1:]:
        claims.enter_context(claim_output(path))
    print("held", flush=True)
    sys.stdin.read()
"""
"""A run holding outputs through the library (as ``predict``/``embed``/``download`` do while they write)."""


def test_a_second_run_on_an_output_in_use_is_refused_at_once(tmp_path, pictures, model_args, tiny_encoder_dir, tiny_heads_dir):
    """Another process holds a score table, a store, a Ray folder and a bundle; each command on them
    is refused with the holder's pid and host, touching nothing; SIGTERM still releases the locks."""
    outputs = {name: tmp_path / name for name in ("scores.parquet", "store", "ray-out", "bundle")}
    (tmp_path / "scores.parquet.parts").mkdir()
    sentinel = tmp_path / "scores.parquet.parts" / "part-000000.parquet"
    sentinel.write_bytes(b"the other run's rows")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *map(str, outputs.values())],
        env=subprocess_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        whole = [*model_args, "--faces", "none"]
        commands = {
            "scores.parquet": ["predict", pictures, *whole, "--out", outputs["scores.parquet"]],
            "store": ["embed", pictures, "--out", outputs["store"], "--encoder", tiny_encoder_dir, "--no-progress"],
            "ray-out": ["predict", pictures, *whole, "--engine", "ray", "--out", outputs["ray-out"]],
            "bundle": ["download", "--out", outputs["bundle"], "--encoder", tiny_encoder_dir, "--heads", tiny_heads_dir],
        }
        for name, command in commands.items():
            line = one_line_error(run_cli(*command))
            expected = f"{outputs[name]}: is being written by another run (pid {holder.pid} on host "
            assert expected in line and "wait for it or use another --out" in line, line
        assert sentinel.read_bytes() == b"the other run's rows"  # the refused run touched nothing
        assert not outputs["store"].exists() and not outputs["bundle"].exists()
        recorded = json.loads(lock_path(outputs["store"]).read_text())
        assert recorded["pid"] == holder.pid and recorded["started"] and recorded["host"]

        holder.send_signal(signal.SIGTERM)  # ends the holder as Ctrl-C does: every lock released
        holder.wait(timeout=60)
        assert not any(lock_path(path).exists() for path in outputs.values())
    finally:
        holder.kill()
        holder.wait()
    sentinel.unlink()
    for again in ([], ["--resume"]):  # free now; then --resume of one's own finished run
        result = run_cli(*commands["scores.parquet"], "--quiet", *again)
        assert result.exit_code == 0, result.output
        assert_every_input_once(pd.read_parquet(outputs["scores.parquet"]), PICTURES)


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, pictures, model_args):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "scores.csv"
    lock = lock_path(out)
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.warns(UserWarning, match="taking over the lock") as warned:  # the CLI prints it as one line
        result = run_cli("predict", pictures, *model_args, "--faces", "none", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    taken = [str(w.message) for w in warned if "taking over the lock" in str(w.message)]
    assert len(taken) == 1 and f"pid {dead.pid}" in taken[0] and taken[0].startswith(f"{out}: "), taken
    assert not lock.exists()
    assert_every_input_once(pd.read_csv(out), PICTURES)
