"""Does choosing the list by estimated uplift save more than ranking by churn probability? Against the truth.

On a workdir where ``churn run`` has trained a churn champion on simulated data::

    uv run python benchmarks/uplift_policy.py --config CONFIG \\
        [--experiments 2026-03-01,2026-04-01,2026-05-01] [--holdout 2026-06-01] \\
        [--compare 2026-07-01]

1. Experiments: on each ``--experiments`` date an experiment list of every active subscriber (half held
   out uncontacted, every action drawn at random: ``retention.explore_share`` 1), played forward by
   the simulator (``churn outcomes --simulate``); ``churn uplift`` fits the T-learner on them, then
   the X-learner, and registers both (the second is champion only if its Qini beats the first's).
   ``--reuse`` keeps the lists and outcomes of an earlier run.
2. Qini: the same kind of experiment on the ``--holdout`` date, which the models never saw; the Qini
   curve per action of each model and of the simulator's true uplift (the ceiling), as a PNG.
3. Policies: on each ``--compare`` date, the nightly list at the config's capacity (no control group,
   no exploration) chosen by expected loss, by probability and by each uplift model; each list's true
   value (the simulator's individual uplift of the action each work order carries x monthly value x
   ``retention.value_months``, less the expected cost), and the 95% range of what it would realise
   over the simulator's randomness (Monte Carlo with common random numbers, so the differences are paired).
   Once with the config's ``warnings.min_probability`` and once with none, so that the baselines can fill
   their capacity too. Beside them, the ceiling: the list chosen by the true effects themselves.

Writes docs/benchmarks/uplift_policy.md and docs/benchmarks/uplift_policy_qini.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from _report import RESULTS, md_table, write_report

from core.config import Settings, load_settings
from features import engine
from models import stakes
from models.plots import plt
from models.registry import load_uplift
from models.uplift_model import qini_by_action, qini_curve
from pipelines import treatment
from pipelines.outcomes import outcome_file, simulate_outcomes
from pipelines.uplift import experiments, fit_uplift
from pipelines.warn import choose, nightly_list

POLICIES = ("expected_loss", "probability", "uplift")
REPS = 400  # Monte Carlo draws of what a list realises


def derived(config: Path, name: str, warnings: dict, retention: dict) -> Settings:
    """The config with ``warnings`` and ``retention`` changes, written beside the workdir."""
    raw = yaml.safe_load(Path(config).read_text())
    raw["warnings"] = {**raw.get("warnings", {}), **warnings}
    raw["retention"] = {**raw.get("retention", {}), **retention}
    base = load_settings(config)
    path = base.workdir / f"bench-{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_settings(path)


def experiment_settings(config: Path) -> Settings:
    wide = {"min_probability": 0.0, "orders_per_manager": 100_000, "mass_capacity": 10_000_000}
    return derived(
        config, "experiment", wide, {"control_share": 0.5, "explore_share": 1.0, "policy": "expected_loss"}
    )


def run_experiments(settings: Settings, dates: list[dt.date]) -> None:
    for d in dates:
        nightly_list(settings, d)
        print(simulate_outcomes(settings, d).headline())


def qini_rows(settings: Settings, holdout: dt.date, out_png: Path, versions: dict[str, str]) -> list[tuple]:
    """Qini per action of each fitted uplift model (``versions``: learner -> registry version) on the
    held-out date's experiment, and of the simulator's true uplift (the ceiling)."""
    models = {k: load_uplift(settings, version=v).model for k, v in versions.items()}
    ex = experiments(settings, [holdout])
    truth = treatment.true_uplift(
        treatment.state_on(treatment.read_intents(settings), holdout, settings), settings
    )
    true = ex.rows[["subscriber_id"]].merge(truth, on="subscriber_id", how="left")
    curves = {k: qini_by_action(m, ex.X, ex.rows) for k, m in models.items()}
    treated, stayed = ex.rows["treated"].to_numpy(), ~ex.rows["churned"].to_numpy()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.4))
    out, colors = [], dict(zip(versions, ["#c33", "#e90", "#393"], strict=False))
    first = next(iter(curves.values()))
    for ax, a in zip(axes.ravel(), first, strict=False):
        keep = ~treated | (ex.rows["action"].to_numpy() == a)
        oracle = qini_curve(true[f"uplift_{a}"].to_numpy()[keep], treated[keep], stayed[keep], a)
        for k, cs in curves.items():
            c = cs[a]
            ax.plot(c.share, c.gain, color=colors[k], label=f"{k} (Qini {c.coefficient:+.4f})")
        ax.plot(
            oracle.share, oracle.gain, color="#36c", label=f"true uplift (Qini {oracle.coefficient:+.4f})"
        )
        c = first[a]
        ax.plot([0, 1], [0, c.total], ls="--", color="#888", label="random")
        ax.axhline(0, color="#666", lw=0.6)
        ax.set(title=f"{a} ({c.n_treated:,} treated / {c.n_control:,} control)", xlabel="share targeted")
        ax.set_ylabel("extra stayers")
        ax.legend(fontsize=7)
        out.append((a, f"{c.n_treated:,}", f"{c.n_control:,}", f"{c.total:+.0f}",
                    *[f"{cs[a].coefficient:+.4f}" for cs in curves.values()], f"{oracle.coefficient:+.4f}"))  # fmt: skip
    for ax in axes.ravel()[len(first) :]:
        ax.axis("off")
    fig.suptitle(f"Qini curves on the held-out experiment of {holdout} (not seen in training)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out


def true_terms(settings: Settings, act, causes, y0: np.ndarray, dog: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per work order with action ``act``: the simulator's save, provoke and windfall probabilities, contact
    and offer cost, and the expected cost (contact + offer x true P(accept))."""
    cfg = settings.data.treatment
    eff = [cfg.actions.get(a, cfg.actions["none"]) for a in act]
    save = np.array([e.save.get(c, 0.0) for e, c in zip(eff, causes, strict=True)])
    provoke = np.array([e.provoke for e in eff])
    windfall = np.array([e.windfall_accept for e in eff])
    contact, offer = np.array([e.contact_cost for e in eff]), np.array([e.offer_cost for e in eff])
    r = cfg.contact_rate
    p_accept = np.where(offer > 0, r * (y0 * save + (~y0) * (1 - dog * provoke) * windfall), 0.0)
    return save, provoke, windfall, contact, offer, contact + offer * p_accept


