"""Seeded simulator of an operator's raw records, with ground truth.

Each subscriber may form a *churn intent* (a daily hazard from the configured monthly rate, higher
for prepaid, short-tenure and low-value subscribers). The intent has a cause and a lead-up of
``lead_days`` during which the cause shows in behaviour, as the operator's staff are trained to see
it (DOMAIN.md): contract expiry; competitor poaching (calls to 10086/10010, a usage drop, calls
leaning to off-net contacts); dissatisfaction (calls to the 10000 service line, complaints, bill
shock, arrears); gradual disengagement (usage decay, zero-call streaks); and churn with no visible
signal. A quarter of intents show their signal weakly: fainter, not absent. At the end of the
lead-up the subscriber churns (share ``intent_churn_share``) or recovers: a usage drop that comes
back. Stayers carry confounders: a one-off competitor-hotline call, travel gaps, holiday-week
silence, temporary usage dips.
Prepaid subscribers top up their balance in their own rhythm; those leaving for competitor,
dissatisfaction or disengagement reasons stop topping up when the lead-up begins, and some loyal
ones pause for a month or two.
With ``data.graph`` subscribers call each other along ties, and a departure raises the chance that a
tie forms a competitor intent (contagion, :mod:`pipelines.graph`).

Output (``data/landing``, the operator's export as ingestion receives it, phone numbers included):
``subscribers``, ``billing``, ``complaints``, ``churn_events``, ``recharges`` (parquet) and
``cdr/date=YYYY-MM-DD/`` partitions. Ground truth goes to ``data/truth``: each subscriber's intent (cause, onset, end,
outcome, contagion and its source), the ties (``ties.parquet``) and, per snapshot, the churn probabilities the simulator's own process implies, from its
latent state and from what it made visible (:func:`true_probabilities`). It is never a feature;
it measures the AUC ceilings and whether reasons name causes. With ``data.treatment``, the true uplift of
each retention action per subscriber on each snapshot and the default list date goes there too
(``treatment_effects.parquet``, :mod:`pipelines.treatment`).
Subscribers are generated in chunks so 10^8 calls fit in memory, in two passes: every chunk's
subscribers and base intents, then the graph and contagion over all of them, then chunk by chunk the
behaviour of the final intents.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from core.config import Settings
from core.io import replace_dir_atomic, write_parquet_atomic
from pipelines import graph, treatment
from pipelines.scenario import campaign_hotline_calls, campaign_intents

log = logging.getLogger(__name__)

CAUSES = ("contract_expiry", "competitor", "dissatisfaction", "disengagement", "silent")
CAUSE_P_POSTPAID = (0.35, 0.25, 0.15, 0.15, 0.10)
CAUSE_P_PREPAID = (0.00, 0.35, 0.20, 0.30, 0.15)
EVENT_TYPE = {
    "contract_expiry": "cancellation",
    "competitor": "port_out",
    "dissatisfaction": "cancellation",
    "disengagement": "inactivity",
}
HOLIDAYS = [
    (dt.date(2026, 2, 16), dt.date(2026, 2, 22)),
    (dt.date(2026, 5, 1), dt.date(2026, 5, 5)),
    (dt.date(2026, 10, 1), dt.date(2026, 10, 7)),
]
NO_INTENT = 10**6  # end day of subscribers who never form an intent
CONTACTS = 40  # distinct numbers a subscriber calls
VIP_THRESHOLDS = (("diamond", 260.0), ("gold", 170.0), ("silver", 110.0))
TARIFFS = {
    "prepaid": ((0, "prepaid_basic"), (45, "prepaid_plus")),
    "postpaid": ((0, "postpaid_39"), (70, "postpaid_89"), (130, "postpaid_159")),
}
RECHARGE_DENOMINATIONS = np.array([10.0, 20.0, 30.0, 50.0, 100.0, 200.0, 300.0, 500.0])  # top-up cards, CNY
RECHARGE_RHYTHM_DAYS = (7.0, 30.0)  # range of a prepaid subscriber's typical days between top-ups
RECHARGE_STOP_CAUSES = ("competitor", "dissatisfaction", "disengagement")  # top-ups stop from the onset
RECHARGE_PAUSE_SHARE = 0.05  # loyal prepaid subscribers with a long pause in top-ups (a confounder)
OFF_NET_LEAN = 0.6  # share of a competitor lead-up's calls redirected to off-net contacts at its end


@dataclass(frozen=True)
class GenerationSummary:
    subscribers: int
    calls: int
    churn_events: int
    intents: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else float("nan")


def _digits(rng, n: int, width: int) -> np.ndarray:
    return np.char.zfill(rng.integers(0, 10**width, n).astype(str), width)


def _numbers(rng, prefixes: list[str], n: int) -> np.ndarray:
    return np.char.add(rng.choice(np.array(prefixes), n), _digits(rng, n, 8))


def _subscribers(rng, cfg, offset: int, n: int) -> pd.DataFrame:
    idx = np.arange(offset, offset + n)
    start = pd.Timestamp(cfg.start_date)
    prepaid = rng.random(n) < cfg.prepaid_share
    tenure = np.clip(rng.exponential(900, n), 20, 6000).astype(int)
    fee = np.round(np.exp(rng.normal(np.log(np.where(prepaid, 45, 88)), 0.45)), 2)
    tier = np.full(n, "none", dtype=object)
    for name, threshold in reversed(VIP_THRESHOLDS):
        tier[fee >= threshold] = name
    tariff = np.empty(n, dtype=object)
    for plan, steps in TARIFFS.items():
        rows = prepaid if plan == "prepaid" else ~prepaid
        for floor, name in steps:
            tariff[rows & (fee >= floor)] = name
    prefixes = np.array(cfg.on_net_prefixes)
    msisdn = np.char.add(
        prefixes[idx % len(prefixes)], np.char.zfill(((idx * 7919 + 12345) % 10**8).astype(str), 8)
    )
    contract_end = start + pd.to_timedelta(rng.integers(20, 560, n), unit="D")
    return pd.DataFrame(
        {
            "subscriber_id": np.char.add("S", np.char.zfill(idx.astype(str), 7)),
            "msisdn": msisdn,
            "activation_date": (start - pd.to_timedelta(tenure, unit="D")).normalize(),
            "plan": np.where(prepaid, "prepaid", "postpaid"),
            "tariff": tariff.astype(str),
            "contract_end_date": pd.Series(contract_end).where(~prepaid).dt.normalize(),
            "monthly_fee": fee,
            "vip_tier": tier.astype(str),
            "region": rng.choice(["north", "south", "east", "west", "central"], n),
        }
    )


def _intents(rng, cfg, subs: pd.DataFrame) -> pd.DataFrame:
    """Per subscriber: intent cause, onset day, end day, whether it ends in churn, signal strength."""
    n = len(subs)
    prepaid = (subs["plan"] == "prepaid").to_numpy()
    tenure_y = (pd.Timestamp(cfg.start_date) - subs["activation_date"]).dt.days.to_numpy() / 365
    risk = np.where(prepaid, 1.25, 0.8) * np.where(tenure_y < 1, 1.4, 1.0)
    risk *= np.where(subs["vip_tier"].isin(["diamond", "gold"]).to_numpy(), 0.7, 1.0)
    monthly = np.clip(cfg.monthly_churn_rate * risk / risk.mean(), 1e-6, 0.9)
    daily = -np.log1p(-monthly) / 30.4
    lead = rng.integers(cfg.lead_days[0], cfg.lead_days[1] + 1, n)
    end = np.floor(rng.exponential(1 / daily)).astype(np.int64)  # memoryless hazard on the end day
    end[end > cfg.n_days + 2 * cfg.lead_days[1]] = NO_INTENT
    has = end < NO_INTENT
    cause = np.where(
        prepaid, rng.choice(CAUSES, n, p=CAUSE_P_PREPAID), rng.choice(CAUSES, n, p=CAUSE_P_POSTPAID)
    )
    return pd.DataFrame(
        {
            "subscriber_id": subs["subscriber_id"].to_numpy(),
            "churn_cause": np.where(has, cause, "none"),
            "onset_day": np.where(has, end - lead, NO_INTENT),
            "end_day": end,
            "lead_days": lead,
            "churns": has & (rng.random(n) < cfg.intent_churn_share),
            "weak_signal": has & (rng.random(n) < 0.25),
            "daily_hazard": daily,
            "prepaid": prepaid,
        }
    )


def _activity(rng, cfg, days: pd.DatetimeIndex, it: pd.DataFrame) -> np.ndarray:
    """Daily call-rate multiplier per subscriber: rhythm, holidays, confounders and intent lead-ups."""
    n, n_days = len(it), len(days)
    d = np.arange(n_days)[None, :]
    mult = np.broadcast_to(np.where(days.dayofweek >= 5, 0.8, 1.0)[None, :], (n, n_days)).copy()
    for h0, h1 in HOLIDAYS:
        hol = (days >= pd.Timestamp(h0)) & (days <= pd.Timestamp(h1))
        if hol.any():
            mult[:, hol] *= 0.55
            travellers = np.flatnonzero(rng.random(n) < 0.15)  # holiday trips: silence that ends
            first = np.flatnonzero(hol)[0]
            for i in travellers:
                s = first + rng.integers(0, 4)
                mult[i, s : s + rng.integers(3, 8)] = 0
    stayer = it["churn_cause"].to_numpy() == "none"
    for i in np.flatnonzero(stayer & (rng.random(n) < 0.08)):  # travel gaps
        s = rng.integers(0, max(n_days - 10, 1))
        mult[i, s : s + rng.integers(4, 11)] = 0
    for i in np.flatnonzero(stayer & (rng.random(n) < 0.05)):  # temporary dips that recover
        s = rng.integers(0, max(n_days - 21, 1))
        mult[i, s : s + rng.integers(14, 22)] *= 0.4
    onset, end = it["onset_day"].to_numpy()[:, None], it["end_day"].to_numpy()[:, None]
    in_lead = (d >= onset) & (d < end)
    frac = np.clip((d - onset) / np.maximum(end - onset, 1), 0, 1)
    strength = np.where(it["weak_signal"].to_numpy(), 0.4, 1.0)[:, None]
    cause = it["churn_cause"].to_numpy()
    for c, drop in (
        ("competitor", 0.65),
        ("disengagement", 0.92),
        ("dissatisfaction", 0.35),
        ("contract_expiry", 0.2),
    ):
        rows = cause == c
        mult[rows] *= np.where(in_lead[rows], 1 - drop * strength[rows] * frac[rows], 1.0)
    for i in np.flatnonzero((cause == "disengagement") & ~it["weak_signal"].to_numpy()):
        o, e = int(onset[i, 0]), int(end[i, 0])
        for _ in range(rng.integers(1, 4)):
            s = e - rng.integers(3, max(e - o, 4))
            if 0 <= s < n_days:
                mult[i, s : s + rng.integers(3, 9)] = 0
    churned = it["churns"].to_numpy()[:, None] & (d >= end)
    mult[churned] = 0
    return mult


def _in_lead(rng, it, rows, k_strong, k_weak, n_days):
    """(subscriber row, day) pairs: ``k`` events at random days of each selected lead-up."""
    pairs = []
    for i in rows:
        o, e = int(it.at[i, "onset_day"]), int(it.at[i, "end_day"])
        k = rng.integers(*k_weak) if it.at[i, "weak_signal"] else rng.integers(*k_strong)
        for day in rng.integers(o, max(e, o + 1), k):
            if 0 <= day < min(e, n_days):
                pairs.append((i, int(day)))
    return pairs


def _recharges(rng, subs: pd.DataFrame, it: pd.DataFrame, n_days: int, start: pd.Timestamp) -> pd.DataFrame:
    """Prepaid top-ups: ``subscriber_id``, ``recharge_time`` (naive), ``amount`` (CNY, a card value).

    Each prepaid subscriber has a rhythm of 7-30 days between top-ups (log-uniform) and jitters
    around it (gamma, gaps at least 0.35 of the rhythm, so at most one top-up a day). The amount
    is the denomination nearest to the monthly fee's share of one rhythm, now and then one card up
    or down. Intents of the causes in ``RECHARGE_STOP_CAUSES`` stop topping up from the onset of
    the lead-up: for good if they churn, until the end of the lead-up if they recover. Silent
    intents top up as usual until they leave; nobody tops up on or after the day they leave. A
    share of loyal subscribers pauses for 30-60 days. Vectorised over subscribers: one column of
    gaps per top-up round.
    """
    pre = np.flatnonzero((subs["plan"] == "prepaid").to_numpy())
    p = len(pre)
    rhythm = np.exp(rng.uniform(*np.log(RECHARGE_RHYTHM_DAYS), p))
    t = rhythm * rng.random(p)  # the first top-up falls anywhere in the first cycle
    rounds = [t]
    while (t < n_days).any():
        t = t + rhythm * np.clip(rng.gamma(6.0, 1 / 6, p), 0.35, 3.0)
        rounds.append(t)
    times = np.stack(rounds, axis=1)  # (prepaid subscribers, rounds), in days since start
    row, k = np.nonzero(times < n_days)
    day = np.floor(times[row, k]).astype(np.int64)

    cause = it["churn_cause"].to_numpy()[pre][row]
    onset, end = it["onset_day"].to_numpy()[pre][row], it["end_day"].to_numpy()[pre][row]
    gone = np.where(it["churns"].to_numpy()[pre][row], end, NO_INTENT)
    keep = (day < gone) & ~(np.isin(cause, RECHARGE_STOP_CAUSES) & (day >= onset) & (day < end))
    pause = (it["churn_cause"].to_numpy()[pre] == "none") & (rng.random(p) < RECHARGE_PAUSE_SHARE)
    p0 = rng.integers(-30, n_days, p)  # pauses may run in from before the data starts
    p1 = p0 + rng.integers(30, 61, p)
    keep &= ~(pause[row] & (day >= p0[row]) & (day < p1[row]))
    row, day = row[keep], day[keep]

    fee = subs["monthly_fee"].to_numpy()[pre]
    usual = np.abs(np.log(RECHARGE_DENOMINATIONS)[None, :] - np.log(fee * rhythm / 30.4)[:, None]).argmin(
        axis=1
    )
    step = rng.choice([-1, 0, 1], len(row), p=[0.1, 0.8, 0.1])
    amount = RECHARGE_DENOMINATIONS[np.clip(usual[row] + step, 0, len(RECHARGE_DENOMINATIONS) - 1)]
    seconds = np.clip(rng.normal(14.5 * 3600, 3.5 * 3600, len(row)), 7 * 3600, 23 * 3600).astype(np.int64)
    return pd.DataFrame(
        {
            "subscriber_id": subs["subscriber_id"].to_numpy()[pre][row],
            "recharge_time": start + pd.to_timedelta(day * 86_400 + seconds, unit="s"),
            "amount": amount.astype("float64"),
        }
    )


def _lean_off_net(
    rng, cfg, it: pd.DataFrame, pool: np.ndarray, sub_idx: np.ndarray, day_idx: np.ndarray, other: np.ndarray
) -> np.ndarray:
    """Competitor poaching pulls through people: in a competitor intent's lead-up a growing share of the
    subscriber's calls (``OFF_NET_LEAN`` x progress, x0.4 for weak signals) goes to their contacts on
    other networks, the friends and family already with the competitor (the catalogue's "social"
    signal, ``offnet_share_change``). Drawn from a stream of its own so other tables stay as they were."""
    prefixes = np.array(cfg.off_net_prefixes)
    off = (np.char.str_len(pool) == 11) & np.isin(np.char.ljust(pool, 3).astype("<U3"), prefixes)
    own = off.reshape(-1, CONTACTS)  # per subscriber: which of its contacts are off-net
    onset, end = it["onset_day"].to_numpy()[sub_idx], it["end_day"].to_numpy()[sub_idx]
    frac = np.clip((day_idx - onset) / np.maximum(end - onset, 1), 0, 1)
    strength = np.where(it["weak_signal"].to_numpy()[sub_idx], 0.4, 1.0)
    lean = (it["churn_cause"].to_numpy()[sub_idx] == "competitor") & (day_idx >= onset) & (day_idx < end)
    k = own.sum(axis=1)  # off-net contacts per subscriber
    lean &= (rng.random(len(sub_idx)) < OFF_NET_LEAN * strength * frac) & (k[sub_idx] > 0)
    rows = np.flatnonzero(lean)
    first_off = np.argsort(~own, axis=1, kind="stable")  # each subscriber's off-net contacts first
    pick = np.floor(rng.random(len(rows)) * k[sub_idx[rows]]).astype(np.int64)
    other = other.copy()
    other[rows] = sub_idx[rows] * CONTACTS + first_off[sub_idx[rows], pick]
    return other


def _contact_pool(rng, cfg, n: int, kind_p=(0.45, 0.44, 0.08, 0.01, 0.02)) -> np.ndarray:
    """CONTACTS numbers per subscriber: on-net, off-net, landline, international, service numbers
    (kinds in the shares ``kind_p``)."""
    m = n * CONTACTS
    kind = rng.choice(5, m, p=list(kind_p))
    out = _numbers(rng, cfg.on_net_prefixes, m)
    off = kind == 1
    out[off] = _numbers(rng, cfg.off_net_prefixes, off.sum())
    land = kind == 2
    out[land] = np.char.add(
        rng.choice(np.array(["010", "021", "020", "0755", "028"]), land.sum()), _digits(rng, land.sum(), 8)
    )
    intl = kind == 3
    out[intl] = np.char.add(
        rng.choice(np.array(["00852", "00886", "001", "0044"]), intl.sum()), _digits(rng, intl.sum(), 8)
    )
    svc = kind == 4
    out[svc] = rng.choice(np.array(["95533", "95588", "12306", "95555"]), svc.sum())
    return out


@dataclass(frozen=True)
class Calls:
    """A chunk's calls as index arrays: subscriber row, day, second of the day, and the number called
    (a position in ``pool``: the contacts, ``CONTACTS`` per subscriber, then one hotline number per
    hotline call)."""

    sub_idx: np.ndarray
    day_idx: np.ndarray
    seconds: np.ndarray
    other: np.ndarray
    pool: np.ndarray

    def __len__(self) -> int:
        return len(self.sub_idx)


@dataclass(frozen=True)
class ChunkTables:
    """One chunk of subscribers' landing tables and ground truth (its calls are already on disk)."""

    subscribers: pd.DataFrame
    billing: pd.DataFrame
    complaints: pd.DataFrame
    churn_events: pd.DataFrame
    recharges: pd.DataFrame
    calls: int


