"""What the feature table was built from, so a rebuild computes only the snapshots it lacks.

``data/features/manifest.json`` sits beside the feature table and records the ingested data it was
computed from (the content hash of every table of ``data/raw`` and of every CDR day partition),
the feature-definition version (a
hash of ``features/compute.py``, the catalogue names and the value-changing part of the
``features:`` config), the snapshots in the table with their row counts, the SHA-256 of the
feature and label files, and whether the online store has been loaded since.

Because every snapshot is computed independently from the same data and definitions, a table grown
snapshot by snapshot equals one computed at once. A changed, added or removed CDR day recomputes
only the snapshots whose feature window holds it (:func:`cdr_window`); any other change of data,
definitions or files makes :func:`plan` ask for a full rebuild.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Settings
from core.io import PARTITION, HashCache, cached_sha256, partition_hashes, sha256_files
from features import compute
from features.catalogue import FEATURE_NAMES

log = logging.getLogger(__name__)

FORMAT = 2  # 2: content hashes, one per CDR day partition
# features: keys that do not change any value in the tables (Feast serving and monitoring only; a
# DuckDB memory limit only makes the query spill sooner)
NOT_DEFINITION = {"snapshots", "ttl_days", "max_staleness_days", "duckdb_memory_limit"}


def manifest_path(settings: Settings) -> Path:
    return settings.features_dir / "manifest.json"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hash_cache(settings: Settings) -> Path:
    """The workdir's :class:`core.io.HashCache` file: content hashes of landing and ingested files,
    so unchanged files (all days but the new one) are not read again to learn they are unchanged."""
    return settings.workdir / "data" / ".content_hashes.json"


def raw_fingerprint(settings: Settings) -> dict:
    """The content of ``data/raw``: a hash of each table's bytes, and under ``cdr`` one per day
    partition (by day), so a build sees which days changed. Content decides: a file is read again
    whenever its size, modification time or inode differ from when it was last hashed."""
    raw = settings.raw_dir
    if not raw.is_dir():
        return {}
    out = {}
    for p in sorted(raw.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            out[p.name] = partition_hashes(p, hash_cache(settings))
        else:
            with HashCache(hash_cache(settings)) as cache:
                out[p.name] = cache.hash(p, [p])
    return out


def definition_version(settings: Settings) -> dict:
    """The feature definitions: the computation's source, the catalogue names, the value-changing config."""
    compute_sha = sha256_files(Path(compute.__file__))
    cfg = settings.features.model_dump(mode="json", exclude=NOT_DEFINITION)
    parts = {"compute_sha256": compute_sha, "feature_names": list(FEATURE_NAMES), "features_config": cfg}
    return {"sha256": _sha(json.dumps(parts, sort_keys=True)), **parts}


def read_manifest(settings: Settings) -> dict | None:
    path = manifest_path(settings)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("features: unreadable manifest %s, rebuilding", path)
        return None


def ingested_days(settings: Settings) -> tuple[dt.date, dt.date] | None:
    """First and last ingested CDR day (from the day partitions of ``data/raw/cdr``); None: none yet."""
    days = []
    for p in (settings.raw_dir / "cdr").glob(f"{PARTITION}=*"):
        try:
            days.append(dt.date.fromisoformat(p.name.split("=", 1)[1]))
        except ValueError:
            continue
    return (min(days), max(days)) if days else None


def data_end(settings: Settings) -> dt.date | None:
    """The day after the last ingested CDR day partition (labels cannot see past it)."""
    span = ingested_days(settings)
    return span[1] + dt.timedelta(days=1) if span else None


def cdr_window(settings: Settings, snapshot: dt.date) -> tuple[dt.date, dt.date]:
    """First and last CDR day the snapshot's features read: the ``lookback_days`` before it (calls
    strictly before the snapshot; a call's day is its partition). Labels read churn events only."""
    return snapshot - dt.timedelta(days=compute.lookback_days(settings)), snapshot - dt.timedelta(days=1)


