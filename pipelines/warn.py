"""The nightly warning list: every active subscriber scored as of a date, cut to the retention team's capacity.

DOMAIN.md: capacity is finite (one customer manager per 200 diamond / 500 gold / 1000 silver VIPs)
and work orders beyond it are wasted, so the list is ranked by what is at stake (expected loss =
calibrated probability x monthly value), cut per VIP tier to what that tier's managers can take, and
every work order carries its reasons and a suggested action.

Speed (1 million subscribers in under a minute): everyone is scored with one ``predict_proba``
(cheap), and only the rows that make the list are explained (exact TreeSHAP costs ~100x a
prediction), through the same ``score_with_reasons`` the endpoint uses. Features come from the same
``compute_features`` the training table was built with.

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
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Settings, WarningConfig
from core.io import replace_dir_atomic
from features import compute, engine
from features import manifest as mf
from features.catalogue import FEATURE_NAMES
from models import stakes
from models.plots import plt
from models.registry import load_registered
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
def capacities(vip: np.ndarray, cfg: WarningConfig) -> list[TierCapacity]:
    """Per VIP tier: managers = ceil(active / subscribers_per_manager), capacity = managers x orders_per_manager;
    the non-VIP tier gets the call centre's ``mass_capacity``."""
    active = pd.Series(vip, dtype=object).value_counts().to_dict()  # hashing: no sort of a million strings
    out = []
    for t in cfg.vip_tiers:
        n = active.get(t.name, 0)
        managers = math.ceil(n / t.subscribers_per_manager)
        out.append(TierCapacity(t.name, n, managers, managers * cfg.orders_per_manager))
    out.append(TierCapacity(cfg.non_vip_tier, active.get(cfg.non_vip_tier, 0), None, cfg.mass_capacity))
    return out


def choose(scored: pd.DataFrame, cfg: WarningConfig) -> tuple[pd.DataFrame, list[TierCapacity]]:
    """The work-order list from everyone's scores: within each tier the top by expected loss, up to its
    capacity and never below ``list_min_probability``; the list ranked by expected loss overall.

    ``scored`` has subscriber_id, churn_probability, value_at_stake, expected_loss, vip_tier (one row
    per active subscriber). Ties go to the higher probability, then the smaller subscriber id, so the
    same scores always give the same list.
    """
    tiers = capacities(scored["vip_tier"].to_numpy(), cfg)
    cand = scored[scored["churn_probability"].to_numpy() >= cfg.list_min_probability]
    # only the candidates are sorted (a few % of the base); NaN expected loss (no value) sorts last
    order = np.lexsort(
        (
            cand["subscriber_id"].to_numpy(),
            -cand["churn_probability"].to_numpy(),
            -cand["expected_loss"].to_numpy(dtype=float),
        )
    )
    cand = cand.iloc[order]
    within = cand.groupby("vip_tier", sort=False).cumcount().to_numpy()
    cap = cand["vip_tier"].map({t.tier: t.capacity for t in tiers}).fillna(0).to_numpy()
    listed = cand[within < cap]
    counts, n_cand = listed["vip_tier"].value_counts(), cand["vip_tier"].value_counts()
    tiers = [
        replace(t, candidates=int(n_cand.get(t.tier, 0)), listed=int(counts.get(t.tier, 0))) for t in tiers
    ]
    return listed, tiers


# The list -------------------------------------------------------------------------------------------
def nightly_list(
    settings: Settings,
    date: dt.date | str | None = None,
    model=None,
    lang: str = "en",
    out_root: Path | None = None,
) -> WarnResult:
    """Score every subscriber active as of ``date``, cut to capacity, explain the listed ones, write the files.

    ``model``: a ``models.registry.LoadedModel`` (default: the registry's champion). Raises
    :class:`WarnError` on a bad date, language or model, ``ValidationFailed`` on bad features; in
    either case nothing is written.
    """
    _check_request(settings, lang)
    cfg = settings.warnings
    date = resolve_date(settings, date)
    clock = _Stopwatch()
    loaded = _usable_model(settings, model)
    clock.lap("load_model", f"model {loaded.name} v{loaded.version} ({loaded.model.kind}) loaded")
    feats = active_features(settings, date)
    clock.lap("features", f"features of {len(feats):,} subscribers active on {date} computed")
    checked = _check_features(feats, settings, date)
    clock.lap("validate", f"features checked (suite on {checked:,} rows; every row: unique, finite)")
    proba = loaded.model.predict_proba(feats)
    clock.lap("predict", f"{len(feats):,} subscribers scored")
    scored = at_stake(feats, proba, cfg)
    listed, tiers = choose(scored, cfg)
    n_cand = int((proba >= cfg.list_min_probability).sum())
    clock.lap(
        "choose",
        f"{len(listed):,} work orders chosen from {n_cand:,} candidates "
        f"(P >= {cfg.list_min_probability:g}) within capacity "
        + ", ".join(f"{t.tier} {t.listed}/{t.capacity}" for t in tiers),
    )
    rows = feats.iloc[listed.index.to_numpy()]  # scored shares feats' positional index
    explained = score_with_reasons(
        loaded.model, rows, settings, lang, proba=listed["churn_probability"].to_numpy()
    )
    clock.lap("explain", f"{len(listed):,} listed subscribers explained")
    table = _table(listed, explained, settings, loaded, date, lang)
    draft = _draft_summary(settings, date, loaded, lang, len(feats), table, tiers)
    folder, summary = _write(settings, draft, table, scored, clock, out_root)
    return WarnResult(date, folder, summary, table)


