"""Typed configuration, loaded once from ``configs/*.yaml`` and passed down to every stage."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
CONFIG_ENV = "CHURNWARN_CONFIG"
ROOT_ENV = "CHURNWARN_ROOT"


def project_root() -> Path:
    """What relative paths in a config resolve against: ``$CHURNWARN_ROOT``, else this checkout.

    A server running a Bento imports the Bento's copy of this code, so the launcher points it back
    at the checkout whose workdir it serves.
    """
    return Path(os.environ.get(ROOT_ENV) or REPO_ROOT).resolve()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


CAUSES = ("contract_expiry", "competitor", "dissatisfaction", "disengagement", "silent")


class ActionEffect(_Strict):
    """One retention action in the simulator (docs/retention-loop.md): what it costs and whom it moves.

    A contacted subscriber who would churn within the horizon stays with probability ``save[cause]``
    (the simulator's true cause); a contacted *sleeping dog* (a content subscriber the contact
    unsettles) leaves with probability ``provoke``; one who would have stayed anyway takes the offer
    with probability ``windfall_accept`` (the offer's cost, no saving)."""

    contact_cost: float = Field(ge=0, description="CNY per work order worked (agent time, call or visit)")
    offer_cost: float = Field(0.0, ge=0, description="CNY paid when the subscriber accepts the offer")
    save: dict[str, float] = Field(description="true cause -> P(a contacted would-be churner stays)")
    provoke: float = Field(0.0, ge=0, le=1, description="P(a contacted sleeping dog leaves in the horizon)")
    windfall_accept: float = Field(
        0.0, ge=0, le=1, description="P(a contacted subscriber who would stay anyway takes the offer)"
    )

    @field_validator("save")
    @classmethod
    def _every_cause(cls, v: dict[str, float]) -> dict[str, float]:
        if sorted(v) != sorted(CAUSES) or not all(0 <= p <= 1 for p in v.values()):
            raise ValueError(f"save: a probability for each cause {list(CAUSES)}, got {v}")
        return v


class TreatmentConfig(_Strict):
    """The simulator's truth of what retention actions do (docs/retention-loop.md); seeded by ``data.seed``."""

    contact_rate: float = Field(
        0.8, gt=0, le=1, description="share of worked orders that reach the subscriber"
    )
    sleeping_dog_share: float = Field(
        0.15,
        ge=0,
        le=1,
        description="share of content subscribers (no intent under way) a contact can push out",
    )
    actions: dict[str, ActionEffect]


class CompetitorCampaign(_Strict):
    """A simulated shift (pipelines/scenario.py, docs/monitoring.md): from ``start`` a competitor's
    campaign adds fast port-outs with a faint lead-up and makes stayers ring its hotline."""

    start: dt.date
    extra_monthly_churn: float = Field(
        0.08, ge=0, lt=1, description="monthly rate of extra competitor intents from start"
    )
    lead_days: tuple[int, int] = Field((5, 12), description="their lead-up: shorter than usual")
    weak_share: float = Field(0.8, ge=0, le=1, description="share of them with a faint signal")
    reach: float = Field(
        0.25, ge=0, le=1, description="share of stayers who ring the competitor's hotline about the offer"
    )


class GraphConfig(_Strict):
    """The call graph of the simulator (pipelines/graph.py, docs/data.md): on-net ties between simulated
    subscribers, in communities with a few hubs, and churn contagion along them."""

    ties_per_subscriber: float = Field(
        6.0, ge=0, description="mean number of ties to other simulated subscribers (on-net friends)"
    )
    community_size: float = Field(20.0, ge=2, description="mean size of a calling circle (community)")
    in_community_share: float = Field(0.8, ge=0, le=1, description="share of ties inside the community")
    hub_share: float = Field(0.01, ge=0, le=1, description="share of subscribers who are hubs")
    hub_attraction: float = Field(
        30.0, ge=1, description="how much likelier a hub is the other end of a tie across communities"
    )
    tie_call_weight: float = Field(
        3.0, gt=0, description="call rate along a tie of average strength, relative to an anonymous contact"
    )
    contagion_hazard_ratio: float = Field(
        1.8,
        ge=1,
        description="a tie's churn multiplies the subscriber's intent hazard by this, at average tie "
        "strength and at once (Nitzan & Libai 2011: +80% per defecting neighbour); 1: no contagion",
    )
    contagion_decay_days: float = Field(
        30.0, gt=0, description="the extra hazard decays exponentially with this time constant"
    )


class DataConfig(_Strict):
    """The simulator (pipelines/generate.py) and the number plan ingestion classifies calls by."""

    seed: int = 7
    n_subscribers: int = Field(3000, gt=0)
    start_date: dt.date = dt.date(2025, 12, 1)
    end_date: dt.date = dt.date(2026, 7, 1)
    monthly_churn_rate: float = Field(0.045, gt=0, lt=1, description="monthly rate of churn intent")
    intent_churn_share: float = Field(
        0.85, gt=0, le=1, description="share of intents that end in churn; the rest recover"
    )
    lead_days: tuple[int, int] = (21, 56)
    prepaid_share: float = Field(0.55, ge=0, le=1)
    median_daily_calls: float = Field(
        3.0, gt=0, description="median calls a day of a subscriber (log-normal spread)"
    )
    chunk_subscribers: int = Field(
        50_000, gt=0, description="subscribers generated per chunk (bounds memory)"
    )
    number_region: str = Field(
        "CN",
        description="ISO region whose number plan (country code 86, international prefix 00, trunk "
        "prefix 0, from libphonenumber) puts dialled numbers in one form before they are classified",
    )
    competitor_hotlines: list[str] = ["10086", "10010"]
    own_hotline: str = "10000"
    campaign: CompetitorCampaign | None = Field(None, description="a simulated shift; None: none")
    graph: GraphConfig | None = Field(
        GraphConfig(), description="on-net ties and churn contagion; None: anonymous contact pools"
    )
    treatment: TreatmentConfig | None = Field(
        None, description="what retention actions do (`churn outcomes --simulate`); None: no such truth"
    )
    own_service_numbers: list[str] = ["10000", "10001"]
    on_net_prefixes: list[str] = ["133", "149", "153", "173", "177", "180", "181", "189", "199"]
    off_net_prefixes: list[str] = [
        "130",
        "131",
        "132",
        "134",
        "135",
        "136",
        "137",
        "138",
        "139",
        "150",
        "151",
        "152",
        "155",
        "156",
        "157",
        "158",
        "159",
        "182",
        "183",
        "184",
        "185",
        "186",
        "187",
        "188",
    ]

    @model_validator(mode="after")
    def _dates(self) -> DataConfig:
        if self.end_date <= self.start_date:
            raise ValueError("data.end_date must be after data.start_date")
        if not 0 < self.lead_days[0] <= self.lead_days[1]:
            raise ValueError("data.lead_days must be (min, max) with 0 < min <= max")
        return self

    @property
    def n_days(self) -> int:
        return (self.end_date - self.start_date).days


class ShareLimits(_Strict):
    """A share (0-1) that warns above ``warn`` and fails above ``fail``."""

    warn: float = Field(ge=0, le=1)
    fail: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> ShareLimits:
        if self.warn > self.fail:
            raise ValueError("warn must not be above fail")
        return self


class PrivacyConfig(_Strict):
    """Key of the HMAC that pseudonymises the other party's number; never stored in the repository."""

    salt_env: str = "CHURNWARN_SALT"


class ValidationConfig(_Strict):
    """Tolerances: a check below its ``mostly`` share fails; ``warn`` lists checks that only warn."""

    callee_format_mostly: float = Field(
        0.999, gt=0, le=1, description="share of callee numbers in a known format"
    )
    warn: list[str] = ["callee_format"]
    unknown_share: ShareLimits = Field(
        ShareLimits(warn=0.002, fail=0.02),
        description="share of ingested calls to numbers of no known class (after normalisation)",
    )
    share_change: ShareLimits = Field(
        ShareLimits(warn=0.05, fail=0.15),
        description="change of any class's share of calls (on-net, off-net, unknown...) in the newly "
        "ingested days from its share in the previous ingest, in absolute terms (0.05: 5 points)",
    )
    cdr_batch_rows: int = Field(
        5_000_000,
        gt=0,
        description="CDRs are checked in batches of whole day partitions "
        "of about this many rows, so memory stays bounded at operator scale",
    )


class FeatureConfig(_Strict):
    snapshots: list[dt.date]
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="where the feature query, ingestion and the nightly scoring run: the embedded "
        "DuckDB, or Apache Spark (`spark:` settings; the `spark` extra) for operator scale",
    )
    recent_days: int = Field(14, gt=0)
    baseline_days: int = Field(60, gt=0)
    label_horizon_days: int = Field(30, gt=0)
    ttl_days: int = Field(45, gt=0)
    renewal_window_days: int = Field(
        60, ge=0, description="a postpaid contract ending this soon is up for renewal"
    )
    arpu_tiers: list[float] = Field(
        [50.0, 100.0, 200.0], description="ARPU thresholds (CNY) of tiers 1, 2, 3..."
    )
    duckdb_memory_limit: str | None = Field(
        None,
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory_limit for the feature query (e.g. '8GB'): past it DuckDB spills "
        "to <workdir>/data/duckdb_tmp instead of growing; None: DuckDB's default, 80% of the machine's memory",
    )
    graph_top_contacts: int = Field(
        10,
        gt=0,
        description="the call graph's 'closest contacts': this many numbers a subscriber called or "
        "was called by most in the baseline window (features/call_graph.py)",
    )
    max_staleness_days: int = Field(
        35,
        gt=0,
        description="`churn freshness` fails when the online store's newest "
        "snapshot is older than this (monthly snapshots: a month and a few days)",
    )

    @model_validator(mode="after")
    def _sorted(self) -> FeatureConfig:
        if len(self.snapshots) < 2:
            raise ValueError("features.snapshots needs at least two dates (train, then held-out test)")
        if sorted(set(self.snapshots)) != self.snapshots:
            raise ValueError("features.snapshots must be strictly increasing")
        return self


