"""The nightly warning list: every active subscriber scored as of a date, cut to the retention team's capacity.

DOMAIN.md: capacity is finite (one customer manager per 200 diamond / 500 gold / 1000 silver VIPs)
and work orders beyond it are wasted, so the list is ranked by what is at stake (expected loss =
calibrated probability x monthly value), cut per VIP tier to what that tier's managers can take, and
every work order carries its reasons and a suggested action.

Speed (1 million subscribers in under a minute): everyone is scored with one ``predict_proba``
(cheap), and only the rows that make the list are explained (exact TreeSHAP costs ~100x a
prediction), through the same ``score_with_reasons`` the endpoint uses. Features come from the same
``compute_features`` the training table was built with. At operator scale (``features.engine: spark``)
the features, scoring and per-tier choice run on Spark (``pipelines/warn_spark.py``, the same
:data:`RANKING`) and only counts and the chosen rows come back; explaining and writing are shared.

Outputs go to ``<workdir>/warnings/<date>/`` (warnings.parquet, warnings.csv, summary.html,
summary.json), written into a hidden folder beside it and swapped in whole: a failed run leaves the
previous list for that date as it was.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import RetentionConfig, Settings, WarningConfig
from core.hashing import hash_uniform
from core.io import remove_dead_leftovers, replace_dir_atomic
from features import compute, engine
from features import manifest as mf
from features.catalogue import FEATURE_NAMES
from models import stakes
from models.plots import plt
from models.reasons import load_templates
from models.registry import LoadedUplift, load_registered, load_uplift, uplift_model_name
from models.score_store import keep_scores
from models.scoring import score_with_reasons
from pipelines.errors import WarnError
from pipelines.validate import validate_features

log = logging.getLogger(__name__)

LANGS = ("en", "zh")
FILES = ("warnings.parquet", "warnings.csv", "summary.html", "summary.json")


@dataclass(frozen=True)
class TierCapacity:
    """One tier's share of the list: who is active, who qualifies, how many work orders fit."""

    tier: str
    active: int
    managers: int | None  # None: the non-VIP tier, served by the call centre's quota
    capacity: int
    candidates: int = 0
    listed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelInfo:
    """The registered model a list was scored with."""

    name: str
    version: str
    alias: str | None
    kind: str
    run_id: str


@dataclass(frozen=True)
class ListSummary:
    """What a nightly list holds and what it cost: ``summary.json`` in the list's folder (:meth:`as_json`)."""

    date: dt.date
    created_at: str  # ISO timestamp, UTC
    model: ModelInfo
    lang: str
    active: int  # subscribers scored
    listed: int  # work orders
    min_probability: float
    orders_per_manager: int
    tiers: tuple[TierCapacity, ...]
    expected_loss_listed: float  # CNY a month
    files: tuple[str, ...]
    cpu_s: dict[str, float]  # per step, then "total": process CPU (all threads)
    timings_s: dict[str, float]  # per step, then "total": wall time
    control: int = 0  # work orders held out as the control group (retention.control_share): no contact
    policy: str = "expected_loss"  # how the list was chosen within capacity (retention.policy)
    uplift_model: ModelInfo | None = None  # the uplift model that chose it (policy: uplift)
    explored: int = 0  # work orders whose action was drawn at random (retention.explore_share)

    @property
    def total_seconds(self) -> float:
        return self.timings_s["total"]

    def as_json(self) -> dict:
        """The ``summary.json`` document (keys and order as written since the first version)."""
        out = asdict(self)
        out["date"] = str(self.date)
        out["tiers"], out["files"] = [t.as_dict() for t in self.tiers], list(self.files)
        return out


@dataclass(frozen=True)
class WarnResult:
    date: dt.date
    folder: Path
    summary: ListSummary
    warnings: pd.DataFrame = field(repr=False)

    def headline(self) -> str:
        """What the command line prints: the list's size, then each tier's capacity and use."""
        s = self.summary
        lines = [
            f"{s.listed:,} work orders of {s.active:,} active subscribers as of {s.date} "
            f"(model v{s.model.version}, {s.total_seconds:.1f}s): {self.folder}"
        ]
        lines += [
            f"  {t.tier:<10} active {t.active:>9,}  capacity {t.capacity:>7,}  "
            f"candidates {t.candidates:>8,}  listed {t.listed:>7,}"
            for t in s.tiers
        ]
        return "\n".join(lines)


