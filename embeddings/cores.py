"""How many CPU cores this process may use (its affinity mask, not the machine's total)."""

from __future__ import annotations

import os


def cpu_count() -> int:
    """The cores this process may run on: `sched_getaffinity` where there is one, else `os.cpu_count()`."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
