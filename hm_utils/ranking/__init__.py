"""Notebook 06: candidate ranking and its judging. ``rankers`` (popularity, repurchase, the original and the
improved embedding rankers), ``candidates`` + ``candidate_features`` + ``learned_ranker`` (LightGBM LambdaRank over
candidates), ``evaluation`` (rolling weeks, slices, ablations, predict all), ``submission`` (the submission file).
"""
