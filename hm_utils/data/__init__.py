"""Notebook 01: the competition CSVs read as people save them (``csv_files``: the file; ``csv_columns``: the
columns), converted to compact parquet (``loading``), photos (``images``), purchase history (``purchase_history``:
held-out split, rolling weeks, popularity, customer history, the anchor rule, customer profiles), statistics of a
transaction set (``statistics``) and the real data's published values to compare with (``published_stats``).
"""
