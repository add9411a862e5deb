"""Nearest-neighbour search: exact blocked top-N, the k-means IVF index and faiss, on planted data."""
from __future__ import annotations

import numpy as np
import pytest

from recspark.recommenders.ann import KMeansIndex, exact_top_n, faiss_index, recall_at_n

pytestmark = pytest.mark.unit


def planted_clusters(n_clusters=8, per_cluster=50, dimension=16, seed=0):
    """Unit vectors in tight, well-separated clusters (cluster c is items c*per_cluster ...)."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((dimension, dimension)))[0][:n_clusters]
    items = np.repeat(centres, per_cluster, axis=0) + 0.05 * rng.standard_normal((n_clusters * per_cluster, dimension))
    return (items / np.linalg.norm(items, axis=1, keepdims=True)).astype(np.float32), centres.astype(np.float32)


def test_exact_top_n_ranks_by_inner_product_with_ties_by_index():
    items = np.array([[1, 0], [0, 1], [0.6, 0.8], [1, 0]], dtype=np.float32)
    indices, scores = exact_top_n(np.array([[1, 0], [0, 1]], dtype=np.float32), items, 3, block=1)
    assert indices.tolist() == [[0, 3, 2], [1, 2, 0]]
    np.testing.assert_allclose(scores, [[1, 1, 0.6], [1, 0.8, 0]])
    padded, padded_scores = exact_top_n(np.array([[1, 0]], dtype=np.float32), items[:2], 3)
    assert padded.tolist() == [[0, 1, -1]] and padded_scores[0, 2] == -np.inf


def test_planted_neighbours_are_found_by_every_index():
    items, centres = planted_clusters()
    queries = centres  # each centre's nearest items are its own cluster's
    exact, _ = exact_top_n(queries, items, 10)
    assert all(set(row // 50) == {c} for c, row in enumerate(exact))
    index = KMeansIndex(n_clusters=8, seed=1).fit(items)
    assert len(set(index.assignment.tolist())) == 8
    found, _ = index.search(queries, 10, n_probe=1)
    assert recall_at_n(found, exact) == 1.0
    hnsw = faiss_index(items, "hnsw", hnsw_m=8)
    hnsw.hnsw.efSearch = 32
    assert recall_at_n(hnsw.search(queries, 10)[1], exact) == 1.0
    ivf = faiss_index(items, "ivf", n_lists=8)
    ivf.nprobe = 2
    assert recall_at_n(ivf.search(queries, 10)[1], exact) == 1.0


def test_probing_every_cluster_is_exact():
    rng = np.random.default_rng(3)
    items = rng.standard_normal((300, 8)).astype(np.float32)
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    exact_ids, exact_scores = exact_top_n(queries, items, 5)
    found, scores = KMeansIndex(n_clusters=12, n_iter=3, seed=0).fit(items).search(queries, 5, n_probe=12)
    assert recall_at_n(found, exact_ids) == 1.0
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5)


def test_recall_counts_shared_neighbours_and_ignores_padding():
    assert recall_at_n(np.array([[1, 2, -1], [4, 5, 6]]), np.array([[1, 3, -1], [6, 5, 4]])) == pytest.approx(4 / 5)


def test_bad_input_is_rejected_with_the_problem_named():
    with pytest.raises(ValueError, match="2-d array"):
        exact_top_n(np.zeros(3), np.zeros((3, 3)), 1)
    with pytest.raises(ValueError, match="different dimensions"):
        exact_top_n(np.zeros((1, 2)), np.zeros((3, 3)), 1)
    with pytest.raises(ValueError, match="3 items cannot form 5 clusters"):
        KMeansIndex(n_clusters=5).fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match="'annoy'"):
        faiss_index(np.ones((3, 2)), "annoy")
