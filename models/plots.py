"""Figures logged with each training invocation: ROC and precision-recall, cumulative gains and lift,
reliability (calibration) and the winner's mean |SHAP| per feature."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from models.metrics import expected_calibration_error


def _finish(fig: plt.Figure, axes, title: str, fontsize: int = 8) -> plt.Figure:
    for ax in axes:
        ax.legend(loc="best", fontsize=fontsize)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def candidate_curves(y: np.ndarray, scores: dict[str, np.ndarray], title: str) -> plt.Figure:
    """ROC (left) and precision-recall (right) on the held-out snapshot, one line per candidate."""
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        roc_ax.plot(fpr, tpr, label=name)
        prec, rec, _ = precision_recall_curve(y, s)
        pr_ax.plot(rec, prec, label=name)
    roc_ax.plot([0, 1], [0, 1], ls=":", c="grey", label="chance")
    pr_ax.axhline(float(np.mean(y)), ls=":", c="grey", label=f"base rate {np.mean(y):.3f}")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall (share of churners caught)", ylabel="precision", title="Precision-recall")
    return _finish(fig, (roc_ax, pr_ax), title)


def gains_chart(y: np.ndarray, scores: dict[str, np.ndarray], title: str) -> plt.Figure:
    """Cumulative gains (left: share of churners caught when calling the top x%) and lift (right)."""
    y = np.asarray(y, dtype=float)
    fig, (gain_ax, lift_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    share = np.arange(1, len(y) + 1) / len(y)
    for name, s in scores.items():
        caught = np.cumsum(y[np.argsort(-np.asarray(s), kind="stable")]) / max(y.sum(), 1)
        gain_ax.plot(share, caught, label=name)
        lift_ax.plot(share, caught / share, label=name)
    gain_ax.plot([0, 1], [0, 1], ls=":", c="grey", label="random list")
    lift_ax.axhline(1, ls=":", c="grey", label="random list")
    gain_ax.set(
        xlabel="share of subscribers contacted (ranked by score)",
        ylabel="share of churners caught",
        title="Cumulative gains",
    )
    lift_ax.set(
        xlabel="share of subscribers contacted (ranked by score)",
        ylabel="lift (churn rate / base rate)",
        title="Lift",
        xlim=(0.01, 1),
    )
    lift_ax.set_xscale("log")
    return _finish(fig, (gain_ax, lift_ax), title)


def calibration_plot(y: np.ndarray, probs: dict[str, np.ndarray], title: str, bins: int = 10) -> plt.Figure:
    """Reliability diagram over the same equal-frequency bins as the logged ``ece``, and the score
    histogram."""
    y = np.asarray(y, dtype=float)
    fig, (rel_ax, hist_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    top = 0.0
    for name, p in probs.items():
        p = np.asarray(p, dtype=float)
        obs, pred = calibration_curve(y, p, n_bins=bins, strategy="quantile")
        top = max(top, float(obs.max()), float(pred.max()))
        ece = expected_calibration_error(y, p, bins)
        (line,) = rel_ax.plot(pred, obs, marker="o", ms=4, label=f"{name}  ECE {ece:.3f}")
        hist_ax.hist(p, bins=np.linspace(0, 1, 21), histtype="step", label=name, color=line.get_color())
    rel_ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfectly calibrated")
    rel_ax.set(
        xlabel="mean predicted probability (bin)",
        ylabel="observed churn rate (bin)",
        title=f"Reliability ({bins} equal-frequency bins)",
        xlim=(0, lim := min(1.0, 1.15 * top + 0.01)),
        ylim=(0, lim),
    )
    hist_ax.set(
        xlabel="predicted probability", ylabel="subscribers", title="Score distribution", yscale="log"
    )
    return _finish(fig, (rel_ax, hist_ax), title, fontsize=7)


def shap_summary(model, X, title: str, top: int = 15, max_rows: int = 1000) -> plt.Figure:
    """Mean |SHAP| per feature (log-odds of the raw ranking score) on the held-out rows: top ``top``."""
    X = X.sample(min(max_rows, len(X)), random_state=0) if len(X) > max_rows else X
    e = model.explain(X)
    imp = np.abs(e.contributions).mean(axis=0)
    order = np.argsort(imp)[-top:]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(order) + 1.5))
    ax.barh([e.features[i] for i in order], imp[order], color="tab:blue")
    ax.set(xlabel="mean |SHAP value| (log-odds of the raw score)", title=title)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
