"""Settings of the learned ranker (the ``ranker`` config section), lightgbm-free so that loading
a config never imports LightGBM."""
from __future__ import annotations

from dataclasses import dataclass, field

AUTO_BASE = "auto"
NO_BASE = "none"


@dataclass
class RankerSettings:
    """LightGBM lambdarank (objective lambdarank, metric ndcg@``eval_at``) and its place in rerank.

    ``n_estimators`` is the most boosting rounds; training stops after ``early_stopping_rounds``
    rounds without a better ndcg@``eval_at`` on the ``eval_fraction`` of users held out for it
    (those users also choose the published champion, see :mod:`recspark.ranker.blend`).
    ``max_training_users`` and ``max_training_rows`` cap what is collected to the driver: a
    seeded hash sample of whole users, as many as fit both caps. A row is a (user, candidate) with
    its features, about 200 bytes held twice on the driver (Arrow in the JVM, then pandas), so the
    default 1M rows is ~400 MB; at 1M synthetic interactions the union of six sources is ~400
    candidates a user, so 2,500 of 10,000 users train the ranker (MovieLens: all 610).
    ``num_threads`` 0: LightGBM's
    default (all cores) for training; scoring in Spark uses one thread per Python worker.

    ``base_source``: the trees learn a correction to one source's ranking instead of a ranking
    from scratch. The score is ``-ln(rank_<base>)`` (the prior, LightGBM's ``init_score``) plus
    the trees' output, so ties between the trees' piecewise-constant leaves fall back to the
    base ranking, and when the trees do not beat the base alone on the held-out users by more
    than ``min_gain_standard_errors`` standard errors of the per-user gain they are dropped (the
    ranker then serves the base ranking). ``auto``: the source whose ranking has
    the best ndcg@``eval_at`` on the training users (never the held-out ones); ``none``: no
    prior (plain lambdarank); else a source name of the blended sources.

    Pipeline: ``enabled`` blends with the ranker in rerank (the ``ranker`` candidates);
    ``use_tuned``: rerank applies the weekly tune's ranker, hybrid weights and champion (the
    ``blends`` row of ``tuned_params``) when they were fitted for tonight's sources, and fits them
    on validation itself only otherwise; ``sources``
    are the candidate sources it blends (empty: every source present in ``candidates``);
    ``register_model`` registers it as ``model_name`` in MLflow and moves ``champion_alias``
    when its validation NDCG beats the alias holder's. ``champion_tolerance``: when rerank picks
    the published champion, lists within this NDCG@``evaluation.k`` of the best on the selection
    users count as tied and the tie goes to the ranker, then the hybrid, then the sources in
    ``deep.hybrid_sources`` order. On ~100 selection users, differences of a few thousandths come
    and go between splits (``bench/bench_ranker_cv.py``: the fold-to-fold spread of the gains is
    0.001-0.005), and the ranker already falls back to its base source when its trees do not help.
    """

    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 500
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.9
    early_stopping_rounds: int = 50
    eval_fraction: float = 0.2
    eval_at: int = 10
    max_training_users: int = 100_000
    max_training_rows: int = 1_000_000
    seed: int = 42
    num_threads: int = 0
    base_source: str = AUTO_BASE
    min_gain_standard_errors: float = 2.0
    enabled: bool = True
    use_tuned: bool = True
    sources: list[str] = field(default_factory=list)
    register_model: bool = True
    model_name: str = "recspark-ranker"
    champion_alias: str = "champion"
    champion_tolerance: float = 0.005

    def __post_init__(self) -> None:
        for name in ("num_leaves", "n_estimators", "min_data_in_leaf", "early_stopping_rounds", "eval_at",
                     "max_training_users", "max_training_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if self.num_leaves < 2:
            raise ValueError(f"num_leaves: must be >= 2, got {self.num_leaves}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if not self.champion_tolerance >= 0:
            raise ValueError(f"champion_tolerance: must be >= 0, got {self.champion_tolerance}")
        if not self.min_gain_standard_errors >= 0:
            raise ValueError(f"min_gain_standard_errors: must be >= 0, got {self.min_gain_standard_errors}")
        if not 0 < self.feature_fraction <= 1:
            raise ValueError(f"feature_fraction: must be in (0, 1], got {self.feature_fraction}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction: must be in (0, 1), got {self.eval_fraction}")
        if isinstance(self.num_threads, bool) or not isinstance(self.num_threads, int) or self.num_threads < 0:
            raise ValueError(f"num_threads: must be an integer >= 0, got {self.num_threads!r}")
        if not isinstance(self.base_source, str) or not self.base_source.strip():
            raise ValueError(f"base_source: must be 'auto', 'none' or a source name, got {self.base_source!r}")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources: must be distinct, got {self.sources}")
        if self.sources and self.base_source not in (AUTO_BASE, NO_BASE, *self.sources):
            raise ValueError(f"base_source: {self.base_source!r} is not one of sources {self.sources}")
        for name in ("model_name", "champion_alias"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name}: must not be empty")

    def lightgbm_params(self) -> dict:
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [self.eval_at],
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "seed": self.seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }
