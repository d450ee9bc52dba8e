"""Uplift of a randomised retention experiment: retention of the contacted minus that of the control
group, with an interval that holds for small groups and rates near 0 or 1.

The interval is Newcombe's hybrid score interval for a difference of two proportions (Newcombe 1998,
Statistics in Medicine 17, method 10): Wilson intervals of each rate, combined. The normal
approximation collapses to a zero-width interval when a small control group happens to retain
everyone, and a control group is usually small (a tenth of the list); Newcombe's does not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class Uplift:
    """Retention treated vs control: rates, their difference and its interval, and whether it says anything."""

    n_treated: int
    n_control: int
    retention_treated: float
    retention_control: float
    uplift: float  # retention treated - retention control (NaN when a group is empty)
    low: float
    high: float
    conclusive: bool  # both groups at least min_group: the interval means something
    verdict: str

    def as_dict(self) -> dict:
        return asdict(self)


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def uplift(stay_treated, stay_control, confidence: float = 0.95, min_group: int = 30) -> Uplift:
    """Retention uplift of ``stay_treated`` (bools, one per contacted work order) over ``stay_control``."""
    t, c = np.asarray(stay_treated, dtype=bool), np.asarray(stay_control, dtype=bool)
    nt, nc = len(t), len(c)
    z = float(norm.ppf(0.5 + confidence / 2))
    pt = t.mean() if nt else math.nan
    pc = c.mean() if nc else math.nan
    (lt, ut), (lc, uc) = wilson(int(t.sum()), nt, z), wilson(int(c.sum()), nc, z)
    d = pt - pc
    low = d - math.sqrt((pt - lt) ** 2 + (uc - pc) ** 2)
    high = d + math.sqrt((ut - pt) ** 2 + (pc - lc) ** 2)
    conclusive = nt >= min_group and nc >= min_group
    return Uplift(
        nt,
        nc,
        float(pt),
        float(pc),
        float(d),
        float(low),
        float(high),
        conclusive,
        verdict(nt, nc, low, high, min_group, confidence),
    )


def verdict(nt: int, nc: int, low: float, high: float, min_group: int, confidence: float) -> str:
    """What the figures allow one to say, in plain words."""
    if min(nt, nc) < min_group:
        return f"too small to conclude ({nt} treated, {nc} control; at least {min_group} each needed)"
    level = f"{confidence:.0%}"
    if low > 0:
        return f"the contact retained more subscribers ({level} interval above 0)"
    if high < 0:
        return f"the contact lost subscribers ({level} interval below 0)"
    return f"no effect shown: the {level} interval includes 0"