# Table order in the landing export.
CHUNK_TABLES = ("subscribers", "billing", "complaints", "churn_events", "recharges")
SORT_KEYS = {
    "billing": ["bill_date", "subscriber_id"],
    "complaints": ["complaint_time"],
    "churn_events": ["event_date", "subscriber_id"],
    "recharges": ["recharge_time", "subscriber_id"],
}


@dataclass(frozen=True)
class People:
    """A chunk's subscribers and their base intents, and its main random stream where they left it."""

    rng: np.random.Generator
    subscribers: pd.DataFrame
    intents: pd.DataFrame


def _people(cfg, chunk: int, offset: int, n: int) -> People:
    """The first draws of the chunk's main stream: ``n`` subscribers from ``offset`` and their intents."""
    rng = np.random.default_rng([cfg.seed, chunk])
    subs = _subscribers(rng, cfg, offset, n)
    it = campaign_intents(cfg, chunk, _intents(rng, cfg, subs))  # data.campaign: a shift (scenario.py)
    return People(rng, subs, it)


def _chunk(
    cfg,
    chunk: int,
    people: People,
    it: pd.DataFrame,
    days: pd.DatetimeIndex,
    cdr_dir: Path,
    slots: graph.TieSlots | None,
) -> ChunkTables:
    """Simulate a chunk's subscribers with their final intents ``it``: their calls go to ``cdr_dir``, the
    rest is returned.

    The draws of the chunk's main stream follow a fixed order (subscribers, intents, then here contract
    ends, activity, calls, complaints, bills, churn events); the off-net lean, the service-line calls and
    the top-ups draw from streams of their own. Same seed, same chunk: same tables, bit for bit."""
    rng, subs = people.rng, people.subscribers
    n_days, start = len(days), pd.Timestamp(cfg.start_date)
    ce = (it["churn_cause"] == "contract_expiry").to_numpy()
    _contracts_end_before_leaving(rng, subs, it, ce, start)
    mult = _activity(rng, cfg, days, it)
    calls = _calls(rng, cfg, chunk, it, mult, ce, slots)
    duration, direction = _durations_and_directions(rng, calls, len(it))
    _write_cdr(calls, duration, direction, subs, days, chunk, cdr_dir)
    complaints = _complaints(rng, subs, it, n_days, start)
    billing = _billing(rng, cfg, subs, it, mult, start)
    churn_events = _churn_events(rng, it, n_days, start)
    # prepaid top-ups, from a stream of their own so the other tables stay as they were
    recharges = _recharges(np.random.default_rng([cfg.seed, chunk, 1]), subs, it, n_days, start)
    # a subscriber who left before the data starts is not in the export
    present = ~(it["churns"].to_numpy() & (it["end_day"].to_numpy() < 0))
    return ChunkTables(
        subscribers=subs[present],
        billing=billing,
        complaints=complaints,
        churn_events=churn_events,
        recharges=recharges,
        calls=len(calls),
    )


