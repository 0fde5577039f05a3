"""Co-occurrence counted per shard of users on a real local Ray instance equals the one-process count."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

ray = pytest.importorskip("ray")

from recsys.ray_cooccurrence import cooccurrence_counts, cooccurrence_counts_ray, user_shards  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=1 << 28)
    yield
    ray.shutdown()


def events_matrix(seed: int = 0, users: int = 700, items: int = 300) -> sp.csr_matrix:
    """Power-law items, uneven users, summed weights above 1 (the count must still be of users)."""
    rng = np.random.default_rng(seed)
    n = 6000
    rows = rng.integers(0, users, n) ** 2 // users  # low user ids are the heavy ones
    cols = (rng.zipf(1.4, n) - 1) % items
    weights = rng.choice([1.0, 2.0, 8.0], n)
    return sp.csr_matrix((weights, (rows, cols)), shape=(users, items))


def test_user_shards_keep_every_user_once() -> None:
    matrix = events_matrix()
    shards = user_shards(matrix, 5)
    assert len(shards) == 5
    assert sum(s.shape[0] for s in shards) == matrix.shape[0]
    assert (sp.vstack(shards) != matrix).nnz == 0


def test_ray_sharded_count_equals_the_single_process_count(local_ray) -> None:
    matrix = events_matrix()
    expected = cooccurrence_counts(matrix)
    got = cooccurrence_counts_ray(matrix, shards=6)
    assert got.shape == expected.shape == (300, 300)
    assert (got != expected).nnz == 0
    # and it is a count of users: the diagonal is each item's number of distinct users
    users_per_item = np.diff(sp.csc_matrix(matrix).indptr)
    np.testing.assert_array_equal(got.diagonal(), users_per_item)
    assert got.max() > 1 and np.all(got.data == np.round(got.data))
