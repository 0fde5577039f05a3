"""FAISS OpenMP threads, set deliberately.

- Searching one query at a time gains nothing from OpenMP and, in a server with several workers
  or request threads, extra OpenMP threads oversubscribe the cores. Serving therefore uses
  `SEARCH_THREADS` (default 1) threads.
- Building, training, recall tuning and batched neighbour lists use all cores the process may run
  on (`BUILD_THREADS`, default: the CPU affinity count).
- libgomp's thread pool does not survive fork(): a process that forks after FAISS ran a parallel
  region can hang in the child. Servers should fork their workers before loading an index;
  a forked child calls `set_threads(1)` (or whatever it needs) before its first search.
Both defaults can be overridden with the environment variables RECSYS_FAISS_SEARCH_THREADS and
RECSYS_FAISS_BUILD_THREADS.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import faiss

from embeddings.cores import cpu_count


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else default


def search_threads() -> int:
    return _env_int("RECSYS_FAISS_SEARCH_THREADS", 1)


def build_threads() -> int:
    return _env_int("RECSYS_FAISS_BUILD_THREADS", cpu_count())


def set_threads(n: int) -> None:
    faiss.omp_set_num_threads(max(1, int(n)))


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Run a block with `n` OpenMP threads, then go back to the previous setting."""
    before = faiss.omp_get_max_threads()
    set_threads(n)
    try:
        yield
    finally:
        set_threads(before)
