"""The pipeline stages as plain functions: the CLI, DVC and notebooks all call these."""

from __future__ import annotations

import logging

from core.config import Settings
from core.io import write_json_atomic, write_parquet_atomic

log = logging.getLogger(__name__)


def generate_data(settings: Settings) -> dict:
    """Simulate the operator's export into ``data/landing`` (ground truth into ``data/truth``)."""
    from dataclasses import asdict

    from pipelines.generate import generate

    summary = generate(settings)
    return asdict(summary) | {"rows_per_second": summary.rows_per_second}


def validate_data(settings: Settings) -> dict:
    """Run the Great Expectations suites on the landing export; raises ValidationFailed on bad input."""
    if settings.source is not None:  # a customer table (docs/real-data.md)
        from pipelines.customer_table import validate_stage

        return validate_stage(settings)
    from pipelines.validate import validate_landing

    return validate_landing(settings)


def ingest_data(settings: Settings) -> dict:
    """Validated landing export -> pseudonymised ``data/raw`` (no third-party numbers past here)."""
    from pipelines.ingest import ingest

    return ingest(settings)


def build_features(settings: Settings) -> dict:
    """Ingested tables -> point-in-time feature table -> Feast (apply + materialise), incrementally.

    When ``data/features/manifest.json`` shows the tables were built from the ingested data on disk
    now and the same feature definitions, only the snapshots they lack are computed, validated and
    appended (snapshots no longer configured are dropped) and only the new interval is loaded into
    the online store; otherwise everything is recomputed and fully materialised
    (``features.manifest.plan`` says which and why).

    Nothing is written unless the export passes validation (re-checked if it changed since) and the
    new rows pass the feature-table suite; labels, table and manifest are then each replaced
    atomically, the manifest last (a run stopped in between leaves a manifest that no longer
    matches the files, so the next run rebuilds). Nothing is rewritten when nothing changed.
    """
    import datetime as dt

    import pandas as pd

    from features import manifest as mf
    from features.compute import compute_features
    from features.store import apply_and_materialize
    from pipelines.ingest import ensure_ingested
    from pipelines.validate import validate_features

    ensure_ingested(settings)
    raw_fp, definition = mf.raw_fingerprint(settings), mf.definition_version(settings)
    previous = mf.read_manifest(settings)
    plan = mf.plan(settings, previous, raw_fp, definition)
    log.info("%s", plan.describe())
    snapshots = list(settings.features.snapshots)
    changed = plan.mode == "full" or bool(plan.compute or plan.drop)
    if changed:
        if plan.compute:
            new_feats, new_labels = compute_features(settings.raw_dir, plan.compute, settings)
            what = "new" if plan.mode == "full" else f"new rows for {', '.join(map(str, plan.compute))}"
            validate_features(new_feats, settings, file=f"{settings.feature_table} ({what}, not yet written)")
        else:
            new_feats = new_labels = None
        if plan.mode == "full":
            feats, labels = new_feats, new_labels
        else:
            feats = _grow(pd.read_parquet(settings.feature_table), new_feats, plan.keep)
            labels = _grow(pd.read_parquet(settings.label_table), new_labels, plan.keep)
        write_parquet_atomic(labels, settings.label_table)
        write_parquet_atomic(feats, settings.feature_table)
        manifest = {
            "format": mf.FORMAT,
            "built_at": _now(),
            "build": {
                "mode": plan.mode,
                "reason": plan.reason,
                "computed": [str(s) for s in plan.compute],
                "kept": [str(s) for s in plan.keep],
                "dropped": [str(s) for s in plan.drop],
            },
            "raw_fingerprint": raw_fp,
            "definition": definition,
            "snapshots": mf.snapshot_summary(labels, snapshots, settings),
            "tables": {
                key: {"file": path.name, "sha256": mf.file_sha256(path)}
                for key, path in (("features", settings.feature_table), ("labels", settings.label_table))
            },
            "online": {"status": "pending"},
        }
        write_json_atomic(
            manifest, mf.manifest_path(settings)
        )  # last: until it is written the old one mismatches
        incomplete = [d for d, v in manifest["snapshots"].items() if v["labels_complete"] is False]
        if incomplete:
            last_day = mf.data_end(settings) - dt.timedelta(days=1)
            log.info(
                "features: labels of %s look past the last ingested day %s: they count the churn seen so far",
                ", ".join(incomplete),
                last_day,
            )
    else:  # same data, definitions, files and snapshots: nothing to compute or record
        labels, manifest = pd.read_parquet(settings.label_table), previous
    loaded = apply_and_materialize(settings, snapshots, incremental=plan.materialise == "incremental")
    online = {"status": "done", "mode": loaded["mode"], "end": loaded["end"], "at": _now()}
    if changed or (manifest.get("online") or {}).get("status") != "done" or loaded["mode"] != "up to date":
        write_json_atomic(manifest | {"online": online}, mf.manifest_path(settings))
    summary = {
        "rows": sum(v["rows"] for v in manifest["snapshots"].values()),
        "snapshots": [str(s) for s in snapshots],
        "churn_rate": float(labels["churned"].mean()),
        "build": plan.mode,
        "computed": len(plan.compute),
        "kept": len(plan.keep),
        "dropped": len(plan.drop),
        "materialised": loaded["mode"],
    }
    write_json_atomic(summary, settings.reports_dir / "features.json")
    return summary


def _grow(old, new, keep: list):
    """The kept snapshots' rows as they were, plus the new rows, in the computation's order."""
    import pandas as pd

    kept = old[old["event_timestamp"].dt.date.isin(set(keep))]
    if new is None or new.empty:
        return kept.reset_index(drop=True)
    both = pd.concat([kept, new.astype(kept.dtypes.to_dict())], ignore_index=True)
    return both.sort_values(["event_timestamp", "subscriber_id"], kind="mergesort", ignore_index=True)


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def train_models(settings: Settings) -> dict:
    """Train and compare the candidates; register the winner as ``champion`` (see models.train)."""
    if settings.source is not None:  # a customer table (docs/real-data.md)
        from pipelines.customer_table import train_stage

        return train_stage(settings)
    from models.train import train

    decision = train(settings)
    write_json_atomic(
        {k: v for k, v in decision.items() if k != "candidates" and not (isinstance(v, float) and v != v)}
        | {
            f"{k}_{m}": v[m]
            for k, v in decision["candidates"].items()
            for m in ("roc_auc", "pr_auc", "top_decile_lift")
        },
        settings.reports_dir / "train.json",
    )
    return decision


def run_all(settings: Settings) -> dict:
    """Every stage in order, in this process (what ``dvc repro`` does stage by stage):
    generate, validate, ingest, features, train."""
    if settings.source is not None:  # a customer table: validate + train (docs/real-data.md)
        from pipelines.customer_table import run_stage

        return run_stage(settings)
    generate_data(settings)
    validate_data(settings)
    ingest_data(settings)
    build_features(settings)
    return train_models(settings)
