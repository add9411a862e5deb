"""Nearest-neighbour search over item vectors: exact blocked top-N and approximate indexes.

All searches take float32 ``queries`` (n_queries x d) and ``items`` (n_items x d) and score by
inner product (a cosine for unit vectors, as the item embeddings are); they return
``(indices, scores)``, both n_queries x n, best first, index -1 / score -inf where fewer than
``n`` items were found.

* :func:`exact_top_n`: blocked matrix product + the top-K selection of
  :func:`recspark.recommenders.topk.top_k_of_score_block` (the CF top-K's numpy core).
* :class:`KMeansIndex`: an IVF index of our own: spherical k-means (Lloyd, seeded) clusters the
  items; a query scores the ``n_probe`` clusters whose centroids are closest and searches only
  their items. The clusters are also a candidate-retrieval unit ("items of the user's nearest
  taste clusters").
* :func:`faiss_index`: faiss ``IndexHNSWFlat`` / ``IndexIVFFlat`` (inner product), when faiss is
  installed (``faiss-cpu``).
* :func:`recall_at_n`: the share of exact neighbours an approximate search found.
"""
from __future__ import annotations

import numpy as np

from recspark.recommenders.topk import top_k_of_score_block

QUERY_BLOCK = 256  # queries scored per matrix product