def _contracts_end_before_leaving(
    rng, subs: pd.DataFrame, it: pd.DataFrame, ce: np.ndarray, start: pd.Timestamp
) -> None:
    """Contract-expiry intents: the contract ends in the week before the subscriber leaves (in place)."""
    subs.loc[ce, "contract_end_date"] = start + pd.to_timedelta(
        it.loc[ce, "end_day"] - rng.integers(0, 8, ce.sum()), unit="D"
    )


def _calls(
    rng, cfg, chunk: int, it: pd.DataFrame, mult: np.ndarray, ce: np.ndarray, slots: graph.TieSlots | None
) -> Calls:
    """Every call of the chunk: contact calls at the activity's rate, then hotline calls, then one call
    per subscriber, second and number (exact duplicates dropped)."""
    n_days = mult.shape[1]
    calls = _contact_calls(rng, cfg, chunk, it, mult, slots)
    hot, hot_num = _hotline_calls(rng, cfg, chunk, it, ce, n_days)
    if hot:
        h = np.array(hot, dtype=np.int64)
        calls = Calls(
            sub_idx=np.concatenate([calls.sub_idx, h[:, 0]]),
            day_idx=np.concatenate([calls.day_idx, h[:, 1]]),
            seconds=np.concatenate([calls.seconds, rng.integers(8 * 3600, 21 * 3600, len(h))]),
            other=np.concatenate([calls.other, len(it) * CONTACTS + np.arange(len(h))]),
            pool=np.concatenate([calls.pool, np.array(hot_num)]),
        )
    return drop_duplicate_calls(calls, n_days)


