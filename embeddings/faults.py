"""Deterministic fault injection for the crash tests: the process kills itself (SIGKILL, as `kill -9`
would) when it reaches the point that `RECSYS_FAULT` names.

`RECSYS_FAULT=NAME` kills at the first pass through point NAME, `NAME#N` at the N-th; NAME may be a
shell pattern (`write:part-*.parquet#2`). Points are named where files are written and where the
nightly moves from stage to stage (`write:<file name>` between writing a file's temporary copy and
renaming it; `version-file:<name>` before a version's file is written; `version:commit` between a
staged version's meta.json and its rename; `nightly:<boundary>`). Unset (always, outside tests),
`point` costs one dictionary lookup. The lowest layer: imports nothing of ours.
"""

from __future__ import annotations

import fnmatch
import os
import signal
from collections import Counter

ENV = "RECSYS_FAULT"
_passes: Counter[str] = Counter()


def point(name: str) -> None:
    """SIGKILL this process if RECSYS_FAULT names this pass through point `name`."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    pattern, _, nth = spec.partition("#")
    if not fnmatch.fnmatchcase(name, pattern):
        return
    _passes[pattern] += 1
    if _passes[pattern] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
