"""Drift of the scored population against the champion's training reference, per feature and for
the score: PSI over bins fixed by the reference, a two-sample test, missing and out-of-range rates.

Why both PSI and a test: with thousands of rows a two-sample test finds a significant difference
in almost any feature between two months (tenure grows, contracts run down, holidays come), so a
p-value alone would alarm every night; PSI measures how large the shift is, the test that it is
not noise. A feature drifts when PSI reaches its threshold *and* the test rejects at
``monitoring.p_value``, or when its missing or out-of-range share rises past its threshold.

The PSI threshold is ``monitoring.psi_alarm``, raised for a feature whose training snapshots already
differ among themselves: ``natural_factor`` times the largest PSI of one training snapshot against
the pooled reference. A 14-day-vs-60-day change feature moves by itself with every holiday that falls
in one of its windows, and the model was trained across that; measured on simulated data
(docs/monitoring.md), a fixed 0.25 alarms on such features on every unshifted date.

Bins: the reference's quantiles (``monitoring.psi_bins``), deduplicated, so a feature that is mostly
zero (complaints, hotline calls) gets a bin for its zeros and a few above, and the bins never move
with the data being judged. The test: Kolmogorov-Smirnov for a feature with more distinct values
than bins, else a chi-square test of the binned counts (KS assumes continuity; counts and flags are
not). Implemented with numpy and scipy, not Evidently: see docs/monitoring.md.

Holidays: a 7-day feature scored right after the May holiday week is a real shift the model never
saw in that window, but an expected one. When at least ``monitoring.holiday_share`` of one of a
feature's windows is an operator holiday (``monitoring.holidays``), its PSI shift is reported as
expected and does not alarm; missing and out-of-range alarms still do. The score's PSI shift is
expected too when every feature shift of that night is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats

from core.config import MonitoringConfig

EPS = 1e-4  # share given to an empty bin, so PSI stays finite


@dataclass(frozen=True)
class ColumnDrift:
    """One column's shift: the bins and shares behind the PSI, the test, the rates and the verdict."""

    name: str
    psi: float
    test: str  # "ks" or "chi2"
    statistic: float
    p_value: float
    threshold: float  # the PSI from which it alarms (see the module docstring)
    missing_reference: float
    missing_current: float
    out_of_range: float  # share of current values outside the declared range
    edges: tuple[float, ...]  # inner bin edges from the reference
    reference_shares: tuple[float, ...]
    current_shares: tuple[float, ...]
    reasons: tuple[str, ...]  # why it alarms; empty: no alarm
    expected: tuple[str, ...] = ()  # a threshold crossed by a shift that is expected (a holiday)

    @property
    def drifted(self) -> bool:
        return bool(self.reasons)

    def as_json(self) -> dict:
        return asdict(self) | {"drifted": self.drifted}


