"""Seeded generator of an operator's raw records, with churners that carry the operator's signals.

Churn causes follow DOMAIN.md: contract expiry, competitor poaching (calls to 10086/10010 then a
usage drop), dissatisfaction (complaints, bill shock), gradual disengagement (usage decay and
zero-call streaks) and churn with no visible signal. Stayers carry confounders (one-off hotline
calls, travel gaps, holiday dips) so a model has something real, and not trivial, to find.
The true cause of each churner is written to ``data/truth``: never a feature, only for evaluation.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from pipelines.config import Settings
from pipelines.io import write_parquet_atomic

log = logging.getLogger(__name__)

CAUSES = ("contract_expiry", "competitor", "dissatisfaction", "disengagement", "silent")
EVENT_TYPE = {
    "contract_expiry": "cancellation",
    "competitor": "port_out",
    "dissatisfaction": "cancellation",
    "disengagement": "inactivity",
}
HOLIDAYS = [(dt.date(2026, 2, 16), dt.date(2026, 2, 22)), (dt.date(2026, 5, 1), dt.date(2026, 5, 5))]


@dataclass
class RawTables:
    subscribers: pd.DataFrame
    cdr: pd.DataFrame
    billing: pd.DataFrame
    complaints: pd.DataFrame
    churn_events: pd.DataFrame
    truth: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "subscribers": self.subscribers,
            "cdr": self.cdr,
            "billing": self.billing,
            "complaints": self.complaints,
            "churn_events": self.churn_events,
        }


def _subscribers(rng: np.random.Generator, n: int, start: dt.date) -> pd.DataFrame:
    ids = np.array([f"S{i:07d}" for i in range(1, n + 1)])
    postpaid = rng.random(n) < 0.45
    tenure = np.clip(rng.exponential(900, n), 20, 6000).astype(int)
    activation = pd.Timestamp(start) - pd.to_timedelta(tenure, unit="D")
    charge = np.round(np.exp(rng.normal(np.log(np.where(postpaid, 88, 45)), 0.45)), 2)
    q = np.quantile(charge, [0.70, 0.90, 0.98])
    tier = np.select([charge >= q[2], charge >= q[1], charge >= q[0]], ["diamond", "gold", "silver"], "none")
    contract_end = pd.Timestamp(start) + pd.to_timedelta(rng.integers(20, 560, n), unit="D")
    return pd.DataFrame(
        {
            "subscriber_id": ids,
            "activation_date": activation.normalize(),
            "plan": np.where(postpaid, "postpaid", "prepaid"),
            "contract_end_date": pd.Series(contract_end).where(postpaid).dt.normalize(),
            "monthly_fee": charge,
            "vip_tier": tier,
            "region": rng.choice(["north", "south", "east", "west", "central"], n),
        }
    )


def generate(settings: Settings) -> RawTables:
    """Generate all raw tables in memory (write them with :func:`write_raw`)."""
    cfg = settings.data
    rng = np.random.default_rng(cfg.seed)
    start, end = cfg.start_date, cfg.end_date
    days = pd.date_range(start, end, freq="D", inclusive="left")
    n, n_days = cfg.n_subscribers, len(days)
    subs = _subscribers(rng, n, start)
    postpaid = (subs["plan"] == "postpaid").to_numpy()

    # --- who churns, when, and why -------------------------------------------------------
    months = n_days / 30.4
    p_churn = 1 - (1 - cfg.monthly_churn_rate) ** months
    tenure_years = (pd.Timestamp(start) - subs["activation_date"]).dt.days.to_numpy() / 365
    risk = np.where(postpaid, 0.8, 1.2) * np.where(tenure_years < 1, 1.4, 1.0)
    churner = rng.random(n) < np.clip(p_churn * risk / risk.mean(), 0, 0.95)
    churn_day = rng.integers(45, n_days + 20, n)  # some churn just after the data ends (censored)
    churn_day = np.where(churner, churn_day, n_days + 10_000)  # stayers never leave
    cause = np.where(
        postpaid,
        rng.choice(CAUSES, n, p=[0.35, 0.25, 0.15, 0.15, 0.10]),
        rng.choice(CAUSES, n, p=[0.0, 0.35, 0.20, 0.30, 0.15]),
    )
    cause = np.where(churner, cause, "none")
    lead = rng.integers(21, 57, n)
    # contract-expiry churners leave within days of their contract ending
    ce = cause == "contract_expiry"
    contract_end = subs["contract_end_date"].copy()
    contract_end[ce] = (pd.Timestamp(start) + pd.to_timedelta(churn_day[ce] - rng.integers(0, 8, ce.sum()), unit="D"))
    subs["contract_end_date"] = contract_end

    # --- daily activity multiplier ------------------------------------------------------
    d = np.arange(n_days)[None, :]
    mult = np.ones((n, n_days))
    mult *= np.where(days.dayofweek >= 5, 0.8, 1.0)[None, :]
    for h0, h1 in HOLIDAYS:
        mult[:, (days >= pd.Timestamp(h0)) & (days <= pd.Timestamp(h1))] *= 0.55
    cd = churn_day[:, None]
    in_lead = (d >= cd - lead[:, None]) & (d < cd)
    frac = np.clip((d - (cd - lead[:, None])) / lead[:, None], 0, 1)  # 0 -> 1 through the lead-up
    noise = rng.random(n) < 0.25  # a quarter of churners show their signal weakly
    strength = np.where(noise, 0.4, 1.0)[:, None]
    for c, drop in (("competitor", 0.65), ("disengagement", 0.92), ("dissatisfaction", 0.35), ("contract_expiry", 0.2)):
        rows = cause == c
        mult[rows] *= np.where(in_lead[rows], 1 - drop * strength[rows] * frac[rows], 1.0)
    # zero-call streaks: disengaging churners, and travelling stayers (a confounder that ends)
    for i in np.flatnonzero((cause == "disengagement") & ~noise):
        for _ in range(rng.integers(1, 4)):
            s = churn_day[i] - rng.integers(3, lead[i])
            mult[i, max(s, 0) : max(s + rng.integers(3, 9), 0)] = 0
    for i in np.flatnonzero((cause == "none") & (rng.random(n) < 0.08)):
        s = rng.integers(0, n_days - 10)
        mult[i, s : s + rng.integers(4, 11)] = 0
    mult[d >= cd] = 0  # gone

    # --- calls ---------------------------------------------------------------------------
    base = np.clip(np.exp(rng.normal(np.log(3.0), 0.7, n)), 0.3, 25)
    counts = rng.poisson(base[:, None] * mult)
    sub_idx, day_idx = np.nonzero(counts)
    reps = counts[sub_idx, day_idx]
    sub_idx, day_idx = np.repeat(sub_idx, reps), np.repeat(day_idx, reps)
    m = len(sub_idx)
    contact = sub_idx.astype(np.int64) * 40 + rng.integers(0, 40, m)
    other = (13_000_000_000 + (contact * 7_919_993) % 9_000_000_000).astype(str)
    seconds = np.clip(rng.normal(14 * 3600, 4 * 3600, m), 0, 86_399).astype(np.int64)
    calls = pd.DataFrame(
        {
            "subscriber_idx": sub_idx,
            "day_idx": day_idx,
            "seconds": seconds,
            "other_party": other,
            "direction": np.where(rng.random(m) < 0.55, "out", "in"),
            "duration_s": np.clip(rng.lognormal(np.log(90), 1.0, m), 1, 7200).astype(np.int64),
        }
    )
    # hotline calls: competitor churners ring 10086/10010 in the lead-up; a few loyal stayers once
    hot_rows = []
    for i in tqdm(np.flatnonzero(cause == "competitor"), desc="hotline calls", leave=False, disable=None):
        k = rng.integers(1, 5) if not noise[i] else rng.integers(0, 2)
        lo = max(churn_day[i] - lead[i], 0)
        for day in rng.integers(lo, max(churn_day[i], lo + 1), k):
            hot_rows.append((i, day, rng.choice(cfg.competitor_hotlines)))
    for i in np.flatnonzero((cause == "none") & (rng.random(n) < 0.04)):
        hot_rows.append((i, rng.integers(0, n_days), rng.choice(cfg.competitor_hotlines)))
    for i in np.flatnonzero((cause == "contract_expiry") & (rng.random(n) < 0.5)):
        hot_rows.append((i, max(churn_day[i] - rng.integers(1, 20), 0), cfg.own_hotline))
    if hot_rows:
        h = np.array(hot_rows, dtype=object)
        hot = pd.DataFrame(
            {
                "subscriber_idx": h[:, 0].astype(int),
                "day_idx": h[:, 1].astype(int),
                "seconds": rng.integers(8 * 3600, 21 * 3600, len(h)),
                "other_party": h[:, 2].astype(str),
                "direction": "out",
                "duration_s": rng.integers(30, 900, len(h)),
            }
        )
        hot = hot[hot["day_idx"] < np.minimum(churn_day[hot["subscriber_idx"]], n_days)]
        calls = pd.concat([calls, hot], ignore_index=True)
    start_time = (
        pd.Timestamp(start) + pd.to_timedelta(calls["day_idx"], unit="D") + pd.to_timedelta(calls["seconds"], unit="s")
    )
    cdr = pd.DataFrame(
        {
            "subscriber_id": subs["subscriber_id"].to_numpy()[calls["subscriber_idx"]],
            "other_party": calls["other_party"].to_numpy(),
            "start_time": start_time.to_numpy(),
            "duration_s": calls["duration_s"].to_numpy(),
            "direction": calls["direction"].to_numpy(),
        }
    ).sort_values("start_time", kind="stable", ignore_index=True)

    # --- complaints ----------------------------------------------------------------------
    comp = []
    for i in np.flatnonzero(cause == "dissatisfaction"):
        k = rng.integers(1, 4) if not noise[i] else rng.integers(0, 2)
        lo = max(churn_day[i] - lead[i], 0)
        comp += [(i, day) for day in rng.integers(lo, max(churn_day[i], lo + 1), k)]
    bg = rng.poisson(0.15, n)  # background complaints: most who complain stay
    for i in np.flatnonzero(bg):
        comp += [(i, day) for day in rng.integers(0, n_days, bg[i])]
    comp = [(i, day) for i, day in comp if day < min(churn_day[i], n_days)]
    comp_idx = np.array([c[0] for c in comp], dtype=int)
    complaints = pd.DataFrame(
        {
            "subscriber_id": subs["subscriber_id"].to_numpy()[comp_idx],
            "complaint_time": pd.Timestamp(start)
            + pd.to_timedelta(np.array([c[1] for c in comp], dtype=int), unit="D")
            + pd.to_timedelta(rng.integers(8 * 3600, 20 * 3600, len(comp)), unit="s"),
            "category": rng.choice(["billing", "network", "service"], len(comp)),
        }
    ).sort_values("complaint_time", ignore_index=True)

    # --- billing: one bill per month, issued on the month's last day ---------------------
    month_starts = pd.date_range(start, end, freq="MS", inclusive="left")
    bills = []
    for ms in month_starts:
        me = ms + pd.offsets.MonthEnd(0)
        alive = (pd.Timestamp(start) + pd.to_timedelta(churn_day, unit="D")) > me
        me_idx = (me - pd.Timestamp(start)).days
        shock = (cause == "dissatisfaction") & (me_idx >= churn_day - lead) & (me_idx < churn_day) & ~noise
        usage = mult[:, max(me_idx - 29, 0) : me_idx + 1].mean(axis=1)
        charge = subs["monthly_fee"].to_numpy() * (0.85 + 0.3 * np.clip(usage, 0, 1.5)) * np.where(shock, 1.6, 1.0)
        arrears = np.where(rng.random(n) < np.where(shock, 0.4, 0.03), np.round(charge * rng.uniform(0.3, 1.5, n), 2), 0.0)
        bills.append(
            pd.DataFrame(
                {
                    "subscriber_id": subs["subscriber_id"],
                    "bill_month": ms,
                    "bill_date": me.normalize(),
                    "charge": np.round(charge * rng.normal(1, 0.05, n), 2),
                    "arrears": arrears,
                }
            )[alive]
        )
    billing = pd.concat(bills, ignore_index=True)

    # --- churn events and ground truth ---------------------------------------------------
    observed = churner & (churn_day < n_days)
    ev_type = np.array([EVENT_TYPE.get(c, "") for c in cause], dtype=object)
    silent = cause == "silent"
    ev_type[silent] = rng.choice(["port_out", "cancellation", "inactivity"], silent.sum())
    churn_date = pd.Timestamp(start) + pd.to_timedelta(churn_day, unit="D")
    churn_events = pd.DataFrame(
        {
            "subscriber_id": subs["subscriber_id"][observed].to_numpy(),
            "event_date": churn_date[observed],
            "event_type": ev_type[observed].astype(str),
        }
    ).sort_values("event_date", ignore_index=True)
    truth = pd.DataFrame(
        {
            "subscriber_id": subs["subscriber_id"],
            "churn_cause": cause,
            "churn_date": pd.Series(churn_date).where(churner),
            "signal_weak": noise & churner,
        }
    )
    log.info(
        "generated %d subscribers, %d calls, %d bills, %d complaints, %d churn events",
        n, len(cdr), len(billing), len(complaints), len(churn_events),
    )
    return RawTables(subs, cdr, billing, complaints, churn_events, truth)


def write_raw(tables: RawTables, settings: Settings) -> dict[str, str]:
    """Write each raw table as ``data/raw/<table>.parquet`` (atomically) and the truth beside it."""
    out = {}
    for name, df in tables.tables().items():
        out[name] = str(write_parquet_atomic(df, settings.raw_dir / f"{name}.parquet"))
    write_parquet_atomic(tables.truth, settings.workdir / "data" / "truth" / "churn_causes.parquet")
    return out
