"""How much of the churn does the raw record reveal? An empirical ceiling between the model and the simulator's.

The simulator's two ceilings (``churn truth``) read its state: the *latent* one every intent, the
*reachable* one each visible intent's exact onset and cause. A model sees neither, only the records
those intents emitted through Poisson call counts, ramping drops, weak signals and confounders.
The Bayes-optimal score given the records lies below the reachable ceiling, by an amount no formula
here gives. This script measures it from below: a learner with no constraint and far more data than
the demo, on the full daily record (per subscriber and day before T: calls, on-/off-net calls,
competitor-hotline and service-line calls, complaints, top-ups; summed over 1..56-day windows, each
against the subscriber's own rate before the window as a ratio and a Poisson z-score; days since
each kind of event; zero-call days and the current silent run; the last bills against the fee;
contract days, tenure, plan; and the call graph's records: the subscribers it called, matched by
the callee hash, and which of them left before T, when, how and how much it called them) plus the
catalogue's features. Trained on growing shares of the
subscribers, its held-out ROC-AUC shows whether more data still helps (the learning curve) and where
it levels off: the *records* ceiling a model of these records can be held to.

Run on a generated workdir after ``churn run`` (bigger is better; the figures in docs/data.md come
from 60,000 subscribers)::

    uv run python benchmarks/records_ceiling.py --config CONFIG [--test-config DEMO_CONFIG] [--shares 0.25,0.5,1]

Writes docs/benchmarks/records_ceiling.md (see benchmarks/_report.py) and prints it: one table of
the simulator's ceilings, the records learner per training share, the catalogue's features under
the same learner, and the last ``churn train``'s winner, each with its ROC-AUC standard error
(Hanley & McNeil 1982) on the held-out rows.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import duckdb
import numpy as np
import pandas as pd
from _report import md_table, write_report

from core.config import load_settings
from features.catalogue import FEATURE_NAMES
from pipelines.truth import ceilings

WINDOWS = (1, 2, 3, 4, 5, 7, 10, 14, 21, 28, 42, 56)
SERIES = ("calls", "off", "onn", "comp", "own", "complaints", "recharge")
RATES = ("calls", "off", "onn")  # series compared with the subscriber's own rate before the window
HISTORY_DAYS = 90
GRAPH_WINDOWS = (14, 30, 60, 90)  # contacts who left in the last ... days
GRAPH_DECAY_DAYS = 30.0  # a departure's weight in the exposure score decays with this time constant


def subscriber_hashes(settings, index: pd.Series) -> np.ndarray:
    """Each subscriber's own number's keyed hash, as calls to it carry it (``callee_hash``): the ingested
    subscribers' ``number_hash`` when ingestion wrote it, else the landing export's number hashed alike."""
    from pipelines.ingest import pseudonymise, salt

    raw = pd.read_parquet(settings.raw_dir / "subscribers.parquet", dtype_backend="numpy_nullable")
    if "number_hash" in raw:
        return raw.set_index("subscriber_id")["number_hash"].reindex(index.index).to_numpy()
    subs = pd.read_parquet(settings.landing_dir / "subscribers.parquet", columns=["subscriber_id", "msisdn"])
    own = pd.Series(pseudonymise(subs["msisdn"], salt(settings), settings), index=subs["subscriber_id"])
    return own.reindex(index.index).to_numpy()


class GraphRecords:
    """The call graph as the records show it: calls per (caller row, callee row, day) between
    subscribers, and each subscriber's churn event (day and type) from ``churn_events``."""

    def __init__(self, settings, index: pd.Series, start: pd.Timestamp):
        raw = settings.raw_dir
        own = pd.DataFrame({"callee_hash": subscriber_hashes(settings, index), "b": np.arange(len(index))})
        con = duckdb.connect()
        con.register("own", own.dropna())
        pairs = con.execute(f"""
            SELECT c.subscriber_id, o.b,
              date_diff('day', DATE '{start.date()}', CAST(c.start_time AS DATE)) AS d, count(*) AS n
            FROM read_parquet('{raw}/cdr/*/*.parquet') c JOIN own o USING (callee_hash)
            GROUP BY 1, 2, 3""").df()
        self.a = index.loc[pairs["subscriber_id"]].to_numpy()
        self.b, self.d, self.n = (pairs[c].to_numpy() for c in ("b", "d", "n"))
        ev = pd.read_parquet(raw / "churn_events.parquet")
        self.gone = np.full(len(index), np.inf)
        rows = index.loc[ev["subscriber_id"]].to_numpy()
        self.gone[rows] = (ev["event_date"] - start).dt.days.to_numpy()
        self.ported = np.zeros(len(index), bool)
        self.ported[rows] = (ev["event_type"] == "port_out").to_numpy()

    def features(self, rows: np.ndarray, T: int) -> pd.DataFrame:
        """Per row of ``rows``: its subscriber contacts before day ``T`` and those who left before T."""
        seen = self.d < T
        tie = pd.DataFrame({"a": self.a[seen], "b": self.b[seen], "n": self.n[seen]})
        tie = tie.groupby(["a", "b"], as_index=False)["n"].sum()
        gone = self.gone[tie["b"].to_numpy()]
        left = gone < T  # a churn event before T: in the records at T
        ago = np.where(left, T - gone, np.inf)
        share = tie["n"] / tie.groupby("a")["n"].transform("sum")
        cols = {"contacts": np.ones(len(tie)), "contacts_left_ever": left, "contact_calls_left": share * left}
        for w in GRAPH_WINDOWS:
            cols[f"contacts_left_{w}d"] = ago <= w
            cols[f"contacts_ported_{w}d"] = (ago <= w) & self.ported[tie["b"].to_numpy()]
            cols[f"contact_calls_left_{w}d"] = share * (ago <= w)
        cols["contact_exposure"] = share * np.where(left, np.exp(-ago / GRAPH_DECAY_DAYS), 0.0)
        f = pd.DataFrame(cols).assign(a=tie["a"]).groupby("a").sum()
        f["contacts_days_since_left"] = pd.Series(ago).groupby(tie["a"]).min()
        f = f.reindex(rows).fillna({"contacts_days_since_left": np.inf}).fillna(0)
        f["contacts_days_since_left"] = f["contacts_days_since_left"].clip(upper=T + 1)
        return f.add_prefix("graph_").reset_index(drop=True)


