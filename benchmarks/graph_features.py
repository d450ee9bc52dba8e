"""The call-graph features (features/call_graph.py): the champion with and without them, against the ceilings,
and whether its reasons name contagion.

    uv run python benchmarks/graph_features.py --config CONFIG [--records-ceiling FILE]

``CONFIG`` is a generated workdir after ``churn run`` (the figures in docs/features.md come from
60,000 subscribers with the simulator's call graph and contagion, ``data.graph``). On its feature
and label tables, split out of time as ``churn train`` splits them, the CDR path's candidates
(logistic regression, LightGBM searched and early-stopped, each calibrated: ``models/train.py``) are
trained twice, everything else equal: on every catalogue feature, and without the eight call-graph
features (signal ``contacts_left``). The better of each pair on the held-out snapshot is that
variant's champion. Reported on the held-out snapshot:

- ROC-AUC with its Hanley & McNeil standard error and its 95% bootstrap interval
  (``models/uncertainty.py``), PR-AUC; the paired bootstrap interval of the with - without difference
  on the same subscribers;
- the simulator's latent and reachable ceilings (``pipelines/truth.py``) and, with
  ``--records-ceiling``, the records learner's row of benchmarks/records_ceiling.py's report;
- reason fidelity (``models/fidelity.py``, top 3 risk-raising reasons as served): over every churner
  with a visible cause, over competitor churners, and over the churners whose intent was contagion
  (``contagion`` in ``data/truth/intents.parquet``), with the share whose reasons say CONTACTS_LEFT;
- the feature query's time on this workdir with and without the graph's CTEs (DuckDB).

Writes docs/benchmarks/graph_features.md.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

# LightGBM's OpenMP threads sleep rather than spin while they wait (shared 2-core machine)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _report import md_table, write_report  # noqa: E402
from records_ceiling import auc_se  # noqa: E402

from core.config import Settings, UncertaintyConfig, load_settings  # noqa: E402
from features import call_graph, compute  # noqa: E402
from features.catalogue import CATALOGUE, FEATURE_NAMES, MONOTONE  # noqa: E402
from models.candidates import build_candidates, fit_candidate  # noqa: E402
from models.evaluation import evaluate_candidate  # noqa: E402
from models.fidelity import intents_file, reason_fidelity  # noqa: E402
from models.scoring import score_with_reasons  # noqa: E402
from models.training_data import (  # noqa: E402
    TrainingSet,
    bound_held_out,
    sample_training_set,
    split_out_of_time,
)
from models.uncertainty import _interval  # noqa: E402
from pipelines.truth import FIDELITY_TOP_K, ceilings  # noqa: E402

GRAPH = [f.name for f in CATALOGUE if f.signal == "contacts_left"]
CANDIDATES = ("logistic", "lightgbm")


def training_set(settings: Settings, features: list[str]) -> TrainingSet:
    """The feature and label tables split out of time, as ``churn train`` reads them, on ``features``."""
    frame = pd.read_parquet(settings.feature_table).merge(
        pd.read_parquet(settings.label_table), on=["subscriber_id", "event_timestamp"]
    )
    tr, va, te = split_out_of_time(frame, settings)
    data = TrainingSet(
        X_train=tr[features].reset_index(drop=True),
        y_train=tr["churned"].to_numpy(),
        X_valid=va[features].reset_index(drop=True),
        y_valid=va["churned"].to_numpy(),
        X_test=te[features].reset_index(drop=True),
        y_test=te["churned"].to_numpy(),
        features=features,
        data_version="benchmark",
        params={},
        held_out=f"held-out snapshot {te['event_timestamp'].max().date()}",
        split="out of time",
        value_test=te["arpu_3m"].to_numpy(dtype=float),
        ids_test=te["subscriber_id"].to_numpy(),
        keys_train=tr[["subscriber_id", "event_timestamp"]].reset_index(drop=True),
    )
    data = sample_training_set(data, settings.training.sample_rows, settings.training.seed)
    return bound_held_out(data, settings.training.eval_rows, settings.training.seed)


def champion(settings: Settings, data: TrainingSet) -> tuple[str, object, np.ndarray, dict]:
    """Fit the candidates; the best on the held-out rows by the selection metric, as ``churn train`` picks."""
    metric = settings.mlflow.selection_metric
    background = data.X_train.sample(min(200, len(data.X_train)), random_state=settings.training.seed)
    best = None
    for kind, est in build_candidates(settings).items():
        if kind not in CANDIDATES:
            continue
        if kind == "lightgbm":  # the catalogue's monotone constraints, of the features in this variant
            est.set_params(monotone_constraints=[MONOTONE[FEATURE_NAMES.index(n)] for n in data.features])
        fitted = fit_candidate(settings, kind, est, data, background.reset_index(drop=True), calibrate=True)
        ev = evaluate_candidate(settings, fitted, data)
        print(f"  {kind}: roc_auc {ev.scores['roc_auc']:.4f}")
        if best is None or ev.scores[metric] > best[3][metric]:
            best = (kind, fitted.model, ev.test_proba, ev.scores)
    return best


def top_codes(settings: Settings, model, X: pd.DataFrame) -> list[list[str]]:
    """Each row's top-3 risk-raising reason codes, as the service words them."""
    top3 = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"top_reasons": FIDELITY_TOP_K})}
    )
    scored = score_with_reasons(model, X, top3)
    return [[r["code"] for r in s["reasons"] if r["contribution"] > 0] for s in scored]


