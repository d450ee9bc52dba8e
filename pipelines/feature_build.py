"""The ``features`` stage: ingested tables -> point-in-time feature table -> Feast, incrementally.

When ``data/features/manifest.json`` shows the tables were built from the same ingested tables and
the same feature definitions, only the snapshots they lack, and those whose window holds a changed
CDR day (a late partition), are computed, validated and put in (snapshots no longer configured are
dropped); only the new interval is loaded into the online store when no existing snapshot changed.
Otherwise everything is recomputed and fully materialised (``features.manifest.plan`` says which
and why).

Nothing is written unless the export passes validation (re-checked if it changed since) and the new
rows pass the feature-table suite; labels, table and manifest are then each replaced atomically, the
manifest last (a run stopped in between leaves a manifest that no longer matches the files, so the
next run rebuilds). Nothing is rewritten when nothing changed. On ``features.engine: spark`` the
tables are computed, checked and written by the executors instead (``pipelines.feature_build_spark``),
with the same plan, order of replacement and manifest.

The steps, each returning a frozen dataclass: :func:`plan_build` (what to do), :func:`compute_new`
(the new rows, validated), :func:`assemble` (the whole tables), :func:`write_tables` (tables and
manifest), :func:`materialise` (the online store), and :func:`build_features` runs them and writes
``reports/features.json`` (a DVC metrics file) from a :class:`FeatureBuild`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from core.config import Settings
from core.io import cached_sha256, write_json_atomic, write_parquet_atomic
from features import engine
from features import manifest as mf
from features.catalogue import FEATURE_NAMES
from features.store import OnlineStoreUnreachable, apply_and_materialize, get_store, write_online_rows
from pipelines.errors import StoreUnavailable
from pipelines.ingest import ensure_ingested
from pipelines.validate import validate_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureBuild:
    """What a build did: the summary ``churn features`` reports (``reports/features.json``)."""

    rows: int  # feature rows over all snapshots
    snapshots: tuple[str, ...]  # the configured snapshots, ISO dates
    churn_rate: float  # share of churned labels over all snapshots
    build: str  # "full" or "incremental"
    computed: int  # snapshots computed by this build
    kept: int  # snapshots kept from the previous table
    dropped: int  # snapshots no longer configured, removed
    materialised: str  # the online store's load: "full", "incremental", "changed rows" or "up to date"


@dataclass(frozen=True)
class BuildPlan:
    """What the tables on disk were built from, and what this build does about it."""

    raw_fingerprint: dict
    definition: dict
    previous: dict | None  # the manifest on disk (None: none, or unreadable)
    plan: mf.Plan

    @property
    def changes_tables(self) -> bool:
        """False when data, definitions, files and snapshots are as recorded: nothing to compute or write."""
        return self.plan.mode == "full" or bool(self.plan.compute or self.plan.drop)


@dataclass(frozen=True)
class Tables:
    """Feature and label rows, one per subscriber and snapshot, in the computation's order."""

    features: pd.DataFrame
    labels: pd.DataFrame


@dataclass(frozen=True)
class Written:
    """The label counts per snapshot (``features.manifest.label_counts``) and manifest the build ends
    with, and whether this run wrote them."""

    counts: dict[dt.date, tuple[int, int]]
    manifest: dict
    changed: bool

    @property
    def churn_rate(self) -> float:
        rows = sum(n for n, _ in self.counts.values())
        return sum(c for _, c in self.counts.values()) / rows if rows else float("nan")


@dataclass(frozen=True)
class Materialised:
    """The online store's load: ``mode`` is "full", "incremental", "changed rows" or "up to date"."""

    mode: str
    end: str | None
    at: str

    def as_manifest_entry(self) -> dict:
        return {"status": "done", "mode": self.mode, "end": self.end, "at": self.at}


