"""Reason fidelity: do the reasons name why a churner actually left?

Only the simulated data knows why: ``churn generate`` writes each subscriber's churn intent (cause,
lead-up dates, whether it ended in churn) to ``data/truth/intents.parquet``. For the churners whose
cause shows in behaviour, fidelity is the share whose top reasons include a code that names the
cause (:data:`CAUSE_CODES`). A customer table has no such truth: :func:`reason_fidelity` returns None.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from core.config import Settings

# Simulator cause (pipelines/generate.py CAUSES) -> the reason codes (configs/reasons.yaml) that name it.
# "silent" churn has no visible cause by construction and is left out. Codes that name no cause
# (SHORT_TENURE, PLAN_TYPE, TARIFF, VALUE_TIER, USAGE_LEVEL, CONTRACT_TERM) are risk profile, not a cause.
CAUSE_CODES: dict[str, set[str]] = {
    "contract_expiry": {"CONTRACT_EXPIRY"},
    "competitor": {"COMPETITOR_HOTLINE", "CONTACTS_OFF_NET", "CONTACTS_LEFT"},  # contagion: contacts who left
    "dissatisfaction": {"COMPLAINTS", "BILL_SHOCK", "ARREARS", "SERVICE_CONTACT"},
    "disengagement": {
        "USAGE_DROP",
        "USAGE_DECLINE",
        "LOW_USAGE",
        "ZERO_CALL_DAYS",
        "ZERO_CALL_STREAK",
        "NO_RECHARGE",
        "FEW_CONTACTS",
        "CONTACTS_DROP",
    },
}


def intents_file(settings: Settings):
    return settings.truth_dir / "intents.parquet"


def reason_fidelity(
    settings: Settings,
    subscriber_ids: list[str],
    top_codes: list[list[str]],
    churned,
    *,
    snapshot: dt.date | None = None,
) -> dict[str, float] | None:
    """Share of churners with a known cause whose top reason codes name that cause.

    ``subscriber_ids``, ``top_codes`` (the codes of each row's top reasons, e.g. the top 3 of
    :func:`models.reasons.top_reasons`) and ``churned`` (0/1 labels) are aligned row by row, one
    snapshot's rows. Returns None when there is no ground truth (the customer-table path, or data
    not made by ``churn generate``), else

    - ``reason_fidelity``: over churners (``churned == 1``) whose cause is in :data:`CAUSE_CODES`,
      the share whose codes intersect the cause's codes (nan when there are none);
    - ``reason_fidelity_<cause>``: the same per cause (nan when the cause has no churner here);
    - ``reason_fidelity_n``: how many churners were counted;
    - ``reason_fidelity_visible`` / ``reason_fidelity_visible_n``: the same over the churners whose
      lead-up had begun before ``snapshot`` (default: the last of ``features.snapshots``, the
      held-out one of ``churn train`` and ``churn truth``).

    Choices: recovered intents are not counted: their subscribers are not labelled churners, and
    a row whose intent did not end in churn (the label and the truth disagree) is dropped rather
    than guessed at. The headline figure counts every churner with a visible cause, whatever the
    snapshot: a lead-up lasts 21-56 days and the label horizon is 30, so some churners' lead-up
    starts after the snapshot and no feature can show it yet; the ``visible`` figure leaves those
    out, which measures the reasons rather than the timing. Weak-signal intents (a quarter of them,
    with fainter behaviour) are kept: telling their cause is part of the job.
    """
    path = intents_file(settings)
    if settings.features is None or not path.exists():
        return None
    rows = pd.DataFrame(
        {
            "subscriber_id": list(subscriber_ids),
            "codes": list(top_codes),
            "churned": np.asarray(churned).astype(int),
        }
    )
    if not (len(rows["subscriber_id"]) == len(top_codes) == len(rows["churned"])):
        raise ValueError("subscriber_ids, top_codes and churned must have the same length")
    truth = pd.read_parquet(path, columns=["subscriber_id", "churn_cause", "churns", "onset_date"])
    rows = rows[rows["churned"] == 1].merge(truth, on="subscriber_id", how="inner")
    rows = rows[rows["churns"].astype(bool) & rows["churn_cause"].isin(list(CAUSE_CODES))]
    hit = np.array(
        [
            bool(set(codes) & CAUSE_CODES[cause])
            for codes, cause in zip(rows["codes"], rows["churn_cause"], strict=False)
        ],
        dtype=bool,
    )
    snap = pd.Timestamp(snapshot or settings.features.snapshots[-1])
    visible = (pd.to_datetime(rows["onset_date"]) < snap).to_numpy()

    def share(mask: np.ndarray) -> float:
        return float(hit[mask].mean()) if mask.any() else float("nan")

    out = {"reason_fidelity": share(np.ones(len(rows), dtype=bool)), "reason_fidelity_n": float(len(rows))}
    cause = rows["churn_cause"].to_numpy()
    for c in CAUSE_CODES:
        out[f"reason_fidelity_{c}"] = share(cause == c)
    out["reason_fidelity_visible"] = share(visible)
    out["reason_fidelity_visible_n"] = float(visible.sum())
    return out


def cause_counts(settings: Settings, subscriber_ids: list[str], churned) -> dict[str, int]:
    """Churners per cause (including ``silent``) among the given rows: the denominators of the table."""
    truth = pd.read_parquet(intents_file(settings), columns=["subscriber_id", "churn_cause", "churns"])
    rows = pd.DataFrame({"subscriber_id": list(subscriber_ids), "churned": np.asarray(churned).astype(int)})
    rows = rows[rows["churned"] == 1].merge(truth, on="subscriber_id")
    return {
        str(k): int(v) for k, v in rows.loc[rows["churns"].astype(bool), "churn_cause"].value_counts().items()
    }