def fidelity_rows(settings: Settings, data: TrainingSet, codes: list[list[str]]) -> dict[str, str]:
    """Reason fidelity over all churners with a visible cause, competitor churners, contagion churners."""
    ids, y = list(data.ids_test), data.y_test
    snap = pd.Timestamp(data.held_out.rsplit(" ", 1)[-1]).date()
    fid = reason_fidelity(settings, ids, codes, y, snapshot=snap) or {}
    out = {
        "all churners with a cause": f"{fid.get('reason_fidelity', float('nan')):.3f} "
        f"(n={int(fid.get('reason_fidelity_n', 0))})",
        "competitor churners": f"{fid.get('reason_fidelity_competitor', float('nan')):.3f}",
    }
    truth = pd.read_parquet(intents_file(settings))
    if "contagion" in truth:
        contagion = set(
            truth.loc[truth["contagion"].astype(bool) & truth["churns"].astype(bool), "subscriber_id"]
        )
        pick = np.array([(i in contagion) and bool(c) for i, c in zip(ids, y, strict=True)])
        sub = [codes[i] for i in np.flatnonzero(pick)]
        f = (
            reason_fidelity(settings, [ids[i] for i in np.flatnonzero(pick)], sub, y[pick], snapshot=snap)
            or {}
        )
        named = np.mean(["CONTACTS_LEFT" in c for c in sub]) if sub else float("nan")
        out["contagion churners"] = f"{f.get('reason_fidelity', float('nan')):.3f} (n={int(pick.sum())})"
        out["contagion churners: CONTACTS_LEFT in the top 3"] = f"{named:.3f}"
    return out


def query_seconds(settings: Settings, with_graph: bool) -> float:
    """The feature query's wall time on this workdir (DuckDB), with or without the graph's CTEs."""
    saved = (call_graph.CTES, call_graph.COLUMNS, call_graph.JOIN)
    if not with_graph:
        call_graph.CTES, call_graph.JOIN = "", ""
        call_graph.COLUMNS = "".join(f"\n    0 * $top AS {n}," for n in GRAPH)  # $top: bound either way
    try:
        t0 = time.perf_counter()
        compute.compute_features(settings.raw_dir, list(settings.features.snapshots), settings)
        return time.perf_counter() - t0
    finally:
        call_graph.CTES, call_graph.COLUMNS, call_graph.JOIN = saved


def records_row(path: Path | None) -> list[str] | None:
    """The records learner's row (the largest share) of benchmarks/records_ceiling.py's report."""
    if path is None or not path.exists():
        return None
    rows = [line for line in path.read_text().splitlines() if line.startswith("| records learner")]
    if not rows:
        return None
    cells = [c.strip() for c in rows[-1].strip("|").split("|")]
    m = re.match(r"([\d.]+) \(([\d.]+)\)", cells[2])
    return [
        f"records ceiling: {cells[0]} ({path.name})",
        m.group(1) if m else cells[2],
        m.group(2) if m else "-",
        cells[3],
    ]


VARIANTS = {
    "with the graph features": list(FEATURE_NAMES),
    "without them": [n for n in FEATURE_NAMES if n not in GRAPH],
}


