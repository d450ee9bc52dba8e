"""Reproducible per-row randomness: a uniform number from a keyed hash of (id, salt).

The control-group assignment of the nightly list and the simulator's draws of what a work order did
must not depend on who else is on the list or on the order of the rows: a re-run of the same list
assigns and plays out every subscriber the same way. A seeded generator cannot promise that; a hash can.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

_KEY = "churnwarn-hash16"  # SipHash key of pandas' hash: 16 bytes, fixed (the salt varies the draws)


def hash_uniform(ids: Iterable, salt: str) -> np.ndarray:
    """A number in [0, 1) per id: the same id and salt always give the same number."""
    keys = pd.Series(
        np.asarray(list(ids) if not isinstance(ids, np.ndarray | pd.Series) else ids, dtype=object)
    )
    h = pd.util.hash_pandas_object(keys.astype(str) + "|" + salt, index=False, hash_key=_KEY).to_numpy()
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)
