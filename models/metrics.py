"""Metrics a retention team reads: ranking (ROC-AUC, PR-AUC, lift and capture at the top of the
list), calibration (Brier, ECE), money (retained revenue at the team's capacity) and the expected
maximum profit of a retention campaign (EMPC, Verbraken, Verbeke & Baesens 2013).

Conventions: ``y`` is 1 for a churner, ``score`` the predicted churn probability (higher = riskier),
``value`` the monthly value of a row in CNY (e.g. the ``monthly_charge`` feature). Rankings break
ties in score by row order (stable sort), so a hand case is reproducible.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betainc
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from core.config import EvaluationConfig, Settings

TOP_PERCENTS = (1, 5, 10)
ECE_BINS = 10


def _top(score: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the ``fraction`` highest scores (at least one row), best first."""
    k = max(1, int(round(len(score) * fraction)))
    return np.argsort(-np.asarray(score, dtype=float), kind="stable")[:k]


def top_fraction_lift(y: np.ndarray, score: np.ndarray, fraction: float = 0.1) -> float:
    """Churn rate among the top ``fraction`` by score, divided by the overall churn rate."""
    y = np.asarray(y, dtype=float)
    return float(y[_top(score, fraction)].mean() / y.mean()) if y.mean() > 0 else float("nan")


def top_fraction_capture(y: np.ndarray, score: np.ndarray, fraction: float = 0.1) -> float:
    """Share of all churners found among the top ``fraction`` by score (recall at that depth)."""
    y = np.asarray(y, dtype=float)
    return float(y[_top(score, fraction)].sum() / y.sum()) if y.sum() > 0 else float("nan")


def brier(y: np.ndarray, score: np.ndarray) -> float:
    """Mean squared difference between the predicted probability and the 0/1 outcome."""
    y, score = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    return float(np.mean((score - y) ** 2))


