"""The documentation: a short README, and a site whose search finds every CLI option and public name.

The site test builds it with ``mkdocs build --strict`` (broken links and missing references fail)
and reads ``search/search_index.json``. It needs the ``docs`` extra and skips, saying so, without it;
CI installs it (``.ci/run``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import emonet_face
from emonet_face.cli.main import app
from helpers_cli import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 15_000
TEST_COMMAND = "python -m pytest -q"


def test_readme_is_short_and_states_the_ci_test_command():
    readme = (ROOT / "README.md").read_bytes()
    assert len(readme) <= README_LIMIT, f"README.md is {len(readme):,} bytes; move details into docs/"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(TEST_COMMAND)}$", ci, re.M), "the test command .ci/run calls changed"
    assert re.search(rf"^{re.escape(TEST_COMMAND)}(\s+#.*)?$", readme.decode(), re.M)


def test_readme_links_point_at_existing_files():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((?!https?://)([^)#\s]+)", text)
    assert targets and all((ROOT / t).exists() for t in targets), [t for t in targets if not (ROOT / t).exists()]


def _commands(command, name: str = "emonet-face"):
    yield name, command
    for sub_name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, f"{name} {sub_name}")


def _plain(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).strip()


@pytest.fixture(scope="module")
def search_index(tmp_path_factory) -> list[dict]:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_typer2"):
        pytest.importorskip(module, reason="the docs extra is not installed (pip install '.[docs]')")
    site = tmp_path_factory.mktemp("site")
    # As the docs say to run it: without the virtualenv's bin on PATH (mkdocs-typer2 runs `typer`
    # from PATH; docs/hooks.py puts this Python's folder first).
    scripts = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != scripts)
    env = subprocess_env(NO_MKDOCS_2_WARNING="1", PATH=path)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((site / "search" / "search_index.json").read_text())["docs"]


def test_site_search_finds_every_cli_option_of_every_command(search_index):
    """Each command's section of the CLI reference lists each of its options (generated from the app)."""
    sections: dict[str, str] = {}
    current = None
    for entry in search_index:
        if not entry["location"].startswith("reference/cli/"):
            continue
        title = _plain(entry["title"])
        if title.startswith("emonet-face"):
            current = title
        if current is not None:
            sections[current] = sections.get(current, "") + " " + entry["title"] + " " + entry["text"]
    missing = []
    for name, command in _commands(typer.main.get_command(app)):
        text = sections.get(name)
        if text is None:
            missing.append(name)
            continue
        options = [opt for param in command.params for opt in param.opts if opt.startswith("--")]
        missing += [f"{name} {opt}" for opt in options if not re.search(rf"{re.escape(opt)}(?![\w-])", text)]
    assert not missing, f"not in the site's CLI reference: {missing}"


def test_site_search_finds_every_public_name(search_index):
    api = [entry for entry in search_index if entry["location"].startswith("reference/api/")]
    titles = {_plain(entry["title"]).split()[0] for entry in api if entry["title"]}
    text = " ".join(entry["text"] for entry in api)
    missing = [name for name in emonet_face.__all__ if name not in titles and name not in text]
    assert not missing, f"not in the site's API reference: {missing}"
    documented = [name for name in emonet_face.__all__ if name in titles]
    assert len(documented) >= len(emonet_face.__all__) - 1  # all but __version__ have their own section


def test_site_search_finds_the_cli_reference_by_an_option_name(search_index):
    """The site's search splits "tracks-out" into tracks* OR out*, which ranked pages with "output" in a
    heading first; every option is a search tag of the CLI reference (tags outweigh titles)."""
    cli = [entry for entry in search_index if entry["location"].startswith("reference/cli/")]
    tags = set(cli[0].get("tags", [])) if cli else set()
    options = {opt for _, command in _commands(typer.main.get_command(app)) for param in command.params
               for opt in param.opts if opt.startswith("--")}  # fmt: skip
    assert options and options <= tags, f"options not tagged: {sorted(options - tags)[:10]}"
    assert all(set(entry.get("tags", [])) == tags for entry in cli)
    assert not [entry["location"] for entry in search_index if entry.get("tags") and entry not in cli]
