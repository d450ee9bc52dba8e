"""How many training rows LightGBM needs: a learning curve on stratified samples, evaluated out of time.

    uv run python benchmarks/learning_curve.py [--subscribers 50000] [--sizes 1000,3000,10000,30000]
        [--seeds 2] [--workdir DIR]

Generates the simulated export (``--workdir DIR`` keeps it there and reuses it), ingests it
(validation left out: fresh simulator output) and computes the point-in-time features of the
default config's four monthly snapshots; the rows are the Feast training set's (features joined
to labels on subscriber and snapshot) and are split out of time as training does
(``models.training_data.split_out_of_time``). Then, for each sample size and seed, the training
rows are sampled by ``models.training_data.stratified_sample`` (per snapshot and label) and the
project's LightGBM candidate is fitted as ``churn train`` fits it (``models.candidates.fit_candidate``:
the budgeted search early-stopped on the whole validation snapshot, then calibration); the held-out
snapshot (never sampled) gives PR-AUC and ROC-AUC. The full training set is the floor every size is
compared with: PR-AUC lost and fit time as a ratio. Rule: the recommended ``training.sample_rows``
is the smallest size whose mean PR-AUC is within ``--tolerance`` (0.005) of the full set's.
Writes docs/benchmarks/learning_curve.md and docs/benchmarks/learning_curve.png.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# LightGBM's OpenMP threads sleep rather than spin while they wait: on a shared 2-core machine spinning
# threads burn the CPU the other thread needs (set before lightgbm loads the OpenMP runtime)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from _report import RESULTS, md_table, write_report  # noqa: E402
from scipy.optimize import curve_fit  # noqa: E402

from core.config import DEFAULT_CONFIG, Settings, load_settings  # noqa: E402
from core.io import write_parquet_atomic  # noqa: E402
from features.catalogue import FEATURE_NAMES  # noqa: E402
from features.engine import compute_features  # noqa: E402
from models.candidates import build_candidates, fit_candidate  # noqa: E402
from models.evaluation import evaluate_candidate  # noqa: E402
from models.training_data import TrainingSet, split_out_of_time, stratified_sample  # noqa: E402
from pipelines.generate import generate  # noqa: E402
from pipelines.ingest import ingest  # noqa: E402

FRAME = "learning_curve_rows.parquet"


def _settings(work: Path, n: int) -> Settings:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["workdir"] = str(work)
    raw["data"]["n_subscribers"] = n
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(raw))
    return load_settings(work / "config.yaml")


def training_rows(settings: Settings) -> pd.DataFrame:
    """Every subscriber-snapshot row with its label, built once per workdir and kept there."""
    cached = settings.workdir / FRAME
    if cached.exists():
        return pd.read_parquet(cached)
    if not (settings.landing_dir / "cdr").exists():
        generate(settings)
    if not (settings.raw_dir / "cdr").exists():
        ingest(settings, skip_validation=True)
    snapshots = list(settings.features.snapshots)
    feats, labels = compute_features(settings.raw_dir, snapshots, settings)
    frame = feats.merge(labels, on=["subscriber_id", "event_timestamp"])
    write_parquet_atomic(frame, cached)
    return frame


@dataclass(frozen=True)
class Fit:
    size: int  # training rows fitted on
    seed: int  # the sample's seed
    pr_auc: float
    roc_auc: float
    seconds: float  # wall
    cpu: float  # CPU seconds of this process (all threads): steadier than wall on a shared machine
    churn_rate: float


def _data(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame) -> TrainingSet:
    return TrainingSet(
        X_train=train[FEATURE_NAMES],
        y_train=train["churned"].to_numpy(),
        X_valid=valid[FEATURE_NAMES],
        y_valid=valid["churned"].to_numpy(),
        X_test=test[FEATURE_NAMES],
        y_test=test["churned"].to_numpy(),
        features=list(FEATURE_NAMES),
        data_version="learning-curve",
        params={},
        held_out="held-out snapshot",
        split="out of time",
    )


def fit_once(settings: Settings, train, valid, test, size: int | None, seed: int) -> Fit:
    """One stratified sample, the LightGBM candidate fitted as training fits it, scored out of time."""
    rows, sample = stratified_sample(train, size, seed)
    data = _data(rows, valid, test)
    background = data.X_train.sample(min(200, len(rows)), random_state=settings.training.seed)
    est = build_candidates(settings)["lightgbm"]
    t0, c0 = time.perf_counter(), time.process_time()
    fitted = fit_candidate(settings, "lightgbm", est, data, background.reset_index(drop=True), calibrate=True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    scores = evaluate_candidate(settings, fitted, data).scores
    print(f"{len(rows):>7,} rows, seed {seed}: PR-AUC {scores['pr_auc']:.4f}, {cpu:.1f} s CPU", flush=True)
    return Fit(len(rows), seed, scores["pr_auc"], scores["roc_auc"], seconds, cpu, sample.churn_rate_sampled)


def summarise(fits: list[Fit]) -> pd.DataFrame:
    """Per size: mean and spread over the seeds, and the PR-AUC and time against the full set's."""
    df = pd.DataFrame([vars(f) for f in fits])
    out = df.groupby("size").agg(
        pr_auc=("pr_auc", "mean"),
        pr_sd=("pr_auc", "std"),
        roc_auc=("roc_auc", "mean"),
        roc_sd=("roc_auc", "std"),
        seconds=("seconds", "mean"),
        cpu=("cpu", "mean"),
        fits=("seed", "count"),
    )
    full = out.loc[out.index.max()]
    out["pr_gap"] = full["pr_auc"] - out["pr_auc"]
    out["time_ratio"] = out["seconds"] / full["seconds"]
    out["cpu_ratio"] = out["cpu"] / full["cpu"]
    return out.fillna(0.0)