class _Stopwatch:
    """Wall and process-CPU seconds per step of the list (CPU: robust to a busy machine)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._t_all = self._t0 = time.perf_counter()
        self._c_all = self._c0 = time.process_time()

    def lap(self, name: str, what: str | None = None) -> None:
        """Close step ``name`` (logged as ``what``) and start the next."""
        self.wall[name] = round(time.perf_counter() - self._t0, 3)
        self.cpu[name] = round(time.process_time() - self._c0, 3)
        if what is not None:
            log.info("warn: %s in %.1fs (CPU %.1fs)", what, self.wall[name], self.cpu[name])
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def total(self) -> None:
        self.wall["total"] = round(time.perf_counter() - self._t_all, 3)
        self.cpu["total"] = round(time.process_time() - self._c_all, 3)


# Dates ----------------------------------------------------------------------------------------------
def ingested_days(settings: Settings) -> tuple[dt.date, dt.date]:
    """First and last ingested CDR day; a clear error before anything is ingested."""
    days = mf.ingested_days(settings)
    if days is None:
        raise WarnError(f"no ingested call records in {settings.raw_dir / 'cdr'}: run `churn ingest` first")
    return days


def resolve_date(settings: Settings, date: dt.date | str | None) -> dt.date:
    """The feature date D of the list: events strictly before D count, so D may be at most the day after
    the last ingested day (tonight's list) and must be after the first one."""
    first, last = ingested_days(settings)
    if date is None:
        date = settings.warnings.list_date or last + dt.timedelta(days=1)
    if isinstance(date, dt.datetime):
        date = date.date()
    if not isinstance(date, dt.date):
        try:
            date = dt.date.fromisoformat(str(date).strip())
        except ValueError:
            raise WarnError(f"--date {date!r} is not a date (YYYY-MM-DD)") from None
    if date <= first:
        raise WarnError(
            f"--date {date} is not after the first ingested day {first}: there is no behaviour before it"
        )
    if date > last + dt.timedelta(days=1):
        raise WarnError(
            f"--date {date} is after the last ingested day {last}: the latest list is for "
            f"{last + dt.timedelta(days=1)} (features use events before the date)"
        )
    lookback = compute.lookback_days(settings)
    if date - dt.timedelta(days=lookback) < first:
        log.warning(
            "warn: the %d-day feature lookback before %s starts before the first ingested day %s: "
            "windows reaching back further see no events",
            lookback,
            date,
            first,
        )
    return date


# Capacity and ranking -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankKey:
    """One key of the list's order; NaN (no value at stake) sorts last on either engine."""

    column: str
    descending: bool


# The one ranking rule of both engines (np.lexsort here, a Spark window in pipelines/warn_spark.py):
# expected loss first; ties go to the higher probability, then the smaller subscriber id.
RANKING = (
    RankKey("expected_loss", True),
    RankKey("churn_probability", True),
    RankKey("subscriber_id", False),
)
# the other policies of retention.policy (this engine only): probability first, or the uplift model's
# expected net value of the best action first; ties as above
RANKINGS = {
    "expected_loss": RANKING,
    "probability": (
        RankKey("churn_probability", True),
        RankKey("expected_loss", True),
        RankKey("subscriber_id", False),
    ),
    "uplift": (
        RankKey("expected_net_value", True),
        RankKey("expected_loss", True),
        RankKey("subscriber_id", False),
    ),
}
SCORED_COLUMNS = ("subscriber_id", "churn_probability", "value_at_stake", "expected_loss", "vip_tier")
SCORE_BINS = np.linspace(0, 1, 51)  # the summary's score histogram


def score_bin(proba: np.ndarray) -> np.ndarray:
    """Each probability's bin of SCORE_BINS as ``np.histogram`` counts it (the last bin is closed), so the
    Spark executors can count the histogram without sending the scores to the driver."""
    idx = np.searchsorted(SCORE_BINS, np.asarray(proba, dtype=float), side="right") - 1
    return np.clip(idx, 0, len(SCORE_BINS) - 2).astype("int32")


def score_counts(proba: np.ndarray) -> np.ndarray:
    """Subscribers per SCORE_BINS bin."""
    return np.bincount(score_bin(proba), minlength=len(SCORE_BINS) - 1)


def rank_order(frame: pd.DataFrame, ranking: tuple[RankKey, ...] = RANKING) -> np.ndarray:
    """Positions of ``frame``'s rows in list order (:data:`RANKING`, or a policy's of :data:`RANKINGS`)."""
    keys = [
        -frame[k.column].to_numpy(dtype=float) if k.descending else frame[k.column].to_numpy()
        for k in reversed(ranking)  # lexsort: the last key is the primary one
    ]
    return np.lexsort(keys)


def tier_capacities(active: Mapping[str, int], cfg: WarningConfig) -> list[TierCapacity]:
    """Per VIP tier (``active``: subscribers per tier name): managers = ceil(active / subscribers_per_manager),
    capacity = managers x orders_per_manager; the non-VIP tier gets the call centre's ``mass_capacity``."""
    out = []
    for t in cfg.vip_tiers:
        n = int(active.get(t.name, 0))
        managers = math.ceil(n / t.subscribers_per_manager)
        out.append(TierCapacity(t.name, n, managers, managers * cfg.orders_per_manager))
    out.append(TierCapacity(cfg.non_vip_tier, int(active.get(cfg.non_vip_tier, 0)), None, cfg.mass_capacity))
    return out


def capacities(vip: np.ndarray, cfg: WarningConfig) -> list[TierCapacity]:
    """:func:`tier_capacities` of every active subscriber's VIP tier."""
    active = pd.Series(vip, dtype=object).value_counts().to_dict()  # hashing: no sort of a million strings
    return tier_capacities(active, cfg)


def with_counts(
    tiers: list[TierCapacity], candidates: Mapping[str, int], listed: Mapping[str, int]
) -> list[TierCapacity]:
    """``tiers`` with their candidates and work orders filled in."""
    return [
        replace(t, candidates=int(candidates.get(t.tier, 0)), listed=int(listed.get(t.tier, 0)))
        for t in tiers
    ]


def choose(
    scored: pd.DataFrame, cfg: WarningConfig, policy: str = "expected_loss"
) -> tuple[pd.DataFrame, list[TierCapacity]]:
    """The work-order list from everyone's scores: within each tier the top by expected loss, up to its
    capacity and never below ``list_min_probability``; the list ranked by expected loss overall.

    ``scored`` has subscriber_id, churn_probability, value_at_stake, expected_loss, vip_tier (one row
    per active subscriber). Ties go to the higher probability, then the smaller subscriber id
    (:data:`RANKING`), so the same scores always give the same list. ``policy`` (``retention.policy``):
    ``probability`` ranks by probability first; ``uplift`` ranks by ``expected_net_value`` (a column
    ``scored`` then has) and takes only subscribers whose best action is worth more than it costs, at
    any probability: the uplift model, not the churn score, says whom a contact changes.
    """
    tiers = capacities(scored["vip_tier"].to_numpy(), cfg)
    if policy == "uplift":
        cand = scored[scored["expected_net_value"].to_numpy(dtype=float) > 0]
    else:
        cand = scored[scored["churn_probability"].to_numpy() >= cfg.list_min_probability]
    cand = cand.iloc[rank_order(cand, RANKINGS[policy])]  # only the candidates are sorted
    within = cand.groupby("vip_tier", sort=False).cumcount().to_numpy()
    cap = cand["vip_tier"].map({t.tier: t.capacity for t in tiers}).fillna(0).to_numpy()
    listed = cand[within < cap]
    tiers = with_counts(tiers, cand["vip_tier"].value_counts(), listed["vip_tier"].value_counts())
    return listed, tiers


# The list -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Night:
    """What the driver keeps of a night's scoring: counts for everyone, rows only for the chosen."""

    active: int  # subscribers scored
    listed: pd.DataFrame = field(repr=False)  # the chosen, in list order: SCORED_COLUMNS
    rows: pd.DataFrame = field(repr=False)  # their features, same order
    tiers: list[TierCapacity]
    score_counts: np.ndarray = field(repr=False)  # everyone's probabilities per SCORE_BINS bin


def nightly_list(
    settings: Settings,
    date: dt.date | str | None = None,
    model=None,
    lang: str = "en",
    out_root: Path | None = None,
    uplift_model: LoadedUplift | None = None,
) -> WarnResult:
    """Score every subscriber active as of ``date``, cut to capacity, explain the listed ones, write the files.

    ``model``: a ``models.registry.LoadedModel`` (default: the registry's champion). Raises
    :class:`WarnError` on a bad date, language or model, ``ValidationFailed`` on bad features; in
    either case nothing is written. With ``features.engine: spark`` the scoring and the choice run on
    Spark (``pipelines/warn_spark.py``) and only the chosen rows reach this process.
    ``retention.policy: uplift`` chooses by the uplift model's expected net value (``uplift_model``,
    default: the registry's uplift champion) and gives each work order the action it recommends.
    """
    _check_request(settings, lang)
    date = resolve_date(settings, date)
    clock = _Stopwatch()
    loaded = _usable_model(settings, model)
    uplift = _usable_uplift(settings, uplift_model)
    clock.lap("load_model", f"model {loaded.name} v{loaded.version} ({loaded.model.kind}) loaded")
    if settings.features.engine == "spark":
        from pipelines import warn_spark  # PySpark: the optional `spark` extra

        night = warn_spark.score_night(settings, date, loaded, clock)
    else:
        night = score_night(settings, date, loaded, clock, uplift)
    explained = score_with_reasons(
        loaded.model, night.rows, settings, lang, proba=night.listed["churn_probability"].to_numpy()
    )
    clock.lap("explain", f"{len(night.listed):,} listed subscribers explained")
    table = _table(night.listed, explained, settings, loaded, date, lang)
    table = with_control_group(with_exploration(table, settings.retention), settings.retention)
    draft = _draft_summary(settings, date, loaded, lang, night.active, table, night.tiers, uplift)
    folder, summary = _write(settings, draft, table, night.score_counts, clock, out_root)
    return WarnResult(date, folder, summary, table)


def score_night(
    settings: Settings, date: dt.date, loaded, clock: _Stopwatch, uplift: LoadedUplift | None = None
) -> Night:
    """Everyone's features, checks, scores and the choice, in this process (DuckDB); with ``uplift``,
    everyone's best action and its expected net value, and the choice by that value."""
    cfg = settings.warnings
    feats = active_features(settings, date)
    clock.lap("features", f"features of {len(feats):,} subscribers active on {date} computed")
    checked = _check_features(feats, settings, date)
    log_checked(clock, checked)
    proba = loaded.model.predict_proba(feats)
    clock.lap("predict", f"{len(feats):,} subscribers scored")
    scored = at_stake(feats, proba, cfg)
    if uplift is not None:
        best = uplift.model.best(feats, scored["value_at_stake"].to_numpy(), settings.retention.value_months)
        scored = scored.assign(
            recommended_action=best.action, expected_net_value=best.net_value, estimated_uplift=best.uplift
        )
        clock.lap("uplift", f"best actions of {len(feats):,} subscribers estimated")
    listed, tiers = choose(
        scored, cfg, settings.retention.policy
    )  # uplift: only with its model (_usable_uplift)
    log_choice(clock, len(listed), tiers, cfg)
    rows = feats.iloc[listed.index.to_numpy()]  # scored shares feats' positional index
    keep_scores(settings, date, loaded.name, loaded.version, feats, proba, listed.index.to_numpy())
    return Night(len(feats), listed, rows, tiers, score_counts(proba))


def log_checked(clock: _Stopwatch, checked: int) -> None:
    clock.lap("validate", f"features checked (suite on {checked:,} rows; every row: unique, finite)")


def log_choice(clock: _Stopwatch, listed: int, tiers: list[TierCapacity], cfg: WarningConfig) -> None:
    clock.lap(
        "choose",
        f"{listed:,} work orders chosen from {sum(t.candidates for t in tiers):,} candidates "
        f"(P >= {cfg.list_min_probability:g}) within capacity "
        + ", ".join(f"{t.tier} {t.listed}/{t.capacity}" for t in tiers),
    )


def _check_request(settings: Settings, lang: str) -> None:
    if settings.features is None:
        raise WarnError(
            "`churn warn` works on operator records (features: in the config), not a customer table"
        )
    if lang not in LANGS:
        raise WarnError(f"--lang must be one of {LANGS}, got {lang!r}")


def _usable_uplift(settings: Settings, uplift: LoadedUplift | None) -> LoadedUplift | None:
    """The uplift model of ``retention.policy: uplift`` (``uplift`` or the registry's uplift champion);
    None for the other policies."""
    if settings.retention.policy != "uplift":
        return None
    if settings.features.engine == "spark":
        raise WarnError("retention.policy: uplift runs on the duckdb engine only (features.engine: spark)")
    if uplift is not None:
        return uplift
    try:
        return load_uplift(settings)
    except Exception as exc:  # mlflow raises its own types for a missing registry, model or alias
        raise WarnError(
            f"retention.policy is uplift but there is no champion uplift model {uplift_model_name(settings)!r} "
            f"in {settings.tracking_uri}: run `churn uplift` on lists with outcomes first "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc


def _usable_model(settings: Settings, model):
    """``model`` or the registry's champion, refused when it needs columns these features lack."""
    loaded = model if model is not None else _load_champion(settings)
    missing = [f for f in loaded.model.features if f not in FEATURE_NAMES]
    if missing:
        raise WarnError(
            f"model {loaded.name} v{loaded.version} needs columns the operator-records features lack: "
            f"{missing} (trained on a customer table?)"
        )
    return loaded


def active_features(settings: Settings, date: dt.date) -> pd.DataFrame:
    """Features of every subscriber active on ``date``, computed by the training table's own code path;
    positions 0..n-1 (shared with the scores)."""
    feats, _ = engine.compute_features(settings.raw_dir, [date], settings)
    feats = feats.reset_index(drop=True)
    if feats.empty:
        raise WarnError(f"no subscriber is active on {date}")
    return feats


def at_stake(feats: pd.DataFrame, proba: np.ndarray, cfg: WarningConfig) -> pd.DataFrame:
    """What :func:`choose` ranks: one row per active subscriber (positions of ``feats``) with
    subscriber_id, churn_probability, value_at_stake, expected_loss, vip_tier."""
    value = stakes.value_at_stake(feats, cfg)
    return pd.DataFrame(
        {
            "subscriber_id": feats["subscriber_id"].to_numpy(),
            "churn_probability": proba,
            "value_at_stake": value,
            "expected_loss": proba * value,
            "vip_tier": stakes.vip_tier(value, cfg),
        }
    )


def _draft_summary(
    settings: Settings,
    date: dt.date,
    loaded,
    lang: str,
    active: int,
    table: pd.DataFrame,
    tiers: list[TierCapacity],
    uplift: LoadedUplift | None = None,
) -> ListSummary:
    """The summary before the files are written (timings still open: :func:`_write` closes them)."""
    cfg = settings.warnings
    return ListSummary(
        date=date,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        model=ModelInfo(loaded.name, loaded.version, loaded.alias, loaded.model.kind, loaded.run_id),
        lang=lang,
        active=active,
        listed=len(table),
        min_probability=cfg.list_min_probability,
        orders_per_manager=cfg.orders_per_manager,
        tiers=tuple(tiers),
        expected_loss_listed=float(np.nansum(table["expected_loss"])) if len(table) else 0.0,
        files=FILES,
        cpu_s={},
        timings_s={},
        control=int((table["group"] == CONTROL).sum()) if len(table) else 0,
        policy=settings.retention.policy,
        uplift_model=None
        if uplift is None
        else ModelInfo(uplift.name, uplift.version, uplift.alias, uplift.model.kind, uplift.run_id),
        explored=int((table["action_source"] == EXPLORE).sum()) if len(table) else 0,
    )


def _check_features(feats: pd.DataFrame, settings: Settings, date: dt.date) -> int:
    """The feature-table suite on a random sample (``warnings.validate_sample``), and on every row the two
    things scoring cannot survive: a subscriber twice (two work orders) and a missing or infinite input."""
    n = settings.warnings.validate_sample
    sample = feats if n is None or len(feats) <= n else feats.sample(n=n, random_state=0)
    validate_sample(sample, settings, date)
    dupes = feats["subscriber_id"][feats["subscriber_id"].duplicated()]
    refuse_duplicates(date, len(dupes), dupes.iloc[:3].tolist())
    finite = np.isfinite(feats[FEATURE_NAMES].to_numpy(dtype=float))
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        named = sorted({FEATURE_NAMES[c] for c in cols})
        refuse_non_finite(date, len(set(rows)), named, feats["subscriber_id"].iloc[rows[:3]].tolist())
    return len(sample)


def validate_sample(sample: pd.DataFrame, settings: Settings, date: dt.date) -> None:
    """The feature-table suite (Great Expectations) on the night's sample."""
    validate_features(sample, settings, file=f"features as of {date} (nightly list, not written)")


def refuse_duplicates(date: dt.date, n: int, examples: list) -> None:
    """Two rows of one subscriber would be two work orders."""
    if n:
        raise WarnError(f"features as of {date}: {n} subscriber(s) appear twice, e.g. {examples}")


def refuse_non_finite(date: dt.date, n: int, named: list[str], examples: list) -> None:
    """A missing or infinite input has no score."""
    if n:
        raise WarnError(
            f"features as of {date}: {n} subscriber(s) with missing or infinite inputs in "
            f"{named}, e.g. {examples}"
        )


def _load_champion(settings: Settings):
    try:
        return load_registered(settings)
    except Exception as exc:  # mlflow raises its own types for a missing registry, model or alias
        raise WarnError(
            f"no champion model {settings.mlflow.registered_model!r} in {settings.tracking_uri}: "
            f"run `churn train` first ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc


def _table(
    listed: pd.DataFrame, explained: list[dict], settings: Settings, loaded, date: dt.date, lang: str
) -> pd.DataFrame:
    """The work orders: one row each, rank first; the top reasons both nested and as flat columns."""
    k = settings.serving.top_reasons
    out = pd.DataFrame(
        {
            "rank": np.arange(1, len(listed) + 1),
            "subscriber_id": listed["subscriber_id"].to_numpy(),
            "churn_probability": [w["churn_probability"] for w in explained],
            "risk_tier": [w["risk_tier"] for w in explained],
            "value_at_stake": [w["value_at_stake"] for w in explained],
            "expected_loss": [w["expected_loss"] for w in explained],
            "vip_tier": [w["vip_tier"] for w in explained],
            "action_code": [w["action"]["code"] for w in explained],
            "action_text": [w["action"]["text"] for w in explained],
        }
    )
    for i in range(k):
        for part in ("code", "sentence", "feature", "value", "contribution"):
            out[f"reason_{i + 1}_{part}"] = [
                w["reasons"][i][part] if i < len(w["reasons"]) else None for w in explained
            ]
    out["reasons"] = [w["reasons"] for w in explained]
    out["model_name"], out["model_version"] = loaded.name, loaded.version
    out["feature_date"], out["lang"] = pd.Timestamp(date), lang
    out["policy"] = settings.retention.policy
    out["action_source"] = "reasons"
    out["expected_net_value"] = np.nan  # CNY: the uplift model's estimate for the work order's action
    if "recommended_action" in listed:  # the uplift model's best action, the reasons as its explanation
        texts = load_templates()["actions"]
        out["action_code"] = listed["recommended_action"].to_numpy()
        out["action_text"] = [texts[a][lang] for a in out["action_code"]]
        out["action_source"] = "uplift"
        out["expected_net_value"] = listed["expected_net_value"].to_numpy(dtype=float)
    for c in ("value_at_stake", "expected_loss"):
        out[c] = out[c].astype("float64")
    return out


CONTROL = "control"  # the action code and group of a held-out work order
POLICY_TEXT = {
    "expected_loss": "expected loss (probability x monthly value)",
    "probability": "churn probability",
    "uplift": "the uplift model's expected net value of the best action (uplift x value - cost)",
}
EXPLORE = "explore"  # the action_source of a work order whose action was drawn at random


def explore_draws(ids, date: dt.date, cfg: RetentionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Which work orders explore (keyed hash of (subscriber, list date) below ``explore_share``) and the
    action each would draw, uniformly among ``explore_actions`` (a second, independent hash)."""
    salt = f"{cfg.explore_salt}|{date}"
    explore = hash_uniform(ids, salt) < cfg.explore_share
    pick = np.floor(hash_uniform(ids, f"{salt}|action") * len(cfg.explore_actions)).astype(int)
    return explore, np.asarray(cfg.explore_actions, dtype=object)[pick]


def with_exploration(table: pd.DataFrame, cfg: RetentionConfig) -> pd.DataFrame:
    """The work orders with ``retention.explore_share`` of them given a random action
    (``action_source: explore``; the reasons stay, as what the model saw). The draw is made before the
    control group is held out and is independent of it, so treated and control work orders of an
    action are alike, and the uplift model sees every action tried on every kind of subscriber."""
    if table.empty or cfg.explore_share == 0:
        return table
    date, lang = table["feature_date"].iloc[0].date(), table["lang"].iloc[0]
    explore, drawn = explore_draws(table["subscriber_id"], date, cfg)
    out = table.copy()
    texts = load_templates()["actions"]
    out.loc[explore, "action_code"] = drawn[explore]
    out.loc[explore, "action_text"] = [texts[a][lang] for a in drawn[explore]]
    out.loc[explore, "action_source"] = EXPLORE
    out.loc[explore, "expected_net_value"] = np.nan
    return out


def control_mask(ids, tiers, date: dt.date, cfg: RetentionConfig) -> np.ndarray:
    """Which work orders are held out: in each tier the round(share x listed) whose keyed hash of
    (subscriber, list date) is smallest, so a re-run of the list holds out the same subscribers and
    the hold-out is random with respect to everything the list ranks on."""
    frame = pd.DataFrame({"tier": np.asarray(tiers), "u": hash_uniform(ids, f"{cfg.control_salt}|{date}")})
    rank = frame.groupby("tier")["u"].rank(method="first").to_numpy()
    size = frame.groupby("tier")["u"].transform("size").to_numpy()
    return rank <= np.floor(size * cfg.control_share + 0.5)


def with_control_group(table: pd.DataFrame, cfg: RetentionConfig) -> pd.DataFrame:
    """The work orders with their assignment: ``group`` (treatment or control) and the action the reasons
    suggest kept as ``planned_action_code``/``_text``; a control work order's action is ``control`` (no
    contact), so nothing downstream can dispatch a contact to it."""
    if table.empty:
        return table.assign(
            group=pd.Series(dtype=str),
            planned_action_code=pd.Series(dtype=str),
            planned_action_text=pd.Series(dtype=str),
        )
    date, lang = table["feature_date"].iloc[0].date(), table["lang"].iloc[0]
    control = control_mask(table["subscriber_id"], table["vip_tier"], date, cfg)
    out = table.copy()
    at = out.columns.get_loc("action_text") + 1
    out.insert(at, "group", np.where(control, CONTROL, "treatment"))
    out.insert(at + 1, "planned_action_code", table["action_code"].to_numpy())
    out.insert(at + 2, "planned_action_text", table["action_text"].to_numpy())
    out.loc[control, "action_code"] = CONTROL
    out.loc[control, "action_text"] = load_templates()["actions"][CONTROL][lang]
    return out


def _write(
    settings: Settings,
    draft: ListSummary,
    table: pd.DataFrame,
    counts: np.ndarray,
    clock: _Stopwatch,
    out_root: Path | None,
) -> tuple[Path, ListSummary]:
    """All four files into a hidden folder beside the final one, then one swap (``replace_dir_atomic``);
    the summary with its timings closed (``write`` and ``total``) as ``summary.json`` records it."""
    date = draft.date
    root = out_root or settings.workdir / "warnings"
    root.mkdir(parents=True, exist_ok=True)
    final = root / str(date)
    remove_dead_leftovers(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{date}.{os.getpid()}.", suffix=".partial", dir=root))
    try:
        table.to_parquet(tmp / "warnings.parquet", index=False)
        table.drop(columns="reasons").to_csv(tmp / "warnings.csv", index=False, date_format="%Y-%m-%d")
        (tmp / "summary.html").write_text(
            summary_html(table, counts, list(draft.tiers), draft, settings.warnings), encoding="utf-8"
        )
        clock.lap("write")
        clock.total()
        summary = replace(draft, cpu_s=dict(clock.cpu), timings_s=dict(clock.wall))
        (tmp / "summary.json").write_text(json.dumps(summary.as_json(), indent=2, default=str) + "\n")
        replace_dir_atomic(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "warn: %d work orders for %s written to %s in %.1fs (total %.1fs)",
        len(table),
        date,
        final,
        summary.timings_s["write"],
        summary.total_seconds,
    )
    return final, summary


# Summary page ---------------------------------------------------------------------------------------
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure():
    return plt.subplots(figsize=(6.5, 3.6))


def summary_plots(
    table: pd.DataFrame, counts: np.ndarray, tiers: list[TierCapacity], cfg: WarningConfig
) -> dict[str, str]:
    """Three base64 PNGs: score distribution (all, from ``counts`` per SCORE_BINS bin, vs listed), reasons mix
    (listed), tier mix (capacity use)."""
    return {
        "score distribution": _png(_score_plot(table, counts, cfg)),
        "reasons mix": _png(_reasons_plot(table)),
        "tier mix": _png(_tier_plot(tiers)),
    }


def _score_plot(table: pd.DataFrame, counts: np.ndarray, cfg: WarningConfig):
    fig, ax = _figure()
    bins = SCORE_BINS
    ax.hist(bins[:-1], bins=bins, weights=counts, color="#9bb", label=f"all active ({int(counts.sum()):,})")
    ax.hist(table["churn_probability"], bins=bins, color="#c33", label=f"on the list ({len(table):,})")
    ax.axvline(cfg.list_min_probability, ls=":", c="k", label=f"min probability {cfg.list_min_probability:g}")
    ax.set(
        yscale="log", xlabel="calibrated churn probability", ylabel="subscribers", title="Score distribution"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _reasons_plot(table: pd.DataFrame):
    fig, ax = _figure()
    codes = [r["code"] for rs in table["reasons"] for r in rs if r["contribution"] > 0]
    first = table["reason_1_code"].dropna() if len(table) else pd.Series(dtype=str)
    mix = (
        pd.DataFrame(
            {
                "any of the top reasons": pd.Series(codes, dtype=object).value_counts(),
                "first reason": first.value_counts(),
            }
        )
        .fillna(0)
        .sort_values("any of the top reasons")
    )
    if len(mix):
        mix.plot.barh(ax=ax, color=["#9bb", "#c33"])
        ax.legend(fontsize=8)
    ax.set(xlabel="work orders", title="Reasons mix (risk-raising reasons on the list)")
    fig.tight_layout()
    return fig


def _tier_plot(tiers: list[TierCapacity]):
    fig, ax = _figure()
    x = np.arange(len(tiers))
    for off, key, color in ((-0.27, "candidates", "#9bb"), (0, "capacity", "#888"), (0.27, "listed", "#c33")):
        ax.bar(x + off, [getattr(t, key) for t in tiers], width=0.27, color=color, label=key)
    ax.set_xticks(x, [t.tier for t in tiers])
    ax.set(ylabel="subscribers", title="Tier mix: candidates, capacity and work orders")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def summary_html(
    table: pd.DataFrame,
    counts: np.ndarray,
    tiers: list[TierCapacity],
    summary: ListSummary,
    cfg: WarningConfig,
    top: int = 10,
) -> str:
    """A one-page summary for the retention lead: counts per tier, the three plots, the top work orders."""
    e = html.escape
    m = summary.model
    tier_rows = "".join(
        f"<tr><td>{e(t.tier)}</td><td>{t.active:,}</td><td>{'' if t.managers is None else f'{t.managers:,}'}</td>"
        f"<td>{t.capacity:,}</td><td>{t.candidates:,}</td><td>{t.listed:,}</td></tr>"
        for t in tiers
    )
    head = table.head(top)
    top_rows = "".join(
        f"<tr><td>{r.rank}</td><td>{e(str(r.subscriber_id))}</td><td>{r.churn_probability:.3f}</td>"
        f"<td>{r.value_at_stake:.0f}</td><td>{r.expected_loss:.1f}</td><td>{e(r.vip_tier)}</td>"
        f"<td>{e(str(r.reason_1_sentence))}</td><td>{e(r.action_text)}</td></tr>"
        for r in head.itertuples()
    )
    imgs = "".join(
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,{b64}"><figcaption>{e(name)}'
        "</figcaption></figure>"
        for name, b64 in summary_plots(table, counts, tiers, cfg).items()
    )
    date = e(str(summary.date))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Churn warnings {date}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}figure{{display:inline-block;margin:.5em}}</style>
</head><body>
<h1>Churn warnings as of {date}</h1>
<p>{summary.listed:,} work orders from {summary.active:,} active subscribers, ranked by {e(POLICY_TEXT[summary.policy])}
({summary.expected_loss_listed:,.0f} CNY a month of expected loss on the list).
Model {e(m.name)} v{e(m.version)} ({e(m.kind)}); no work order below probability
{summary.min_probability:g}; a customer manager takes {summary.orders_per_manager} work orders a list.
{summary.control:,} of them are held out at random as the control group (no contact) that `churn evaluate`
compares the contacted ones with.</p>
<table><tr><th>tier</th><th>active</th><th>managers</th><th>capacity</th><th>candidates</th><th>listed</th></tr>
{tier_rows}</table>
{imgs}
<h2>Top {len(head)} work orders</h2>
<table><tr><th>rank</th><th>subscriber</th><th>probability</th><th>value</th><th>expected loss</th><th>tier</th>
<th>first reason</th><th>action</th></tr>{top_rows}</table>
</body></html>
"""
