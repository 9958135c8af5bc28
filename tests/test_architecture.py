"""The package's house (pyproject.toml [tool.importlinter]): imports point one way, and the check
that enforces it in CI does fail when a lower layer imports a higher one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_cli import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def _lint(tree: Path) -> subprocess.CompletedProcess:
    if not Path(LINT).exists():
        pytest.skip("import-linter is not installed (pip install '.[test]')")
    env = subprocess_env(PYTHONPATH=str(tree / "src"))  # the copy's package, not this checkout's
    return subprocess.run(
        [LINT, str(tree / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
        timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_package_keeps_its_layers(tmp_path):
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "broken"),
    [
        # a lower layer importing a higher one, even inside a function (a hidden cycle)
        ("heads.py", "def _later():\n    from emonet_face.pipeline import EmoNetFace\n", "One-way layers"),
        # the server standing on the command line instead of on the library
        ("serve/batcher.py", "from emonet_face.cli import main\n", "One-way layers"),
        # two siblings of one layer importing each other
        ("stats/__init__.py", "import emonet_face.train\n", "One-way layers"),
        # the scorer reaching back up to the façade that uses it (a cycle inside the pipeline package)
        ("pipeline/scorer.py", "from emonet_face.pipeline.model import EmoNetFace\n", "acyclic"),
    ],
)
def test_a_wrong_way_import_fails_the_check(tmp_path, module, statement, broken):
    tree = _copy(tmp_path)
    path = tree / "src" / "emonet_face" / module
    path.write_text(path.read_text() + "\n" + statement)
    result = _lint(tree)
    assert result.returncode != 0
    broken_contracts = " ".join(line for line in _contract_lines(result.stdout) if line.endswith("BROKEN"))
    assert broken in broken_contracts, result.stdout


def _contract_lines(report: str) -> list[str]:
    """The report's one line per contract ("NAME KEPT" / "NAME BROKEN"; it wraps long names)."""
    text = report.split("Contracts\n---------", 1)[-1].split("Contracts:", 1)[0]
    return [" ".join(chunk.split()) for chunk in text.replace("KEPT", "KEPT\n\n").replace("BROKEN", "BROKEN\n\n").split("\n\n")]