def drop_duplicate_calls(calls: Calls, n_days: int) -> Calls:
    """One call per subscriber, second and number dialled, in the calls' order.

    By the number, not its pool position: two contacts or hotline calls can be the same number (a
    service line), and a clipped second (23:59:59) can put both on one call, which validation then
    refuses as a duplicate."""
    numbers, number = np.unique(calls.pool, return_inverse=True)
    key = ((calls.sub_idx * n_days + calls.day_idx) * 86_400 + calls.seconds) * (len(numbers) + 1) + number[
        calls.other
    ]
    keep = np.sort(np.unique(key, return_index=True)[1])
    return Calls(calls.sub_idx[keep], calls.day_idx[keep], calls.seconds[keep], calls.other[keep], calls.pool)


def _contact_calls(
    rng, cfg, chunk: int, it: pd.DataFrame, mult: np.ndarray, slots: graph.TieSlots | None = None
) -> Calls:
    """Calls to the subscriber's own contacts: a Poisson count a day at the subscriber's base rate times
    the activity multiplier; competitor lead-ups lean to off-net contacts (a stream of its own). With
    ``slots`` (the call graph), the first contacts are ties to other subscribers, called in proportion
    to the tie's strength, and no call reaches a tie whose number went dead when its owner left."""
    n = len(it)
    base = np.clip(np.exp(rng.normal(np.log(cfg.median_daily_calls), 0.7, n)), 0.3, 25)
    counts = rng.poisson(base[:, None] * mult)
    sub_idx, day_idx = np.nonzero(counts)
    reps = counts[sub_idx, day_idx]
    sub_idx, day_idx = np.repeat(sub_idx, reps).astype(np.int64), np.repeat(day_idx, reps).astype(np.int64)
    m = len(sub_idx)
    seconds = np.clip(rng.normal(14 * 3600, 4 * 3600, m), 0, 86_399).astype(np.int64)
    if slots is None:
        other = sub_idx * CONTACTS + rng.integers(0, CONTACTS, m)
        pool = _contact_pool(rng, cfg, n)
    else:
        other = graph.pick_slots(rng, slots, sub_idx, CONTACTS)
        pool = _contact_pool(rng, cfg, n, graph.ANONYMOUS_KIND_P)
        pool[slots.position] = slots.number
    other = _lean_off_net(np.random.default_rng([cfg.seed, chunk, 2]), cfg, it, pool, sub_idx, day_idx, other)
    if slots is not None:
        ok = graph.live_calls(slots, other, day_idx, len(pool))
        sub_idx, day_idx, seconds, other = sub_idx[ok], day_idx[ok], seconds[ok], other[ok]
    return Calls(sub_idx, day_idx, seconds, other, pool)