def oracle_list(settings: Settings, d: dt.date, state: pd.DataFrame) -> pd.DataFrame:
    """The list a policy that knew the simulator's true effects would choose at the same capacity: every
    active subscriber's best action by true net value, chosen as the uplift policy chooses (the ceiling)."""
    feats, _ = engine.compute_features(settings.raw_dir, [d], settings)
    value = stakes.value_at_stake(feats, settings.warnings)
    s = feats[["subscriber_id"]].assign(value_at_stake=value).merge(state, on="subscriber_id", how="inner")
    worth = np.nan_to_num(s["value_at_stake"].to_numpy(dtype=float)) * settings.retention.value_months
    y0, dog = s["y0"].to_numpy(dtype=bool), s["sleeping_dog"].to_numpy(dtype=bool)
    actions = list(settings.retention.explore_actions)
    net = np.column_stack(
        [
            s[f"uplift_{a}"].to_numpy() * worth
            - true_terms(settings, [a] * len(s), s["churn_cause"], y0, dog)[-1]
            for a in actions
        ]
    )
    pick = net.argmax(axis=1)
    scored = pd.DataFrame(
        {
            "subscriber_id": s["subscriber_id"].to_numpy(),
            "churn_probability": 0.0,
            "value_at_stake": s["value_at_stake"].to_numpy(),
            "expected_loss": 0.0,
            "vip_tier": stakes.vip_tier(s["value_at_stake"].to_numpy(), settings.warnings),
            "expected_net_value": net[np.arange(len(s)), pick],
            "action_code": np.asarray(actions, dtype=object)[pick],
        }
    )
    return choose(scored, settings.warnings, "uplift")[0]


