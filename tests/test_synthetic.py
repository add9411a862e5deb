"""Tests for the synthetic log generator (small sizes: 2,000 events, 200 items, 100 users)."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from recspark.config import ConfigError, load_config
from recspark.synthetic import (
    GENRES,
    GenerateSettings,
    INTERACTIONS_CSV_COLUMNS,
    ITEMS_CSV_COLUMNS,
    LATE_VISIT_SECONDS,
    generate_interactions,
    generate_items,
    item_profiles,
    power_law_rank,
    standard_normal,
    time_range,
    unit_uniform,
    user_profiles,
    with_affinity,
)

pytestmark = pytest.mark.unit

SMALL = GenerateSettings(n_users=100, n_items=200, n_interactions=2_000, num_partitions=3, seed=11)


def small(**changes) -> GenerateSettings:
    return dataclasses.replace(SMALL, **changes)


_GENERATED: dict[tuple, pd.DataFrame] = {}


def generated(spark, **changes) -> pd.DataFrame:
    """The events of ``small(**changes)``, generated once per distinct settings in this module
    (planning a generator query costs seconds; several tests look at the same variants)."""
    key = tuple(sorted(changes.items()))
    if key not in _GENERATED:
        _GENERATED[key] = generate_interactions(spark, small(**changes)).toPandas()
    return _GENERATED[key].copy()


def _scored(spark, events: pd.DataFrame) -> pd.DataFrame:
    """``events`` with the generator's latent affinity of each (user, item) under SMALL."""
    return with_affinity(spark.createDataFrame(events), SMALL).toPandas()


@pytest.fixture(scope="module")
def events(spark) -> pd.DataFrame:
    return generated(spark)


@pytest.fixture(scope="module")
def scored_events(spark, events) -> pd.DataFrame:
    """The SMALL events with the generator's latent affinity of each (user, item)."""
    return _scored(spark, events)


@pytest.fixture(scope="module")
def blind_scored_events(spark) -> pd.DataFrame:
    """Events without personal draws (``personal_share`` 0: popularity only), with affinity."""
    return _scored(spark, generated(spark, personal_share=0.0))


@pytest.fixture(scope="module")
def items(spark) -> pd.DataFrame:
    return generate_items(spark, SMALL).toPandas()


@pytest.fixture(scope="module")
def item_profile(spark) -> pd.DataFrame:
    return item_profiles(spark, SMALL).toPandas()


@pytest.fixture(scope="module")
def user_profile(spark) -> pd.DataFrame:
    return user_profiles(spark, SMALL).toPandas()


def top_decile_share(ids: pd.Series) -> float:
    """Share of events held by the 10% most frequent ids among those seen."""
    counts = ids.value_counts()
    return counts.iloc[: max(1, len(counts) // 10)].sum() / counts.sum()


# --- building blocks -------------------------------------------------------------------------


def test_power_law_rank_inverts_the_continuous_cdf(spark):
    u_values = [0.0, 0.5, 0.95, 0.999999]
    frame = spark.createDataFrame([(u,) for u in u_values], "u double")
    ranked = frame.select(
        *[power_law_rank(F.col("u"), 9, s).alias(f"exponent_{s}") for s in (0.0, 1.0, 2.0)]
    ).toPandas()
    # n = 9: r = 1 + 9u (s = 0), r = 10 ** u (s = 1), r = 1 / (1 - 0.9u) (s = 2); rank = floor(r) - 1.
    assert ranked["exponent_0.0"].tolist() == [0, 4, 8, 8]  # 1, 5.5, 9.55, 9.99999
    assert ranked["exponent_1.0"].tolist() == [0, 2, 7, 8]  # 1, 3.16, 8.91, 9.99998
    assert ranked["exponent_2.0"].tolist() == [0, 0, 5, 8]  # 1, 1.82, 6.90, 9.99991
    per_row = frame.withColumn("n", F.lit(9).cast("long")).select(power_law_rank(F.col("u"), F.col("n"), 2.0))
    assert [row[0] for row in per_row.collect()] == [0, 0, 5, 8]


def test_hashed_uniforms_and_normals_are_deterministic_and_well_shaped(spark):
    ids = spark.range(20_000)
    draws = ids.select(
        unit_uniform(3, "id", "a").alias("u"),
        unit_uniform(3, "id", "a").alias("u_again"),
        unit_uniform(3, "id", "b").alias("u_other_purpose"),
        standard_normal(3, "id", "n").alias("z"),
    ).toPandas()
    assert draws["u"].between(0.0, 1.0, inclusive="left").all()
    assert draws["u"].equals(draws["u_again"])
    assert abs(draws["u"].corr(draws["u_other_purpose"])) < 0.05
    assert abs(draws["u"].mean() - 0.5) < 0.01
    assert abs(draws["z"].mean()) < 0.03 and abs(draws["z"].std() - 1.0) < 0.03


def test_time_range_covers_whole_days_in_utc():
    start, end = time_range(small(start_date="2024-01-01", end_date="2024-12-31"))
    assert (start, end) == (1_704_067_200, 1_735_689_599)


@pytest.mark.parametrize(
    "changes",
    [
        {"n_users": 0},
        {"n_items": 0},
        {"latent_dim": 0},
        {"num_partitions": 0},
        {"n_interactions": -1},
        {"implicit_share": 1.5},
        {"personal_share": -0.1},
        {"first_event": -1},
        {"taste_clusters": 0},
        {"taste_sharpness": -1.0},
        {"item_popularity_exponent": -0.1},
        {"start_date": "2024-02-01", "end_date": "2024-01-31"},
        {"start_date": "01/02/2024"},
    ],
)
def test_bad_config_is_rejected(changes):
    with pytest.raises(ValueError):
        small(**changes)


# --- interactions ----------------------------------------------------------------------------


def test_exact_row_count_and_csv_column_order(spark, events):
    assert len(events) == SMALL.n_interactions
    assert list(events.columns) == INTERACTIONS_CSV_COLUMNS
    frame = generate_interactions(spark, small(n_interactions=1))
    assert frame.count() == 1 and frame.rdd.getNumPartitions() == SMALL.num_partitions
    assert generate_interactions(spark, small(n_interactions=0)).count() == 0


def test_same_seed_gives_identical_frames_whatever_the_partitioning(spark, events, items):
    # Two independent computations: the module's frames, and a re-run with another partitioning.
    pd.testing.assert_frame_equal(generated(spark, num_partitions=7), events)
    pd.testing.assert_frame_equal(generate_items(spark, small(num_partitions=7)).toPandas(), items)


def test_an_increment_is_the_continuation_of_a_longer_run(spark, events):
    # the events of 2,000 then of 500 more from first_event 2,000 are those of one 2,500-event run
    longer = generated(spark, n_interactions=2_500)
    increment = generated(spark, n_interactions=500, first_event=2_000)
    pd.testing.assert_frame_equal(longer.iloc[:2_000].reset_index(drop=True), events)
    pd.testing.assert_frame_equal(longer.iloc[2_000:].reset_index(drop=True), increment)


def test_different_seed_gives_different_frames(spark, events, items):
    other = generated(spark, seed=12)
    assert (other["item_id"] != events["item_id"]).mean() > 0.5
    assert (other["user_id"] != events["user_id"]).mean() > 0.5
    other_items = generate_items(spark, small(seed=12)).toPandas()
    assert (other_items["title"] != items["title"]).mean() > 0.9


# Both exponents flatter or steeper at once: one generator run serves both power-law tests (each
# share is a marginal of its own id column).
FLATTER = {"item_popularity_exponent": 0.5, "user_activity_exponent": 0.0}
STEEPER = {"item_popularity_exponent": 1.6, "user_activity_exponent": 1.5}


def test_item_popularity_follows_the_power_law_exponent(spark, events, blind_scored_events):
    assert SMALL.item_popularity_exponent == 1.1
    share = top_decile_share(events["item_id"])
    # Global draws follow the power law over the catalogue, personal draws over each cluster's
    # items (small clusters here), which spreads the top items a little.
    assert top_decile_share(blind_scored_events["item_id"]) > 0.4
    assert share > 0.3
    flatter, steeper = (top_decile_share(generated(spark, **changes)["item_id"]) for changes in (FLATTER, STEEPER))
    assert flatter < share < steeper


def test_user_activity_follows_the_power_law_exponent(spark, events):
    assert SMALL.user_activity_exponent == 0.9
    share = top_decile_share(events["user_id"])
    uniform, steeper = (top_decile_share(generated(spark, **changes)["user_id"]) for changes in (FLATTER, STEEPER))
    assert uniform < 0.2  # the top 10% hold little more than 10%
    assert uniform < share < steeper


def test_popularity_rank_is_a_hash_permutation_of_the_ids(item_profile):
    ranks = item_profile.sort_values("item_id")["item_rank"].to_numpy()
    assert sorted(ranks) == list(range(SMALL.n_items))
    assert not (ranks == np.arange(SMALL.n_items)).all()
    ten_most_popular = item_profile.nsmallest(10, "item_rank")["item_id"]
    assert (ten_most_popular > "i000020").any()


def test_ratings_are_on_the_half_grid_and_null_exactly_for_implicit_events(events):
    explicit = events["event_type"] == "rating"
    assert set(events["event_type"]) == {"rating", "play", "click"}
    assert events.loc[explicit, "rating"].notna().all()
    assert events.loc[~explicit, "rating"].isna().all()
    ratings = events.loc[explicit, "rating"]
    assert ratings.between(0.5, 5.0).all()
    assert ((ratings * 2) == (ratings * 2).round()).all()
    assert abs((~explicit).mean() - SMALL.implicit_share) < 0.04


def test_timestamps_lie_in_range_and_never_before_the_item_release(events, item_profile, user_profile):
    start, end = time_range(SMALL)
    assert events["timestamp"].between(start, end).all()
    joined = events.merge(item_profile, on="item_id")
    assert (joined["timestamp"] >= joined["release_ts"]).all()
    joined = joined.merge(user_profile, on="user_id")
    earliest = np.maximum(joined["window_start"], joined["release_ts"])
    latest = np.maximum(joined["window_end"], np.minimum(earliest + LATE_VISIT_SECONDS, end))
    assert joined["timestamp"].between(earliest, latest).all()


def test_exact_duplicate_events_are_rare(events):
    duplicated = events.duplicated(["user_id", "item_id", "event_type", "timestamp"])
    assert duplicated.mean() < 0.01


def test_ratings_are_learnable_from_latent_affinity(scored_events):
    assert scored_events["affinity"].notna().all()
    ratings = scored_events[scored_events["event_type"] == "rating"]
    liked = ratings.loc[ratings["affinity"] > 0, "rating"].mean()
    disliked = ratings.loc[ratings["affinity"] < 0, "rating"].mean()
    assert liked - disliked > 0.8


def test_events_prefer_items_with_higher_affinity(spark, scored_events, blind_scored_events):
    # The same users with the items shuffled among events keep both popularity marginals and
    # lose the taste: their mean affinity is that of popularity draws.
    shuffled = scored_events[["user_id"]].assign(
        item_id=scored_events["item_id"].sample(frac=1.0, random_state=0).to_numpy()
    )
    shuffled_affinity = with_affinity(spark.createDataFrame(shuffled), SMALL).toPandas()["affinity"]
    assert scored_events["affinity"].mean() - shuffled_affinity.mean() > 0.4
    assert abs(blind_scored_events["affinity"].mean()) < 0.15


def test_personal_events_come_from_the_users_taste_clusters(events, blind_scored_events, user_profile, item_profile):
    cluster_of = item_profile.set_index("item_id")["taste_cluster"]
    assert cluster_of.between(0, SMALL.taste_clusters - 1).all()
    cdf = np.stack(user_profile.set_index("user_id")["taste_cdf"].to_list())
    assert cdf[:, -1] == pytest.approx(1.0) and (np.diff(cdf, axis=1) >= 0).all()
    probability = pd.DataFrame(np.diff(cdf, axis=1, prepend=0.0), index=user_profile["user_id"])
    # Probability that the user's taste gives to the cluster of each event's item, against the
    # 1 / taste_clusters a taste-blind draw would average.
    taste = [probability.at[user, cluster_of[item]] for user, item in zip(events["user_id"], events["item_id"])]
    assert np.mean(taste) > 3.0 / SMALL.taste_clusters
    blind = blind_scored_events
    blind_taste = [probability.at[user, cluster_of[item]] for user, item in zip(blind["user_id"], blind["item_id"])]
    assert np.mean(blind_taste) < 1.5 / SMALL.taste_clusters


def test_generate_section_loads_as_generate_settings():
    assert load_config(None, ["generate.n_users=5", "generate.seed=3"]).generate == GenerateSettings(n_users=5, seed=3)
    with pytest.raises(ConfigError, match="generate.taste_clusters: must be >= 1"):
        load_config(None, ["generate.taste_clusters=0"])


def test_with_affinity_is_the_scaled_dot_product_and_null_for_unknown_ids(spark, item_profile, user_profile):
    users = user_profile.set_index("user_id")
    items = item_profile.set_index("item_id")
    pairs = spark.createDataFrame(
        [("u000003", "i000007"), ("u999999", "i000007")], "user_id string, item_id string"
    )
    result = with_affinity(pairs, SMALL).orderBy("user_id").toPandas()
    dot = np.dot(users.loc["u000003", "user_factors"], items.loc["i000007", "item_factors"])
    expected = dot / np.sqrt(SMALL.latent_dim)
    assert result["affinity"].iloc[0] == pytest.approx(expected)
    assert pd.isna(result["affinity"].iloc[1])
    with pytest.raises(ValueError, match="item_id"):
        with_affinity(pairs.select("user_id"), SMALL)


# --- items -----------------------------------------------------------------------------------


def test_items_cover_every_id_with_one_to_three_known_genres(items):
    assert list(items.columns) == ITEMS_CSV_COLUMNS
    assert list(items["item_id"]) == [f"i{i:06d}" for i in range(SMALL.n_items)]
    genre_lists = items["genres"].str.split("|")
    assert genre_lists.map(len).between(1, 3).all()
    assert genre_lists.map(lambda g: set(g) <= set(GENRES) and len(set(g)) == len(g)).all()
    assert set(genre_lists.map(len)) == {1, 2, 3}


def test_titles_carry_the_release_year_and_descriptions_the_genre(items, item_profile):
    assert items["title"].str.fullmatch(r"[A-Z][a-z]+( [A-Z][a-z]+){0,2} \(\d{4}\)").all()
    release_ts = item_profile.set_index("item_id")["release_ts"]
    release_years = pd.to_datetime(release_ts, unit="s", utc=True).dt.year
    title_years = items.set_index("item_id")["title"].str.extract(r"\((\d{4})\)$")[0].astype(int)
    assert (title_years == release_years.loc[title_years.index]).all()
    primary = items["genres"].str.split("|").str[0].str.lower()
    for genre, description in zip(primary, items["description"]):
        assert re.fullmatch(rf"A [a-z]+ {re.escape(genre)} story of [a-z]+ and [a-z]+\.", description)


def test_genres_follow_the_latent_factors(items, item_profile):
    factors = np.stack(item_profile.set_index("item_id").loc[items["item_id"], "item_factors"].to_list())
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    primary = items["genres"].str.split("|").str[0].to_numpy()
    same_genre = primary[:, None] == primary[None, :]
    off_diagonal = ~np.eye(len(primary), dtype=bool)
    assert cosine[same_genre & off_diagonal].mean() - cosine[~same_genre].mean() > 0.2
