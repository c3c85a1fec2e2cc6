"""Measurement: the learned ranker's MAP@12 against the number of label weeks it learns from.

The curve the automatic label-week choice (``LearnedRanker(train_weeks=None)``,
:data:`hm_utils.ranking.learned_ranker.MIN_LABEL_CUSTOMERS`) is read from. On a work
directory that notebook 04 has filled (transactions, customers, articles, both
embedding files), for each number of label weeks (and ``auto``) one learned
ranker is scored over the last ``--eval-weeks`` rolling weeks, refitted before
each (:func:`hm_utils.ranking.evaluation.evaluate_rolling`), next to repurchase; per
setting it prints the labelled customer-weeks it learned from (mean per scored
week), MAP@12 pooled over the scored customer-weeks, and paired bootstrap
intervals against repurchase and against 2 label weeks (the old fixed choice).

    nice -n 5 python -m benchmarks.bench_label_weeks --work-dir work/demo --eval-weeks 4
    nice -n 5 python -m benchmarks.bench_label_weeks --work-dir work/hm_sample --eval-weeks 20

Without a filled work directory (e.g. ``python -m benchmarks``) it says so and exits.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.ranking_inputs import load_ranking_inputs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_label_weeks")
    p.add_argument("--work-dir", default="work/demo")
    p.add_argument("--eval-weeks", type=int, default=4)
    p.add_argument("--label-weeks", default="1,2,4,8,16,auto")
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--scale", help="ignored (python -m benchmarks passes it)")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    inputs = load_ranking_inputs(work)
    if inputs is None:
        return 0
    t, customers, articles, emb = inputs
    from hm_utils.core.intervals import compare, summarize
    from hm_utils.ranking.evaluation import evaluate_rolling
    from hm_utils.ranking.learned_ranker import LearnedRanker
    from hm_utils.ranking.rankers import RepurchaseRanker

    settings = [None if s == "auto" else int(s) for s in args.label_weeks.split(",")]
    names = {s: f"learned_{'auto' if s is None else f'L{s}'}" for s in settings}
    rankers = [RepurchaseRanker()] + [LearnedRanker(articles, customers, emb, train_weeks=s, seed=args.seed,
                                                    name=names[s], progress=False) for s in settings]
    t0 = time.perf_counter()
    res = evaluate_rolling(rankers, t, args.eval_weeks, slices=False)
    print(f"{work}: {len(t):,} transactions, {t['customer_key'].nunique():,} customers, "
          f"{t['article_id'].nunique():,} articles; {args.eval_weeks} rolling weeks in "
          f"{time.perf_counter() - t0:.0f} s")
    summ = summarize(res.ap, "repurchase", args.boot, args.seed).set_index("ranker")
    secs = res.by_week.groupby("ranker")["seconds"].mean()
    lw = res.label_weeks.groupby("ranker")[["weeks", "labelled_customers", "positives"]].mean()
    print(f"\nrepurchase MAP@12 {summ.loc['repurchase', 'map12']:.4f} over "
          f"{int(summ.loc['repurchase', 'customer_weeks']):,} customer-weeks\n")
    print("| label weeks | weeks used (mean) | labelled customer-weeks (mean) | positives (mean) | MAP@12 | "
          "minus repurchase [95 %] | minus 2 label weeks [95 %] | fit+predict s/week |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ref = names.get(2)
    for s in settings:
        n = names[s]
        r = summ.loc[n]
        vs2 = "" if ref is None or n == ref else "{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]".format(
            **compare(res.ap, n, ref, args.boot, args.seed))
        print(f"| {'auto' if s is None else s} | {lw.loc[n, 'weeks']:.1f} | {lw.loc[n, 'labelled_customers']:,.0f} | "
              f"{lw.loc[n, 'positives']:,.0f} | {r['map12']:.4f} | {r['diff']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}] "
              f"| {vs2} | {secs[n]:.1f} |")
    per_week = res.label_weeks[res.label_weeks["ranker"] == names[settings[-1]]]
    print(f"\n{names[settings[-1]]} per scored week: " + "; ".join(
        f"{w.date()}: {r.weeks} weeks, {r.labelled_customers} labelled ({r.reason})"
        for w, r in zip(per_week["week_start"], per_week.itertuples())))
    print(f"customer-weeks per ranker: {int(np.median(summ['customer_weeks'])):,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