def true_worth(settings: Settings, table: pd.DataFrame, state: pd.DataFrame, rng_u: dict) -> dict:
    """The list's true expected value retained, cost and net (CNY), and REPS realisations of its net."""
    cfg = settings.data.treatment
    s = table[["subscriber_id", "action_code", "value_at_stake"]].merge(state, on="subscriber_id", how="left")
    worth = np.nan_to_num(s["value_at_stake"].to_numpy(dtype=float)) * settings.retention.value_months
    act = s["action_code"].to_numpy()
    y0 = s["y0"].fillna(False).to_numpy(dtype=bool)  # not in the truth (left before D): nothing to save
    dog = s["sleeping_dog"].fillna(False).to_numpy(dtype=bool)
    save, provoke, windfall, contact, offer, cost = true_terms(settings, act, s["churn_cause"], y0, dog)
    cols = s.columns.get_indexer([f"uplift_{a}" if f"uplift_{a}" in s else "uplift_none" for a in act])
    up = np.nan_to_num(s.to_numpy()[np.arange(len(s)), cols].astype(float))
    r = cfg.contact_rate
    idx = s["subscriber_id"].map(rng_u["index"]).fillna(0).to_numpy(dtype=int)
    u = {k: v[:, idx] for k, v in rng_u.items() if k != "index"}
    reached = u["contact"] < r
    saved = reached & y0 & (u["save"] < save)
    provoked = reached & dog & (u["provoke"] < provoke)
    accepted = (offer > 0) & reached & (saved | (~y0 & ~provoked & (u["accept"] < windfall)))
    realised = ((saved.astype(float) - provoked) * worth - contact - accepted * offer).sum(axis=1)
    return {
        "orders": len(s),
        "value": float((up * worth).sum()),
        "cost": float(cost.sum()),
        "net": float((up * worth - cost).sum()),
        "realised": realised,
        "actions": pd.Series(act).value_counts().to_dict(),
    }