def daily_series(settings, index: pd.Series) -> tuple[dict[str, np.ndarray], pd.Timestamp]:
    """Per subscriber (row ``index[subscriber_id]``) and day since the data's start: counts of each kind
    of record (ingested tables)."""
    raw, start = settings.raw_dir, pd.Timestamp(settings.data.start_date)
    n_days = (pd.Timestamp(settings.data.end_date) - start).days
    daily = (
        duckdb.connect()
        .execute(f"""
        SELECT subscriber_id, date_diff('day', DATE '{start.date()}', CAST(start_time AS DATE)) AS d,
          count(*) FILTER (WHERE callee_class NOT IN ('competitor_hotline', 'own_service')) AS calls,
          count(*) FILTER (WHERE callee_class = 'off_net') AS off,
          count(*) FILTER (WHERE callee_class = 'on_net') AS onn,
          count(*) FILTER (WHERE callee_class = 'competitor_hotline' AND direction = 'out') AS comp,
          count(*) FILTER (WHERE callee_class = 'own_service' AND direction = 'out') AS own
        FROM read_parquet('{raw}/cdr/*/*.parquet') GROUP BY 1, 2""")
        .df()
    )

    def grid(sub, day, values=None) -> np.ndarray:
        a = np.zeros((len(index), n_days), np.float32)
        np.add.at(a, (index.loc[sub].to_numpy(), day), 1 if values is None else values)
        return a

    series = {c: grid(daily["subscriber_id"], daily["d"].to_numpy(), daily[c].to_numpy()) for c in SERIES[:5]}
    comp = pd.read_parquet(raw / "complaints.parquet")
    series["complaints"] = grid(comp["subscriber_id"], (comp["complaint_time"] - start).dt.days.to_numpy())
    rc = pd.read_parquet(raw / "recharges.parquet")
    series["recharge"] = grid(rc["subscriber_id"], (rc["recharge_time"] - start).dt.days.to_numpy())
    return series, start


