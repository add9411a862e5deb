"""Sparse weighted-sum top-N (the neighbourhood recommenders' scoring) against a naive loop."""
from __future__ import annotations

import numpy as np
import pytest

from recspark.recommenders.sparse_topk import collect_sparse_rows, top_n_weighted_sums

pytestmark = pytest.mark.unit

QUERIES = "query long, keys array<long>, weights array<double>, exclude array<long>"


def naive(queries, entries, n, normalize=False):
    """{query: [(item, score, because)]} by the definition: reached items, score desc / item asc."""
    by_key = {}
    for key, item, value in entries:
        by_key.setdefault(key, {})[item] = value
    result = {}
    for query, keys, weights, exclude in queries:
        sums, totals, best = {}, {}, {}
        for key, weight in sorted(zip(keys, weights)):
            for item, value in by_key.get(key, {}).items():
                contribution = weight * value
                sums[item] = sums.get(item, 0.0) + contribution
                totals[item] = totals.get(item, 0.0) + abs(value)
                if item not in best or contribution > best[item][0]:
                    best[item] = (contribution, key)
        scores = {i: (s / totals[i] if totals[i] > 0 else 0.0) if normalize else s for i, s in sums.items()
                  if i not in set(exclude or [])}
        ranked = sorted(scores, key=lambda i: (-scores[i], i))[:n]
        if ranked:
            result[query] = [(i, pytest.approx(scores[i]), best[i][1]) for i in ranked]
    return result


def spark_lists(frame):
    lists = {}
    for row in frame.orderBy("query", "rank").collect():
        lists.setdefault(row["query"], []).append((row["item"], row["score"], row["because"]))
        assert row["rank"] == len(lists[row["query"]])
    return lists


@pytest.mark.parametrize("normalize", [False, True])
def test_hand_made_matrix_with_negatives_stored_zeros_and_ties(spark, normalize):
    entries = [(1, 10, 0.5), (1, 11, -0.25), (1, 12, 0.0), (2, 10, 0.5), (2, 13, 1.0), (3, 11, 0.25), (3, 14, 2.0)]
    queries = [(100, [1, 2], [1.0, 1.0], [13]), (101, [2, 1], [2.0, 1.0], None), (102, [3, 9], [1.0, 5.0], [14]),
               (103, [9], [1.0], None)]
    rows = collect_sparse_rows(spark.createDataFrame(entries, "k int, i int, v double"), "k", "i", "v")
    result = spark_lists(top_n_weighted_sums(spark.createDataFrame(queries, QUERIES), rows, 3, normalize))
    assert result == naive(queries, entries, 3, normalize)
    if not normalize:  # item 12 is reached with score 0 and kept; 11 nets 0 for query 102 too
        assert result[100] == [(10, 1.0, 1), (12, 0.0, 1), (11, -0.25, 1)]
        assert 103 not in result  # key 9 is unknown: no candidate, no rows


def test_random_matrix_equals_the_naive_loop(spark):
    rng = np.random.default_rng(7)
    entries = sorted({(int(k), int(i)): float(rng.choice([0.5, 1.0, 1.5])) for k, i in
                      zip(rng.integers(0, 30, 400), rng.integers(0, 60, 400))}.items())
    entries = [(k, i, v) for (k, i), v in entries]
    queries = [(q, [int(x) for x in rng.choice(35, 6, replace=False)], [float(x) for x in rng.choice([1.0, 2.0], 6)],
                [int(x) for x in rng.choice(60, 5, replace=False)]) for q in range(40)]
    rows = collect_sparse_rows(spark.createDataFrame(entries, "k long, i long, v double"), "k", "i", "v")
    result = spark_lists(top_n_weighted_sums(spark.createDataFrame(queries, QUERIES), rows, 10))
    assert result == naive(queries, entries, 10)


def test_without_values_every_stored_entry_weighs_one(spark):
    rows = collect_sparse_rows(spark.createDataFrame([(1, 5), (1, 5), (2, 5), (2, 6)], "k int, i int"), "k", "i")
    assert rows.values is None and rows.indices.tolist() == [0, 0, 1]
    queries = spark.createDataFrame([(7, [1, 2], [0.5, 0.75], None)], QUERIES)
    assert spark_lists(top_n_weighted_sums(queries, rows, 5)) == {7: [(5, 1.25, 2), (6, 0.75, 2)]}
