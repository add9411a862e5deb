"""Peer recommenders for bench_quality.py, run inside a bench-only venv (no recspark, no Spark).

Usage: python quality_peers.py SPLIT_PARQUET OUT_DIR MODEL [MODEL ...]
MODEL: implicit_als | implicit_bm25 (venv with implicit) | cornac_bpr | cornac_bivae (venv with cornac).

SPLIT_PARQUET has user_idx, item_idx, split (train / validation / test). implicit models are tuned
on validation (fit on train, NDCG@10 of the validation pairs, seen train items excluded), then
refit on train + validation; cornac models use Microsoft Recommenders' published MovieLens
settings (no tuning). Each model writes OUT_DIR/<model>.parquet (user_idx, item_idx, score, rank
1..10) for the test users, train + validation items excluded, and OUT_DIR/<model>.json (chosen
params, validation NDCG@10 per grid point, fit seconds).
"""
from __future__ import annotations

import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

K = 10
SEED = 42
ALS_GRID = {"factors": [64, 128], "regularization": [0.01, 0.1], "alpha": [1.0, 10.0], "iterations": [15, 30]}
BM25_GRID = {"K1": [0.6, 1.2], "B": [0.5, 0.75], "K": [50, 200]}
# implicit's item-item models convert their own weighted matrix and warn about it on every call.
warnings.filterwarnings("ignore", message="Method expects CSR input")


def matrix(pairs: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    ones = np.ones(len(pairs), dtype=np.float32)
    return sp.csr_matrix((ones, (pairs["u"].to_numpy(), pairs["i"].to_numpy())), shape=(n_users, n_items))


def ndcg_at_k(recommended: np.ndarray, users: np.ndarray, truth: pd.DataFrame) -> float:
    """Mean binary NDCG@K over ``users`` (rows of ``recommended``, item positions), for tuning only."""
    relevant = truth.groupby("u")["i"].apply(set).to_dict()
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    values = []
    for user, items in zip(users, recommended):
        rel = relevant.get(user)
        if not rel:
            continue
        dcg = sum(discounts[p] for p, item in enumerate(items[:K]) if item in rel)
        values.append(dcg / discounts[: min(len(rel), K)].sum())
    return float(np.mean(values))


def implicit_top_k(model, seen: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids, scores = model.recommend(users, seen[users], N=K, filter_already_liked_items=True)
    return ids, scores


def build_implicit(name: str, params: dict):
    if name == "implicit_als":
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(random_state=SEED, num_threads=2, **params)
    from implicit.nearest_neighbours import BM25Recommender

    return BM25Recommender(num_threads=2, **params)


def run_implicit(name: str, frames: dict, n_users: int, n_items: int) -> tuple[pd.DataFrame, dict]:
    grid = ALS_GRID if name == "implicit_als" else BM25_GRID
    train = matrix(frames["train"], n_users, n_items)
    validation = frames["validation"]
    val_users = np.unique(validation["u"].to_numpy())
    trials = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        model = build_implicit(name, params)
        model.fit(train, show_progress=False)
        ids, _ = implicit_top_k(model, train, val_users)
        trials.append({"params": params, "validation_ndcg@10": ndcg_at_k(ids, val_users, validation)})
    best = max(trials, key=lambda t: t["validation_ndcg@10"])
    fit_rows = pd.concat([frames["train"], validation])
    seen = matrix(fit_rows, n_users, n_items)
    start = time.perf_counter()
    model = build_implicit(name, best["params"])
    model.fit(seen, show_progress=False)
    test_users = np.unique(frames["test"]["u"].to_numpy())
    ids, scores = implicit_top_k(model, seen, test_users)
    info = {"chosen": best, "trials": trials, "refit_and_recommend_seconds": time.perf_counter() - start}
    return lists(test_users, ids, scores), info


def run_cornac(name: str, frames: dict, n_users: int, n_items: int) -> tuple[pd.DataFrame, dict]:
    import cornac

    fit_rows = pd.concat([frames["train"], frames["validation"]])
    triples = list(zip(fit_rows["u"].astype(str), fit_rows["i"].astype(str), np.ones(len(fit_rows))))
    data = cornac.data.Dataset.from_uir(triples, seed=SEED)
    if name == "cornac_bpr":
        params = {"k": 200, "max_iter": 100, "learning_rate": 0.01, "lambda_reg": 0.001}
        model = cornac.models.BPR(seed=SEED, verbose=False, **params)
    else:
        params = {"k": 50, "encoder_structure": [100], "act_fn": "tanh", "likelihood": "pois", "n_epochs": 500,
                  "batch_size": 128, "learning_rate": 0.001}
        model = cornac.models.BiVAECF(seed=SEED, use_gpu=False, verbose=False, **params)
    start = time.perf_counter()
    model.fit(data)
    seen = matrix(fit_rows, n_users, n_items).tolil()
    test_users = np.unique(frames["test"]["u"].to_numpy())
    item_of_inner = np.array([int(i) for i in data.item_ids])
    all_ids, all_scores = [], []
    for user in test_users:
        inner = data.uid_map.get(str(user))
        if inner is None:
            all_ids.append(np.full(K, -1)), all_scores.append(np.full(K, -np.inf))
            continue
        scores = np.asarray(model.score(inner), dtype=np.float64)
        scores[np.isin(item_of_inner, seen.rows[user])] = -np.inf
        top = np.argsort(-scores, kind="stable")[:K]
        all_ids.append(item_of_inner[top]), all_scores.append(scores[top])
    info = {"chosen": {"params": params}, "fit_and_recommend_seconds": time.perf_counter() - start}
    return lists(test_users, np.array(all_ids), np.array(all_scores)), info


def lists(users: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({
        "u": np.repeat(users, ids.shape[1]), "i": ids.ravel(), "score": scores.ravel().astype(np.float64),
        "rank": np.tile(np.arange(1, ids.shape[1] + 1), len(users)).astype(np.int32),
    })
    return frame[(frame["i"] >= 0) & np.isfinite(frame["score"])]


def main(split_path: str, out_dir: str, models: list[str]) -> None:
    split = pd.read_parquet(split_path, columns=["user_idx", "item_idx", "split"])
    user_codes, users = pd.factorize(split["user_idx"])
    item_codes, items = pd.factorize(split["item_idx"])
    split = split.assign(u=user_codes, i=item_codes)
    frames = {name: split[split["split"] == name] for name in ("train", "validation", "test")}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in models:
        runner = run_implicit if name.startswith("implicit_") else run_cornac
        recs, info = runner(name, frames, len(users), len(items))
        recs = pd.DataFrame({"user_idx": users[recs["u"].to_numpy()].astype(np.int32),
                             "item_idx": items[recs["i"].to_numpy()].astype(np.int32),
                             "score": recs["score"].to_numpy(), "rank": recs["rank"].to_numpy()})
        recs.to_parquet(out / f"{name}.parquet", index=False)
        (out / f"{name}.json").write_text(json.dumps(info, indent=1))
        print(f"{name}: {len(recs)} rows, chosen {info['chosen']}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
