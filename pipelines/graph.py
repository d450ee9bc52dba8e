"""The simulator's call graph: on-net ties between simulated subscribers, and churn contagion along them.

``data.graph`` (docs/data.md). Subscribers fall into calling circles (communities, mean size
``community_size``); each forms ties to other simulated subscribers, most inside its circle
(``in_community_share``), the rest across the population, where a few hubs (``hub_share``) are
``hub_attraction`` times likelier to be the other end. Each tie has a strength (log-normal, stronger
inside a circle, mean 1) that sets how often its two ends call each other.

Contagion: when a subscriber leaves, each of its ties gets an extra hazard of a *competitor* intent,
``(contagion_hazard_ratio - 1) x its own daily intent hazard x the tie's strength``, from the day of
the departure, decaying exponentially with ``contagion_decay_days`` (Nitzan & Libai 2011: +80% defection
hazard per defecting neighbour, strongest in the first month, larger for stronger ties). Churn is
spread in time order (:func:`spread`), so every contagion intent begins after its source left.

Everything here works on all subscribers at once, on row numbers in generation order (chunk after
chunk): the graph is a few arrays of ``ties_per_subscriber`` entries a subscriber, small next to the
calls, which are still made chunk by chunk. Random draws come from streams of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import DataConfig

STREAM = 18  # random streams [seed, STREAM, k]: the ties (0), contagion (1)
MAX_TIE_SLOTS = 30  # of a subscriber's contacts, at most this many are ties (its strongest)
STRENGTH_SIGMA = 0.8  # log-normal spread of tie strength
STRENGTH_INSIDE, STRENGTH_ACROSS = 1.5, 0.6  # circles are closer than ties across them
NO_INTENT = 10**6  # as pipelines.generate: the end day of subscribers who never form an intent
# anonymous contacts' kinds (on-net, off-net, landline, international, service) beside the ties: fewer
# on-net numbers, since the on-net friends are now ties; calls per class stay near the pools' shares
ANONYMOUS_KIND_P = (0.22, 0.61, 0.12, 0.015, 0.035)


@dataclass(frozen=True)
class Ties:
    """Every tie listed from both ends, grouped by ``src`` and strongest first: row numbers, strength
    (mean 1 over ties) and whether both ends share a circle. ``offsets[i]:offsets[i + 1]``: row i's."""

    src: np.ndarray
    dst: np.ndarray
    strength: np.ndarray
    inside: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.src)

    def of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the ties of ``rows`` and, for each, which of ``rows`` it belongs to."""
        start, stop = self.offsets[rows], self.offsets[rows + 1]
        k = stop - start
        owner = np.repeat(np.arange(len(rows)), k)
        pos = np.repeat(start - np.cumsum(k) + k, k) + np.arange(k.sum())
        return pos, owner


def build_ties(cfg: DataConfig, n: int) -> Ties:
    """The seeded graph of ``n`` subscribers (:mod:`pipelines.graph`)."""
    g = cfg.graph
    rng = np.random.default_rng([cfg.seed, STREAM, 0])
    perm = rng.permutation(n)  # circles are runs of a random order of the subscribers
    sizes = np.maximum(rng.poisson(g.community_size, n // max(int(g.community_size), 1) + 10), 2)
    while sizes.sum() < n:
        sizes = np.concatenate([sizes, np.maximum(rng.poisson(g.community_size, 10), 2)])
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    community = np.empty(n, np.int64)
    community[perm] = np.repeat(np.arange(len(sizes)), sizes)[:n]
    size = np.minimum(sizes, n - first)  # the last circle is cut at n
    stubs = rng.poisson(g.ties_per_subscriber / 2, n)  # each tie counts at both ends
    a = np.repeat(np.arange(n), stubs)
    inside = rng.random(len(a)) < g.in_community_share
    c = community[a]
    b = perm[np.minimum(first[c] + np.floor(rng.random(len(a)) * size[c]).astype(np.int64), n - 1)]
    attraction = np.where(rng.random(n) < g.hub_share, g.hub_attraction, 1.0)
    cum = np.cumsum(attraction)
    across = np.minimum(np.searchsorted(cum, rng.random(len(a)) * cum[-1], side="right"), n - 1)
    b = np.where(inside, b, across)
    strength = rng.lognormal(0.0, STRENGTH_SIGMA, len(a)) * np.where(inside, STRENGTH_INSIDE, STRENGTH_ACROSS)
    keep = a != b
    a, b, strength = a[keep], b[keep], strength[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    _, once = np.unique(lo * n + hi, return_index=True)  # a pair drawn twice is one tie
    lo, hi, strength = lo[once], hi[once], strength[once]
    strength = strength / strength.mean() if len(strength) else strength
    same = community[lo] == community[hi]
    src, dst = np.concatenate([lo, hi]), np.concatenate([hi, lo])
    strength, same = np.concatenate([strength, strength]), np.concatenate([same, same])
    order = np.lexsort((-strength, src))
    src, dst, strength, same = src[order], dst[order], strength[order], same[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
    return Ties(src, dst, strength.astype(np.float64), same, offsets)


def spread(cfg: DataConfig, ties: Ties, intents: pd.DataFrame) -> pd.DataFrame:
    """``intents`` (every subscriber, in row order) with contagion intents added, day by day.

    On each day, every subscriber who leaves that day exposes its ties. An exposed subscriber draws
    the time of a contagion onset from the decaying extra hazard (none if the hazard runs out first);
    the earliest onset of the day's draws wins if the subscriber is not in an intent by then (no
    intent, one that begins later, or one that recovered before). The new intent is a competitor intent
    with the usual lead-up, churn share and weak-signal share; if it ends in churn, that departure
    exposes its own ties on its day. Adds ``contagion`` and ``contagion_source`` (the row whose
    departure set it off, -1: none)."""
    g = cfg.graph
    n = len(intents)
    onset, end = intents["onset_day"].to_numpy().copy(), intents["end_day"].to_numpy().copy()
    lead, churns = intents["lead_days"].to_numpy().copy(), intents["churns"].to_numpy().copy()
    weak, cause = intents["weak_signal"].to_numpy().copy(), intents["churn_cause"].to_numpy().copy()
    h = intents["daily_hazard"].to_numpy()
    source = np.full(n, -1, np.int64)
    gone = np.where(churns, end, NO_INTENT)
    limit = cfg.n_days + 2 * cfg.lead_days[1]  # as the base intents: later ends are never seen
    rng = np.random.default_rng([cfg.seed, STREAM, 1])
    rate, tau = g.contagion_hazard_ratio - 1, g.contagion_decay_days
    for day in range(limit if rate > 0 else 0):
        leavers = np.flatnonzero(gone == day)
        if not len(leavers):
            continue
        pos, owner = ties.of(leavers)
        i = ties.dst[pos]
        budget = rate * h[i] * ties.strength[pos] * tau  # the extra hazard's integral over all time
        e = rng.exponential(1.0, len(pos))
        new_lead = rng.integers(cfg.lead_days[0], cfg.lead_days[1] + 1, len(pos))
        new_churns = rng.random(len(pos)) < cfg.intent_churn_share
        new_weak = rng.random(len(pos)) < 0.25
        hit = np.flatnonzero(e < budget)
        start = day + np.floor(-tau * np.log1p(-e[hit] / budget[hit])).astype(np.int64)
        order = np.lexsort((start, i[hit]))  # per exposed subscriber, earliest onset first
        hit, start = hit[order], start[order]
        first = np.concatenate([[True], i[hit][1:] != i[hit][:-1]]) if len(hit) else np.zeros(0, bool)
        hit, start = hit[first], start[first]
        r = i[hit]
        free = (onset[r] > start) | (~churns[r] & (end[r] < start))
        free &= start + new_lead[hit] <= limit
        hit, start, r = hit[free], start[free], r[free]
        onset[r], lead[r] = start, new_lead[hit]
        end[r] = start + new_lead[hit]
        churns[r], weak[r], cause[r] = new_churns[hit], new_weak[hit], "competitor"
        source[r] = leavers[owner[hit]]
        gone[r] = np.where(churns[r], end[r], NO_INTENT)
    return intents.assign(
        churn_cause=cause,
        onset_day=onset,
        end_day=end,
        lead_days=lead,
        churns=churns,
        weak_signal=weak,
        contagion=source >= 0,
        contagion_source=source,
    )


@dataclass(frozen=True)
class TieSlots:
    """A chunk's contacts that are ties, as positions in its ``CONTACTS``-per-subscriber pool: the
    number there, the call weight of every slot (1 for an anonymous contact), and for tie slots the
    day the other end leaves and whether its number lives on (ported out) or goes dead."""

    position: np.ndarray
    number: np.ndarray
    weight: np.ndarray
    partner_gone: np.ndarray
    number_lives_on: np.ndarray


def tie_slots(
    cfg: DataConfig, ties: Ties, offset: int, n: int, contacts: int, msisdn: np.ndarray, intents: pd.DataFrame
) -> TieSlots:
    """The first slots of each subscriber of rows ``offset..offset+n`` hold its strongest ties (at most
    :data:`MAX_TIE_SLOTS`), weighted ``tie_call_weight x strength``. ``msisdn`` and ``intents``: every
    subscriber's, in row order."""
    pos, owner = ties.of(np.arange(offset, offset + n))
    rank = pos - ties.offsets[offset + owner]
    keep = rank < min(MAX_TIE_SLOTS, contacts)
    pos, owner, rank = pos[keep], owner[keep], rank[keep]
    slot = owner * contacts + rank
    weight = np.ones(n * contacts)
    weight[slot] = cfg.graph.tie_call_weight * ties.strength[pos]
    other = ties.dst[pos]
    churns = intents["churns"].to_numpy()[other]
    gone = np.where(churns, intents["end_day"].to_numpy()[other], NO_INTENT)
    ported = intents["churn_cause"].to_numpy()[other] == "competitor"
    return TieSlots(slot, msisdn[other], weight, gone, ported)


