"""The commands the README and the documentation site show, read out of their Markdown.

Shared by tests/test_docs_commands.py (every ``vaekit`` line parses; the quickstarts run) so
that a renamed flag or command fails a test instead of a reader.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A line that runs vaekit: `vaekit ...`, `python -m vaekit ...` or `torchrun ... -m vaekit ...`,
# after an optional shell prompt and environment assignments.
_PROMPT = re.compile(r"^\s*(\$\s+)?((?:[A-Z_][A-Z0-9_]*=\S*\s+)*)")
_MODULE = re.compile(r"(?:^|\s)-m\s+vaekit(\s|$)")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its file, first line (1-based), language, marker and text."""

    path: Path
    line: int
    language: str
    marker: str | None
    text: str


def doc_files() -> list[Path]:
    """README.md and every Markdown page of the site (docs/, the lab logs excluded)."""
    pages = [p for p in sorted((REPO / "docs").rglob("*.md")) if "notes" not in p.parts]
    return [REPO / "README.md", *pages]


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file; ``marker`` is the name of an HTML comment
    ``<!-- NAME -->`` on the line before the fence, if any."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})(.*)$", lines[i])
        if not fence:
            i += 1
            continue
        start, ticks, info = i, fence.group(1), fence.group(2).strip()
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(ticks):
            body.append(lines[i])
            i += 1
        previous = lines[start - 1].strip() if start else ""
        marker = re.fullmatch(r"<!--\s*(.+?)\s*-->", previous)
        language = info.split()[0] if info else ""
        blocks.append(Block(path, start + 1, language, marker and marker.group(1), "\n".join(body)))
        i += 1
    return blocks


def vaekit_commands(block: Block) -> list[list[str]]:
    """The vaekit command lines of a shell block, each as vaekit's own argv (no "vaekit")."""
    if block.language in ("python", "toml", "json", "{toctree}", "{eval-rst}", "{include}"):
        return []
    text = re.sub(r"\\\n\s*", " ", block.text)  # join continued lines
    commands = []
    for line in text.splitlines():
        for part in line.split(";"):
            part = part[_PROMPT.match(part).end() :]
            if part.startswith("vaekit ") or part == "vaekit":
                commands.append(shlex.split(part, comments=True)[1:])
            elif _MODULE.search(part.split("#")[0]):
                words = shlex.split(part, comments=True)
                commands.append(words[words.index("vaekit") + 1 :])
    return commands