def record_features(
    index: pd.Series,
    series,
    start,
    subs: pd.DataFrame,
    bills: pd.DataFrame,
    rows: pd.DataFrame,
    t: pd.Timestamp,
) -> pd.DataFrame:
    """The full daily record before ``t`` of ``rows``' subscribers, as window sums and rates
    (``index``: subscriber id -> row of ``series``; ``subs``: the subscribers table indexed by id;
    ``bills``: the billing table)."""
    T = (t - start).days
    r = index.loc[rows["subscriber_id"]].to_numpy()
    lo = max(T - HISTORY_DAYS, 0)
    out: dict[str, np.ndarray] = {}
    for name in SERIES:
        x = series[name][r, :T]  # days before T only
        last = np.cumsum(x[:, ::-1], axis=1)  # last[:, w - 1]: the last w days
        hist = x[:, lo:T].sum(1)
        for w in WINDOWS:
            s = last[:, w - 1]
            out[f"{name}_{w}d"] = s
            if name in RATES:
                expected = (hist - s) / max(T - lo - w, 1) * w  # at the rate before the window
                out[f"{name}_ratio_{w}d"] = s / np.maximum(expected, 0.1)
                out[f"{name}_z_{w}d"] = (s - expected) / np.sqrt(np.maximum(expected, 0.5))
        out[f"{name}_{HISTORY_DAYS}d"] = hist
        seen = x > 0
        out[f"{name}_days_since"] = np.where(seen.any(1), np.argmax(seen[:, ::-1], axis=1) + 1, T + 1)
    for w in (7, 14, 28):
        out[f"offnet_share_{w}d"] = out[f"off_{w}d"] / np.maximum(out[f"calls_{w}d"], 1)
    out["offnet_share_history"] = out[f"off_{HISTORY_DAYS}d"] / np.maximum(out[f"calls_{HISTORY_DAYS}d"], 1)
    calls = series["calls"][r, :T]
    for w in (7, 14, 30):
        out[f"zero_days_{w}d"] = (calls[:, T - w :] == 0).sum(1)
    silent = calls[:, ::-1] == 0
    out["silent_run"] = np.where(silent.all(1), T, np.argmax(~silent, axis=1))
    f = pd.DataFrame(out)
    subs = subs.loc[rows["subscriber_id"]]
    f["prepaid"] = (subs["plan"] == "prepaid").to_numpy().astype(int)
    f["tenure"] = (t - subs["activation_date"]).dt.days.to_numpy()
    f["fee"] = subs["monthly_fee"].to_numpy()
    contract = (subs["contract_end_date"] - t).dt.days.to_numpy()
    f["contract_days"] = np.where(np.isnan(contract), 9999, contract)
    bills = bills[bills["bill_date"] < t].sort_values("bill_date").groupby("subscriber_id").tail(3)
    g = bills.groupby("subscriber_id")
    last = g.tail(1).set_index("subscriber_id").reindex(rows["subscriber_id"])
    f["bill_last"] = last["charge"].to_numpy()
    f["arrears_last"] = last["arrears"].to_numpy()
    f["bill_mean_3"] = g["charge"].mean().reindex(rows["subscriber_id"]).to_numpy()
    f["bill_vs_fee"] = f["bill_last"] / f["fee"]
    f["arrears_bills_3"] = (
        g["arrears"].apply(lambda v: (v > 0).sum()).reindex(rows["subscriber_id"]).to_numpy()
    )
    return f


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an ROC-AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    return float(
        np.sqrt(
            (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
        )
    )


def fit_best(X_tr, y_tr, X_va, y_va, seed: int):
    """An unconstrained LightGBM, a few shapes early-stopped on validation ROC-AUC; the best by it."""
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    best = None
    for leaves, min_child in ((7, 50), (15, 50), (31, 100)):
        m = lgb.LGBMClassifier(
            n_estimators=3000,
            learning_rate=0.03,
            num_leaves=leaves,
            min_child_samples=min_child,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.5,
            random_state=seed,
            n_jobs=2,
            verbose=-1,
            scale_pos_weight=float(np.sqrt((y_tr == 0).sum() / max(y_tr.sum(), 1))),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(
                X_tr,
                y_tr,
                eval_set=[(X_va, y_va)],
                eval_metric="auc",
                callbacks=[lgb.early_stopping(100, first_metric_only=True, verbose=False)],
            )
        score = roc_auc_score(y_va, m.predict_proba(X_va, raw_score=True))
        if best is None or score > best[0]:
            best = (score, m)
    return best[1]


class Workdir:
    """One generated workdir's labels, catalogue features and daily series, as record-feature frames."""

    def __init__(self, settings):
        self.settings = settings
        self.labels = pd.read_parquet(settings.label_table)
        self.labels["t"] = self.labels["event_timestamp"].dt.tz_localize(None)
        self.snapshots = sorted(self.labels["t"].unique())
        self.subs = pd.read_parquet(settings.raw_dir / "subscribers.parquet").set_index("subscriber_id")
        self.index = pd.Series(np.arange(len(self.subs)), index=self.subs.index)
        self.series, self.start = daily_series(settings, self.index)
        self.bills = pd.read_parquet(settings.raw_dir / "billing.parquet")
        self.graph = GraphRecords(settings, self.index, self.start)
        self.catalogue = pd.read_parquet(settings.feature_table)
        self.catalogue["t"] = self.catalogue["event_timestamp"].dt.tz_localize(None)

    def frame(self, t) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = self.labels[self.labels["t"] == t].reset_index(drop=True)
        rec = record_features(
            self.index, self.series, self.start, self.subs, self.bills, rows, pd.Timestamp(t)
        )
        T = (pd.Timestamp(t) - self.start).days
        rec = pd.concat(
            [rec, self.graph.features(self.index.loc[rows["subscriber_id"]].to_numpy(), T)], axis=1
        )
        cat = rows[["subscriber_id", "t"]].merge(self.catalogue, on=["subscriber_id", "t"], how="left")[
            FEATURE_NAMES
        ]
        return rows, pd.concat([rec, cat.add_prefix("cat_")], axis=1)


def main() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score
    from tqdm.auto import tqdm

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config",
        required=True,
        help="config of a generated workdir after `churn run` (the learner trains here)",
    )
    p.add_argument(
        "--test-config",
        help="score the held-out snapshot of another generated workdir of the same simulator "
        "(e.g. the demo's), whose `churn train` winner is then the one compared; default: --config's",
    )
    p.add_argument(
        "--shares", default="0.25,0.5,1", help="shares of the training subscribers (learning curve)"
    )
    args = p.parse_args()
    t0 = time.perf_counter()
    train = Workdir(load_settings(args.config))
    test = Workdir(load_settings(args.test_config)) if args.test_config else train
    settings = train.settings
    snaps = train.snapshots
    train_t, valid_t = snaps[:-2], snaps[-2]
    horizon = pd.Timedelta(days=settings.features.label_horizon_days)
    # the same out-of-time split as `churn train`: label windows close before the next part starts
    train_t = [t for t in train_t if t + horizon <= valid_t]
    parts = {t: train.frame(t) for t in tqdm([*train_t, valid_t], desc="record features", disable=None)}
    test_t = test.snapshots[-1]
    rows_te, X_te = test.frame(test_t)
    y_te = rows_te["churned"].to_numpy()
    n_pos, n_neg = int(y_te.sum()), int((y_te == 0).sum())
    print(f"record features: {X_te.shape[1]} columns, built in {time.perf_counter() - t0:.0f} s")
    sim = ceilings(test.settings, rows_te["subscriber_id"].tolist(), y_te, test_t)
    fixed = [
        ("latent (simulator's state)", sim["ceiling_roc_auc"], sim["ceiling_pr_auc"]),
        (
            "reachable (visible onsets and causes)",
            sim["ceiling_reachable_roc_auc"],
            sim["ceiling_reachable_pr_auc"],
        ),
    ]
    table = []
    subscribers = train.labels.loc[train.labels["t"].isin(train_t), "subscriber_id"].unique()
    rng = np.random.default_rng(settings.training.seed)
    rng.shuffle(subscribers)
    shares = [float(s) for s in args.shares.split(",")]
    cat_cols = [c for c in X_te.columns if c.startswith("cat_")]
    rows_va, X_va = parts[valid_t]
    for share in tqdm(shares, desc="learning curve", disable=None):
        keep = set(subscribers[: int(round(share * len(subscribers)))])
        pick = [parts[t][0]["subscriber_id"].isin(keep).to_numpy() for t in train_t]
        X_tr = pd.concat([parts[t][1][m] for t, m in zip(train_t, pick, strict=False)])
        y_tr = np.concatenate(
            [parts[t][0]["churned"].to_numpy()[m] for t, m in zip(train_t, pick, strict=False)]
        )
        m_va = rows_va["subscriber_id"].isin(keep).to_numpy()
        y_va = rows_va["churned"].to_numpy()[m_va]
        label = f"{len(keep):,} subscribers, {int(y_tr.sum()):,} churn labels"
        model = fit_best(X_tr, y_tr, X_va[m_va], y_va, settings.training.seed)
        table.append(
            ("records learner: daily record + catalogue", label, model.predict_proba(X_te, raw_score=True))
        )
        if share == shares[-1]:
            model = fit_best(X_tr[cat_cols], y_tr, X_va[m_va][cat_cols], y_va, settings.training.seed)
            table.append(
                (
                    "catalogue features only, same learner",
                    label,
                    model.predict_proba(X_te[cat_cols], raw_score=True),
                )
            )
    rows = [(name, "-", auc, pr) for name, auc, pr in fixed]
    rows += [
        (name, trained, roc_auc_score(y_te, score), average_precision_score(y_te, score))
        for name, trained, score in table
    ]
    report = test.settings.reports_dir / "train.json"
    if report.exists():
        t = json.loads(report.read_text())
        winner = t.get("winner")
        if winner and f"{winner}_roc_auc" in t:
            rows.append(
                (
                    f"last `churn train` winner ({winner})",
                    "its own training snapshots",
                    t[f"{winner}_roc_auc"],
                    t.get(f"{winner}_pr_auc", float("nan")),
                )
            )
    lines = [
        (name, trained, f"{auc:.3f} ({auc_se(auc, n_pos, n_neg):.3f})", f"{pr:.3f}")
        for name, trained, auc, pr in rows
    ]
    write_report(
        __file__,
        "Records ceiling: what the raw records reveal",
        [
            f"Held-out snapshot {pd.Timestamp(test_t).date()} of the workdir of "
            f"`{args.test_config or args.config}`: {len(y_te):,} subscribers, {n_pos:,} churners; the "
            f"learner trained on the workdir of `{args.config}`; {X_te.shape[1]} record-feature columns.",
            md_table(["scorer", "trained on", "ROC-AUC (s.e.)", "PR-AUC"], lines, "llrr"),
            f"{time.perf_counter() - t0:.0f} s in all.",
        ],
    )


if __name__ == "__main__":
    main()
