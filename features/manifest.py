"""What the feature table was built from, so a rebuild computes only the snapshots it lacks.

``data/features/manifest.json`` sits beside the feature table and records the ingested data it was
computed from (a fingerprint of every entry of ``data/raw``), the feature-definition version (a
hash of ``features/compute.py``, the catalogue names and the value-changing part of the
``features:`` config), the snapshots in the table with their row counts, the SHA-256 of the
feature and label files, and whether the online store has been loaded since.

Because every snapshot is computed independently from the same data and definitions, a table grown
snapshot by snapshot equals one computed at once; any change of data, definitions or files makes
:func:`plan` ask for a full rebuild.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Settings
from core.io import PARTITION, fingerprint
from features import compute
from features.catalogue import FEATURE_NAMES

log = logging.getLogger(__name__)

FORMAT = 1
# features: keys that do not change any value in the tables (Feast serving and monitoring only)
NOT_DEFINITION = {"snapshots", "ttl_days", "max_staleness_days"}


def manifest_path(settings: Settings) -> Path:
    return settings.features_dir / "manifest.json"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def raw_fingerprint(settings: Settings) -> dict[str, str]:
    """Per entry of ``data/raw`` (tables and the CDR partition folder): a hash of the file names, sizes
    and modification times, as ingestion and validation fingerprint their inputs."""
    raw = settings.raw_dir
    if not raw.is_dir():
        return {}
    return {p.name: _sha(fingerprint(p)) for p in sorted(raw.iterdir()) if not p.name.startswith(".")}


def definition_version(settings: Settings) -> dict:
    """The feature definitions: the computation's source, the catalogue names, the value-changing config."""
    compute_sha = file_sha256(Path(compute.__file__))
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


@dataclass
class Plan:
    """What a feature build does: ``mode`` is "full" or "incremental"; snapshots as dates."""

    mode: str
    reason: str
    compute: list[dt.date]
    keep: list[dt.date] = field(default_factory=list)
    drop: list[dt.date] = field(default_factory=list)
    materialise: str = "full"  # or "incremental"

    def describe(self) -> str:
        if self.mode == "full":
            return f"features: full build of {len(self.compute)} snapshots ({self.reason})"
        n = len(self.compute)
        new = (
            f"{n} new snapshot{'s' if n > 1 else ''} " + ", ".join(map(str, self.compute))
            if n
            else "no new snapshot"
        )
        out = f"features: {new}, {len(self.keep)} kept"
        if self.drop:
            out += f", {len(self.drop)} dropped ({', '.join(map(str, self.drop))}: no longer in features.snapshots)"
        return out


def plan(settings: Settings, manifest: dict | None, raw_fp: dict, definition: dict) -> Plan:
    """Incremental when the existing tables were built from this data with these definitions, else full."""
    wanted = list(settings.features.snapshots)

    def full(reason: str) -> Plan:
        return Plan("full", reason, wanted)

    if manifest is None:
        return full("no manifest: first build" if not settings.feature_table.exists() else "no manifest")
    if manifest.get("format") != FORMAT:
        return full(f"manifest format {manifest.get('format')} != {FORMAT}")
    if manifest.get("raw_fingerprint") != raw_fp:
        changed = sorted(
            k
            for k in set(raw_fp) | set(manifest.get("raw_fingerprint") or {})
            if raw_fp.get(k) != (manifest.get("raw_fingerprint") or {}).get(k)
        )
        return full(f"ingested data changed: {', '.join(changed)}")
    if (manifest.get("definition") or {}).get("sha256") != definition["sha256"]:
        old = manifest.get("definition") or {}
        what = [
            k for k in ("compute_sha256", "feature_names", "features_config") if old.get(k) != definition[k]
        ]
        return full(f"feature definitions changed: {', '.join(what) or 'version'}")
    tables = manifest.get("tables") or {}
    for key, path in (("features", settings.feature_table), ("labels", settings.label_table)):
        if not path.exists():
            return full(f"{path.name} missing")
        if (tables.get(key) or {}).get("sha256") != file_sha256(path):
            return full(f"{path.name} differs from the manifest")
    have = sorted(dt.date.fromisoformat(s) for s in manifest.get("snapshots") or {})
    new = [s for s in wanted if s not in have]
    keep = [s for s in wanted if s in have]
    drop = [s for s in have if s not in wanted]
    if not keep:
        return full("no snapshot in common with the existing table")
    # The online store holds the newest row per subscriber: growing the table only needs the new
    # interval loaded; dropping snapshots or an unfinished earlier load needs a full one.
    materialised = (manifest.get("online") or {}).get("status") == "done"
    mat = "incremental" if materialised and not drop else "full"
    return Plan("incremental", "same data and definitions", new, keep, drop, mat)


def snapshot_summary(labels, snapshots: list[dt.date], settings: Settings) -> dict:
    """Per snapshot: rows, churn rate and whether the label window lies inside the ingested data.

    A label looks ``label_horizon_days`` ahead; when that runs past the last ingested day the label
    only counts the churn seen so far (``labels_complete: false``), the same as a full build.
    """
    end = data_end(settings)
    horizon = dt.timedelta(days=settings.features.label_horizon_days)
    days = labels["event_timestamp"].dt.date
    out = {}
    for day in sorted(snapshots):
        churned = labels.loc[days == day, "churned"]
        window_end = day + horizon
        out[day.isoformat()] = {
            "rows": int(len(churned)),
            "churn_rate": float(churned.mean()) if len(churned) else None,
            "label_window_end": window_end.isoformat(),
            "labels_complete": None if end is None else window_end <= end,
        }
    return out
