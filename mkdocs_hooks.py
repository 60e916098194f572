"""MkDocs hooks for the documentation site (mkdocs.yml: ``hooks``).

docs/math.md tags its sources as ``[CODE][DERIVED+NUM]``. In plain Markdown an undefined reference like that stays
text, but mkdocs-autorefs (used by the API reference) reads it as a cross-reference and warns, which fails
``mkdocs build --strict``. This hook escapes runs of two or more bracketed tags (no link target after them) in that
page only, so they render as the text they are on GitHub; the file itself is not changed.
"""

from __future__ import annotations

import re

_TAG_RUN = re.compile(r"(?:\[[^\[\]()\n]+\]){2,}(?![(\[])")


def _escape(match: re.Match) -> str:
    return match.group(0).replace("[", r"\[").replace("]", r"\]")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "math.md":
        return _TAG_RUN.sub(_escape, markdown)
    return markdown