def expected_calibration_error(y: np.ndarray, score: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over ``bins`` equal-frequency bins: sum over bins of bin_share * |mean(y) - mean(score)|.

    Binning: rows are sorted by score (stable) and cut into ``bins`` groups of as equal a size as
    possible (``np.array_split`` of the ranks: sizes differ by at most one). Cutting by rank rather
    than by score value means every bin holds about n/bins rows even when scores crowd near 0, as
    churn probabilities do (equal-width bins would leave most bins nearly empty); rows with the same
    score may fall in neighbouring bins.
    """
    y, score = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    n = len(y)
    order = np.argsort(score, kind="stable")
    return float(
        sum(
            len(b) / n * abs(y[b].mean() - score[b].mean())
            for b in np.array_split(order, min(bins, n))
            if len(b)
        )
    )


def _config(settings: Settings | None) -> EvaluationConfig:
    return settings.evaluation if settings is not None else EvaluationConfig()


def retained_revenue_at_capacity(
    y: np.ndarray, score: np.ndarray, value: np.ndarray, settings: Settings | None = None
) -> dict[str, float]:
    """What the list is worth when the team can contact only ``capacity_share`` of the rows.

    The list is ranked by expected loss, ``score * value`` (probability of leaving times the monthly
    value at stake, DOMAIN.md: rank by what is at stake); the team contacts the top
    ``k = max(1, round(capacity_share * n))`` rows. Then

    - ``retained_revenue_at_capacity = sum over the top k of score * value * offer_accept_rate``: the
      monthly revenue the campaign expects to keep by the model's own estimate (each contacted row
      would leave with probability ``score``; of those, ``offer_accept_rate`` accept the offer and
      stay). It relies on the scores being calibrated, so read it next to Brier and ECE.
    - ``expected_loss_captured = sum over the top k of y * value / sum over all rows of y * value``:
      the share of the monthly revenue actually lost to churners that the list reaches (nan when no
      churner has value).

    A missing value counts as 0 CNY.
    """
    cfg = _config(settings)
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    value = np.nan_to_num(np.asarray(value, dtype=float), nan=0.0)
    expected = score * value
    top = _top(expected, cfg.capacity_share)
    lost = float((y * value).sum())
    return {
        "retained_revenue_at_capacity": float(expected[top].sum() * cfg.offer_accept_rate),
        "expected_loss_captured": float((y[top] * value[top]).sum() / lost) if lost > 0 else float("nan"),
    }


def _upper_hull(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC convex hull from (0, 0) to (1, 1) (monotone chain, collinear points dropped)."""
    pts: list[tuple[float, float]] = []
    for p in sorted(set(zip(fpr.tolist(), tpr.tolist(), strict=False))):
        while len(pts) >= 2:
            (x1, y1), (x2, y2) = pts[-2], pts[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:  # pts[-1] is not above the chord
                pts.pop()
            else:
                break
        pts.append(p)
    h = np.array(pts, dtype=float)
    return h[:, 0], h[:, 1]


def empc(y: np.ndarray, score: np.ndarray, settings: Settings | None = None) -> dict[str, float]:
    """Expected maximum profit for customer churn, EMPC (Verbraken, Verbeke & Baesens 2013).

    Notation of the paper: pi0 = share of churners, pi1 = 1 - pi0; targeting the customers above a
    threshold t reaches the share F0(t) of the churners and F1(t) of the non-churners (a point
    (F1, F0) = (FPR, TPR) of the ROC curve); delta = d / CLV, phi = f / CLV. The average profit per
    customer of a campaign at t when a share gamma of the contacted churners accepts the offer is

        P(t; gamma) = CLV (gamma (1 - delta) - phi) pi0 F0(t) - CLV (delta + phi) pi1 F1(t)

    (a contacted churner stays with probability gamma: CLV - d - f, or leaves: -f; a contacted
    non-churner takes the offer: -d - f). gamma ~ Beta(alpha, beta) with density h, and

        EMPC = integral over gamma of max over t of P(t; gamma) h(gamma) dgamma.

    Computation (as in the paper, exact, no numerical integration): P is linear in (F1, F0), so
    its maximum over t lies on a vertex of the ROC convex hull. Moving from hull vertex i to i+1
    (steps dF1, dF0) pays iff gamma > gamma_i = (phi pi0 dF0 + (delta + phi) pi1 dF1) / ((1 - delta)
    pi0 dF0); the hull's slopes fall, so the gamma_i rise and vertex i is the optimum for gamma in
    [gamma_{i-1}, gamma_i] (clipped to [0, 1]; gamma_{-1} = 0; vertex (0, 0), "target nobody",
    earns 0). P is linear in gamma, so each piece integrates in closed form with the regularised
    incomplete beta function I: integral_a^b h = I_b(alpha, beta) - I_a(alpha, beta) and
    integral_a^b gamma h = alpha / (alpha + beta) (I_b(alpha + 1, beta) - I_a(alpha + 1, beta)).
    This is exact for the empirical ROC (ties in score are one ROC step) and costs O(n log n),
    where a grid over gamma would be approximate and cost grid x hull points.

    Returns ``empc`` (CNY per customer in the sample) and ``empc_fraction``: the expected share of
    customers targeted at the optimum, sum over vertices of (pi0 F0 + pi1 F1) P(gamma in the
    vertex's interval) (the paper's eta_empc).
    """
    cfg = _config(settings)
    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    pi0 = float(y.mean())
    pi1 = 1.0 - pi0
    if pi0 in (0.0, 1.0):
        return {"empc": float("nan"), "empc_fraction": float("nan")}
    clv, a, b = cfg.empc_clv, cfg.empc_alpha, cfg.empc_beta
    delta, phi = cfg.empc_d / clv, cfg.empc_f / clv
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    f1, f0 = _upper_hull(np.r_[0.0, fpr, 1.0], np.r_[0.0, tpr, 1.0])
    d0, d1 = np.diff(f0), np.diff(f1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gam = np.where(d0 > 0, (phi * pi0 * d0 + (delta + phi) * pi1 * d1) / ((1 - delta) * pi0 * d0), np.inf)
    edges = np.r_[0.0, np.clip(gam, 0.0, 1.0), 1.0]  # vertex i is optimal on [edges[i], edges[i+1]]
    lo, hi = edges[:-1], edges[1:]
    mass = betainc(a, b, hi) - betainc(a, b, lo)
    first = a / (a + b) * (betainc(a + 1, b, hi) - betainc(a + 1, b, lo))
    profit = clv * ((1 - delta) * pi0 * f0 * first - (phi * pi0 * f0 + (delta + phi) * pi1 * f1) * mass)
    return {"empc": float(profit.sum()), "empc_fraction": float(((pi0 * f0 + pi1 * f1) * mass).sum())}


def evaluate(
    y: np.ndarray, score: np.ndarray, value: np.ndarray | None = None, settings: Settings | None = None
) -> dict[str, float]:
    """Every metric of one scorer on one labelled sample, as a flat dict of floats (MLflow metrics).

    Always: ``roc_auc``, ``pr_auc``, ``base_rate``, ``top_decile_lift`` (= ``lift_top10``),
    ``lift_top{1,5,10}`` and ``capture_top{1,5,10}`` (churn rate over the base rate, and share of
    all churners, in the top 1/5/10% by score), ``brier``, ``ece`` (10 equal-frequency bins).
    With ``value`` (monthly CNY per row): ``retained_revenue_at_capacity`` and
    ``expected_loss_captured`` (see :func:`retained_revenue_at_capacity`; capacity and accept rate
    from ``settings.evaluation``, or its defaults). With ``settings``: ``empc`` and
    ``empc_fraction`` (see :func:`empc`).
    """
    y = np.asarray(y).astype(int)
    score = np.asarray(score, dtype=float)
    both = 0 < y.sum() < len(y)
    out = {
        "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, score)) if both else float("nan"),
        "top_decile_lift": top_fraction_lift(y, score, 0.1),
        "base_rate": float(np.mean(y)),
    }
    for pct in TOP_PERCENTS:
        out[f"lift_top{pct}"] = top_fraction_lift(y, score, pct / 100)
    for pct in TOP_PERCENTS:
        out[f"capture_top{pct}"] = top_fraction_capture(y, score, pct / 100)
    out["brier"] = brier(y, score)
    out["ece"] = expected_calibration_error(y, score)
    if value is not None:
        out.update(retained_revenue_at_capacity(y, score, value, settings))
    if settings is not None:
        out.update(empc(y, score, settings))
    return out
