"""Hand-built tables shared by the ranking tests."""
from __future__ import annotations

import numpy as np
import pandas as pd


def transactions(rows, day0: pd.Timestamp) -> pd.DataFrame:
    """A transactions table from ``rows`` of (day offset, customer_key, article_id[, price]), the day
    counted from ``day0``; price 0.03 where a row gives none. Columns and dtypes as the loaded data:
    t_dat (datetime64), customer_key and article_id (int32), price (float32)."""
    rows = [tuple(r) if len(r) == 4 else (*r, 0.03) for r in rows]
    df = pd.DataFrame(rows, columns=["day", "customer_key", "article_id", "price"])
    return pd.DataFrame({"t_dat": day0 + pd.to_timedelta(df["day"], unit="D"),
                         "customer_key": df["customer_key"].astype("int32"),
                         "article_id": df["article_id"].astype("int32"),
                         "price": df["price"].astype(np.float32)})
