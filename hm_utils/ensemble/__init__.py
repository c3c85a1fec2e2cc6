"""Notebook 07: merging prediction lists (``ensembling``: settings and the merge; ``kernels``: its compiled
per-customer kernel; ``rolling``: ensembles judged over 06's rolling weeks).
"""