def exact_top_n(queries: np.ndarray, items: np.ndarray, n: int, block: int = QUERY_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``n`` items per query by inner product (ties: smaller item index first)."""
    queries, items = _as_float32(queries, items)
    n_queries = queries.shape[0]
    indices = np.full((n_queries, n), -1, dtype=np.int64)
    scores = np.full((n_queries, n), -np.inf, dtype=np.float32)
    for start in range(0, n_queries, block):
        block_scores = queries[start:start + block] @ items.T
        rows, cols, values, ranks = top_k_of_score_block(block_scores, n)
        indices[start + rows, ranks - 1] = cols
        scores[start + rows, ranks - 1] = values
    return indices, scores


class KMeansIndex:
    """Inverted-file index over spherical k-means clusters (k-means++ seeding) of the item vectors.

    Params: ``n_clusters``; ``n_iter`` Lloyd iterations; ``sample`` items used to fit the
    centroids (all when fewer); ``seed``. After :meth:`fit`: ``centroids`` (n_clusters x d,
    unit length), ``assignment`` (cluster of each item), ``lists`` (item indices per cluster).
    """

    def __init__(self, n_clusters: int, n_iter: int = 10, sample: int = 100_000, seed: int = 0):
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be positive, got {n_clusters}")
        self.n_clusters = n_clusters
        self.n_iter = n_iter
        self.sample = sample
        self.seed = seed

    def fit(self, items: np.ndarray) -> KMeansIndex:
        (items,) = _as_float32(items)
        if items.shape[0] < self.n_clusters:
            raise ValueError(f"{items.shape[0]} items cannot form {self.n_clusters} clusters")
        rng = np.random.default_rng(self.seed)
        training = items[rng.choice(items.shape[0], min(self.sample, items.shape[0]), replace=False)]
        centroids = self._plus_plus_seeds(training, rng)
        for _ in range(self.n_iter):
            labels = self._nearest_centroid(training, centroids)
            sums = np.zeros_like(centroids)
            np.add.at(sums, labels, training)
            empty = np.bincount(labels, minlength=self.n_clusters) == 0
            sums[empty] = training[rng.choice(training.shape[0], int(empty.sum()), replace=False)]
            centroids = _unit_rows(sums)
        self.centroids = centroids
        self.items = items
        self.assignment = self._nearest_centroid(items, centroids)
        order = np.argsort(self.assignment, kind="stable")
        bounds = np.searchsorted(self.assignment[order], np.arange(self.n_clusters + 1))
        self.lists = [order[bounds[c]:bounds[c + 1]] for c in range(self.n_clusters)]
        return self

    def search(self, queries: np.ndarray, n: int, n_probe: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items per query among the items of its ``n_probe`` nearest clusters."""
        (queries,) = _as_float32(queries)
        n_probe = min(n_probe, self.n_clusters)
        probes = exact_top_n(queries, self.centroids, n_probe)[0]
        n_queries = queries.shape[0]
        pool_ids = np.full((n_queries, n_probe * n), -1, dtype=np.int64)
        pool_scores = np.full((n_queries, n_probe * n), -np.inf, dtype=np.float32)
        probe_query = np.repeat(np.arange(n_queries), n_probe)
        probe_slot = np.tile(np.arange(n_probe), n_queries)
        probe_cluster = probes.ravel()
        order = np.argsort(probe_cluster, kind="stable")
        bounds = np.searchsorted(probe_cluster[order], np.arange(self.n_clusters + 1))
        for cluster in range(self.n_clusters):  # each cluster's items are scored once, for all its queries
            probing = order[bounds[cluster]:bounds[cluster + 1]]
            members = self.lists[cluster]
            if probing.size == 0 or members.size == 0:
                continue
            rows = probe_query[probing]
            scores = queries[rows] @ self.items[members].T
            take = min(n, members.size)
            best = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < members.size else (
                np.broadcast_to(np.arange(take), (rows.size, take)))
            columns = probe_slot[probing, None] * n + np.arange(take)
            pool_ids[rows[:, None], columns] = members[best]
            pool_scores[rows[:, None], columns] = np.take_along_axis(scores, best, axis=1)
        best = np.argsort(-pool_scores, axis=1, kind="stable")[:, :n]
        return np.take_along_axis(pool_ids, best, axis=1), np.take_along_axis(pool_scores, best, axis=1)

    def _plus_plus_seeds(self, training: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """k-means++ seeding: each next centre drawn with probability proportional to the
        squared distance (2 - 2 cos for unit vectors) to the nearest centre chosen so far."""
        chosen = [int(rng.integers(training.shape[0]))]
        best_similarity = training @ training[chosen[0]]
        for _ in range(1, self.n_clusters):
            distance = np.maximum(2.0 - 2.0 * best_similarity, 0.0).astype(np.float64)
            total = distance.sum()
            pick = int(rng.choice(training.shape[0], p=distance / total)) if total > 0 else int(rng.integers(training.shape[0]))
            chosen.append(pick)
            best_similarity = np.maximum(best_similarity, training @ training[pick])
        return _unit_rows(training[chosen].copy())

    @staticmethod
    def _nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        labels = np.empty(vectors.shape[0], dtype=np.int64)
        for start in range(0, vectors.shape[0], 8192):
            labels[start:start + 8192] = np.argmax(vectors[start:start + 8192] @ centroids.T, axis=1)
        return labels


def faiss_index(items: np.ndarray, kind: str = "hnsw", *, hnsw_m: int = 32, ef_construction: int = 80,
                n_lists: int = 256, seed: int = 0):
    """A faiss inner-product index over ``items``: ``"hnsw"`` (IndexHNSWFlat, ``hnsw_m`` links,
    ``ef_construction``) or ``"ivf"`` (IndexIVFFlat with ``n_lists`` k-means lists). Search with
    ``index.search(queries, n)`` after setting ``index.hnsw.efSearch`` / ``index.nprobe``."""
    import faiss

    (items,) = _as_float32(items)
    dimension = items.shape[1]
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, n_lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(items)
    else:
        raise ValueError(f"faiss index kind must be 'hnsw' or 'ivf', got {kind!r}")
    index.add(items)
    return index


def recall_at_n(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approximate ∩ exact| / |exact| (index arrays, -1 = no result)."""
    hits = 0
    total = 0
    for found, truth in zip(approximate, exact):
        truth = truth[truth >= 0]
        hits += np.intersect1d(found[found >= 0], truth).size
        total += truth.size
    return hits / total if total else 1.0


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1).astype(matrix.dtype)


def _as_float32(*arrays: np.ndarray) -> list[np.ndarray]:
    converted = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    for a in converted:
        if a.ndim != 2:
            raise ValueError(f"vectors must be a 2-d array (rows x dimensions), got shape {a.shape}")
    if len({a.shape[1] for a in converted}) > 1:
        raise ValueError(f"vectors have different dimensions: {[a.shape[1] for a in converted]}")
    return converted
