"""Shared by every stage: constants (column names, files, profiles), safe writing, column checks, array and
prediction-list primitives, the metrics (MAP@12, recall, triplet accuracy), paired bootstrap intervals, cosine
similarity, the in-memory embedding index, the hand-off files between notebooks, and what a notebook records
(figures as PNG, key figures as JSON). ``core`` imports nothing else from ``hm_utils``.
"""
