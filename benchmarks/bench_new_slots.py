"""Measurement: places of the learned ranker's twelve kept for new articles (``new_slots``).

The learned ranker's new-article sources put new articles among its candidates (recall@100), but
its scores rarely rank one into the twelve: a new article has no sales to learn from. With
``new_slots = s`` the customer's ``s`` best-scored new candidates (first sold within the last
``new_days`` days, or never sold) take the last places of the twelve when the scores leave them
out (:func:`hm_utils.core.lists.reserve_slots`). This prints what that costs and what it buys,
so that 06's default is chosen by measurement.

On a work directory that notebook 04 has filled, over the last ``--eval-weeks`` rolling weeks
(:func:`hm_utils.ranking.evaluation.evaluate_rolling`, each ranker refitted before each week), for
``learned`` (both embedding files) and ``learned_random`` (random vectors in their place): one
fit per week, and its twelve with ``new_slots`` = 0 and each of ``--slots`` (the same fitted model,
only the last places differ). Per variant: MAP@12 over all scored customer-weeks, and on the
purchases of articles first sold in the scored week (06's new-article slice) recall@12 and MAP@12;
paired bootstrap 95 % intervals (``--boot`` resamples of customer-weeks) against the same ranker
without kept places, and of real embeddings against random vectors with the same places.

    nice -n 5 python -m benchmarks.bench_new_slots --work-dir work/demo --eval-weeks 4

Without a filled work directory (e.g. ``python -m benchmarks``) it says so and exits.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.ranking_inputs import load_ranking_inputs


def slot_view_class():
    """A ranker that answers with another learned ranker's fitted model, ``new_slots`` places
    kept: one LightGBM fit per week serves every number of places."""
    from hm_utils.core.config import T_DAT
    from hm_utils.data.purchase_history import as_transactions
    from hm_utils.ranking.rankers import Ranker

    class SlotView(Ranker):
        def __init__(self, base, new_slots: int, name: str):
            self.base, self.new_slots, self.name = base, int(new_slots), name

        def fit(self, transactions, **options):
            t = as_transactions(transactions)
            fitted_on = (t[T_DAT].max(), len(t))
            if getattr(self.base, "bench_fitted_on", None) != fitted_on:   # the first view this week fits
                self.base.fit(t)
                self.base.bench_fitted_on = fitted_on
            self.popular_, self.fit_end_ = self.base.popular_, self.base.fit_end_
            return self

        def _predict(self, keys):
            self.base.new_slots = self.new_slots
            try:
                return self.base._predict(keys)
            finally:
                self.base.new_slots = 0

        def predict_top(self, keys, k: int = 100):
            return self.base.predict_top(keys, k)

    return SlotView


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_new_slots")
    p.add_argument("--work-dir", default="work/demo")
    p.add_argument("--eval-weeks", type=int, default=4)
    p.add_argument("--slots", default="1,2", help="numbers of kept places to measure besides 0")
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--profile", default="demo", help="the profile whose candidate quotas the learned ranker uses")
    p.add_argument("--scale", help="ignored (python -m benchmarks passes it)")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    inputs = load_ranking_inputs(work)
    if inputs is None:
        return 0
    t, customers, articles, emb = inputs
    from hm_utils.core.intervals import compare, summarize
    from hm_utils.ranking.evaluation import RankingSettings, evaluate_rolling, random_embeddings
    from hm_utils.ranking.learned_ranker import LearnedRanker
    from hm_utils.ranking.new_articles import NEW, compare_on_slice, pool_customer_slices
    from hm_utils.ranking.rankers import RepurchaseRanker

    rand = random_embeddings(emb, args.seed)
    kwargs = RankingSettings.from_profile(args.profile).learned_kwargs()
    slots = [0] + [int(s) for s in args.slots.split(",") if s]
    SlotView = slot_view_class()
    rankers = [RepurchaseRanker()]
    for family, vectors in (("learned", emb), ("learned_random", rand)):
        base = LearnedRanker(articles, customers, vectors, seed=args.seed, progress=False, name=family, **kwargs)
        rankers += [SlotView(base, s, f"{family}_s{s}") for s in slots]
    t0 = time.perf_counter()
    res = evaluate_rolling(rankers, t, args.eval_weeks)
    print(f"{work}: {len(t):,} transactions, {t['customer_key'].nunique():,} customers; {args.eval_weeks} rolling "
          f"weeks in {time.perf_counter() - t0:.0f} s (candidate quotas of profile {args.profile!r})")
    summ = summarize(res.ap, "repurchase", args.boot, args.seed).set_index("ranker")
    rows = res.customer_slices
    new = pool_customer_slices(rows[rows["slice"] == NEW]).set_index("ranker")
    n_cw = int(summ.loc["repurchase", "customer_weeks"])
    print(f"\nall purchases: {n_cw:,} customer-weeks; new articles: {int(new['purchases'].iloc[0]):,} purchases by "
          f"{int(new['customer_weeks'].iloc[0]):,} customer-weeks\n")
    print("| ranker | kept places | MAP@12 | minus no kept places [95 %] | new: recall@12 | minus no kept places "
          "[95 %] | new: MAP@12 | new: real minus random vectors, recall@12 [95 %] |")
    print("| --- | ---: | ---: | --- | ---: | --- | ---: | --- |")
    fmt = "{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]".format
    for family in ("learned", "learned_random"):
        for s in slots:
            name, ref = f"{family}_s{s}", f"{family}_s0"
            vs0 = new_vs0 = vs_random = ""
            if s:
                vs0 = fmt(**compare(res.ap, name, ref, args.boot, args.seed))
                r12 = [c for c in compare_on_slice(rows, name, ref, NEW, args.boot, args.seed) if c["metric"] == "recall12"]
                new_vs0 = fmt(**r12[0]) if r12 else ""
            if family == "learned":
                r12 = [c for c in compare_on_slice(rows, name, f"learned_random_s{s}", NEW, args.boot, args.seed)
                       if c["metric"] == "recall12"]
                vs_random = fmt(**r12[0]) if r12 else ""
            print(f"| {family} | {s} | {summ.loc[name, 'map12']:.4f} | {vs0} | {new.loc[name, 'recall12']:.4f} | "
                  f"{new_vs0} | {new.loc[name, 'map12']:.4f} | {vs_random} |")
    print(f"\nrepurchase MAP@12 {summ.loc['repurchase', 'map12']:.4f}; learned_s0 minus repurchase "
          f"{fmt(**compare(res.ap, 'learned_s0', 'repurchase', args.boot, args.seed))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