class SparkConfig(_Strict):
    """The Spark session of ``features.engine: spark`` (docs/scale-out.md). Under ``spark-submit`` the
    submitted master and resources win: these only fill what the launcher did not set."""

    master: str = Field("local[2]", description="local[N], spark://host:7077, yarn or k8s://...")
    app_name: str = "churnwarn"
    conf: dict[str, str] = Field(
        default_factory=dict, description="any other Spark setting, e.g. spark.executor.memory"
    )


class OnlineStoreConfig(_Strict):
    type: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str = "localhost:6379"
    socket_timeout: float = Field(
        2.0,
        gt=0,
        description="Redis: seconds a read or write may wait for an answer (redis-py's socket_timeout; "
        "a parameter of redis_connection wins)",
    )
    socket_connect_timeout: float = Field(
        2.0,
        gt=0,
        description="Redis: seconds a connection may take to open (redis-py's socket_connect_timeout)",
    )


class FeastConfig(_Strict):
    project: str = "churnwarn"
    online_store: OnlineStoreConfig = OnlineStoreConfig()


class MlflowConfig(_Strict):
    tracking_uri: str | None = None
    experiment: str = "churnwarn"
    registered_model: str = "churnwarn"
    selection_metric: Literal["pr_auc", "roc_auc", "top_decile_lift"] = "pr_auc"


