"""Notebook 04: every article's embedding written to a file (``export``: settings, sharded resumable writing,
summary, spot check; ``from_features``: from the stored backbone features).
"""
