"""Live scoring without a server: the newest-frame-wins mailbox, :func:`live_tables` on a paced
source, and the ``emonet-face live`` command on clips made from a real portrait (a file played at
its own speed, a stream URL on loopback, Ctrl-C in a real process, bad sources)."""

from __future__ import annotations

import functools
import http.server
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import face_video
from emonet_face.live import Frame, FrameScorer, LiveStats, NewestFrame, encode_and_score, live_tables, open_source
from emonet_face.outputs import read_table
from helpers_cli import emonet_command, run_cli, subprocess_env

pytestmark = pytest.mark.usefixtures("one_thread")


def portrait_clip(path: Path, astronaut: Image.Image, *, seconds: float, rate: int) -> Path:
    """The astronaut's head (a real portrait) moving right across a grey 480×240 background; it
    crosses the frame once whatever the length, so a long clip moves slowly."""
    return face_video(path, astronaut, seconds=seconds, rate=rate, x=lambda i, n: int(270 * i / max(1, n - 1)))


@pytest.fixture(scope="module")
def fast_clip(tmp_path_factory, astronaut) -> Path:
    """2 s at 200 frames per second: faster than the tiny model scores, so frames must be skipped."""
    return portrait_clip(tmp_path_factory.mktemp("live") / "fast.mp4", astronaut, seconds=2, rate=200)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, astronaut) -> Path:
    return portrait_clip(tmp_path_factory.mktemp("live") / "long.mp4", astronaut, seconds=30, rate=10)


# --- the library ----------------------------------------------------------------------------------
def test_newest_frame_mailbox_keeps_only_the_newest():
    box = NewestFrame()
    for i in range(5):
        box.put(Frame(i, i / 10, None))
    assert box.take(0).index == 4 and (box.received, box.skipped) == (5, 4)
    assert box.take(0.01) is None  # empty: waits, then nothing
    box.put(Frame(5, 0.5, None))
    box.close()
    assert box.take().index == 5  # closed: what was waiting is still handed out…
    assert box.take() is None  # …then nothing, without waiting


def test_live_tables_skip_what_cannot_be_scored_in_time(net):
    from skimage import data

    picture = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))

    def camera(n: int, interval: float):
        for i in range(n):
            time.sleep(interval)
            yield Frame(i, i * interval, picture)

    def slow(items):
        time.sleep(0.1)  # scoring takes 100 ms, frames come every 10 ms
        return encode_and_score(net, items)

    stats = LiveStats()
    tables = list(live_tables(camera(60, 0.01), FrameScorer(net), stats=stats, encode=slow))
    frames = [int(t["frame"].iloc[0]) for t in tables]
    assert frames == sorted(set(frames)) and frames[-1] == 59  # in order, the last frame scored
    assert len(frames) < 20 and stats.skipped == 60 - len(frames) and stats.received == 60
    assert all(t["track"].tolist() == [0] for t in tables)  # one person, one track
    assert max(stats.latencies) < 1.0  # never queued behind old frames (bounded by ~2 scoring times)


def test_live_tables_fps_bounds_the_rate_and_stop_ends_the_run(net):
    picture = np.zeros((64, 64, 3), np.uint8)
    stop = threading.Event()

    def endless():
        i = 0
        while True:
            time.sleep(0.005)
            yield Frame(i, i * 0.005, picture)
            i += 1

    scorer = FrameScorer(net, faces="none")
    start = time.monotonic()
    tables = []
    for table in live_tables(endless(), scorer, stop=stop, fps=5):
        tables.append(table)
        if len(tables) == 4:
            stop.set()
    elapsed = time.monotonic() - start
    assert len(tables) == 4 and elapsed >= 3 / 5 - 0.05  # 4 frames at most 5 per second: ≥ 0.6 s
    assert "track" not in tables[0].columns and "face" not in tables[0].columns  # faces=none: whole frames
    with pytest.raises(Exception, match="--fps"):
        next(live_tables(endless(), scorer, fps=0))


def test_every_frame_read_is_scored_or_skipped_when_the_run_stops(net):
    picture = np.zeros((64, 64, 3), np.uint8)
    stop = threading.Event()

    def endless():  # frames faster than the model: one is always waiting when the run stops
        i = 0
        while True:
            time.sleep(0.002)
            yield Frame(i, i * 0.002, picture)
            i += 1

    def slow(items):
        time.sleep(0.05)  # scoring takes 50 ms, frames come every 2 ms
        return encode_and_score(net, items)

    stats = LiveStats()
    tables = live_tables(endless(), FrameScorer(net, faces="none"), stop=stop, stats=stats, encode=slow)
    for n, _ in enumerate(tables, 1):
        if n == 3:
            stop.set()
    assert stats.scored == 3 and stats.received > 3
    assert stats.scored + stats.skipped == stats.received, stats  # the frame left waiting counts as skipped