def _check_request(settings: Settings, lang: str) -> None:
    if settings.features is None:
        raise WarnError(
            "`churn warn` works on operator records (features: in the config), not a customer table"
        )
    if lang not in LANGS:
        raise WarnError(f"--lang must be one of {LANGS}, got {lang!r}")


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
    )


def _check_features(feats: pd.DataFrame, settings: Settings, date: dt.date) -> int:
    """The feature-table suite on a random sample (``warnings.validate_sample``), and on every row the two
    things scoring cannot survive: a subscriber twice (two work orders) and a missing or infinite input."""
    n = settings.warnings.validate_sample
    sample = feats if n is None or len(feats) <= n else feats.sample(n=n, random_state=0)
    validate_features(sample, settings, file=f"features as of {date} (nightly list, not written)")
    dupes = feats["subscriber_id"][feats["subscriber_id"].duplicated()]
    if len(dupes):
        raise WarnError(
            f"features as of {date}: {len(dupes)} subscriber(s) appear twice, e.g. {dupes.iloc[:3].tolist()}"
        )
    finite = np.isfinite(feats[FEATURE_NAMES].to_numpy(dtype=float))
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        named = sorted({FEATURE_NAMES[c] for c in cols})
        raise WarnError(
            f"features as of {date}: {len(set(rows))} subscriber(s) with missing or infinite inputs in "
            f"{named}, e.g. {feats['subscriber_id'].iloc[rows[:3]].tolist()}"
        )
    return len(sample)


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
    for c in ("value_at_stake", "expected_loss"):
        out[c] = out[c].astype("float64")
    return out


def _write(
    settings: Settings,
    draft: ListSummary,
    table: pd.DataFrame,
    scored: pd.DataFrame,
    clock: _Stopwatch,
    out_root: Path | None,
) -> tuple[Path, ListSummary]:
    """All four files into a hidden folder beside the final one, then one swap (``replace_dir_atomic``);
    the summary with its timings closed (``write`` and ``total``) as ``summary.json`` records it."""
    date = draft.date
    root = out_root or settings.workdir / "warnings"
    root.mkdir(parents=True, exist_ok=True)
    final = root / str(date)
    tmp = Path(tempfile.mkdtemp(prefix=f".{date}.", suffix=".partial", dir=root))
    try:
        table.to_parquet(tmp / "warnings.parquet", index=False)
        table.drop(columns="reasons").to_csv(tmp / "warnings.csv", index=False, date_format="%Y-%m-%d")
        (tmp / "summary.html").write_text(
            summary_html(table, scored, list(draft.tiers), draft, settings.warnings), encoding="utf-8"
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
    table: pd.DataFrame, scored: pd.DataFrame, tiers: list[TierCapacity], cfg: WarningConfig
) -> dict[str, str]:
    """Three base64 PNGs: score distribution (all vs listed), reasons mix (listed), tier mix (capacity use)."""
    return {
        "score distribution": _png(_score_plot(table, scored, cfg)),
        "reasons mix": _png(_reasons_plot(table)),
        "tier mix": _png(_tier_plot(tiers)),
    }


def _score_plot(table: pd.DataFrame, scored: pd.DataFrame, cfg: WarningConfig):
    fig, ax = _figure()
    bins = np.linspace(0, 1, 51)
    ax.hist(scored["churn_probability"], bins=bins, color="#9bb", label=f"all active ({len(scored):,})")
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
    scored: pd.DataFrame,
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
        for name, b64 in summary_plots(table, scored, tiers, cfg).items()
    )
    date = e(str(summary.date))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Churn warnings {date}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}figure{{display:inline-block;margin:.5em}}</style>
</head><body>
<h1>Churn warnings as of {date}</h1>
<p>{summary.listed:,} work orders from {summary.active:,} active subscribers, ranked by expected loss
(probability x monthly value; {summary.expected_loss_listed:,.0f} CNY a month on the list).
Model {e(m.name)} v{e(m.version)} ({e(m.kind)}); no work order below probability
{summary.min_probability:g}; a customer manager takes {summary.orders_per_manager} work orders a list.</p>
<table><tr><th>tier</th><th>active</th><th>managers</th><th>capacity</th><th>candidates</th><th>listed</th></tr>
{tier_rows}</table>
{imgs}
<h2>Top {len(head)} work orders</h2>
<table><tr><th>rank</th><th>subscriber</th><th>probability</th><th>value</th><th>expected loss</th><th>tier</th>
<th>first reason</th><th>action</th></tr>{top_rows}</table>
</body></html>
"""
