"""Notebook 02's settings: which strategies are mined and how (:class:`MiningSettings`).

The strategies themselves (one negative sampler each) are registered in :mod:`hm_utils.triplets.strategies`;
:mod:`hm_utils.triplets.mining` runs them.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hm_utils.core import config
from hm_utils.core.settings import StageSettings
from hm_utils.triplets.strategies import CATCHALL_GROUPS, STRATEGIES, check_strategy_names


def select_strategies(strategies=None, train_strategy: str = "original") -> list[str]:
    """The strategies a run mines: ``strategies`` (a list, a comma-separated
    string, or None for all of :data:`hm_utils.triplets.strategies.STRATEGIES`), always
    with "original" first (the reference the others are compared to) and
    ``train_strategy`` included. ValueError names unknown ones."""
    if strategies is None:
        names = list(STRATEGIES)
    elif isinstance(strategies, str):
        names = [s.strip() for s in strategies.split(",") if s.strip()]
    else:
        names = list(strategies)
    names = check_strategy_names(["original", *names, *check_strategy_names([train_strategy])])
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class MiningSettings(StageSettings):
    """Notebook 02's settings, passed whole to :func:`mine_triplets` /
    :func:`mine_strategies` and recorded whole (``dataclasses.asdict``) in
    ``metrics/02_triplet_mining.json``. Build it with :meth:`from_profile` or, in the notebook,
    :meth:`~hm_utils.core.settings.StageSettings.from_notebook`.

    strategies: names mined by :func:`mine_strategies`, in order (default all);
        train_strategy: the triplets notebook 03 trains on; require_images: keep
        only triplets whose three articles have an image.
    group_col: article column of the "least-bought group" (negatives).
    seed: random seed (the same inputs and seed give the same triplets).
    last_n: positives come from the customer's last ``last_n`` transaction rows.
    start_date, end_date: inclusive date window ("YYYY-MM-DD" or None) for
        anchors, positives, group counts and popularity, every strategy.
    n_positives ("multi_positive"), popularity_window ("popularity"),
    min_group_share and catchall_groups ("no_catchall"), recent_days
    ("recent"), per_group ("balanced", None: the smallest index group's count):
    see the strategies in :mod:`hm_utils.triplets.strategies` and :func:`mine_triplets`.
    """
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    train_strategy: str = "original"
    require_images: bool = True
    group_col: str = config.PRODUCT_GROUP
    seed: int = 42
    last_n: int = 12
    start_date: str | None = None
    end_date: str | None = None
    n_positives: int = 3
    popularity_window: int = 50
    min_group_share: float = 0.01
    recent_days: int = 90
    per_group: int | None = None
    catchall_groups: tuple[str, ...] = tuple(sorted(CATCHALL_GROUPS))

    def __post_init__(self):
        names = [s.strip() for s in self.strategies.split(",") if s.strip()] \
            if isinstance(self.strategies, str) else self.strategies
        object.__setattr__(self, "strategies", tuple(check_strategy_names(names)))
        check_strategy_names([self.train_strategy])
        object.__setattr__(self, "catchall_groups", tuple(sorted(set(self.catchall_groups))))
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(pd.Timestamp(value).date()))
        if self.last_n < 1 or self.n_positives < 1 or self.popularity_window < 1:
            raise ValueError("last_n, n_positives and popularity_window must be at least 1")

    @classmethod
    def from_profile(cls, profile=None, /, **parameters) -> "MiningSettings":
        """:meth:`hm_utils.core.settings.StageSettings.from_profile` (no profile changes how triplets are
        mined, so the defaults, then every parameter that is not None), with ``strategies`` through
        :func:`select_strategies` ("original" first, ``train_strategy`` included; None: all).
        TypeError names an unknown key."""
        parameters["strategies"] = tuple(select_strategies(parameters.get("strategies"),
                                                           parameters.get("train_strategy") or "original"))
        return super().from_profile(profile, **parameters)