def test_the_terminal_table_fits_120_columns_with_whole_headers_and_display_names():
    from rich.console import Console

    from emonet_face import taxonomy as tx
    from emonet_face.live.board import LiveBoard

    longest = max(tx.EMOTIONS, key=lambda e: len(e.name))  # "Intoxication/Altered States of Consciousness"
    row = {"frame": 47, "time": 4.7, "face": 0, "track": 0, "top1": "jealousy_&_envy", "top2": longest.key,
           "top3": "contentment", "prob.jealousy_&_envy": 0.35, f"prob.{longest.key}": 0.2, "prob.contentment": 0.1,
           **{f"raw.{d.key}": 0.5 for d in tx.EXTRA_DIMENSIONS}}  # fmt: skip
    board = LiveBoard(tuple(tx.HEAD_KEYS))
    board.add(pd.DataFrame([row, {**row, "track": 1}]))
    stats = LiveStats(received=48, scored=25, skipped=23)
    console = Console(width=120, record=True, color_system=None)
    console.print(board.render(stats))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "…" not in text, text  # nothing cut
    for header in ("track", "time", "frames", "top emotions", "Arousal", "Valence", "Dominance", "Vulnerability"):
        assert header in text, (header, text)
    assert "Emotional" in text and " 35% Jealousy & Envy" in text and "jealousy_&_envy" not in text, text
    words = " ".join(text.replace("│", " ").split())  # a long name may wrap onto a second line, never cut
    assert all(word in words for word in longest.name.split()), text
    assert "25 scored" in text and "23 skipped" in text


def test_open_source_refuses_clearly(tmp_path):
    from emonet_face.errors import InputError

    with pytest.raises(InputError, match=r"nothing\.mp4: no such file"):
        open_source(tmp_path / "nothing.mp4")
    with pytest.raises(InputError, match=r"camera 57: could not be opened"):
        open_source("57")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(InputError, match=r"notes\.mp4: not a readable video"):
        open_source(tmp_path / "notes.mp4")


# --- the command -----------------------------------------------------------------------------------
def test_a_file_plays_at_its_own_speed_and_skips_frames(fast_clip, model_args, tmp_path):
    out = tmp_path / "rows.csv"
    start = time.monotonic()
    result = run_cli("live", fast_clip, "--out", out, *model_args)
    elapsed = time.monotonic() - start
    assert result.exit_code == 0, result.output
    assert elapsed >= 2.0  # played at its own speed (2 s), not decoded as fast as possible
    table = read_table(out)
    assert list(table.columns[:4]) == ["path", "frame", "time", "face"]
    assert "track" in table.columns and table.columns.get_loc("track") == table.columns.get_loc("top1") - 1
    frames = table["frame"].tolist()
    assert frames == sorted(set(frames)) and frames[-1] == 399  # increasing; the last frame is scored
    assert 1 < len(frames) < 400  # 200 fps is faster than the tiny model: frames were skipped
    assert np.allclose(table["time"], table["frame"] / 200, atol=0.006)  # the video's own times
    assert table["face"].eq(0).all() and table["track"].eq(0).all()  # one person, one track
    assert table["error"].isna().all() and (table["path"] == str(fast_clip)).all()
    summary = result.stderr.strip().splitlines()[-1]
    assert f"scored {len(frames)} frame(s)" in summary and f"skipped {400 - len(frames)} of 400" in summary


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_other_formats_and_max_seconds(long_clip, model_args, tmp_path, suffix):
    out = tmp_path / f"rows{suffix}"
    result = run_cli("live", long_clip, "--out", out, "--max-seconds", "1.5", "--quiet", *model_args)
    assert result.exit_code == 0, result.output
    table = read_table(out)
    assert len(table) >= 3 and table["time"].max() <= 2.0  # stopped after 1.5 s of a 30-s clip
    assert {"path", "frame", "time", "track", "top1"} <= set(table.columns)
    assert table["track"].eq(0).all()
    assert not Path(f"{out}.parts").exists()  # Parquet finalised


def test_a_stream_url(fast_clip, model_args, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(fast_clip.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{fast_clip.name}"
    try:
        result = run_cli("live", url, "--out", tmp_path / "url.csv", "--max-seconds", "60", *model_args)
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    table = read_table(tmp_path / "url.csv")
    assert len(table) >= 1 and (table["path"] == url).all()
    assert table["frame"].is_monotonic_increasing and table["time"].is_monotonic_increasing
    assert table["track"].eq(0).all()


def test_bad_sources_and_options_fail_in_one_line(model_args, tmp_path):
    for args, words in [
        (["nothing.mp4"], ["nothing.mp4: no such file"]),
        (["57"], ["camera 57: could not be opened"]),
        ([str(tmp_path), "--out", "x.csv"], ["is a folder"]),
        (["0", "--faces", "sideways"], ["--faces sideways"]),
        (["0", "--out", "rows.txt"], ["rows.txt", "unknown output format"]),
    ]:
        result = run_cli("live", *args, *model_args)
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        for word in words:
            assert word in result.stderr, result.stderr


def test_ctrl_c_ends_cleanly_and_keeps_every_scored_row(long_clip, model_args, tmp_path):
    out = tmp_path / "rows.parquet"  # the hardest case: rows are buffered, the file is finalised at the end
    command = emonet_command("live", long_clip, "--out", out, *model_args)
    env = subprocess_env(OMP_NUM_THREADS="1")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        parts = Path(f"{out}.parts")
        while not (parts.is_dir() and any(parts.glob("part-*.parquet"))):  # rows are being written
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    table = pd.read_parquet(out)
    summary = stderr.strip().splitlines()[-1]
    assert f"scored {len(table)} frame(s) ({len(table)} row(s))" in summary, summary  # not one scored row lost
    assert table["time"].max() < 25  # stopped early, not at the end of the 30-s clip
    assert not Path(f"{out}.parts").exists()