def build_features(settings: Settings) -> FeatureBuild:
    """Ingested tables -> point-in-time feature table -> Feast (apply + materialise), incrementally.

    See the module docstring; writes ``reports/features.json`` with the fields of the result.
    """
    ensure_ingested(settings)
    todo = plan_build(settings)
    delta = None
    if todo.changes_tables and settings.features.engine == "spark":
        from pipelines import feature_build_spark  # the optional `spark` extra

        written = feature_build_spark.build_tables(settings, todo)  # on the executors, not through here
    elif todo.changes_tables:
        old = read_previous(settings, todo.plan)  # read once, before it is replaced
        new = compute_new(settings, todo.plan, old)
        delta = online_delta(settings, todo, new, old)
        written = write_tables(settings, todo, assemble(settings, todo.plan, new, old))
    else:  # same definitions, files and snapshots, no changed day in a window: nothing to compute
        written = _refresh_manifest(settings, todo)
    loaded = materialise(settings, todo.plan, delta)
    _record_online(settings, written, loaded)
    result = FeatureBuild(
        rows=sum(v["rows"] for v in written.manifest["snapshots"].values()),
        snapshots=tuple(str(s) for s in settings.features.snapshots),
        churn_rate=written.churn_rate,
        build=todo.plan.mode,
        computed=len(todo.plan.compute),
        kept=len(todo.plan.keep),
        dropped=len(todo.plan.drop),
        materialised=loaded.mode,
    )
    write_json_atomic(asdict(result), settings.reports_dir / "features.json")
    return result


def plan_build(settings: Settings) -> BuildPlan:
    """Fingerprint the ingested data and the definitions, read the manifest, and plan the build."""
    raw_fp, definition = mf.raw_fingerprint(settings), mf.definition_version(settings)
    previous = mf.read_manifest(settings)
    plan = mf.plan(settings, previous, raw_fp, definition)
    log.info("%s", plan.describe())
    return BuildPlan(raw_fp, definition, previous, plan)


def compute_new(settings: Settings, plan: mf.Plan, old: Tables | None = None) -> Tables | None:
    """The rows of the snapshots the plan computes, checked by the feature-table suite before anything
    is written (raises ``ValidationFailed``); None when no snapshot is computed. A recomputed snapshot's
    rows equal to ``old``'s (the table on disk, whose rows passed the same suite) are not checked again:
    the suite checks row by row, and one row per subscriber and snapshot, which holds when the new keys
    are unique and each checked row is."""
    if not plan.compute:
        return None
    feats, labels = engine.compute_features(settings.raw_dir, plan.compute, settings)
    what = "new" if plan.mode == "full" else f"new rows for {', '.join(map(str, plan.compute))}"
    check = _unchecked(feats, old)
    if len(check) < len(feats):
        log.info(
            "features: %d of %d new rows differ from rows checked before: checking those",
            len(check),
            len(feats),
        )
    if not check.empty:
        validate_features(check, settings, file=f"{settings.feature_table} ({what}, not yet written)")
    return Tables(feats, labels)


KEY = ["subscriber_id", "event_timestamp"]


def _unchecked(new: pd.DataFrame, old: Tables | None) -> pd.DataFrame:
    """``new``'s rows that are not equal (key and every column) to a row of ``old``; all of them when
    there is no old table, the columns differ or a key repeats (the suite then reports it)."""
    if old is None or new.empty or list(old.features.columns) != list(new.columns):
        return new
    days = list({t.date() for t in new["event_timestamp"].unique()})
    prev = old.features[_on_days(old.features["event_timestamp"], days)].set_index(KEY)
    at = pd.MultiIndex.from_frame(new[KEY].astype({"event_timestamp": old.features["event_timestamp"].dtype}))
    if prev.empty or not at.is_unique or not prev.index.is_unique:
        return new
    cols = [c for c in new.columns if c not in KEY]
    was = prev[cols].reindex(at).to_numpy(dtype="float64")
    now = new[cols].to_numpy(dtype="float64")
    same = ((now == was) | (np.isnan(now) & np.isnan(was))).all(axis=1)
    return new[~same]


def read_previous(settings: Settings, plan: mf.Plan) -> Tables | None:
    """The tables on disk, which an incremental build grows (None for a full build)."""
    if plan.mode == "full":
        return None
    return Tables(pd.read_parquet(settings.feature_table), pd.read_parquet(settings.label_table))


def assemble(settings: Settings, plan: mf.Plan, new: Tables | None, old: Tables | None = None) -> Tables:
    """The whole tables: the new rows (full build), or the kept snapshots' rows of ``old`` (default:
    the tables on disk) plus the new ones."""
    if plan.mode == "full":
        return new
    old = old or read_previous(settings, plan)
    return Tables(
        features=_grow(old.features, None if new is None else new.features, plan.keep),
        labels=_grow(old.labels, None if new is None else new.labels, plan.keep),
    )


