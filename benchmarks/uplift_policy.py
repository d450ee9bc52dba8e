"""Does choosing the list by estimated uplift save more than ranking by churn probability? Against the truth.

On a workdir where ``churn run`` has trained a churn champion on simulated data::

    uv run python benchmarks/uplift_policy.py --config CONFIG \\
        [--experiments 2026-03-01,2026-04-01,2026-05-01] [--holdout 2026-06-01] \\
        [--compare 2026-07-01[,2026-08-01,...]]

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
4. Pooled: with several ``--compare`` dates (e.g. four monthly lists), per policy the total over the lists and
   its paired difference to the probability-ranked lists with a 95% range (the dates' draws are independent,
   so their realisations add draw by draw), and a paragraph of what the totals say.

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
        ax.set_title(f"{a}\n{c.n_treated:,} treated / {c.n_control:,} control", fontsize=10)  # fits the panel
        ax.set_xlabel("share targeted")
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


def draws(state: pd.DataFrame, d: dt.date) -> dict:
    """Common random numbers for one date: every list of ``d`` is played with the same draws per subscriber,
    so differences between policies are paired; seeded by the date, so the dates' draws are independent and
    the realisations of several lists can be summed draw by draw."""
    rng = np.random.default_rng(d.toordinal())
    ids = state["subscriber_id"].to_numpy()
    out: dict = {k: rng.random((REPS, len(ids))) for k in ("contact", "save", "provoke", "accept")}
    out["index"] = pd.Series(np.arange(len(ids)), index=ids)
    return out


def policy_list(config: Path, d: dt.date, policy: str, floor: float | None, learner: str | None,
                versions: dict[str, str], folder: str) -> pd.DataFrame:  # fmt: skip
    """The nightly list of ``d`` chosen by ``policy`` at the config's capacity, no control group and no
    exploration (``floor``: another ``min_probability``; ``learner``: which fitted uplift model)."""
    extra = {} if floor is None else {"min_probability": floor}
    s = derived(config, "policy", extra, {"policy": policy, "control_share": 0.0, "explore_share": 0.0})
    uplift = load_uplift(s, version=versions[learner]) if learner else None
    out = s.workdir / "policy-lists" / folder.replace(" ", "_").replace(", ", "_")
    return nightly_list(s, d, out_root=out, uplift_model=uplift).warnings


def date_lists(
    config: Path, d: dt.date, floors: dict[str, float | None], versions: dict[str, str]
) -> dict[str, dict[str, dict]]:
    """One date's lists against the truth: label -> policy -> :func:`true_worth`. The uplift lists and the
    ceiling ignore ``min_probability``, so each is built once and shared by every label."""
    base = load_settings(config)
    state = treatment.true_uplift(treatment.state_on(treatment.read_intents(base), d, base), base)
    rng_u = draws(state, d)
    shared = {
        f"uplift, {k}": true_worth(
            base, policy_list(config, d, "uplift", None, k, versions, f"{d}/uplift {k}"), state, rng_u
        )  # fmt: skip
        for k in versions
    }
    shared["true effects (ceiling)"] = true_worth(base, oracle_list(base, d, state), state, rng_u)
    out = {}
    for label, floor in floors.items():
        ranked = {
            p: true_worth(
                base, policy_list(config, d, p, floor, None, versions, f"{d}/{label}/{p}"), state, rng_u
            )
            for p in ("expected_loss", "probability")
        }
        out[label] = {**ranked, **shared}
    return out


def pooled(per_date: list[dict[str, dict]]) -> dict[str, dict]:
    """Per policy, the sum over the dates' lists: orders, true value, cost and net, actions, and the
    realisations summed draw by draw (each date's draws are independent of the others')."""
    out = {}
    for name in per_date[0]:
        rs = [r[name] for r in per_date]
        actions: dict[str, int] = {}
        for r in rs:
            for a, n in r["actions"].items():
                actions[a] = actions.get(a, 0) + n
        out[name] = {k: sum(r[k] for r in rs) for k in ("orders", "value", "cost", "net", "realised")}
        out[name]["actions"] = actions
        out[name]["wins"] = sum(
            r["net"] > p["net"] for r, p in zip(rs, [r["probability"] for r in per_date], strict=True)
        )
    return out


def worth_row(res: dict[str, dict], name: str) -> tuple:
    """One policy's cells: orders, true value, cost, net, its realised 95% range, the paired difference
    to the probability-ranked list with its 95% range, and the top actions."""
    r, floor = res[name], res["probability"]
    lo, hi = np.percentile(r["realised"], [2.5, 97.5])
    dlo, dhi = np.percentile(r["realised"] - floor["realised"], [2.5, 97.5])
    vs = "-" if name == "probability" else f"{r['net'] - floor['net']:+,.0f} [{dlo:+,.0f}, {dhi:+,.0f}]"
    top = ", ".join(f"{a} {n}" for a, n in sorted(r["actions"].items(), key=lambda kv: -kv[1])[:3])
    return (f"{r['orders']:,}", f"{r['value']:,.0f}", f"{r['cost']:,.0f}", f"{r['net']:,.0f}",
            f"[{lo:,.0f}, {hi:,.0f}]", vs, top)  # fmt: skip


def difference(res: dict[str, dict], name: str) -> tuple[float, float, float]:
    """The true net of ``name``'s list(s) less the probability-ranked one's, and the paired 95% range."""
    lo, hi = np.percentile(res[name]["realised"] - res["probability"]["realised"], [2.5, 97.5])
    return res[name]["net"] - res["probability"]["net"], float(lo), float(hi)


def verdict(totals: dict[str, dict[str, dict]], qini: list[tuple], versions: dict[str, str], n: int) -> str:
    """What the pooled figures say, in words: each list against the probability-ranked one (above, below or
    inside the noise), the ceiling, and the Qini of the learners against the truth's as the why."""

    def said(res: dict[str, dict], name: str) -> str:
        diff, lo, hi = difference(res, name)
        word = "more than" if lo > 0 else "less than" if hi < 0 else "not distinguishable from"
        return (f"{name} {res[name]['net']:,.0f} CNY ({res[name]['orders']:,} orders; {diff:+,.0f} "
                f"[{lo:+,.0f}, {hi:+,.0f}]: {word} probability ranking)")  # fmt: skip

    parts = []
    for label, res in totals.items():
        p = res["probability"]
        others = "; ".join(said(res, k) for k in res if k not in ("probability", "true effects (ceiling)"))
        parts.append(f"With {label}, the {n} probability-ranked lists ({p['orders']:,} work orders) make a true "
                     f"net of {p['net']:,.0f} CNY in total; {others}.")  # fmt: skip
    q = np.array([[float(c) for c in row[4:]] for row in qini])
    truth = q[:, -1].mean()
    learned = ", ".join(
        f"{k} {m:+.4f} ({m / truth:.0%} of the truth's)"
        for k, m in zip(versions, q[:, :-1].mean(axis=0), strict=True)
    )
    ceiling = next(iter(totals.values()))["true effects (ceiling)"]
    parts.append(f"The lists chosen by the true effects make {ceiling['net']:,.0f} CNY ({ceiling['orders']:,} "
                 f"orders). On the held-out experiment the mean Qini over the {len(q)} actions is {learned}, against "
                 f"{truth:+.4f} for the true uplift: that is how much of whom a contact changes the models "
                 "recover, and what their lists have to go on.")  # fmt: skip
    return "**What the figures say.** " + " ".join(parts)