def reference_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges: the reference's quantiles at 1/bins .. (bins-1)/bins, each once."""
    ref = reference[np.isfinite(reference)]
    if not len(ref):
        return np.array([], dtype=float)
    return np.unique(np.quantile(ref, np.arange(1, bins) / bins))


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the finite values per bin: (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    x = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
    return counts / max(len(x), 1)


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index: sum of (cur - ref) * ln(cur / ref), empty bins at ``EPS``."""
    r, c = np.maximum(reference_shares, EPS), np.maximum(current_shares, EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def natural_psi(reference: np.ndarray, groups: np.ndarray, bins: int) -> float:
    """The largest PSI of one group (a training snapshot) against the pooled ``reference``."""
    reference, groups = np.asarray(reference, dtype=float), np.asarray(groups)
    edges = reference_edges(reference, bins)
    pooled = shares(reference, edges)
    return max((psi(pooled, shares(reference[groups == g], edges)) for g in np.unique(groups)), default=0.0)


def two_sample(
    reference: np.ndarray, current: np.ndarray, edges: np.ndarray, bins: int
) -> tuple[str, float, float]:
    """(test, statistic, p-value): KS when the reference has more distinct values than ``bins``, else a
    chi-square test of the counts per bin."""
    ref, cur = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if not len(ref) or not len(cur):
        return "none", float("nan"), float("nan")
    if len(np.unique(ref)) > bins:
        res = stats.ks_2samp(ref, cur)
        return "ks", float(res.statistic), float(res.pvalue)
    table = np.vstack(
        [np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1) for v in (ref, cur)]
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return "chi2", 0.0, 1.0
    chi2, p, _, _ = stats.chi2_contingency(table)
    return "chi2", float(chi2), float(p)


def column_drift(
    name: str,
    reference: np.ndarray,
    current: np.ndarray,
    cfg: MonitoringConfig,
    lo: float | None = None,
    hi: float | None = None,
    natural: float = 0.0,
) -> ColumnDrift:
    """The shift of one column of ``current`` from ``reference`` and whether it alarms."""
    reference, current = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    edges = reference_edges(reference, cfg.psi_bins)
    ref_s, cur_s = shares(reference, edges), shares(current, edges)
    value = psi(ref_s, cur_s)
    test, statistic, p = two_sample(reference, current, edges, cfg.psi_bins)
    miss_r, miss_c = float(np.mean(np.isnan(reference))), float(np.mean(np.isnan(current)))
    finite = current[np.isfinite(current)]
    outside = (finite < lo if lo is not None else False) | (finite > hi if hi is not None else False)
    out_rate = float(np.mean(outside)) if len(finite) else 0.0
    threshold = max(cfg.psi_alarm, cfg.natural_factor * natural)
    reasons = []
    if value >= threshold and p < cfg.p_value:
        reasons.append(f"PSI {value:.2f} >= {threshold:.2f} ({test} p={p:.1e})")
    if miss_c - miss_r > cfg.missing_alarm:
        reasons.append(f"missing {miss_c:.1%} vs {miss_r:.1%} in training")
    if out_rate > cfg.out_of_range_alarm:
        reasons.append(f"{out_rate:.1%} outside [{lo}, {hi}]")
    return ColumnDrift(
        name,
        value,
        test,
        statistic,
        p,
        threshold,
        miss_r,
        miss_c,
        out_rate,
        tuple(float(e) for e in edges),
        tuple(float(s) for s in ref_s),
        tuple(float(s) for s in cur_s),
        tuple(reasons),
    )


def holiday_share(spans: tuple[tuple[int, int], ...], date: dt.date, holidays: list) -> float:
    """The largest share of holiday days in one of the windows (``(first, last)`` days before ``date``)."""
    share = 0.0
    for first, last in spans:
        days = [date - dt.timedelta(days=k) for k in range(first, last + 1)]
        held = sum(any(a <= d <= b for a, b in holidays) for d in days)
        share = max(share, held / len(days))
    return share


def expect_holiday(d: ColumnDrift, share: float, cfg: MonitoringConfig) -> ColumnDrift:
    """``d`` with its PSI alarm moved to ``expected`` when ``share`` of a window is holiday."""
    shifted = [r for r in d.reasons if r.startswith("PSI")]
    if share < cfg.holiday_share or not shifted:
        return d
    kept = tuple(r for r in d.reasons if not r.startswith("PSI"))
    return replace(d, reasons=kept, expected=(f"{shifted[0]}; {share:.0%} of a window is a holiday",))


def expect_score(score: ColumnDrift, features: tuple[ColumnDrift, ...]) -> ColumnDrift:
    """The score's PSI alarm is expected when features shifted that night and every shift was."""
    shifted = [r for r in score.reasons if r.startswith("PSI")]
    if not shifted or any(f.drifted for f in features) or not any(f.expected for f in features):
        return score
    kept = tuple(r for r in score.reasons if not r.startswith("PSI"))
    why = f"{shifted[0]}; the features that moved all moved for a holiday"
    return replace(score, reasons=kept, expected=(why,))
