"""Notebook 05: what an embedding sees (``quality``: neighbour and next-purchase measures, the catalogue
command ``python -m hm_utils.embeddings.quality``).
"""