def recommend(table: pd.DataFrame, tolerance: float) -> int:
    """The smallest size whose mean PR-AUC is within ``tolerance`` of the full set's (and stays so for
    every larger size, so one lucky small sample does not decide)."""
    ok = (table["pr_gap"] <= tolerance)[::-1].cummin()[::-1]
    return int(ok[ok].index.min())


@dataclass(frozen=True)
class Projection:
    """PR-AUC(n) = asymptote - b * n^-c fitted to the measured means (sizes from 3,000 rows): where the
    curve heads beyond the largest measured size. A projection, not a measurement."""

    asymptote: float
    b: float
    c: float
    rows_within: int  # the size whose projected gap to the asymptote is the tolerance

    def at(self, n):
        return self.asymptote - self.b * np.asarray(n, dtype=float) ** (-self.c)


def project(table: pd.DataFrame, tolerance: float) -> Projection | None:
    pts = table[table.index >= 3000]
    if len(pts) < 4:
        return None
    n, y = pts.index.to_numpy(float), pts["pr_auc"].to_numpy()
    try:
        (a, b, c), _ = curve_fit(
            lambda n, a, b, c: a - b * n ** (-c), n, y, p0=(y.max() + 0.02, 1.0, 0.5), maxfev=20000
        )
    except RuntimeError:
        return None
    if b <= 0 or c <= 0:
        return None
    return Projection(float(a), float(b), float(c), int(np.ceil((b / tolerance) ** (1 / c))))