class LightGBMConfig(_Strict):
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_child_samples: int = 50


class LogisticConfig(_Strict):
    C: float = 1.0


class TrainingConfig(_Strict):
    seed: int = 7
    sample_rows: int | None = Field(
        None,
        gt=0,
        description="train on a stratified sample of this many training rows (per snapshot and label, "
        "seeded by `seed`; the out-of-time validation and test rows are never sampled); None: all rows. "
        "docs/benchmarks/learning_curve.md shows how many rows reach the full set's PR-AUC",
    )
    eval_rows: int | None = Field(
        None,
        gt=0,
        description="bound each held-out snapshot (validation, test) to a stratified sample (by label) "
        "of this many rows, seeded by `seed`; None: every row. On the Spark engine only these and the "
        "training sample reach the driver",
    )
    lightgbm: LightGBMConfig = LightGBMConfig()
    logistic: LogisticConfig = LogisticConfig()


class ServingConfig(_Strict):
    """The BentoML endpoint (serving/service.py). The API key is not here: it comes from the
    environment (``$CHURNWARN_API_KEY``) so it never lands in a config file."""

    host: str = "127.0.0.1"
    port: int = 3000
    top_reasons: int = Field(3, gt=0)
    max_batch: int = Field(1000, gt=0, description="most subscriber ids or feature rows in one request")
    max_feature_age_days: int = Field(
        35,
        gt=0,
        description="a warning is refused (stale) when its features are "
        "older than this on `as_of` (monthly snapshots: a month and a few days)",
    )
    as_of: dt.date | None = Field(
        None, description="the day feature age is judged on; None: today (UTC), what production wants"
    )
    batch_max_size: int = Field(256, gt=1, description="adaptive batching: most rows in one model call")
    batch_max_latency_ms: int = Field(
        2000,
        gt=0,
        description="adaptive batching: a request waiting longer for the model gets 503 (overloaded)",
    )
    inline_max_rows: int = Field(
        16,
        ge=0,
        description="steps on at most this many rows run on the event loop, "
        "larger ones in a worker thread (0: always a thread)",
    )
    store_timeout_s: float = Field(
        3.0,
        gt=0,
        description="most seconds a request (or /readyz) waits for the online store: past it, 503; "
        "reads run in worker threads, so a hanging store never holds up /livez or other requests",
    )
    max_body_bytes: int = Field(
        8_000_000,
        gt=0,
        description="largest request body accepted on the API routes (413 beyond); "
        "max_batch feature rows take ~2.5 KB each",
    )
    workers: int = Field(
        2,
        ge=1,
        description="BentoML worker processes; each holds the model and an online-store "
        "connection (~450 MiB); one per core (2 workers: +40% warnings/s at concurrency 32 here)",
    )

    def reference_day(self) -> dt.date:
        """The day feature age is judged on."""
        return self.as_of or dt.datetime.now(dt.UTC).date()