def _grow(old: pd.DataFrame, new: pd.DataFrame | None, keep: list[dt.date]) -> pd.DataFrame:
    """The kept snapshots' rows as they were, plus the new rows, in the computation's order."""
    kept = old[_on_days(old["event_timestamp"], keep)]
    if new is None or new.empty:
        return kept.reset_index(drop=True)
    both = pd.concat([kept, new.astype(kept.dtypes.to_dict())], ignore_index=True)
    newest = not kept.empty and new["event_timestamp"].min() > kept["event_timestamp"].max()
    if newest and _in_order(both):  # the daily case, the newest snapshot recomputed: already in order
        return both
    return both.sort_values(["event_timestamp", "subscriber_id"], kind="mergesort", ignore_index=True)


def _on_days(stamps: pd.Series, days: list[dt.date]) -> pd.Series:
    """Whether each time falls on one of ``days`` (UTC), decided once per distinct time (a snapshot's)."""
    wanted = set(days)
    return stamps.isin([t for t in stamps.unique() if t.date() in wanted])


def _in_order(df: pd.DataFrame) -> bool:
    """Whether the rows are sorted by (event_timestamp, subscriber_id): a stable sort would then leave
    them as they are. Checked per run of equal times by pandas' monotonicity test, in C (comparing
    the ids in numpy object arrays took 10 s for 3 x 10^6 rows)."""
    ts = df["event_timestamp"]
    if not ts.is_monotonic_increasing:
        return False
    t = pd.DatetimeIndex(ts).asi8  # not to_numpy(): tz-aware times would come back as objects
    cuts = [0, *(np.flatnonzero(t[1:] != t[:-1]) + 1).tolist(), len(df)]
    ids = df["subscriber_id"]
    return all(ids.iloc[a:b].is_monotonic_increasing for a, b in zip(cuts[:-1], cuts[1:], strict=True))


def write_tables(settings: Settings, todo: BuildPlan, tables: Tables) -> Written:
    """Labels, then features, then the manifest, each atomically: until the manifest is written the
    old one mismatches the files, so a run stopped in between rebuilds next time."""
    write_parquet_atomic(tables.labels, settings.label_table)
    write_parquet_atomic(tables.features, settings.feature_table)
    return write_manifest(settings, todo, mf.label_counts(tables.labels))


def write_manifest(settings: Settings, todo: BuildPlan, counts: dict) -> Written:
    """The manifest of tables just written (by either engine), written last."""
    manifest = _manifest(settings, todo, counts)
    write_json_atomic(manifest, mf.manifest_path(settings))
    _note_incomplete_labels(settings, manifest)
    return Written(counts, manifest, changed=True)


def _manifest(settings: Settings, todo: BuildPlan, counts: dict) -> dict:
    """The manifest of freshly written tables (the online store still to load)."""
    plan = todo.plan
    return {
        "format": mf.FORMAT,
        "built_at": _now(),
        "build": {
            "mode": plan.mode,
            "reason": plan.reason,
            "computed": [str(s) for s in plan.compute],
            "kept": [str(s) for s in plan.keep],
            "dropped": [str(s) for s in plan.drop],
            "recomputed": {str(s): why for s, why in plan.recompute.items()},
        },
        "raw_fingerprint": todo.raw_fingerprint,
        "definition": todo.definition,
        "snapshots": mf.snapshot_summary(counts, list(settings.features.snapshots), settings),
        "tables": {
            key: {"file": path.name, "sha256": cached_sha256(path, mf.hash_cache(settings))}
            for key, path in (("features", settings.feature_table), ("labels", settings.label_table))
        },
        "online": {"status": "pending"},
    }


def _refresh_manifest(settings: Settings, todo: BuildPlan) -> Written:
    """The tables as they are. When CDR days changed outside every snapshot's window (a day after the
    last snapshot, say) the manifest is rewritten to record the data the tables now stand for."""
    counts = _label_counts(settings)
    if todo.raw_fingerprint == todo.previous.get("raw_fingerprint"):
        return Written(counts, todo.previous, changed=False)
    manifest = _manifest(settings, todo, counts) | {"online": todo.previous.get("online") or {}}
    write_json_atomic(manifest, mf.manifest_path(settings))
    return Written(counts, manifest, changed=False)


def _label_counts(settings: Settings) -> dict:
    """Rows and churners per snapshot of the label table on disk, counted on the configured engine."""
    if settings.features.engine == "spark":
        from pipelines import feature_build_spark

        return feature_build_spark.label_counts(settings)
    return mf.label_counts(pd.read_parquet(settings.label_table, columns=["event_timestamp", "churned"]))