def _hotline_calls(
    rng, cfg, chunk: int, it: pd.DataFrame, ce: np.ndarray, n_days: int
) -> tuple[list[tuple[int, int]], list[str]]:
    """(subscriber row, day) of each hotline call and the number rung: competitor intents ring
    10086/10010, a few loyal stayers once; expiring contracts and the unhappy ring the own service line."""
    n = len(it)
    hot = _in_lead(rng, it, np.flatnonzero(it["churn_cause"] == "competitor"), (1, 5), (0, 2), n_days)
    hot_num = [rng.choice(cfg.competitor_hotlines) for _ in hot]
    loyal = np.flatnonzero((it["churn_cause"] == "none").to_numpy() & (rng.random(n) < 0.04))
    hot += [(i, int(rng.integers(0, n_days))) for i in loyal]
    hot_num += [rng.choice(cfg.competitor_hotlines) for _ in loyal]
    renew = _in_lead(rng, it, np.flatnonzero(ce & (rng.random(n) < 0.5)), (1, 2), (0, 2), n_days)
    hot += renew
    hot_num += [cfg.own_hotline] * len(renew)
    # the unhappy ring the service line about the bill or the network; few file a formal complaint
    # (DOMAIN.md: 96% never complain). Its own stream, so the other calls stay as they were.
    unhappy = _in_lead(
        np.random.default_rng([cfg.seed, chunk, 3]),
        it,
        np.flatnonzero(it["churn_cause"] == "dissatisfaction"),
        (1, 4),
        (0, 2),
        n_days,
    )
    hot += unhappy
    hot_num += [cfg.own_hotline] * len(unhappy)
    offer, offer_num = campaign_hotline_calls(cfg, chunk, it, n_days)  # data.campaign (scenario.py)
    return hot + offer, hot_num + offer_num


