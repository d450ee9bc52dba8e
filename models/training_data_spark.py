"""``training.sample_rows`` drawn on Spark (``features.engine: spark``): only the sample reaches the driver.

The same stratification as :func:`models.training_data.stratified_positions`: the strata's sizes are
counted on the executors (a row per snapshot and label reaches the driver), each stratum's share is
:func:`models.training_data.allocate` of them, so the per-stratum counts equal the DuckDB path's
exactly. Within a stratum the rows kept are those with the smallest seeded hash of their key
(``xxhash64(subscriber_id, event_timestamp, seed)``): deterministic for a seed, whatever the
partitioning. To keep the sort off one executor, a stratum first keeps only the rows whose hash lies
below a threshold sized for a little more than its quota (its quota plus four standard deviations);
those candidates (about the sample's size) are collected and cut to the quota exactly. Should a
stratum's candidates fall short, its threshold doubles and it is drawn again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from models.training_data import TrainingSample, allocate

HASH_BITS = 53  # the hash's low bits as a uniform draw in [0, 1), exact in a double
DRAW = "__sample_draw"
STRATUM = "__sample_stratum"


def _draw(seed: int) -> Column:
    h = F.xxhash64(F.col("subscriber_id"), F.col("event_timestamp").cast("string"), F.lit(seed))
    return F.pmod(h, F.lit(2**HASH_BITS)).cast("double") / float(2**HASH_BITS)


def _stratum(by: Sequence[str]) -> Column:
    """One text key per stratum; sorted, it orders the strata as pandas' sorted group-by does."""
    return F.concat_ws("|", *(F.col(c).cast("string") for c in by))


def stratified_sample(
    frame: DataFrame,
    n_rows: int | None,
    seed: int,
    label: str = "churned",
    by: Sequence[str] = ("event_timestamp",),
) -> tuple[pd.DataFrame, TrainingSample]:
    """``n_rows`` rows of the lazy ``frame`` stratified by ``by`` and ``label``, collected (Arrow), in
    (``by``, subscriber) order; ``None`` or at least every row collects them all."""
    strata_cols = [*by, label]
    keyed = frame.withColumn(STRATUM, _stratum(strata_cols)).withColumn(DRAW, _draw(seed))
    sizes = keyed.groupBy(STRATUM).agg(F.count(F.lit(1)).alias("n"), F.sum(label).alias("pos")).toPandas()
    sizes = sizes.sort_values(STRATUM, ignore_index=True)
    total = int(sizes["n"].sum())
    n = sizes["n"].to_numpy()
    if n_rows is not None and n_rows <= 0:
        raise ValueError(f"a sample needs a positive number of rows, got {n_rows}")
    want = n if n_rows is None or n_rows >= total else allocate(n, n_rows)
    rows = _draw_quota(
        keyed, dict(zip(sizes[STRATUM], want, strict=True)), dict(zip(sizes[STRATUM], n, strict=True))
    )
    churn_total = float(sizes["pos"].sum() / total) if total else 0.0
    sample = TrainingSample(
        requested=n_rows,
        seed=seed,
        strata=tuple(strata_cols),
        n_strata=len(sizes),
        rows_total=total,
        rows_sampled=len(rows),
        churn_rate_total=churn_total,
        churn_rate_sampled=float(rows[label].mean()) if len(rows) else 0.0,
    )
    return rows.sort_values([*by, "subscriber_id"], ignore_index=True), sample


def _draw_quota(keyed: DataFrame, want: dict[str, int], size: dict[str, int]) -> pd.DataFrame:
    """Per stratum the ``want`` rows of smallest draw: candidates below a per-stratum threshold are
    collected and cut; a stratum left short is drawn again with its threshold doubled."""
    frac = {k: _threshold(w, size[k]) for k, w in want.items() if w}
    parts = []
    while frac:
        cut = F.create_map(*(x for k, f in frac.items() for x in (F.lit(k), F.lit(f))))
        rows = keyed.filter(F.col(DRAW) < F.element_at(cut, F.col(STRATUM))).toPandas()
        short = {}
        for k, f in frac.items():
            got = rows[rows[STRATUM] == k].sort_values([DRAW, "subscriber_id"], kind="mergesort")
            if len(got) >= want[k] or f >= 1.0:
                parts.append(got.head(want[k]))
            else:
                short[k] = min(1.0, 2 * f)
        frac = short
    out = pd.concat(parts, ignore_index=True) if parts else keyed.limit(0).toPandas()
    return out.drop(columns=[STRATUM, DRAW])


def _threshold(want: int, size: int) -> float:
    """The share of a stratum expected to hold ``want`` rows and four standard deviations more."""
    return 1.0 if want >= size else min(1.0, (want + 4 * math.sqrt(want) + 10) / size)