TABLE_HEAD = ["work orders", "true value retained", "true cost", "true net", "realised net, 95%",
              "net vs probability", "top actions"]  # fmt: skip


def lists_table(per_date: list[dict[str, dict[str, dict]]], dates: list[dt.date]) -> str:
    """Every list of every date against the truth, by label (min_probability) then date."""
    rows = [
        (label, d, name, *worth_row(by_label[label], name))
        for label in per_date[0]
        for d, by_label in zip(dates, per_date, strict=True)
        for name in by_label[label]
    ]
    return md_table(["lists", "date", "policy", *TABLE_HEAD], rows, "llrrrrrrrl")


def totals_table(totals: dict[str, dict[str, dict]], n: int) -> str:
    """Per label and policy, the totals over the n lists and the pooled paired difference to probability."""
    rows = [
        (label, name, *worth_row(res, name), "-" if name == "probability" else f"{res[name]['wins']} of {n}")
        for label, res in totals.items()
        for name in res
    ]
    return md_table(["lists", "policy", *TABLE_HEAD, "lists above probability"], rows, "lrrrrrrrlr")


def report_blocks(base: Settings, fitted: dict, qini: list[tuple], versions: dict[str, str],
                  dates: tuple[list[dt.date], dt.date, list[dt.date]], per_date: list) -> list[str]:  # fmt: skip
    """The report: data and fits, the Qini table, the lists against the truth, and over several dates the
    totals, the pooled differences to the probability-ranked lists and what they say."""
    exp_dates, holdout, cmp_dates = dates
    fits = "; ".join(
        f"{k.upper()}-learner v{f.version} @{f.alias} ({f.decision}), Qini mean {f.qini_mean:+.4f} on its own "
        f"held-out subscribers"
        for k, f in fitted.items()
    )
    qini_head = [
        "action",
        "treated",
        "control",
        "extra stayers, all treated",
        *[f"Qini {k}" for k in versions],
    ]
    out = [
        f"Data: {base.data.n_subscribers:,} simulated subscribers (`data.seed` {base.data.seed}), events from "
        f"{base.data.start_date} to before {base.data.end_date}. Experiments: {', '.join(map(str, exp_dates))}, "
        f"every active subscriber, half held out, actions at random. Uplift models (LightGBM) fitted on "
        f"{sum(fitted['t'].n_train.values()):,} of their work orders, registered in that order: {fits}. "
        f"Held-out experiment: {holdout}. Lists compared: {', '.join(map(str, cmp_dates))}.",
        "## Qini on a held-out experiment\n\n"
        + md_table([*qini_head, "Qini truth"], qini, "lrrr" + "r" * (len(versions) + 1))
        + "\n\n![Qini curves](uplift_policy_qini.png)",
        "## True value of each policy's list at the same capacity\n\n"
        "Value retained = the simulator's true individual uplift of the action each work order carries x monthly "
        "value x `retention.value_months`; cost = contact cost + offer cost x its true acceptance probability; CNY "
        f"per list. Realised: 95% range of the net over {REPS} plays of the simulator's randomness; the difference "
        "to the probability-ranked list uses the same draws per subscriber (paired).\n\n"
        + lists_table(per_date, cmp_dates),
    ]
    if len(cmp_dates) > 1:
        totals = {label: pooled([b[label] for b in per_date]) for label in per_date[0]}
        out.append(
            f"## Over the {len(cmp_dates)} lists\n\nPer policy, the sum over the lists of "
            f"{', '.join(map(str, cmp_dates))}. Realised: 95% range of the total over the same {REPS} plays (each "
            "date's draws independent of the others'); net vs probability: the total difference, with the 95% "
            "range of its paired draws; lists above probability: on how many dates the list's true net beats the "
            "probability-ranked list's.\n\n"
            + totals_table(totals, len(cmp_dates))
            + "\n\n"
            + verdict(totals, qini, versions, len(cmp_dates))
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--experiments", default="2026-03-01,2026-04-01,2026-05-01")
    ap.add_argument("--holdout", default="2026-06-01")
    ap.add_argument(
        "--compare", default="2026-07-01", help="list dates, comma-separated; several: also pooled"
    )
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
    floors = {f"min P {base.warnings.list_min_probability:g}": None, "min P 0": 0.0}
    per_date = []
    for d in cmp_dates:
        per_date.append(date_lists(args.config, d, floors, versions))
        print(f"lists of {d} done")
    blocks = report_blocks(base, fitted, qini, versions, (exp_dates, holdout, cmp_dates), per_date)
    write_report(__file__, "Uplift targeting vs probability and expected-loss ranking", blocks)


if __name__ == "__main__":
    main()