def _durations_and_directions(rng, calls: Calls, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Call lengths in seconds (log-normal around 90 s; hotline calls 30 s to 15 min) and directions
    (1 = out: every hotline call, and 55% of the others)."""
    m = len(calls)
    duration = np.clip(rng.lognormal(np.log(90), 1.0, m), 1, 7200).astype(np.int32)
    is_hot = calls.other >= n * CONTACTS
    duration[is_hot] = rng.integers(30, 900, is_hot.sum())
    direction = np.where(is_hot | (rng.random(m) < 0.55), 1, 0).astype(np.int8)
    return duration, direction


def _write_cdr(
    calls: Calls,
    duration: np.ndarray,
    direction: np.ndarray,
    subs: pd.DataFrame,
    days: pd.DatetimeIndex,
    chunk: int,
    cdr_dir: Path,
) -> None:
    """The chunk's calls into the day partitions, one parquet file per day and chunk."""
    n_days = len(days)
    order = np.argsort(calls.day_idx, kind="stable")
    bounds = np.searchsorted(calls.day_idx[order], np.arange(n_days + 1))
    ids = pa.array(subs["subscriber_id"].to_numpy())
    dictionary = pa.array(calls.pool)
    directions = pa.array(["in", "out"])
    t0 = np.datetime64(days[0], "s")
    for d in range(n_days):
        sl = order[bounds[d] : bounds[d + 1]]
        if not len(sl):
            continue
        start_time = t0 + (calls.day_idx[sl] * 86_400 + calls.seconds[sl]).astype("timedelta64[s]")
        tbl = pa.table(
            {  # plain strings by index: parquet dictionary-encodes each file on its own
                "subscriber_id": ids.take(pa.array(calls.sub_idx[sl])),
                "other_party": dictionary.take(pa.array(calls.other[sl])),
                "start_time": pa.array(start_time),
                "duration_s": pa.array(duration[sl]),
                "direction": directions.take(pa.array(direction[sl])),
            }
        )
        part = cdr_dir / f"date={days[d].date()}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(tbl, part / f"part-{chunk:05d}.parquet")


def _complaints(rng, subs: pd.DataFrame, it: pd.DataFrame, n_days: int, start: pd.Timestamp) -> pd.DataFrame:
    """Dissatisfied intents complain in their lead-up; others now and then (most who complain stay);
    nobody complains on or after the day they leave."""
    n = len(it)
    comp = _in_lead(rng, it, np.flatnonzero(it["churn_cause"] == "dissatisfaction"), (1, 4), (0, 2), n_days)
    bg = rng.poisson(0.15 * n_days / 212, n)
    for i in np.flatnonzero(bg):
        comp += [(i, int(day)) for day in rng.integers(0, n_days, bg[i])]
    gone = _gone_day(it)
    comp = np.array([(i, day) for i, day in comp if day < gone[i]], dtype=np.int64).reshape(-1, 2)
    return pd.DataFrame(
        {
            "subscriber_id": subs["subscriber_id"].to_numpy()[comp[:, 0]],
            "complaint_time": start
            + pd.to_timedelta(comp[:, 1], unit="D")
            + pd.to_timedelta(rng.integers(8 * 3600, 20 * 3600, len(comp)), unit="s"),
            "category": rng.choice(["billing", "network", "service"], len(comp)),
        }
    )


def _gone_day(it: pd.DataFrame) -> np.ndarray:
    """The day each subscriber leaves (``NO_INTENT`` for those who stay)."""
    return np.where(it["churns"].to_numpy(), it["end_day"].to_numpy(), NO_INTENT)


def _billing(
    rng, cfg, subs: pd.DataFrame, it: pd.DataFrame, mult: np.ndarray, start: pd.Timestamp
) -> pd.DataFrame:
    """One bill per month, issued on its last day, following usage; bill shock and arrears before
    dissatisfied exits (a weak signal is a fainter shock, x1.24 and fewer arrears, not none)."""
    n, n_days = mult.shape
    gone = _gone_day(it)
    diss = (it["churn_cause"] == "dissatisfaction").to_numpy()
    weight = np.where(it["weak_signal"].to_numpy(), 0.4, 1.0)
    onset, end = it["onset_day"].to_numpy(), it["end_day"].to_numpy()
    bills = []
    for ms in pd.date_range(cfg.start_date, cfg.end_date, freq="MS", inclusive="left"):
        me = ms + pd.offsets.MonthEnd(0)
        k = (me - start).days
        shock = diss & (k >= onset) & (k < end)
        usage = mult[:, max(k - 29, 0) : min(k, n_days - 1) + 1].mean(axis=1)
        charge = (
            subs["monthly_fee"].to_numpy()
            * (0.85 + 0.3 * np.clip(usage, 0, 1.5))
            * np.where(shock, 1 + 0.6 * weight, 1.0)
        )
        arrears = np.where(
            rng.random(n) < np.where(shock, 0.03 + 0.37 * weight, 0.03),
            np.round(charge * rng.uniform(0.3, 1.5, n), 2),
            0.0,
        )
        bills.append(
            pd.DataFrame(
                {
                    "subscriber_id": subs["subscriber_id"],
                    "bill_month": ms,
                    "bill_date": me.normalize(),
                    "charge": np.round(charge * rng.normal(1, 0.05, n), 2),
                    "arrears": arrears,
                }
            )[k < gone]
        )
    return pd.concat(bills, ignore_index=True)


def _churn_events(rng, it: pd.DataFrame, n_days: int, start: pd.Timestamp) -> pd.DataFrame:
    """The churns the export sees (inside the data period), typed by cause; silent ones at random."""
    end = it["end_day"].to_numpy()
    observed = it["churns"].to_numpy() & (end >= 0) & (end < n_days)
    ev_type = np.array([EVENT_TYPE.get(c, "") for c in it["churn_cause"]], dtype=object)
    silent = (it["churn_cause"] == "silent").to_numpy()
    ev_type[silent] = rng.choice(["port_out", "cancellation", "inactivity"], silent.sum())
    return pd.DataFrame(
        {
            "subscriber_id": it["subscriber_id"][observed].to_numpy(),
            "event_date": start + pd.to_timedelta(end[observed], unit="D"),
            "event_type": ev_type[observed].astype(str),
        }
    )


def true_probabilities(
    intents: pd.DataFrame, snapshots: list[dt.date], settings: Settings, ties: graph.Ties | None = None
) -> pd.DataFrame:
    """Two ceilings per snapshot T, for subscribers active at T (``true_probability``, ``reachable_probability``).

    ``true_probability``: P(churn within the label horizon | the simulator's latent state at T).
    Intent under way at T (onset <= T < end): the lead-up length is uniform, so the chance that it
    ends inside the horizon is the share of the remaining possible lengths that do, times the
    churn share. No intent yet: the chance that one both starts after T and ends inside the horizon.
    It knows intents no behaviour reveals (silent ones, lead-ups that have not begun by T), so no
    model of behaviour can reach its AUC.

    ``reachable_probability``: the Bayes-optimal probability given only what the simulator *made
    visible* before T, i.e. E[true_probability | visible state]. Visible: the subscriber's own
    attributes (plan, tenure, tier: the hazard) and, for an intent with a cause that shows
    (not ``silent``) whose lead-up began before T (at least one day of it in the data), that intent's
    onset and cause; for those it equals ``true_probability``. Every other subscriber is one of a pool
    the data cannot tell apart: no intent yet, a silent intent under way, or one that has not begun;
    their probability is the pool's churn rate under the simulator's own process for their hazard
    and plan (:func:`_pool_probability`). It is still an upper bound: it reads onsets and causes
    exactly, where a model sees them through Poisson noise, weak signals and ramping drops.

    With the call graph (``ties``), a subscriber with no intent under way at T may still form a
    contagion intent that ends inside the horizon (:func:`pipelines.graph.contagion_probability`): the
    latent ceiling adds that chance from every tie's departure (those in the horizon included); the
    reachable one only from the ties who left before T, which the records show, and to every
    subscriber with no visible intent under way (a silent one under way looks the same).
    """
    cfg, horizon = settings.data, settings.features.label_horizon_days
    lmin, lmax = cfg.lead_days
    lengths = np.arange(lmin, lmax + 1)
    q = cfg.intent_churn_share
    out = []
    for snap in snapshots:
        t = (pd.Timestamp(snap) - pd.Timestamp(cfg.start_date)).days
        onset, end = intents["onset_day"].to_numpy(), intents["end_day"].to_numpy()
        active = ~(intents["churns"].to_numpy() & (end < t))
        p = _latent_probability(intents, t, horizon, lengths, q)
        shows = (intents["churn_cause"].to_numpy() != "silent") & (onset < t)
        silent_share = np.where(intents["prepaid"].to_numpy(), CAUSE_P_PREPAID[-1], CAUSE_P_POSTPAID[-1])
        reach = np.where(
            shows,
            p,
            _pool_probability(intents["daily_hazard"].to_numpy(), silent_share, t, horizon, lengths, q),
        )
        if ties is not None:
            free = ~((onset <= t) & (end >= t))  # no intent under way at T: latent
            seen_free = ~(shows & (end >= t))  # no visible one: the records cannot tell more
            args = (cfg, ties, intents, t, horizon, lengths, q)
            p = p + free * graph.contagion_probability(*args)
            reach = reach + seen_free * graph.contagion_probability(*args, left_before=t)
        out.append(
            pd.DataFrame(
                {
                    "subscriber_id": intents["subscriber_id"],
                    "snapshot": pd.Timestamp(snap),
                    "true_probability": p,
                    "reachable_probability": reach,
                }
            )[active]
        )
    return pd.concat(out, ignore_index=True)


def _latent_probability(
    intents: pd.DataFrame, t: int, horizon: int, lengths: np.ndarray, q: float
) -> np.ndarray:
    """``true_probability`` on day ``t``: from the lead-up under way, or the chance of one that starts
    after ``t`` and ends inside the horizon (see :func:`true_probabilities`)."""
    onset, end = intents["onset_day"].to_numpy(), intents["end_day"].to_numpy()
    p = np.zeros(len(intents))
    under_way = (onset <= t) & (end >= t)
    a = (t - onset[under_way])[:, None]
    remaining = lengths[None, :] >= a
    inside = remaining & (lengths[None, :] <= a + horizon - 1)
    p[under_way] = q * inside.sum(1) / np.maximum(remaining.sum(1), 1)
    not_yet = onset > t
    h = intents["daily_hazard"].to_numpy()[not_yet][:, None]
    k = np.arange(horizon)
    geom = h * (1 - h) ** k[None, :]  # P(end = T + k)
    starts_after = (lengths[None, :] < k[:, None]).mean(axis=1)  # P(lead < k): onset after T
    num = (geom * starts_after[None, :]).sum(1)
    den = ((1 - h) ** (lengths[None, :] + 1)).mean(1)  # P(no onset by T)
    p[not_yet] = q * num / den
    return p


def _pool_probability(
    h: np.ndarray, silent: np.ndarray, t: int, horizon: int, lengths: np.ndarray, q: float
) -> np.ndarray:
    """P(churn on day T..T+horizon-1 | active at T, no visible lead-up began before T), per subscriber.

    The end day is geometric with the daily hazard ``h`` (as in ``true_probability``), the lead-up
    length uniform over ``lengths``, the cause silent with probability ``silent``, the outcome churn
    with probability ``q``, all independent. A churn on day T+k counts when its lead-up did not begin
    before T (length <= k) or it is silent; the condition removes the subscribers who already left
    and those whose visible lead-up began before T.
    """
    h, s = h[:, None], silent[:, None]
    k = np.arange(horizon)
    p_end = h * (1 - h) ** (t + k[None, :])  # P(end = T + k)
    unseen = (lengths[None, :] <= k[:, None]).mean(axis=1)  # P(onset >= T | end = T + k)
    num = q * (p_end * (unseen[None, :] + s * (1 - unseen[None, :]))).sum(1)
    ended = 1 - (1 - h[:, 0]) ** t  # P(end < T)
    began = 1 - ((1 - h) ** (t + lengths[None, :])).mean(1)  # P(onset < T)
    den = 1 - q * ended - (1 - s[:, 0]) * (began - q * ended)
    return num / den


def generate(settings: Settings) -> GenerationSummary:
    """Write the landing tables and ground truth for ``settings.data`` (atomically: all or nothing)."""
    cfg = settings.data
    t0 = time.perf_counter()
    landing = _landing(settings)
    tables, intents = landing.tables, landing.intents
    truth_intents = _truth_intents(intents, cfg.start_date)
    write_parquet_atomic(truth_intents, settings.truth_dir / "intents.parquet")
    write_parquet_atomic(_truth_ties(landing.ties, intents), settings.truth_dir / TIES_FILE)
    if cfg.treatment is not None and settings.features is not None:  # what retention actions would do
        write_parquet_atomic(
            treatment.truth_for_dates(truth_intents, treatment.truth_dates(settings), settings),
            settings.truth_dir / treatment.TRUTH_FILE,
        )
    write_parquet_atomic(
        true_probabilities(intents, settings.features.snapshots, settings, landing.ties),
        settings.truth_dir / "true_probability.parquet",
    )
    summary = GenerationSummary(
        len(tables["subscribers"]),
        landing.calls,
        len(tables["churn_events"]),
        int((intents["churn_cause"] != "none").sum()),
        time.perf_counter() - t0,
    )
    log.info(
        "generated %d subscribers, %d calls (%.0f rows/s), %d churn events, %d intents (%d by contagion) -> %s",
        summary.subscribers,
        summary.calls,
        summary.rows_per_second,
        summary.churn_events,
        summary.intents,
        int(intents["contagion"].sum()),
        settings.landing_dir,
    )
    return summary


TIES_FILE = "ties.parquet"  # data/truth: the call graph, each tie from both ends


@dataclass(frozen=True)
class Landing:
    """What :func:`_landing` wrote (the tables) and the truth behind it: every subscriber's final intent
    (row order, ``contagion`` and ``contagion_source`` row included), the ties (None: no graph)."""

    tables: dict[str, pd.DataFrame]
    calls: int
    intents: pd.DataFrame
    ties: graph.Ties | None


def _landing(settings: Settings) -> Landing:
    """Every chunk into a folder beside ``data/landing``, swapped in whole.

    Two passes: first every chunk's subscribers and base intents, then (with ``data.graph``) the ties
    and the contagion intents spread over all of them in time order, then chunk by chunk the
    behaviour of the final intents, calls included."""
    cfg = settings.data
    days = pd.date_range(cfg.start_date, cfg.end_date, freq="D", inclusive="left")
    landing = settings.landing_dir
    tmp = landing.with_name(landing.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "cdr").mkdir(parents=True)
    tmp.chmod(0o700)  # phone numbers: the export is its owner's alone (docs/data.md)
    offsets = range(0, cfg.n_subscribers, cfg.chunk_subscribers)
    people = [
        _people(cfg, k, offset, min(cfg.chunk_subscribers, cfg.n_subscribers - offset))
        for k, offset in enumerate(offsets)
    ]
    intents = pd.concat([p.intents for p in people], ignore_index=True)
    ties = None
    if cfg.graph is None:
        intents = intents.assign(contagion=False, contagion_source=-1)
    else:
        ties = graph.build_ties(cfg, len(intents))
        intents = graph.spread(cfg, ties, intents)
        msisdn = np.concatenate([p.subscribers["msisdn"].to_numpy().astype(str) for p in people])
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in CHUNK_TABLES}
    calls = 0
    for k, offset in enumerate(tqdm(offsets, desc="generating", unit="chunk", disable=None)):
        n = len(people[k].subscribers)
        it = intents.iloc[offset : offset + n].reset_index(drop=True)
        slots = None if ties is None else graph.tie_slots(cfg, ties, offset, n, CONTACTS, msisdn, intents)
        out = _chunk(cfg, k, people[k], it, days, tmp / "cdr", slots)
        people[k] = None  # its subscribers are in ``out`` now
        calls += out.calls
        for name in CHUNK_TABLES:
            parts[name].append(getattr(out, name))
    tables = {name: pd.concat(dfs, ignore_index=True) for name, dfs in parts.items()}
    for name, df in tables.items():
        sort = SORT_KEYS.get(name, ["subscriber_id"])
        df.sort_values(sort, ignore_index=True).to_parquet(tmp / f"{name}.parquet", index=False)
    replace_dir_atomic(tmp, landing)
    return Landing(tables, calls, intents, ties)


