"""Every file one notebook hands to the next: where it lives in ``WORK_DIR`` and how it is read and written.

One home for the hand-off files, so that a notebook never rebuilds what an earlier one decided: it reads
the file that notebook wrote. Each reader names the notebook that writes the file when it is missing
(:func:`hm_utils.storage.require_file`); each writer is atomic (temporary name, then rename).

The backbone feature store (``features/``) keeps its own module, :mod:`hm_utils.features`: it is a cache
with a manifest (reused while the weights and photos are unchanged), not a decision of one notebook.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import config as C
from .storage import read_json, require_file

# ---------------------------------------------------------------- tables (01) ---
# Written by notebook 01 (:func:`hm_utils.loading.prepare_data`).
_TABLES_BY = "01_data_preparation"


def load_articles(work_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``articles.parquet`` from notebook 01 as a DataFrame (the 25 article columns, ids and codes int32;
    only ``columns`` when given)."""
    return pd.read_parquet(require_file(Path(work_dir) / C.ARTICLES_PARQUET, _TABLES_BY), columns=columns)


def load_customers(work_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``customers.parquet`` from notebook 01 (``customer_key`` int32 + the 7 columns)."""
    return pd.read_parquet(require_file(Path(work_dir) / C.CUSTOMERS_PARQUET, _TABLES_BY), columns=columns)


def load_transactions(work_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``transactions.parquet`` from notebook 01: ``t_dat`` datetime64, ``customer_key`` int32,
    ``article_id`` int32, ``price`` float32, ``sales_channel_id`` Int8 (nullable)."""
    path = require_file(Path(work_dir) / C.TRANSACTIONS_PARQUET, _TABLES_BY)
    table = pq.read_table(path, columns=columns)
    return table.to_pandas(date_as_object=False, types_mapper={pa.int8(): pd.Int8Dtype()}.get)


def load_data_source(work_dir: str | Path) -> dict:
    """``data_source.json`` written by notebook 01 (data_dir, source, counts)."""
    return read_json(require_file(Path(work_dir) / C.DATA_SOURCE_JSON, _TABLES_BY))


def load_images(work_dir: str | Path) -> pd.DataFrame:
    """``images.parquet`` from notebook 01 (``article_id`` int32, ``path`` relative to the data folder,
    ``has_image`` bool) plus ``config.IMAGE_ABS_PATH`` (``abs_path``, str): the image file's absolute path."""
    images = pd.read_parquet(require_file(Path(work_dir) / C.IMAGES_PARQUET, _TABLES_BY))
    root = Path(load_data_source(work_dir)["data_dir"])
    images[C.IMAGE_ABS_PATH] = [str(root / p) for p in images[C.IMAGE_PATH]]
    return images



# ------------------------------------------------------------- triplets (02, 03) ---
# Notebook 02 writes every strategy's triplets in one file; 03 and 05 read their training strategy.
_TRIPLETS_BY = "02_triplet_mining"


def write_triplets(triplets: pd.DataFrame, work_dir) -> Path:
    """Write ``WORK_DIR/triplets.parquet`` atomically after checking the schema
    (customer_key int32, anchor/positive/negative int32, strategy str;
    :func:`hm_utils.mining.combine_triplets`, KeyError naming a missing column). Returns the path."""
    from .mining import combine_triplets
    from .storage import write_parquet

    return write_parquet(combine_triplets([triplets]), Path(work_dir) / C.TRIPLETS_PARQUET)


def load_triplets(work_dir, strategy: str | None = None) -> pd.DataFrame:
    """``triplets.parquet`` from notebook 02, all strategies or only ``strategy``.

    An unknown strategy name is a ValueError naming the strategies there are. A
    known strategy with no rows in the file (none mined, or none left after the
    image filter, as on a small excerpt) gives an empty frame and a warning
    naming the strategies present, so that the next notebook can say so.
    """
    import warnings

    from .negatives import STRATEGIES

    path = require_file(Path(work_dir) / C.TRIPLETS_PARQUET, _TRIPLETS_BY)
    df = pd.read_parquet(path)
    if strategy is not None:
        present = list(dict.fromkeys(df[C.STRATEGY]))
        if strategy not in present:
            if strategy not in STRATEGIES:
                raise ValueError(f"unknown triplet strategy {strategy!r}; known: {', '.join(STRATEGIES)} "
                                 f"({path} has {', '.join(present) or 'none'})")
            warnings.warn(f"{path} has no triplets of strategy {strategy!r} (it has {', '.join(present) or 'none'}); "
                          f"see 02's skip and image-filter counts", UserWarning, stacklevel=2)
        df = df[df[C.STRATEGY] == strategy].reset_index(drop=True)
    return df


# --------------------------------------------------------- models and training (03) ---

# ------------------------------------------------------------ embeddings (04) ---

# ------------------------------------------------- splits and predictions (06, 07) ---