def pick_slots(rng, slots: TieSlots, sub_idx: np.ndarray, contacts: int) -> np.ndarray:
    """A pool position per call of ``sub_idx``: one of the subscriber's contacts, in proportion to weight."""
    cum = np.cumsum(slots.weight)
    before = np.concatenate([[0.0], cum])[::contacts][:-1]  # weight of the subscribers before each
    total = cum[contacts - 1 :: contacts] - before
    target = before[sub_idx] + rng.random(len(sub_idx)) * total[sub_idx]
    pick = np.searchsorted(cum, target, side="right")
    return np.clip(pick, sub_idx * contacts, sub_idx * contacts + contacts - 1)


def live_calls(slots: TieSlots, other: np.ndarray, day_idx: np.ndarray, pool_size: int) -> np.ndarray:
    """Which calls can happen: none along a tie once its other end left with a number that went dead
    (a cancellation or inactivity); a friend who ported out keeps the number and is still called."""
    dead_from = np.full(pool_size, NO_INTENT, np.int64)
    dead_from[slots.position] = np.where(slots.number_lives_on, NO_INTENT, slots.partner_gone)
    inside = other < pool_size
    ok = np.ones(len(other), bool)
    ok[inside] = day_idx[inside] < dead_from[other[inside]]
    return ok


