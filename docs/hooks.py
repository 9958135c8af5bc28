"""mkdocs hook: the docstrings use reST roles (:class:`X`, :meth:`~a.b.c`), which mkdocstrings renders
as Markdown, leaving the role name in front of the code span. Drop it (and a leading ``~``, which in
reST means "show the last component only")."""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):(<code>)(~)?([^<]*)</code>")


def _code(match: re.Match[str]) -> str:
    text = match.group(3)
    return f"<code>{text.rsplit('.', 1)[-1] if match.group(2) else text}</code>"


def on_page_content(html: str, **_: object) -> str:
    return _ROLE.sub(_code, html)