def changed_days(old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """CDR partitions (by day) whose content differs: "added", "removed" or "changed"."""
    out = {}
    for d in sorted(set(old) | set(new)):
        if old.get(d) != new.get(d):
            out[d] = "added" if d not in old else "removed" if d not in new else "changed"
    return out


def describe_days(days: dict[str, str], most: int = 5) -> str:
    items = [f"{d} {how}" for d, how in sorted(days.items())]
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ("cdr day " if len(items) == 1 else "cdr days ") + ", ".join(items[:most]) + more


def _day(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


SAME = "same data and definitions"


@dataclass
class Plan:
    """What a feature build does: ``mode`` is "full" or "incremental"; snapshots as dates.

    ``compute`` holds the new snapshots and those in ``recompute`` (kept snapshots whose window
    holds a changed CDR day, with why)."""

    mode: str
    reason: str
    compute: list[dt.date]
    keep: list[dt.date] = field(default_factory=list)
    drop: list[dt.date] = field(default_factory=list)
    materialise: str = "full"  # or "incremental"
    recompute: dict[dt.date, str] = field(default_factory=dict)

    def describe(self) -> str:
        if self.mode == "full":
            return f"features: full build of {len(self.compute)} snapshots ({self.reason})"
        added = [s for s in self.compute if s not in self.recompute]
        n = len(added)
        new = (
            f"{n} new snapshot{'s' if n > 1 else ''} " + ", ".join(map(str, added))
            if n
            else "no new snapshot"
        )
        out = f"features: {new}"
        if self.recompute:
            why = "; ".join(f"{s}: {r}" for s, r in sorted(self.recompute.items()))
            out += f", {len(self.recompute)} recomputed ({why})"
        out += f", {len(self.keep)} kept"
        if self.reason != SAME and self.keep:
            out += f" (no changed day in their windows: {self.reason})"
        if self.drop:
            out += f", {len(self.drop)} dropped ({', '.join(map(str, self.drop))}: no longer in features.snapshots)"
        return out


def plan(settings: Settings, manifest: dict | None, raw_fp: dict, definition: dict) -> Plan:
    """Incremental when the existing tables were built with these definitions from these tables, else
    full; a snapshot whose CDR window holds a changed day is recomputed (:func:`cdr_window`)."""
    wanted = list(settings.features.snapshots)

    def full(reason: str) -> Plan:
        return Plan("full", reason, wanted)

    if manifest is None:
        return full("no manifest: first build" if not settings.feature_table.exists() else "no manifest")
    if manifest.get("format") != FORMAT:
        return full(f"manifest format {manifest.get('format')} != {FORMAT}")
    old_fp = manifest.get("raw_fingerprint") or {}
    tables = sorted(k for k in (set(raw_fp) | set(old_fp)) - {"cdr"} if raw_fp.get(k) != old_fp.get(k))
    days = changed_days(old_fp.get("cdr") or {}, raw_fp.get("cdr") or {})
    odd = [d for d in days if _day(d) is None]
    if tables or odd:
        return full(f"ingested data changed: {', '.join(tables + [f'cdr/{PARTITION}={d}' for d in odd])}")
    if (manifest.get("definition") or {}).get("sha256") != definition["sha256"]:
        old = manifest.get("definition") or {}
        what = [
            k for k in ("compute_sha256", "feature_names", "features_config") if old.get(k) != definition[k]
        ]
        return full(f"feature definitions changed: {', '.join(what) or 'version'}")
    for key, path in (("features", settings.feature_table), ("labels", settings.label_table)):
        if not path.exists():
            return full(f"{path.name} missing")
        recorded = ((manifest.get("tables") or {}).get(key) or {}).get("sha256")
        if recorded != cached_sha256(path, hash_cache(settings)):
            return full(f"{path.name} differs from the manifest")
    have = sorted(dt.date.fromisoformat(s) for s in manifest.get("snapshots") or {})
    if not set(have) & set(wanted):
        return full("no snapshot in common with the existing table")
    redo = {}
    for s in (s for s in wanted if s in have):
        first, last = cdr_window(settings, s)
        inside = {d: how for d, how in days.items() if first <= _day(d) <= last}
        if inside:
            redo[s] = describe_days(inside)
    new = [s for s in wanted if s not in have or s in redo]
    keep = [s for s in wanted if s in have and s not in redo]
    drop = [s for s in have if s not in wanted]
    # The online store holds the newest row per subscriber: growing the table only needs the new
    # interval loaded; dropped or recomputed snapshots or an unfinished earlier load need a full one.
    materialised = (manifest.get("online") or {}).get("status") == "done"
    mat = "incremental" if materialised and not drop and not redo else "full"
    reason = describe_days(days) if days else SAME
    return Plan("incremental", reason, new, keep, drop, mat, redo)


def label_counts(labels) -> dict[dt.date, tuple[int, int]]:
    """Per snapshot of a label table (pandas): (rows, churners). The Spark engine counts the same on
    its executors (``pipelines.feature_build_spark.label_counts``)."""
    grouped = labels.groupby(labels["event_timestamp"].dt.date)["churned"].agg(["size", "sum"])
    return {day: (int(r["size"]), int(r["sum"])) for day, r in grouped.iterrows()}


def snapshot_summary(
    counts: dict[dt.date, tuple[int, int]], snapshots: list[dt.date], settings: Settings
) -> dict:
    """Per snapshot: rows, churn rate and whether the label window lies inside the ingested data.

    ``counts`` is :func:`label_counts` of the label table. A label looks ``label_horizon_days`` ahead;
    when that runs past the last ingested day the label only counts the churn seen so far
    (``labels_complete: false``), the same as a full build.
    """
    end = data_end(settings)
    horizon = dt.timedelta(days=settings.features.label_horizon_days)
    out = {}
    for day in sorted(snapshots):
        rows, churners = counts.get(day, (0, 0))
        window_end = day + horizon
        out[day.isoformat()] = {
            "rows": rows,
            "churn_rate": churners / rows if rows else None,
            "label_window_end": window_end.isoformat(),
            "labels_complete": None if end is None else window_end <= end,
        }
    return out
