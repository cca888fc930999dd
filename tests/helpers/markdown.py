"""Markdown headings as GitHub anchors them, for the tests that check links into the docs."""

from __future__ import annotations

import re
from pathlib import Path

FENCED = re.compile(r"```.*?```", flags=re.S)


def without_code_blocks(text: str) -> str:
    """The text with its fenced code blocks blanked (a ``#`` there is not a heading); their
    line breaks stay, so line numbers still match the file's."""
    return FENCED.sub(lambda block: "\n" * block.group(0).count("\n"), text)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation other than '-' and '_' dropped,
    spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of a markdown file."""
    text = without_code_blocks(path.read_text())
    return {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}