def compare(settings: Settings) -> dict[str, tuple]:
    """Per variant: the training set, the champion's kind, model, held-out probabilities, scores, codes."""
    results = {}
    for label, features in VARIANTS.items():
        print(f"{settings.workdir}: {label}, {len(features)} features")
        data = training_set(settings, features)
        kind, model, proba, scores = champion(settings, data)
        results[label] = (data, kind, model, proba, scores, top_codes(settings, model, data.X_test))
    return results


def paired_row(
    path: str, settings: Settings, results: dict, unc: UncertaintyConfig
) -> tuple[list[str], float, float]:
    """One workdir's line of the seeds table, and its difference with the standard error its interval implies."""
    w, wo = results["with the graph features"], results["without them"]
    y = w[0].y_test
    d = _interval(unc, settings.training.seed, "roc_auc", y, w[3], wo[3])
    se = (d.high - d.low) / (2 * 1.96)
    row = [
        f"`{path}`",
        str(settings.data.seed),
        f"{settings.data.n_subscribers:,}",
        f"{int(y.sum()):,}",
        f"{w[4]['roc_auc']:.4f}",
        f"{wo[4]['roc_auc']:.4f}",
        f"{d.estimate:+.4f} [{d.low:+.4f}, {d.high:+.4f}]",
    ]
    return row, d.estimate, se


