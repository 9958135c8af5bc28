"""mkdocs hooks.

* The docstrings use reST roles (:class:`X`, :meth:`~a.b.c`), which mkdocstrings renders as Markdown,
  leaving the role name in front of the code span. Drop it (and a leading ``~``, which in reST means
  "show the last component only").
* mkdocs-typer2 writes the CLI reference by running ``typer`` from PATH: put the directory of the
  Python that runs mkdocs first on PATH, so that ``python -m mkdocs build`` (or a virtualenv's
  ``bin/mkdocs``) works without activating the virtualenv, and never picks another environment's typer.
* Search for an option name (``tracks-out``): the site's search (lunr) splits the query at the hyphen
  and looks for ``tracks*`` OR ``out*``, which ranks pages with "output" in a heading above the page
  that documents the option. The CLI reference carries every option name as a search tag (a field
  that outweighs titles), so that an option's name finds the reference first. The tags are not shown.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):(<code>)(~)?([^<]*)</code>")
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
CLI_REFERENCE = "reference/cli.md"


def _code(match: re.Match[str]) -> str:
    text = match.group(3)
    return f"<code>{text.rsplit('.', 1)[-1] if match.group(2) else text}</code>"


def on_config(config: Any, **_: object) -> Any:
    scripts = str(Path(sys.executable).parent)  # not resolved: a virtualenv's python is a symlink
    if os.environ.get("PATH", "").split(os.pathsep)[0] != scripts:
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    return config


def on_page_content(html: str, *, page: Any, **_: object) -> str:
    if page.file.src_uri == CLI_REFERENCE:
        page.meta["tags"] = sorted(set(_OPTION.findall(html)))
    return _ROLE.sub(_code, html)