class DeployConfig(_Strict):
    """``churn deploy``: how a registry version becomes a Bento (serving/deploy.py)."""

    bentoml_home: Path = Field(
        Path("bentoml"),
        description="BentoML home (model and Bento stores); relative "
        "to workdir, so every workdir deploys and rolls back on its own",
    )
    include: list[str] = Field(
        ["core/*.py", "serving/*.py", "models/*.py", "features/*.py", "pipelines/*.py", "configs/*.yaml"],
        description="source files copied into the Bento (patterns from the repository root)",
    )
    packages: list[str] = Field(
        [
            "mlflow",
            "feast",
            "lightgbm",
            "scikit-learn",
            "shap",
            "numba",
            "pandas",
            "numpy",
            "pyarrow",
            "duckdb",  # a customer table's derived columns (features/derived.py, imported by the model)
            "pydantic",
            "pyyaml",
        ],
        description="the Bento's Python requirements, pinned at their installed versions "
        "(BentoML adds itself)",
    )
    lock_packages: bool = Field(
        False,
        description="let BentoML resolve the requirements with `uv pip compile`; "
        "that needs the package index, so a build is offline only with False",
    )


class EvaluationConfig(_Strict):
    """What a warning list is worth: the EMPC profit metric and the retention team's capacity.

    EMPC (Verbraken, Verbeke & Baesens 2013, IEEE TKDE 25(5)): the share ``gamma`` of contacted
    would-be churners who accept the retention offer follows Beta(``empc_alpha``, ``empc_beta``)
    (defaults: mean 0.3); ``empc_clv`` is the value of a retained customer, ``empc_d`` the cost of the
    offer (paid by everyone who accepts it), ``empc_f`` the cost of contacting one customer (CNY).
    """

    empc_alpha: float = Field(6.0, gt=0, description="Beta alpha of the offer acceptance rate gamma")
    empc_beta: float = Field(14.0, gt=0, description="Beta beta of the offer acceptance rate gamma")
    empc_clv: float = Field(200.0, gt=0, description="customer lifetime value of a retained churner (CNY)")
    empc_d: float = Field(
        10.0, ge=0, description="cost of the retention offer to a customer who accepts it (CNY)"
    )
    empc_f: float = Field(1.0, ge=0, description="cost of contacting one customer (CNY)")
    capacity_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="share of subscribers the retention team can "
        "contact in a cycle (DOMAIN.md: 1 manager per 200/500/1000 VIPs)",
    )
    offer_accept_rate: float = Field(
        0.3, ge=0, le=1, description="share of contacted would-be churners who stay"
    )

    @model_validator(mode="after")
    def _offer_below_clv(self) -> EvaluationConfig:
        if self.empc_d >= self.empc_clv:
            raise ValueError(
                "evaluation.empc_d must be below evaluation.empc_clv (an offer worth more than the customer)"
            )
        return self