def extra_hazard(
    cfg: DataConfig, ties: Ties, intents: pd.DataFrame, t: int, days: int, left_before: int | None
) -> np.ndarray:
    """(subscribers, ``days``): the contagion hazard of a new competitor intent on days t..t+days-1 from
    the ties who left (those who left before day ``left_before`` only, when given: what the records show
    at T). Row order as ``intents``."""
    g = cfg.graph
    n = len(intents)
    out = np.zeros((n, days))
    if g.contagion_hazard_ratio == 1 or not len(ties):
        return out
    gone = np.where(intents["churns"].to_numpy(), intents["end_day"].to_numpy(), NO_INTENT)
    cut = t + days if left_before is None else min(left_before, t + days)
    edge = np.flatnonzero(gone[ties.dst] < cut)
    src, since = ties.src[edge], gone[ties.dst[edge]]
    d = t + np.arange(days)[None, :]
    decay = np.where(d >= since[:, None], np.exp(-(d - since[:, None]) / g.contagion_decay_days), 0.0)
    rate = g.contagion_hazard_ratio - 1
    contrib = rate * ties.strength[edge][:, None] * decay
    for k in range(days):
        out[:, k] = np.bincount(src, contrib[:, k], minlength=n)
    return out * intents["daily_hazard"].to_numpy()[:, None]


def contagion_probability(
    cfg: DataConfig,
    ties: Ties,
    intents: pd.DataFrame,
    t: int,
    horizon: int,
    lengths: np.ndarray,
    q: float,
    left_before: int | None = None,
) -> np.ndarray:
    """P(a contagion intent begins on day t or later and ends in churn inside the horizon): its onset on
    t+j (at the hazard of :func:`extra_hazard`, small enough to add up) and a lead-up of at most
    horizon-1-j days, uniform over ``lengths``."""
    fits = (lengths[None, :] <= horizon - 1 - np.arange(horizon)[:, None]).mean(axis=1)
    days = int((fits > 0).sum())  # onsets later than these end after the horizon
    if not days:
        return np.zeros(len(intents))
    lam = extra_hazard(cfg, ties, intents, t, days, left_before)
    return q * (lam * fits[None, :days]).sum(axis=1)
