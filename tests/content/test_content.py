"""Item embeddings, content-based and cold-start recommendations on tiny hand-made data."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recspark.publish import PublishSettings
from recspark.content import ContentRecommender, item_texts, items_to_embed, user_profiles
from recspark.content.cold_start import (
    cold_item_cohort,
    cold_start_results,
    near_empty_history,
    pick_share,
)
from recspark.content.embeddings import load_sentence_model
from recspark.content.recommend import centered_embeddings, estimate_new_item_popularity, projected_embeddings
from recspark.publish import final_recommendations

pytestmark = pytest.mark.unit

T0 = dt.datetime(2024, 1, 1)
EMBEDDINGS = "item_idx int, embedding array<float>"
HISTORY = "user_idx int, item_idx int, event_ts timestamp"
# Items 0/1 are action neighbours, 2/3 comedy neighbours, 4 a drama; unit vectors.
VECTORS = {0: [1.0, 0.0, 0.0], 1: [0.96, 0.28, 0.0], 2: [0.0, 1.0, 0.0], 3: [0.0, 0.96, 0.28], 4: [0.0, 0.0, 1.0]}


@pytest.fixture()
def embeddings(spark):
    return spark.createDataFrame(list(VECTORS.items()), EMBEDDINGS)


@pytest.fixture()
def history(spark):
    # user 0 saw item 0, user 1 saw item 2, users 2-4 saw item 4; item 3 has no interactions.
    rows = [(0, 0, T0), (1, 2, T0), (2, 4, T0), (3, 4, T0), (4, 4, T0)]
    return spark.createDataFrame(rows, HISTORY)


def top_items(recs, user):
    return [r.item_idx for r in recs.where(F.col("user_idx") == user).orderBy("rank").collect()]


def test_item_texts_join_fields_and_hash_them(spark):
    items = spark.createDataFrame(
        [("a", "Heat (1995)", ["Action", "Crime"], []), ("b", "Up", [], ["pixar"])],
        "item_id string, title string, genres array<string>, tags array<string>",
    )
    index = spark.createDataFrame([("a", 0), ("b", 1), ("c", 2)], "item_id string, item_idx int")
    texts = item_texts(items, index, ["title", "genres", "tags"]).orderBy("item_idx").collect()
    assert [(r.item_idx, r.text) for r in texts] == [(0, "Heat (1995). Action, Crime"), (1, "Up. pixar"), (2, "")]
    assert texts[0].text_hash == __import__("hashlib").sha256(b"Heat (1995). Action, Crime").hexdigest()
    with pytest.raises(ValueError, match=r"\['plot'\]"):
        item_texts(items, index, ["title", "plot"])


def test_only_new_or_changed_items_are_encoded_again(spark):
    texts = spark.createDataFrame(
        [(0, "a", "same", "h0"), (1, "b", "edited", "h1-new"), (2, "c", "new item", "h2")],
        "item_idx int, item_id string, text string, text_hash string",
    )
    existing = spark.createDataFrame(
        [(0, "a", [1.0], "m", "h0"), (1, "b", [1.0], "m", "h1-old"), (5, "gone", [1.0], "m", "h5")],
        "item_idx int, item_id string, embedding array<float>, model string, text_hash string",
    )
    todo, kept = items_to_embed(texts, existing, "m")
    assert sorted(r.item_idx for r in todo.collect()) == [1, 2]
    assert [r.item_idx for r in kept.collect()] == [0]
    todo_other_model, kept_other_model = items_to_embed(texts, existing, "another-model")
    assert todo_other_model.count() == 3 and kept_other_model.count() == 0


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="no_such_model_package"):
        load_sentence_model("no_such_model_package")


def test_profile_is_the_recency_weighted_unit_mean(spark, embeddings):
    history = spark.createDataFrame([(7, 0, T0), (7, 2, T0 + dt.timedelta(days=365))], HISTORY)
    row = user_profiles(history, embeddings, half_life_days=365.0).first()
    # weights 0.5 (a half life old) and 1: (0.5 * e0 + e2) / 1.5 = (1/3, 2/3, 0), then unit length
    np.testing.assert_allclose(row.profile, [1 / 5 ** 0.5, 2 / 5 ** 0.5, 0.0], atol=1e-6)
    assert (row.user_idx, row.n_items) == (7, 2)
    plain = user_profiles(history, embeddings, half_life_days=None).first()
    np.testing.assert_allclose(plain.profile, [2 ** -0.5, 2 ** -0.5, 0.0], atol=1e-6)


def test_content_finds_planted_neighbours_and_reaches_a_cold_item(spark, embeddings, history):
    model = ContentRecommender(k=2, popularity_shrinkage=0.0, half_life_days=None).fit(history, embeddings)
    users = spark.createDataFrame([(0,), (1,)], "user_idx int")
    recs = model.recommend(users, seen=history)
    assert top_items(recs, 0)[0] == 1  # the action neighbour of item 0
    assert top_items(recs, 1)[0] == 3  # item 3 has no interactions: reached through its embedding
    assert recs.join(history, ["user_idx", "item_idx"]).count() == 0


def test_new_users_get_popular_items_and_near_empty_users_a_blend(spark, embeddings, history):
    users = spark.createDataFrame([(0,), (9,)], "user_idx int")  # user 9 has no history at all
    # new items 1 and 3 keep popularity 0 here (new_item_neighbours=0): the test is about the blend
    popular_first = ContentRecommender(k=3, popularity_shrinkage=1000.0, new_item_neighbours=0).fit(history, embeddings)
    recs = popular_first.recommend(users, seen=history)
    assert top_items(recs, 9) == [4, 0, 2]  # 3 users, then 1 user each (ties by item id)
    assert top_items(recs, 0)[0] == 4  # one history item weighs 1/1001 against popularity
    assert top_items(ContentRecommender(k=3, popularity_shrinkage=0.25).fit(history, embeddings)
                     .recommend(users, seen=history), 0)[0] == 1  # weight 0.8: content wins
    restricted = popular_first.recommend(users, seen=history, items=spark.createDataFrame([(3,)], "item_idx int"))
    assert sorted(r.item_idx for r in restricted.collect()) == [3, 3]


def test_a_new_items_popularity_is_the_similarity_weighted_mean_of_its_nearest_known_items(spark):
    schema = "item_idx int, embedding array<float>, popularity double"
    items = spark.createDataFrame([
        (0, [1.0, 0.0], 0.8), (1, [0.0, 1.0], 0.2), (2, [-1.0, 0.0], 0.5),  # known items
        (3, [0.6, 0.8], None),  # cosine 0.6 to item 0, 0.8 to item 1, -0.6 to item 2
        (4, [0.0, -1.0], None),  # no known item is similar: 0
    ], schema)

    def estimated(neighbours):
        return estimate_new_item_popularity(items, neighbours).select("item_idx", "popularity").orderBy("item_idx")

    def expected(new_3, new_4):
        return spark.createDataFrame([(0, 0.8), (1, 0.2), (2, 0.5), (3, new_3), (4, new_4)],
                                     "item_idx int, popularity double")

    assert_approx_df_equality(estimated(1), expected(0.2, 0.0), 1e-6)
    both = (0.8 * 0.2 + 0.6 * 0.8) / (0.8 + 0.6)
    assert_approx_df_equality(estimated(2), expected(both, 0.0), 1e-6)
    assert_approx_df_equality(estimated(3), expected(both, 0.0), 1e-6)  # a negative cosine weighs nothing
    assert_df_equality(estimate_new_item_popularity(items, 0), items)
    with pytest.raises(ValueError, match="new_item_neighbours"):
        ContentRecommender(new_item_neighbours=-1)


def test_a_new_item_like_popular_ones_outranks_a_new_item_like_unpopular_ones(spark, embeddings, history):
    # item 3 (new) is the comedy neighbour of item 2; item 5 (new) the drama neighbour of item 4,
    # which three users saw: for a user without history, item 5 inherits most popularity.
    vectors = embeddings.unionByName(spark.createDataFrame([(5, [0.0, 0.28, 0.96])], EMBEDDINGS))
    users = spark.createDataFrame([(9,)], "user_idx int")
    estimated = ContentRecommender(k=6, popularity_shrinkage=1.0, new_item_neighbours=1).fit(history, vectors)
    ranked = top_items(estimated.recommend(users, seen=history), 9)
    assert ranked.index(5) < ranked.index(3)
    unestimated = ContentRecommender(k=6, popularity_shrinkage=1.0, new_item_neighbours=0).fit(history, vectors)
    assert top_items(unestimated.recommend(users, seen=history), 9)[-2:] == [3, 5]  # both 0: last, by id


def test_a_catalogue_without_item_text_gives_no_content_rows(spark, history):
    model = ContentRecommender(k=2).fit(history, spark.createDataFrame([], EMBEDDINGS))
    recs = model.recommend(spark.createDataFrame([(0,), (9,)], "user_idx int"), seen=history)
    assert recs.isEmpty() and recs.columns == ["user_idx", "item_idx", "score", "rank"]


def test_content_rejects_bad_parameters_and_input(spark, embeddings):
    with pytest.raises(ValueError, match="k must be"):
        ContentRecommender(k=0)
    with pytest.raises(ValueError, match="popularity_shrinkage"):
        ContentRecommender(popularity_shrinkage=-1.0)
    with pytest.raises(ValueError, match=r"history lacks column\(s\) \['event_ts'\]"):
        user_profiles(spark.createDataFrame([(0, 0)], "user_idx int, item_idx int"), embeddings, None)


def test_every_user_gets_a_full_published_list_from_the_default_sources(spark):
    # user 0 has ALS items; user 1 (too new for ALS and item-item) only content and popularity.
    rows = [(0, 10, "als", 0.9, 1, None), (0, 11, "als", 0.8, 2, None)]
    rows += [(u, 20 + r, "content", 1.0 - r / 10, r, None) for u in (0, 1) for r in (1, 2)]
    rows += [(u, 30 + r, "popularity", 10.0 - r, r, None) for u in (0, 1) for r in (1, 2, 3, 4)]
    candidates = spark.createDataFrame(rows, "user_idx int, item_idx int, source string, score double, rank int, "
                                             "because_item_idx int")
    sources = PublishSettings().sources
    assert sources[-2:] == ["content", "popularity"]
    lists = final_recommendations(candidates, sources, k=5)
    got = {(r.user_idx, r.n) for r in lists.groupBy("user_idx").agg(F.count(F.lit(1)).alias("n")).collect()}
    assert got == {(0, 5), (1, 5)}
    assert top_items(lists, 1) == [21, 22, 31, 32, 33]


def test_pick_share_is_deterministic_and_close_to_the_ratio(spark):
    ids = spark.range(2000).select(F.col("id").cast("int").alias("item_idx"))
    picked = sorted(r.item_idx for r in pick_share(ids, "item_idx", 0.1, seed=3).collect())
    assert picked == sorted(r.item_idx for r in pick_share(ids, "item_idx", 0.1, seed=3).collect())
    assert 150 < len(picked) < 250
    assert pick_share(ids, "item_idx", 0.0, seed=3).count() == 0
    with pytest.raises(ValueError, match="1.5"):
        pick_share(ids, "item_idx", 1.5, seed=3)


def test_cold_cohorts_remove_items_and_truncate_histories(spark):
    history = spark.createDataFrame(
        [(0, 1, T0), (0, 2, T0 + dt.timedelta(days=1)), (0, 3, T0 + dt.timedelta(days=2)), (1, 1, T0)], HISTORY
    )
    test = spark.createDataFrame([(0, 4, T0), (1, 2, T0)], HISTORY)
    warm, truth = cold_item_cohort(history, test, spark.createDataFrame([(2,)], "item_idx int"))
    assert sorted((r.user_idx, r.item_idx) for r in warm.collect()) == [(0, 1), (0, 3), (1, 1)]
    assert sorted((r.user_idx, r.item_idx) for r in truth.collect()) == [(0, 2), (1, 2)]
    reduced = near_empty_history(history, spark.createDataFrame([(0,)], "user_idx int"), keep=1)
    assert_df_equality(reduced.select(*history.columns), spark.createDataFrame([(0, 1, T0), (1, 1, T0)], HISTORY),
                       ignore_row_order=True, ignore_nullable=True)


def test_content_beats_popularity_on_cold_cohorts(spark):
    # Two taste clusters of 20 items; user u likes cluster u % 2: items 0-9 of it in history,
    # 10-19 in test. Item vectors: the cluster axis plus a small item-specific component.
    rng = np.random.default_rng(0)
    vectors = {}
    for item in range(40):
        vector = np.zeros(8)
        vector[item % 2] = 1.0
        vector[2:] = 0.1 * rng.normal(size=6)
        vectors[item] = (vector / np.linalg.norm(vector)).tolist()
    embeddings = spark.createDataFrame(list(vectors.items()), EMBEDDINGS)
    rows = {"train": [], "test": []}
    for user in range(12):
        cluster_items = [i for i in range(40) if i % 2 == user % 2]
        for position, item in enumerate(cluster_items):
            split = "train" if position < 10 else "test"
            rows[split].append((user, item, T0 + dt.timedelta(days=position + user)))
    history, test = (spark.createDataFrame(rows[s], HISTORY) for s in ("train", "test"))
    results = cold_start_results(
        history, test, embeddings, k=5, n_items=40, cold_item_ratio=0.3, cold_user_ratio=0.4,
        cold_user_history=2, seed=1, popularity_shrinkage=0.0, half_life_days=None,
    )
    assert set(results) == {"cold_items/content", "cold_items/popularity", "cold_users/content",
                            "cold_users/popularity"}
    assert results["cold_items/popularity"]["ndcg@k"] == 0.0  # popularity never reaches a new item
    assert results["cold_items/content"]["ndcg@k"] > 0.2
    assert results["cold_users/content"]["ndcg@k"] > results["cold_users/popularity"]["ndcg@k"]
    capped = cold_start_results(
        history, test, embeddings, k=5, n_items=40, cold_item_ratio=0.3, cold_user_ratio=0.4,
        cold_user_history=2, seed=1, popularity_shrinkage=0.0, half_life_days=None, max_users=3,
    )
    assert {label: values["user_coverage"] > 0 for label, values in capped.items()} == dict.fromkeys(results, True)
    assert all(capped[label]["n_users"] <= 3 < results[label]["n_users"] for label in results)


def test_centered_embeddings_subtract_the_mean_and_renormalise(spark):
    embeddings = spark.createDataFrame([(0, [2.0, 1.0]), (1, [2.0, -1.0]), (2, [2.0, 0.0])], EMBEDDINGS)
    expected = spark.createDataFrame([(0, [0.0, 1.0]), (1, [0.0, -1.0]), (2, [0.0, 0.0])], EMBEDDINGS)
    # exact in binary floating point: every difference is 0 or +-1 and every norm 0 or 1
    assert_df_equality(centered_embeddings(embeddings), expected, ignore_row_order=True, ignore_nullable=True)


def test_projected_embeddings_keep_the_cosines_of_vectors_in_a_smaller_subspace(spark):
    # four unit vectors spanning only the plane x + y + z = 0 of 3-d space: two principal
    # directions carry all of it, so a 2-d projection keeps every cosine
    plane = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [1.0, 0.0, -1.0], [-2.0, 1.0, 1.0]])
    plane /= np.linalg.norm(plane, axis=1, keepdims=True)
    embeddings = spark.createDataFrame([(i, v.tolist()) for i, v in enumerate(plane)], EMBEDDINGS)
    projected = {r.item_idx: np.array(r.embedding) for r in projected_embeddings(embeddings, 2).collect()}
    assert sorted(projected) == [0, 1, 2, 3] and all(v.shape == (2,) for v in projected.values())
    for i in range(4):
        for j in range(4):
            assert projected[i] @ projected[j] == pytest.approx(plane[i] @ plane[j], abs=1e-6)
    assert projected_embeddings(embeddings, 3).collect() == embeddings.collect()  # not below the dimension
    assert projected_embeddings(embeddings, None).collect() == embeddings.collect()
    with pytest.raises(ValueError, match="embedding_dimensions"):
        ContentRecommender(embedding_dimensions=0)


def test_the_content_recommender_scores_on_the_projected_embeddings(spark, embeddings, history):
    # VECTORS span 3 dimensions; keeping 2 merges directions, so lists may change, but every
    # user still gets k unseen items and the planted action neighbour stays first
    model = ContentRecommender(k=2, popularity_shrinkage=0.0, half_life_days=None, center_embeddings=False,
                               embedding_dimensions=2).fit(history, embeddings)
    assert len(model.items.select("embedding").first()["embedding"]) == 2
    recs = model.recommend(spark.createDataFrame([(0,), (1,)], "user_idx int"), seen=history)
    assert top_items(recs, 0)[0] == 1
    assert recs.groupBy("user_idx").count().where(F.col("count") != 2).count() == 0