class VipTier(_Strict):
    """A value tier with its own customer managers (DOMAIN.md: diamond 1:200, gold 1:500, silver 1:1000)."""

    name: str
    min_value: float = Field(
        ge=0,
        description="monthly value (CNY, `warnings.value_feature`) from which a subscriber is in this tier",
    )
    subscribers_per_manager: int = Field(gt=0, description="the tier's customer-manager ratio, 1:N")


class WarningConfig(_Strict):
    """What a warning says about the stakes: risk tier, value at stake, VIP tier (endpoint and nightly list)."""

    value_feature: str = Field(
        "arpu_3m",
        description="model input column holding the subscriber's monthly value "
        "(CNY); value at stake = this, expected loss = probability x this",
    )
    high_risk: float = Field(
        0.5, gt=0, lt=1, description="calibrated probability from which a warning is 'high' risk"
    )
    medium_risk: float = Field(0.2, gt=0, lt=1, description="... 'medium' risk (below: 'low')")
    vip_tiers: list[VipTier] = [
        VipTier(name="diamond", min_value=200, subscribers_per_manager=200),
        VipTier(name="gold", min_value=100, subscribers_per_manager=500),
        VipTier(name="silver", min_value=50, subscribers_per_manager=1000),
    ]
    non_vip_tier: str = Field("mass", description="name of the tier below every VIP tier")
    # The nightly work-order list (pipelines/warn.py, `churn warn`): capacity per tier, then rank.
    orders_per_manager: int = Field(
        5,
        gt=0,
        description="work orders one customer manager takes from one nightly "
        "list: a retention call or visit with preparation and follow-up is about an "
        "hour, beside the manager's own portfolio of 200-1000 VIPs",
    )
    mass_capacity: int = Field(
        2000,
        ge=0,
        description="work orders per nightly list for the non-VIP tier: the "
        "outbound call centre's quota (e.g. 25 agents x 80 calls a day)",
    )
    min_probability: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="no work order below this calibrated "
        "probability, even with capacity left (default: medium_risk)",
    )
    validate_sample: int | None = Field(
        50_000,
        gt=0,
        description="the feature-table suite (Great Expectations) "
        "checks this many of the night's rows at random (it costs ~30 s CPU per "
        "million rows); every row is still checked for duplicates and missing or "
        "non-finite inputs. null: the suite on every row",
    )
    list_date: dt.date | None = Field(
        None,
        description="feature date of `churn warn` when --date is not given "
        "(default: the day after the last ingested CDR day, the freshest list)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> WarningConfig:
        if self.medium_risk >= self.high_risk:
            raise ValueError("warnings.medium_risk must be below warnings.high_risk")
        mins = [t.min_value for t in self.vip_tiers]
        if mins != sorted(mins, reverse=True) or len(set(mins)) != len(mins):
            raise ValueError(f"warnings.vip_tiers must be listed from the highest min_value down, got {mins}")
        names = [t.name for t in self.vip_tiers] + [self.non_vip_tier]
        if len(set(names)) != len(names):
            raise ValueError(f"warnings: tier names must differ (vip_tiers and non_vip_tier), got {names}")
        return self

    @property
    def list_min_probability(self) -> float:
        """The lowest calibrated probability that gets a work order."""
        return self.medium_risk if self.min_probability is None else self.min_probability


class UpliftConfig(_Strict):
    """The uplift model per action (``churn uplift``; docs/retention-loop.md): a T-learner on LightGBM."""

    registered_model: str | None = Field(
        None, description="registry name of the uplift model; None: <mlflow.registered_model>-uplift"
    )
    holdout_share: float = Field(
        0.3, gt=0, lt=1, description="share of subscribers (by hash) whose experiments only evaluate (Qini)"
    )
    holdout_salt: str = Field("churnwarn-uplift-holdout", min_length=1)
    min_treated: int = Field(50, ge=1, description="fewer treated work orders of an action: no model for it")
    learner: Literal["t", "x"] = Field(
        "t",
        description="meta-learner: t (a P(churn) model per action and one on control) or x (Kuenzel et al.)",
    )
    lightgbm: LightGBMConfig = Field(
        default_factory=lambda: LightGBMConfig(
            n_estimators=200, learning_rate=0.03, num_leaves=7, min_child_samples=100
        )
    )


class RetentionConfig(_Strict):
    """Closing the loop: control groups on the nightly list and the evaluation of their outcomes."""

    control_share: float = Field(
        0.1, ge=0, lt=1, description="share of each tier's chosen subscribers held out uncontacted"
    )
    control_salt: str = Field(
        "churnwarn-control", min_length=1, description="salt of the (subscriber, list date) assignment hash"
    )
    value_months: float = Field(
        12.0, gt=0, description="months of monthly value a retained subscriber is worth"
    )
    min_group: int = Field(30, ge=2, description="fewer subscribers in a group: too small to conclude")
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the uplift intervals")
    explore_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of each list's work orders whose action is drawn at random among the eligible "
        "actions (salted hash, recorded as action_source: explore), so the uplift model learns every "
        "action's effect; 0: every action from the reasons (or the uplift model)",
    )
    explore_salt: str = Field(
        "churnwarn-explore", min_length=1, description="salt of the (subscriber, list date) exploration hash"
    )
    explore_actions: tuple[str, ...] = Field(
        ("renewal_offer", "competitive_offer", "tariff_review", "service_recovery", "care_call"),
        min_length=1,
        description="the actions an explored work order may draw",
    )
    policy: Literal["expected_loss", "probability", "uplift"] = Field(
        "expected_loss",
        description="how the nightly list chooses within each tier's capacity: by expected loss "
        "(probability x value), by probability, or by the uplift model's expected net value",
    )
    uplift: UpliftConfig = Field(default_factory=lambda: UpliftConfig())


