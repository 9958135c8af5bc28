"""The command in tests: :func:`run_cli` in this process (typer's CliRunner); :func:`emonet_command`,
:func:`run_process` and :func:`subprocess_env` for a fresh process, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
"""This checkout's package, first on a fresh process's PYTHONPATH."""


def run_cli(*args: object, **invoke):
    """``emonet-face ARGS`` through typer's CliRunner, each argument as a string. The result keeps
    stderr apart: ``result.stdout``, ``result.stderr``, and ``result.output`` with both as printed
    (Click 8.2 and later; there is no ``mix_stderr`` any more). ``invoke`` goes to ``CliRunner.invoke``
    (``env``, ``catch_exceptions``, ``terminal_width``…)."""
    from typer.testing import CliRunner

    from emonet_face.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], **invoke)


def one_line_error(result) -> str:
    """The one ``error:`` line of a run refused with exit status 2 (no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh process started by a test: this one's (the suite's settings from
    conftest.py included), this checkout's ``src`` first on PYTHONPATH (then what PYTHONPATH held),
    no Hub access (``HF_HUB_OFFLINE=1``), then ``extra``, which wins (a test with a local Hub passes
    ``HF_HUB_OFFLINE="0"``, one that checks another tree its own PYTHONPATH)."""
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SRC)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *kept]), "HF_HUB_OFFLINE": "1", **extra}


def emonet_command(*args: object) -> list[str]:
    """``emonet-face ARGS`` as a command line for this interpreter (``python -m emonet_face``)."""
    return [sys.executable, "-m", "emonet_face", *map(str, args)]


def run_process(*args: object, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``emonet-face ARGS`` in a fresh process configured by its environment (``subprocess_env(**env)``);
    text output captured."""
    command = emonet_command(*args)
    return subprocess.run(command, env=subprocess_env(**(env or {})), capture_output=True, text=True, timeout=timeout)


def kill_when(ready: Callable[[], bool], *args: object, interval: float = 0.05, timeout: float = 180) -> None:
    """``emonet-face ARGS`` in a fresh process (``subprocess_env()``, output discarded), killed with
    SIGKILL, as a crash would, once ``ready()`` is true (checked every ``interval`` s), once it has
    ended, or after ``timeout`` s (the machine may be shared and loaded)."""
    proc = subprocess.Popen(emonet_command(*args), env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(interval)
    finally:
        proc.kill()
        proc.wait()
