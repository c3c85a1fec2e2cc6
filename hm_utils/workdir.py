"""Every file one notebook hands to the next: where it lives in ``WORK_DIR`` and how it is read and written.

One home for the hand-off files, so that a notebook never rebuilds what an earlier one decided: it reads
the file that notebook wrote. Each reader names the notebook that writes the file when it is missing
(:func:`hm_utils.storage.require_file`); each writer is atomic (temporary name, then rename).

The backbone feature store (``features/``) keeps its own module, :mod:`hm_utils.features`: it is a cache
with a manifest (reused while the weights and photos are unchanged), not a decision of one notebook.
"""
from __future__ import annotations

# ---------------------------------------------------------------- tables (01) ---

# ------------------------------------------------------------- triplets (02, 03) ---

# --------------------------------------------------------- models and training (03) ---

# ------------------------------------------------------------ embeddings (04) ---

# ------------------------------------------------- splits and predictions (06, 07) ---