def compare(
    config: Path, dates: list[dt.date], min_probability: float | None, label: str, versions: dict[str, str]
) -> list[tuple]:
    """Per date: each policy's list at the config's capacity (the uplift policy once per fitted model in
    ``versions``) and the ceiling, against the truth."""
    rows, base = [], load_settings(config)
    intents = treatment.read_intents(base)
    policies = [("expected_loss", None), ("probability", None), *[("uplift", k) for k in versions]]
    for d in dates:
        state = treatment.true_uplift(treatment.state_on(intents, d, base), base)
        rng = np.random.default_rng(0)
        ids = state["subscriber_id"].to_numpy()
        rng_u = {k: rng.random((REPS, len(ids))) for k in ("contact", "save", "provoke", "accept")}
        rng_u["index"] = pd.Series(np.arange(len(ids)), index=ids)
        res = {}
        for p, learner in policies:
            name = p if learner is None else f"uplift, {learner}"
            extra = {} if min_probability is None else {"min_probability": min_probability}
            s = derived(config, "policy", extra, {"policy": p, "control_share": 0.0, "explore_share": 0.0})
            uplift = load_uplift(s, version=versions[learner]) if learner else None
            out = s.workdir / "policy-lists" / label.replace(" ", "_") / name.replace(", ", "_")
            res[name] = true_worth(
                s, nightly_list(s, d, out_root=out, uplift_model=uplift).warnings, state, rng_u
            )
        res["true effects (ceiling)"] = true_worth(base, oracle_list(base, d, state), state, rng_u)
        floor = res["probability"]["realised"]
        for name, r in res.items():
            lo, hi = np.percentile(r["realised"], [2.5, 97.5])
            dlo, dhi = np.percentile(r["realised"] - floor, [2.5, 97.5])
            top = ", ".join(f"{a} {n}" for a, n in sorted(r["actions"].items(), key=lambda kv: -kv[1])[:3])
            vs = (
                "-"
                if name == "probability"
                else f"{r['net'] - res['probability']['net']:+,.0f} [{dlo:+,.0f}, {dhi:+,.0f}]"
            )
            rows.append((label, d, name, f"{r['orders']:,}", f"{r['value']:,.0f}", f"{r['cost']:,.0f}",
                         f"{r['net']:,.0f}", f"[{lo:,.0f}, {hi:,.0f}]", vs, top))  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--experiments", default="2026-03-01,2026-04-01,2026-05-01")
    ap.add_argument("--holdout", default="2026-06-01")
    ap.add_argument("--compare", default="2026-07-01")
    ap.add_argument(
        "--reuse", action="store_true", help="keep the experiments' lists and outcomes if all are there"
    )
    args = ap.parse_args()
    exp_dates = [dt.date.fromisoformat(d) for d in args.experiments.split(",")]
    holdout = dt.date.fromisoformat(args.holdout)
    cmp_dates = [dt.date.fromisoformat(d) for d in args.compare.split(",")]
    ex = experiment_settings(args.config)
    if not (args.reuse and all(outcome_file(ex, d).exists() for d in [*exp_dates, holdout])):
        run_experiments(ex, [*exp_dates, holdout])
    fitted = {}
    for learner in ("t", "x"):
        s = derived(args.config, f"experiment-{learner}", {}, {"uplift": {"learner": learner}})
        fitted[learner] = fit_uplift(s, date_from=str(exp_dates[0]), date_to=str(exp_dates[-1]))
        print(fitted[learner].headline())
    versions = {f"{k.upper()}-learner v{f.version}": f.version for k, f in fitted.items()}
    png = Path(os.environ.get("CHURNWARN_BENCH_RESULTS", RESULTS)) / "uplift_policy_qini.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    qini = qini_rows(ex, holdout, png, versions)
    base = load_settings(args.config)
    table = compare(args.config, cmp_dates, None, f"min P {base.warnings.list_min_probability:g}", versions)
    table += compare(args.config, cmp_dates, 0.0, "min P 0", versions)
    n_exp = sum(fitted["t"].n_train.values())
    fits = "; ".join(
        f"{k.upper()}-learner v{f.version} @{f.alias} ({f.decision}), Qini mean {f.qini_mean:+.4f} on its own "
        f"held-out subscribers"
        for k, f in fitted.items()
    )
    blocks = [
        f"Data: {base.data.n_subscribers:,} simulated subscribers (`data.seed` {base.data.seed}). Experiments: "
        f"{', '.join(map(str, exp_dates))}, every active subscriber, half held out, actions at random. Uplift "
        f"models (LightGBM) fitted on {n_exp:,} of their work orders, registered in that order: {fits}.",
        "## Qini on a held-out experiment\n\n"
        + md_table(
            [
                "action",
                "treated",
                "control",
                "extra stayers, all treated",
                *[f"Qini {k}" for k in versions],
                "Qini truth",
            ],
            qini,
            "lrrr" + "r" * (len(versions) + 1),
        )
        + "\n\n![Qini curves](uplift_policy_qini.png)",
        "## True value of each policy's list at the same capacity\n\n"
        "Value retained = the simulator's true individual uplift of the action each work order carries x monthly "
        "value x `retention.value_months`; cost = contact cost + offer cost x its true acceptance probability; CNY "
        f"per list. Realised: 95% range of the net over {REPS} plays of the simulator's randomness; the difference "
        "to the probability-ranked list uses the same draws per subscriber (paired).\n\n"
        + md_table(
            [
                "lists",
                "date",
                "policy",
                "work orders",
                "true value retained",
                "true cost",
                "true net",
                "realised net, 95%",
                "net vs probability",
                "top actions",
            ],
            table,
            "llrrrrrrrl",
        ),  # fmt: skip
    ]
    write_report(__file__, "Uplift targeting vs probability and expected-loss ranking", blocks)


if __name__ == "__main__":
    main()
