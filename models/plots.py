"""Figures logged with each training invocation: ROC and precision-recall of every candidate."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


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
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