def _truth_intents(intents: pd.DataFrame, start_date: dt.date) -> pd.DataFrame:
    """The intents as ground truth: onset and end as dates (none for subscribers without an intent),
    ``contagion`` and the subscriber whose departure set a contagion intent off (``contagion_source``).
    Subscribers who left before the data starts are not in the export, nor here."""
    start = pd.Timestamp(start_date)
    ids = intents["subscriber_id"].to_numpy()
    src = intents["contagion_source"].to_numpy()
    present = ~(intents["churns"].to_numpy() & (intents["end_day"].to_numpy() < 0))
    return (
        intents.assign(
            onset_date=lambda x: (start + pd.to_timedelta(x["onset_day"].clip(upper=50_000), unit="D")).where(
                x["churn_cause"] != "none"
            ),
            end_date=lambda x: (start + pd.to_timedelta(x["end_day"].clip(upper=50_000), unit="D")).where(
                x["churn_cause"] != "none"
            ),
            contagion_source=pd.Series(np.where(src >= 0, ids[np.maximum(src, 0)], None), dtype=object),
        )
        .drop(columns=["onset_day", "end_day", "daily_hazard", "prepaid"])[present]
        .reset_index(drop=True)
    )


def _truth_ties(ties: graph.Ties | None, intents: pd.DataFrame) -> pd.DataFrame:
    """The call graph as ground truth: ``subscriber_id``, ``contact_id`` (both ends listed), ``strength``
    (mean 1) and ``same_community``. Empty without ``data.graph``."""
    ids = intents["subscriber_id"].to_numpy()
    if ties is None:
        ties = graph.Ties(*(np.zeros(0, np.int64),) * 3, np.zeros(0, bool), np.zeros(1, np.int64))
    return pd.DataFrame(
        {
            "subscriber_id": ids[ties.src],
            "contact_id": ids[ties.dst],
            "strength": ties.strength.astype(np.float64),
            "same_community": ties.inside.astype(bool),
        }
    )
