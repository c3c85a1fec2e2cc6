"""What an embedding sees, measured on vectors alone (no model, no TensorFlow): ``quality`` (neighbour and
next-purchase measures, reference sources, the quality table; 03 chooses its epoch by the next-purchase recall,
05 draws the table) and ``health`` (zero share, dead units, effective rank, mean cosine; 03 and 04 record it).
It comes before ``model`` in the stage order because training uses these measures; the catalogue command that
embeds real photos and measures them is :mod:`hm_utils.export.catalogue`.
"""