def plot(
    table: pd.DataFrame, fits: list[Fit], best: int, tolerance: float, proj: Projection | None, path: Path
) -> None:
    df = pd.DataFrame([vars(f) for f in fits])
    full = table.loc[table.index.max()]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, col, sd, name in ((ax1, "pr_auc", "pr_sd", "PR-AUC"), (ax2, "roc_auc", "roc_sd", "ROC-AUC")):
        ax.scatter(df["size"], df[col], s=12, alpha=0.4, color="grey", label="one seed")
        ax.errorbar(table.index, table[col], yerr=table[sd], marker="o", capsize=3, label="mean ± sd")
        ax.axhline(full[col], color="k", lw=0.8, ls=":", label=f"all {table.index.max():,} rows")
        ax.set(xscale="log", xlabel="training rows (stratified sample)", ylabel=f"held-out {name}")
    ax1.axhspan(
        full["pr_auc"] - tolerance, full["pr_auc"], color="green", alpha=0.12, label=f"within {tolerance}"
    )
    ax1.axvline(best, color="green", lw=1, label=f"recommended {best:,}")
    if proj is not None:
        grid = np.geomspace(3000, max(proj.rows_within, table.index.max()) * 1.5, 100)
        ax1.plot(grid, proj.at(grid), color="purple", lw=0.8, ls="--", label="fitted power law (projection)")
        ax1.axhline(proj.asymptote, color="purple", lw=0.6, ls=":")
        ax1.axvline(proj.rows_within, color="purple", lw=0.8, ls="--")
    ax1.legend(fontsize=8, loc="lower right")
    ax3.plot(table.index, table["cpu"], marker="o", label="CPU")
    ax3.plot(table.index, table["seconds"], marker="s", ls="--", label="wall")
    ax3.legend(fontsize=8)
    ax3.axvline(best, color="green", lw=1)
    ax3.set(
        xscale="log",
        yscale="log",
        xlabel="training rows",
        ylabel="fit seconds (search + refit + calibration)",
    )
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    fig.suptitle("LightGBM learning curve, out of time (held-out snapshot)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=50_000)
    ap.add_argument("--sizes", default="1000,3000,10000,30000", help="sample sizes (all rows are added)")
    ap.add_argument("--seeds", type=int, default=2, help="samples per size")
    ap.add_argument("--tolerance", type=float, default=0.005, help="PR-AUC a sample may lose")
    ap.add_argument("--workdir", type=Path, help="keep the generated data here and reuse it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(args.workdir or Path(tmp) / "work", args.subscribers)
        t0 = time.perf_counter()
        frame = training_rows(settings)
        prep = time.perf_counter() - t0
        train, valid, test = split_out_of_time(frame, settings)
        sizes = [n for n in map(int, args.sizes.split(",")) if n < len(train)] + [len(train)]
        # all rows are the same sample whatever the seed (and the model's seed is fixed): one fit
        fits = [
            fit_once(settings, train, valid, test, n, settings.training.seed + i)
            for n in sizes
            for i in range(args.seeds if n < len(train) else 1)
        ]
    table = summarise(fits)
    best = recommend(table, args.tolerance)
    proj = project(table, args.tolerance)
    out_dir = Path(os.environ.get("CHURNWARN_BENCH_RESULTS", RESULTS))  # as write_report: the tests' folder
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(table, fits, best, args.tolerance, proj, out_dir / "learning_curve.png")
    write_report(
        __file__,
        "Training sample size: a LightGBM learning curve",
        _blocks(args, frame, (train, valid, test), table, best, proj, prep),
    )


def _blocks(args, frame, parts, table, best, proj, prep) -> list[str]:
    train, valid, test = parts
    snaps = sorted({str(t.date()) for t in train["event_timestamp"]})
    rows = [
        (
            f"{n:,}" + (" (all)" if n == table.index.max() else ""),
            f"{n / len(train):.3f}",
            f"{r.pr_auc:.4f} ± {r.pr_sd:.4f}",
            f"{-r.pr_gap:+.4f}",
            f"{r.roc_auc:.4f} ± {r.roc_sd:.4f}",
            f"{r.seconds:.1f}",
            f"{r.cpu:.1f}",
            f"{r.cpu_ratio:.2f}",
        )
        for n, r in table.iterrows()
    ]
    return [
        f"Data: {args.subscribers:,} simulated subscribers ({len(frame):,} subscriber-snapshot rows, churn rate "
        f"{frame['churned'].mean():.4f}; generated, ingested and featurised in {prep:.0f} s, or read back from "
        f"--workdir). Out of time: training snapshots {', '.join(snaps)} ({len(train):,} rows, "
        f"{int(train['churned'].sum()):,} churners), validation {valid['event_timestamp'].max().date()} "
        f"({len(valid):,} rows, whole), test {test['event_timestamp'].max().date()} ({len(test):,} rows, "
        f"{int(test['churned'].sum()):,} churners, whole). Each size: {args.seeds} stratified samples "
        "(per snapshot and label, seeds training.seed + 0..), the project's LightGBM candidate fitted as "
        "`churn train` fits it (8-configuration search early-stopped on validation, refit, calibration).",
        md_table(
            [
                "training rows",
                "fraction",
                "PR-AUC (mean ± sd)",
                "vs all rows",
                "ROC-AUC",
                "fit wall s",
                "fit CPU s",
                "CPU / all rows",
            ],
            rows,
            "rrrrrrrr",
        ),
        _verdict(args.tolerance, table, best),
        _projection(args.tolerance, table, proj),
        "Why a fixed number of rows and not a fraction: what a model learns from depends on how many rows "
        "(and churners) it sees, not on the share of the base; once the curve is flat, an operator with 10^7 "
        "subscribers per snapshot gains nothing from fitting on all of them, while the fit, the search and the "
        "pull of the rows to one machine grow with every row. The validation and held-out snapshots are "
        "never sampled, so every size is judged on the same rows. The curve is for this simulator's signal; "
        "an operator should rerun this script on their own features (`--workdir`) before fixing the value.",
        "![learning curve](learning_curve.png)",
    ]


def _verdict(tolerance: float, table: pd.DataFrame, best: int) -> str:
    b, n_all = table.loc[best], table.index.max()
    rule = (
        f"Rule: the recommended `training.sample_rows` is the smallest size whose mean held-out PR-AUC is "
        f"within {tolerance} of the full training set's, and stays within it at every larger size."
    )
    if best == n_all:
        gap = table["pr_gap"].drop(n_all)
        return (
            f"{rule} Here **no sample smaller than all {n_all:,} rows qualifies**: the curve still rises at "
            f"the full set ({gap.index.max():,} rows lose {gap.iloc[-1]:.4f}). At this scale keep "
            "`sample_rows: null`; the projection below says where the curve flattens."
        )
    return (
        f"{rule} Here: **{best:,} rows** (PR-AUC {b.pr_auc:.4f} against {table.loc[n_all].pr_auc:.4f} for all "
        f"{n_all:,}); its fit takes {b.cpu_ratio:.2f} of the full set's CPU time ({1 / b.cpu_ratio:.1f}x less) "
        f"and {b.time_ratio:.2f} of its wall time."
    )


def _projection(tolerance: float, table: pd.DataFrame, proj: Projection | None) -> str:
    if proj is None:
        return "Projection: the power law did not fit the measured means (too few sizes from 3,000 rows)."
    n_all = table.index.max()
    return (
        f"Projection (fitted, not measured): PR-AUC(n) = {proj.asymptote:.4f} - {proj.b:.3g} n^-{proj.c:.3f} "
        f"on the means from 3,000 rows; it reaches within {tolerance} of its asymptote at about "
        f"**{proj.rows_within:,} rows** ({proj.rows_within / n_all:.2f} x the {n_all:,} measured). An operator "
        "whose training set is many times that size loses about that much by sampling to it, and fits in a "
        "time that no longer grows with the base. The fit moves with the points it is given: treat it as an "
        "order of magnitude and confirm it by rerunning with more subscribers."
    )


if __name__ == "__main__":
    main()