def signal_lines(settings: Settings) -> str:
    """How strongly a close contact's departure marks churn on the training snapshots, and contagion."""
    f = pd.read_parquet(settings.feature_table).merge(
        pd.read_parquet(settings.label_table), on=["subscriber_id", "event_timestamp"]
    )
    hit = f["top_contacts_left_60d"] > 0
    out = (
        f"On every snapshot: {hit.mean():.1%} of subscribers had a closest contact leave in the 60 days "
        f"before; their churn rate {f.loc[hit, 'churned'].mean():.2%} vs. {f.loc[~hit, 'churned'].mean():.2%} "
        "for the rest."
    )
    truth = pd.read_parquet(intents_file(settings))
    if "contagion" in truth:
        churners = f[f["churned"] == 1].merge(truth[["subscriber_id", "contagion"]], on="subscriber_id")
        by = churners.groupby("contagion")["top_contacts_left_60d"].apply(lambda v: (v > 0).mean())
        hot = churners.groupby("contagion")["competitor_hotline_calls_30d"].apply(lambda v: (v > 0).mean())
        share = churners["contagion"].mean()
        out += (
            f" Churners whose intent was contagion: {share:.1%} of churner rows; {by.get(True, float('nan')):.0%} "
            f"of them had a closest contact leave, vs. {by.get(False, float('nan')):.0%} of the other churners; "
            f"{hot.get(True, float('nan')):.0%} of them had called a competitor's hotline in the last 30 days "
            f"(other churners {hot.get(False, float('nan')):.0%})."
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True, help="config of a generated workdir after `churn run`")
    p.add_argument(
        "--also",
        nargs="*",
        default=[],
        help="configs of more generated workdirs (other seeds): their paired differences, and all pooled",
    )
    p.add_argument(
        "--records-ceiling", type=Path, help="benchmarks/records_ceiling.py's report on that workdir"
    )
    args = p.parse_args()
    t0 = time.perf_counter()
    settings = load_settings(args.config)
    unc = UncertaintyConfig()
    results = compare(settings)
    data = results["with the graph features"][0]
    y = data.y_test
    n_pos, n_neg = int(y.sum()), int((y == 0).sum())
    snap = data.held_out.rsplit(" ", 1)[-1]
    sim = ceilings(settings, list(data.ids_test), y, pd.Timestamp(snap).date())
    rows = [
        [
            "latent ceiling (simulator's state)",
            f"{sim['ceiling_roc_auc']:.3f}",
            "-",
            f"{sim['ceiling_pr_auc']:.3f}",
        ],
        [
            "reachable ceiling (visible onsets and causes)",
            f"{sim['ceiling_reachable_roc_auc']:.3f}",
            "-",
            f"{sim['ceiling_reachable_pr_auc']:.3f}",
        ],
    ]
    if (rec := records_row(args.records_ceiling)) is not None:
        rows.append(rec)
    for label, (d, kind, _, proba, scores, _) in results.items():
        iv = _interval(unc, settings.training.seed, "roc_auc", d.y_test, proba)
        auc = scores["roc_auc"]
        rows.append(
            [
                f"champion {label} ({kind}, {len(d.features)} features)",
                f"{auc:.4f} [{iv.low:.4f}, {iv.high:.4f}]",
                f"{auc_se(auc, n_pos, n_neg):.4f}",
                f"{scores['pr_auc']:.3f}",
            ]
        )
    w, wo = results["with the graph features"], results["without them"]
    assert (w[0].ids_test == wo[0].ids_test).all()
    diff = _interval(unc, settings.training.seed, "roc_auc", y, w[3], wo[3])
    diff_pr = _interval(unc, settings.training.seed, "pr_auc", y, w[3], wo[3])
    fid = {label: fidelity_rows(settings, r[0], r[5]) for label, r in results.items()}
    fid_rows = [
        [k, fid["with the graph features"][k], fid["without them"][k]] for k in fid["with the graph features"]
    ]
    q_with, q_without = query_seconds(settings, True), query_seconds(settings, False)
    feats, _ = compute.compute_features(settings.raw_dir, [pd.Timestamp(snap).date()], settings)
    spread = [
        [n, f"{(feats[n] > 0).mean():.3f}", f"{feats[n].mean():.3f}", f"{feats[n].max():.0f}"] for n in GRAPH
    ]
    n_subs = settings.data.n_subscribers
    seeds = [paired_row(args.config, settings, results, unc)]
    for path in args.also:
        other = load_settings(path)
        seeds.append(paired_row(path, other, compare(other), unc))
    blocks = []
    if len(seeds) > 1:  # inverse-variance pooled difference over the workdirs
        wts = np.array([1 / s[2] ** 2 for s in seeds])
        est = float(np.sum(wts * np.array([s[1] for s in seeds])) / wts.sum())
        se = float(1 / np.sqrt(wts.sum()))
        blocks = [
            "The paired ROC-AUC difference on each workdir (95% paired bootstrap), and pooled (inverse-variance "
            f"weights, s.e. from each interval): {est:+.4f} ± {1.96 * se:.4f} (95%).",
            md_table(
                ["workdir", "seed", "subscribers", "churners", "with", "without", "with - without [95% CI]"],
                [s[0] for s in seeds],
                "llrrrrr",
            ),
        ]
    write_report(
        __file__,
        "Call-graph features: the champion with and without them",
        [
            f"Workdir of `{args.config}`: {n_subs:,} simulated subscribers; held-out snapshot {snap}: "
            f"{len(y):,} subscribers, {n_pos:,} churners. Candidates logistic regression and LightGBM, "
            "calibrated, as `churn train` fits them; each variant's champion is the better on the held-out "
            "snapshot. ROC-AUC with its 95% bootstrap interval and its Hanley & McNeil standard error.",
            md_table(["scorer", "ROC-AUC [95% CI]", "s.e.", "PR-AUC"], rows, "lrrr"),
            f"Paired difference, with - without, on the same subscribers: ROC-AUC {diff.estimate:+.4f} "
            f"[{diff.low:+.4f}, {diff.high:+.4f}], PR-AUC {diff_pr.estimate:+.4f} "
            f"[{diff_pr.low:+.4f}, {diff_pr.high:+.4f}] (95% paired bootstrap, "
            f"{unc.bootstrap_resamples} resamples).",
            "Reason fidelity (share of held-out churners whose top 3 risk-raising reasons name their true "
            "cause; for contagion churners the cause is competitor):",
            md_table(["churners", "with the graph features", "without them"], fid_rows, "lrr"),
            f"The graph features on the held-out snapshot ({len(feats):,} subscribers): share above 0, mean, max.",
            md_table(["feature", "share > 0", "mean", "max"], spread, "lrrr"),
            signal_lines(settings),
            *blocks,
            f"Feature query on this workdir ({len(settings.features.snapshots)} snapshots, DuckDB): "
            f"{q_with:.1f} s with the graph's CTEs, {q_without:.1f} s without ({q_with / q_without:.2f}x).",
            f"{time.perf_counter() - t0:.0f} s in all.",
        ],
    )


if __name__ == "__main__":
    main()
