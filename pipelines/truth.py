"""What the simulator's ground truth says about the held-out snapshot: the AUC ceiling.

The simulator knows each subscriber's latent churn intent, so its probability is the best any
model could do; the operator's rule checklist, scored on the same subscribers, is the floor a
model must beat. ``churn truth`` prints both, and the champion's figures when training has run.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from pipelines.config import Settings


def truth_report(settings: Settings) -> dict:
    from models.rules import rule_flags

    feats = pd.read_parquet(settings.feature_table)
    labels = pd.read_parquet(settings.label_table)
    truth = pd.read_parquet(settings.truth_dir / "true_probability.parquet")
    test_t = labels["event_timestamp"].max()
    held = labels[labels["event_timestamp"] == test_t].merge(feats, on=["subscriber_id", "event_timestamp"])
    tp = truth[truth["snapshot"] == test_t.tz_localize(None)][["subscriber_id", "true_probability"]]
    held = held.merge(tp, on="subscriber_id", how="left")
    if held["true_probability"].isna().any():
        raise ValueError("ground truth does not cover every held-out subscriber: regenerate the data")
    y = held["churned"].to_numpy()
    rules = rule_flags(held).sum(axis=1).to_numpy()
    out = {
        "snapshot": str(test_t.date()),
        "subscribers": int(len(held)),
        "churners": int(y.sum()),
        "ceiling_roc_auc": float(roc_auc_score(y, held["true_probability"])),
        "ceiling_pr_auc": float(average_precision_score(y, held["true_probability"])),
        "rules_roc_auc": float(roc_auc_score(y, rules)),
        "rules_pr_auc": float(average_precision_score(y, rules)),
    }
    train = settings.reports_dir / "train.json"
    if train.exists():
        t = json.loads(train.read_text())
        winner = t.get("winner")
        for m in ("roc_auc", "pr_auc"):
            if winner and f"{winner}_{m}" in t:
                out[f"champion_{m}"] = float(t[f"{winner}_{m}"])
        out["champion"] = winner
        out["alias"] = t.get("alias", "champion")  # "challenger": the last training did not beat the champion
    return out


def format_report(r: dict) -> str:
    rows = [("ground truth (simulator's own probability)", r["ceiling_roc_auc"], r["ceiling_pr_auc"])]
    if "champion_roc_auc" in r:
        label = f"champion ({r['champion']})" if r.get("alias", "champion") == "champion" else \
            f"last trained, @challenger ({r['champion']})"
        rows.append((label, r["champion_roc_auc"], r.get("champion_pr_auc", np.nan)))
    rows.append(("operator's rule checklist", r["rules_roc_auc"], r["rules_pr_auc"]))
    lines = [f"held-out snapshot {r['snapshot']}: {r['subscribers']} subscribers, {r['churners']} churners", "",
             f"| {'scorer':<44} | ROC-AUC | PR-AUC |", f"|{'-' * 46}|---------|--------|"]
    lines += [f"| {name:<44} | {roc:7.3f} | {pr:6.3f} |" for name, roc, pr in rows]
    return "\n".join(lines)