def _note_incomplete_labels(settings: Settings, manifest: dict) -> None:
    incomplete = [d for d, v in manifest["snapshots"].items() if v["labels_complete"] is False]
    if incomplete:
        last_day = mf.data_end(settings) - dt.timedelta(days=1)
        log.info(
            "features: labels of %s look past the last ingested day %s: they count the churn seen so far",
            ", ".join(incomplete),
            last_day,
        )


@dataclass(frozen=True)
class OnlineDelta:
    """The recomputed newest snapshot's rows whose values differ from the online store's (or are new)."""

    rows: pd.DataFrame  # subscriber_id, event_timestamp and the features
    snapshot_rows: int  # rows of the recomputed snapshot
    cells: np.ndarray  # rows x FEATURE_NAMES: the values that changed (all of a subscriber new to it)


def online_delta(
    settings: Settings, todo: BuildPlan, new: Tables | None, old: Tables | None = None
) -> OnlineDelta | None:
    """The rows the online store lacks when the build recomputes only the newest snapshot.

    The online store holds each subscriber's newest row: when the one recomputed snapshot is the newest
    and the store was loaded with the old rows, writing the values that changed (a day's calls change
    some features of who called that day; the others' stored rows already hold the same value and
    time) leaves it as a full reload would. None (reload in full) in every
    other case: new or dropped snapshots, an unfinished load, a subscriber gone from the snapshot (their
    old row would stay), or the Spark engine (whose load runs on the executors, not through here).
    """
    plan, online = todo.plan, ((todo.previous or {}).get("online") or {})
    if new is None or plan.mode != "incremental" or plan.drop or online.get("status") != "done":
        return None
    if settings.features.engine != "duckdb" or list(plan.recompute) != plan.compute or len(plan.compute) != 1:
        return None
    snap = plan.compute[0]
    if snap != max(settings.features.snapshots):
        return None
    old = old.features if old is not None else pd.read_parquet(settings.feature_table)
    was = old[_on_days(old["event_timestamp"], [snap])].set_index("subscriber_id")[FEATURE_NAMES]
    now = new.features.set_index("subscriber_id")
    if not was.index.isin(now.index).all():
        return None
    both = was.reindex(now.index)
    a, b = now[FEATURE_NAMES].to_numpy(dtype="float64"), both.to_numpy(dtype="float64")
    cells = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    cells[~now.index.isin(was.index)] = True  # a subscriber new to the snapshot: every value
    changed = cells.any(axis=1)
    rows = now.loc[changed].reset_index()[["subscriber_id", "event_timestamp", *FEATURE_NAMES]]
    return OnlineDelta(rows, len(now), cells[changed])


def materialise(settings: Settings, plan: mf.Plan, delta: OnlineDelta | None = None) -> Materialised:
    """Register the definitions in Feast and load the online store: only the new interval when the plan
    allows, only the changed rows of a recomputed newest snapshot when :func:`online_delta` found them,
    else everything."""
    snapshots = list(settings.features.snapshots)
    try:
        return _load_online(settings, plan, delta, snapshots)
    except OnlineStoreUnreachable as exc:
        raise StoreUnavailable(str(exc)) from None


def _load_online(
    settings: Settings, plan: mf.Plan, delta: OnlineDelta | None, snapshots: list
) -> Materialised:
    if delta is not None:
        loaded = apply_and_materialize(settings, snapshots, incremental=True)  # the store holds the span
        if loaded["mode"] != "up to date":  # the store could not be trusted: it was loaded whole
            return Materialised(loaded["mode"], loaded["end"], _now())
        written = write_online_rows(get_store(settings), delta.rows, delta.cells)
        log.info(
            "feast: wrote the %d of %d rows of %s whose values changed into the online store "
            "(%d values of theirs changed)",
            len(delta.rows),
            delta.snapshot_rows,
            max(snapshots),
            written,
        )
        return Materialised("changed rows", loaded["end"], _now())
    loaded = apply_and_materialize(settings, snapshots, incremental=plan.materialise == "incremental")
    return Materialised(loaded["mode"], loaded["end"], _now())


def _record_online(settings: Settings, written: Written, loaded: Materialised) -> None:
    """Mark the online store loaded in the manifest, unless it already says so and nothing changed."""
    recorded = (written.manifest.get("online") or {}).get("status") == "done"
    if written.changed or not recorded or loaded.mode != "up to date":
        write_json_atomic(
            written.manifest | {"online": loaded.as_manifest_entry()}, mf.manifest_path(settings)
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
