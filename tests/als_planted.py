"""A planted taste-group dataset for ALS tests (fold-in, engines): users each like one group of
items, with a popularity order inside every group."""
from __future__ import annotations

import numpy as np
import pandas as pd

N_GROUPS, GROUP_SIZE = 5, 20  # items g * GROUP_SIZE .. (g + 1) * GROUP_SIZE - 1 form group g
PAIRS_PER_USER, TEST_PER_USER = 12, 4


def planted_pairs(n_users: int, first_user: int = 0, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) frames of (user_idx int, item_idx int, confidence double).

    User u likes group u % N_GROUPS: PAIRS_PER_USER distinct items of it, drawn without
    replacement with weight 1 / (position in group + 1) ** 0.7, of which TEST_PER_USER go to
    test; plus one uniformly random catalogue item in train (noise). Confidence 1 + ln(1 + c)
    with a count c in 1..3.
    """
    rng = np.random.default_rng([seed, first_user])
    weights = 1.0 / (np.arange(GROUP_SIZE) + 1.0) ** 0.7
    train, test = [], []
    for user in range(first_user, first_user + n_users):
        group = user % N_GROUPS
        items = group * GROUP_SIZE + rng.choice(GROUP_SIZE, PAIRS_PER_USER, replace=False, p=weights / weights.sum())
        noise = int(rng.integers(N_GROUPS * GROUP_SIZE))
        kept = [int(i) for i in items[TEST_PER_USER:] if i != noise] + [noise]
        train += [(user, item, float(1.0 + np.log1p(rng.integers(1, 4)))) for item in kept]
        test += [(user, int(item), 1.0) for item in items[:TEST_PER_USER] if item != noise]
    columns = ["user_idx", "item_idx", "confidence"]
    return pd.DataFrame(train, columns=columns), pd.DataFrame(test, columns=columns)
