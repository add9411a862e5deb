"""Torch-only entry point: reads the export format (Parquet or .npy), trains, benchmarks."""
from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from deep_planted import NUM_ITEMS, NUM_USERS, planted_batches, planted_pairs
from recspark.deep import standalone
from recspark.deep.settings import TrainSettings
from recspark.deep.training import load_checkpoint

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def export_dir(tmp_path):
    """The planted fixture in the export format, train split in two Parquet parts."""
    train, val = planted_pairs()
    batches = list(planted_batches(train, batch_size=600)(0))
    for name, parts in {
        "train": batches,
        "validation": [{"user_idx": val[:, 0], "item_idx": val[:, 1]}],
        "seen": [{"user_idx": train[:, 0], "item_idx": train[:, 1]}],
    }.items():
        (tmp_path / name).mkdir()
        for i, columns in enumerate(parts):
            pq.write_table(pa.table(columns), tmp_path / name / f"part-{i}.parquet")
    np.save(tmp_path / "genres.npy", np.eye(4, dtype=np.float32)[np.arange(NUM_ITEMS) // 10])
    meta = {"num_users": NUM_USERS, "num_items": NUM_ITEMS, "item_features_file": "genres.npy"}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return tmp_path


COMMON = ["--epochs", "2", "--learning-rate", "0.02", "--k", "3", "--device", "cpu",
          "--cpu-threads", "1"]


def test_train_reads_parquet_and_saves_a_loadable_model(export_dir, tmp_path):
    saved = tmp_path / "model.pt"
    summary = standalone.main(
        ["train", "--shards", str(export_dir), "--model", "two_tower", "--save", str(saved),
         "--param", "embedding_dim=8", "--output", str(tmp_path / "out.json"), *COMMON]
    )
    assert summary["train_rows"] == len(planted_pairs()[0]) * 4
    assert summary["item_features_dim"] == 4 and summary["params"] == {"embedding_dim": 8}
    assert len(summary["history"]) == 2 and summary["train_samples_per_s"] > 0
    assert json.loads((tmp_path / "out.json").read_text())["best_epoch"] == summary["best_epoch"]
    model = load_checkpoint(saved)
    assert model.item_features.shape == (NUM_ITEMS, 4)


def test_npy_columns_give_the_same_training_as_parquet(export_dir):
    before = standalone.main(["train", "--shards", str(export_dir), *COMMON])
    standalone.main(["to-npy", "--shards", str(export_dir)])
    for parquet in export_dir.glob("*/*.parquet"):
        parquet.unlink()
    after = standalone.main(["train", "--shards", str(export_dir), *COMMON])
    assert after["history"][-1]["loss"] == before["history"][-1]["loss"]
    assert after["ndcg@3"] == before["ndcg@3"]


def test_bench_reports_loader_step_inference_and_compression(export_dir):
    summary = standalone.main(
        ["bench", "--shards", str(export_dir), "--compression", "--repeats", "1",
         "--inference-pairs", "400", *COMMON]
    )
    assert summary["loader_vs_step"]["loader_to_step"] > 0
    assert summary["inference"]["pairs"] == 400
    assert [row["variant"] for row in summary["compression"]] == [
        "fp32", "fp16", "bf16", "int8 dynamic", "pruned 50%", "distilled half-width"
    ]


def test_missing_files_are_named(export_dir):
    for parquet in (export_dir / "seen").glob("*.parquet"):
        parquet.unlink()
    with pytest.raises(FileNotFoundError, match=r"seen has neither \*.parquet files nor"):
        standalone.Export.read(export_dir)
    with pytest.raises(FileNotFoundError, match="meta.json not found"):
        standalone.read_meta(export_dir / "train")


def imported_modules(module: str) -> set[str]:
    """Top-level names imported by ``module`` and, transitively, by the recspark modules it
    imports (read from the source, so modules already loaded by other tests do not matter)."""
    seen, todo, found = set(), [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(Path(importlib.util.find_spec(name).origin).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for imported in names:
                found.add(imported.split(".")[0])
                if imported.startswith("recspark"):
                    todo.append(imported)
    return found


def test_the_module_imports_neither_pyspark_nor_petastorm():
    imports = imported_modules("recspark.deep.standalone")
    assert {"torch", "numpy"} <= imports
    assert not imports & {"pyspark", "petastorm", "pandas", "mlflow"}


def test_the_options_are_generated_from_train_settings():
    defaults = standalone.settings_from_args(standalone.parse_args(["train", "--shards", "x"]))
    assert defaults == TrainSettings()
    options = ["--no-mixed-precision", "--cpu-threads", "1", "--loss", "in_batch_softmax", "--k", "5"]
    args = standalone.parse_args(["train", "--shards", "x", *options])
    assert standalone.settings_from_args(args) == TrainSettings(
        mixed_precision=False, cpu_threads=1, loss="in_batch_softmax", k=5
    )
    with pytest.raises(SystemExit):
        standalone.parse_args(["train", "--shards", "x", "--loss", "bpr"])