class RetrainRule(_Strict):
    """When ``churn monitor`` recommends ``churn train`` (docs/monitoring.md)."""

    auc_drop: float = Field(0.05, ge=0, description="matured ROC-AUC below the training run's by more")
    z: float = Field(
        2.0, ge=0, description="...and by more than z standard errors of the difference (Hanley-McNeil)"
    )
    top_features: int = Field(
        8, ge=0, description="drift on one of the champion's this many top features (mean |SHAP|)"
    )


class MonitoringConfig(_Strict):
    """Scores kept by `churn warn` and the checks of `churn monitor` (models/drift.py, docs/monitoring.md)."""

    retention_days: int = Field(400, gt=0, description="days of nightly scores kept (monitoring/scores)")
    store_features: bool = Field(True, description="keep every scored row's feature values")
    reference_rows: int = Field(20_000, gt=0, description="rows of the training reference (a sample)")
    psi_bins: int = Field(10, ge=2, description="reference quantile bins of the PSI")
    psi_alarm: float = Field(0.2, gt=0, description="PSI from which a feature (or the score) drifted")
    natural_factor: float = Field(
        1.5,
        ge=0,
        description="...or this times the PSI one training snapshot shows against the pooled reference "
        "(the shift the model already lived with: holidays in a window), whichever is higher",
    )
    p_value: float = Field(1e-3, gt=0, lt=1, description="two-sample test level; an alarm needs both")
    missing_alarm: float = Field(0.01, ge=0, le=1, description="missing share above the reference's by")
    out_of_range_alarm: float = Field(0.01, ge=0, le=1, description="share outside the catalogue's range")
    holidays: list[tuple[dt.date, dt.date]] = Field(
        default_factory=list,
        description="the operator's public holidays, [first, last] day each: a feature whose window is at "
        "least holiday_share holiday is expected to move, and its PSI shift is reported, not alarmed",
    )
    holiday_share: float = Field(0.25, gt=0, le=1, description="share of a window that makes it a holiday's")
    retrain: RetrainRule = RetrainRule()

    @field_validator("holidays")
    @classmethod
    def _spans(cls, value: list[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
        for first, last in value:
            if last < first:
                raise ValueError(f"holiday {first} .. {last} ends before it starts")
        return value


class Settings(_Strict):
    """The whole configuration. Paths are derived from ``workdir`` so one setting moves every output."""

    workdir: Path = Path(".")
    data: DataConfig = DataConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    validation: ValidationConfig = ValidationConfig()
    features: FeatureConfig | None = (
        None  # required by the CDR path; a customer table (source) has no snapshots
    )
    spark: SparkConfig = SparkConfig()
    feast: FeastConfig = FeastConfig()
    mlflow: MlflowConfig = MlflowConfig()
    training: TrainingConfig = TrainingConfig()
    serving: ServingConfig = ServingConfig()
    deploy: DeployConfig = DeployConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    warnings: WarningConfig = WarningConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    retention: RetentionConfig = RetentionConfig()
    config_path: Path | None = None
    source: CustomerTableConfig | None = None  # set: train on a customer table instead (docs/real-data.md)

    @model_validator(mode="after")
    def _cdr_or_source(self) -> Settings:
        if self.source is None and self.features is None:
            raise ValueError("features: is required (or set source: to train on a customer table)")
        if self.source is not None and self.source.registered_model:
            if (
                "registered_model" in self.mlflow.model_fields_set
                and self.mlflow.registered_model != self.source.registered_model
            ):
                raise ValueError("mlflow.registered_model and source.registered_model differ: set only one")
            self.mlflow = self.mlflow.model_copy(update={"registered_model": self.source.registered_model})
        return self

    # Derived locations -------------------------------------------------------------
    @property
    def landing_dir(self) -> Path:
        """The operator's export as delivered (phone numbers included): ingestion's input."""
        return self.workdir / "data" / "landing"

    @property
    def raw_dir(self) -> Path:
        """Ingested, validated, pseudonymised tables: everything downstream reads these."""
        return self.workdir / "data" / "raw"

    @property
    def truth_dir(self) -> Path:
        """The simulator's ground truth: never a feature, only for evaluation."""
        return self.workdir / "data" / "truth"

    @property
    def features_dir(self) -> Path:
        return self.workdir / "data" / "features"

    @property
    def feature_table(self) -> Path:
        return self.features_dir / "subscriber_features.parquet"

    @property
    def label_table(self) -> Path:
        return self.features_dir / "labels.parquet"

    @property
    def feast_dir(self) -> Path:
        return self.workdir / "data" / "feast"

    @property
    def reports_dir(self) -> Path:
        return self.workdir / "reports"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{(self.workdir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return self.workdir / "mlartifacts"

    @property
    def bentoml_home(self) -> Path:
        return self.workdir / self.deploy.bentoml_home

    @property
    def deployments_file(self) -> Path:
        """The deploy history and which Bento is current (``churn deploy`` / ``rollback``)."""
        return self.workdir / "deployments.json"

    @property
    def outcomes_dir(self) -> Path:
        """The ``work_order_outcomes`` landing table: one file per list date (the work-order system's export)."""
        return self.workdir / "data" / "outcomes" / "work_order_outcomes"

    @property
    def evaluations_dir(self) -> Path:
        """``churn evaluate``'s reports, one folder per list date or range."""
        return self.workdir / "evaluations"


def load_settings(path: str | os.PathLike | None = None, **overrides) -> Settings:
    """Read a YAML config (default: $CHURNWARN_CONFIG or configs/default.yaml).

    A relative ``workdir`` is taken relative to the repository root (:func:`project_root`), so the CLI, DVC and the
    BentoML server agree on where outputs live whatever their current directory.
    """
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).resolve()
    raw = yaml.safe_load(path.read_text()) or {}
    raw.update(overrides)
    settings = Settings.model_validate(raw)
    workdir = settings.workdir if settings.workdir.is_absolute() else (project_root() / settings.workdir)
    return settings.model_copy(update={"workdir": workdir.resolve(), "config_path": path})


class DerivedColumn(_Strict):
    """A column computed from the mapped ones by a DuckDB SQL expression (features/derived.py)."""

    sql: str = Field(min_length=1, description="a row-wise SQL expression over the mapped feature columns")
    type: Literal["numeric", "categorical"] | None = Field(
        None, description="numeric or categorical; None: from the expression's SQL type (text: categorical)"
    )


class UncertaintyConfig(_Strict):
    """How sure the held-out figure is: a bootstrap interval and repeated stratified cross-validation."""

    confidence: float = Field(0.95, gt=0, lt=1, description="level of the bootstrap intervals")
    bootstrap_resamples: int = Field(1000, ge=100, description="resamples of the held-out rows")
    cv_folds: int = Field(5, ge=2, description="folds of the repeated stratified cross-validation")
    cv_repeats: int = Field(2, ge=1, description="repeats of it (folds x repeats fits per candidate)")


class CustomerTableConfig(_Strict):
    """A customer-level table (one row per customer, a churn label): the real-data path.

    The mapping names the columns; everything else about the table (validation suite, candidates,
    tracking, registration, reasons) follows from it (``pipelines/customer_table.py``).
    """

    name: str = Field(description="short name of the table, used in run names and reports")
    path: Path = Field(
        description="CSV (optionally .gz) or Parquet file; relative paths are under the repository root"
    )
    id_column: str
    label_column: str
    positive_label: str | int | bool = Field(description="label value of a churner")
    negative_label: str | int | bool = Field(description="label value of a customer who stayed")
    numeric_columns: list[str] = []
    categorical_columns: list[str] = []
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share of a stratified random split")
    seed: int = 7
    registered_model: str | None = Field(
        None, description="registry name of the winner (default: mlflow.registered_model)"
    )
    derived_columns: dict[str, DerivedColumn] = Field(
        default_factory=dict,
        description="name -> SQL expression (or {sql, type}) over the mapped columns, computed by "
        "DuckDB for training and scoring alike (docs/real-data.md)",
    )
    uncertainty: UncertaintyConfig = UncertaintyConfig()

    @field_validator("derived_columns", mode="before")
    @classmethod
    def _sql_only(cls, value):
        """``name: "a / b"`` is short for ``name: {sql: "a / b"}``."""
        if isinstance(value, dict):
            return {k: {"sql": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _columns(self) -> CustomerTableConfig:
        features = [*self.numeric_columns, *self.categorical_columns]
        if not features:
            raise ValueError("source: map at least one numeric_columns or categorical_columns entry")
        named = [self.id_column, self.label_column, *features, *self.derived_columns]
        bad = [d for d in self.derived_columns if not d.isidentifier()]
        if bad:
            raise ValueError(f"source.derived_columns: names must be identifiers (letters, digits, _): {bad}")
        dupes = sorted({c for c in named if named.count(c) > 1})
        if dupes:
            raise ValueError(
                f"source: each column may be mapped once (id, label, numeric or categorical): {dupes}"
            )
        if self.positive_label == self.negative_label:
            raise ValueError("source: positive_label and negative_label must differ")
        return self

    @property
    def file(self) -> Path:
        return self.path if self.path.is_absolute() else project_root() / self.path

    @property
    def features(self) -> list[str]:
        return [*self.numeric_columns, *self.categorical_columns]


Settings.model_rebuild()
