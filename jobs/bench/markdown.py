"""BENCHMARKS.md: each benchmark owns one `## ` section and replaces only that section."""

from __future__ import annotations

import re
from pathlib import Path

from embeddings.files import atomic_write_text


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace the section that starts with `heading` (e.g. "## Embedding") or append it.

    The file is rewritten under a temporary name and renamed, so a crash never truncates it."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = f"{heading}\n\n{body.strip()}\n\n"
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(text.rstrip("\n") + "\n", path)
