"""Request and response schemas of the churn-warning API (they also shape its OpenAPI spec).

A feature row's fields come from the feature catalogue: each feature is a required finite number
within the catalogue's range, so a missing column, a non-number, NaN/inf or an out-of-range value
is refused by validation (400, naming the row and the field) before anything is scored.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from features.catalogue import CATALOGUE


def openapi_nullable(schema: dict[str, Any]) -> None:
    """Publish optional fields the OpenAPI 3.0 way (``nullable: true``), as BentoML serves 3.0.2.

    Pydantic writes ``X | None`` as JSON Schema's ``anyOf: [X, {type: null}]``; BentoML's spec keeps
    only ``anyOf[0]`` of a route's top-level fields, so a null answer would break the published spec.
    Used as each model's ``json_schema_extra``, so it applies wherever the model appears."""
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf")
        if not options or {"type": "null"} not in options or len(options) != 2:
            continue
        (kept,) = [o for o in options if o != {"type": "null"}]
        rest = {k: v for k, v in prop.items() if k != "anyOf"}
        shape = {"allOf": [kept]} if "$ref" in kept else kept
        schema["properties"][name] = {**shape, **rest, "nullable": True}


class ApiModel(BaseModel):
    """A request or answer body: optional fields published as nullable (:func:`openapi_nullable`)."""

    model_config = ConfigDict(json_schema_extra=openapi_nullable)


def _past_utc(ts: dt.datetime) -> dt.datetime:
    """A timestamp in UTC (naive ones are read as UTC), refused when it lies in the future or has
    no UTC equivalent (an offset at the edge of the date range)."""
    try:
        ts = (ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("outside the range of dates once converted to UTC") from None
    if ts > dt.datetime.now(dt.UTC):
        raise ValueError("lies in the future")
    return ts


_ISO_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d")


def _iso_text(value: Any) -> Any:
    """Only an ISO 8601 date-time: pydantic also reads numbers, and strings of digits, as Unix seconds."""
    if not (isinstance(value, str) and _ISO_DATE_TIME.match(value)):
        raise ValueError("must be an ISO 8601 date-time such as 2026-06-01T00:00:00Z")
    return value


# An ISO 8601 date-time in UTC (naive: read as UTC), not in the future.
PastTimestamp = Annotated[dt.datetime, BeforeValidator(_iso_text), AfterValidator(_past_utc)]

Lang = Literal["en", "zh"]
Status = Literal["ok", "unknown", "stale"]
SubscriberId = Annotated[str, Field(min_length=1, max_length=128, description="subscriber id")]


def _feature_field(f) -> tuple:
    rng = f" Valid range: {'-inf' if f.lo is None else f.lo} .. {'inf' if f.hi is None else f.hi}."
    return (
        Annotated[
            float,
            Field(
                strict=True,
                allow_inf_nan=False,
                ge=f.lo,
                le=f.hi,
                description=f"{f.meaning} [{f.unit}], {f.window}.{rng}",
            ),
        ],
        ...,
    )


FeatureValues = create_model(
    "FeatureValues",
    __config__=ConfigDict(extra="forbid"),
    __doc__="One subscriber's feature values, every catalogue feature (docs/features.md), as numbers.",
    **{f.name: _feature_field(f) for f in CATALOGUE},
)


class FeatureRow(ApiModel):
    """A subscriber's features supplied by the caller (a system that holds its own data)."""

    model_config = ConfigDict(extra="forbid")
    subscriber_id: SubscriberId
    features: FeatureValues  # type: ignore[valid-type]
    feature_timestamp: PastTimestamp | None = Field(
        None,
        description="when the values were computed: an ISO 8601 date-time (UTC when it has no offset), "
        "not in the future; when given, rows older than serving.max_feature_age_days are refused (stale)",
    )


class ModelInfo(ApiModel):
    name: str
    version: str
    alias: str | None = None
    kind: str
    run_id: str
    bento: str | None = Field(
        None, description="the Bento tag served (`churn deploy`); null: the working tree"
    )


class ReasonOut(ApiModel):
    code: str = Field(description="reason code, e.g. COMPETITOR_HOTLINE")
    feature: str
    value: float | str = Field(
        description="the subscriber's own feature value (text for a categorical column)"
    )
    contribution: float = Field(description="SHAP contribution in log-odds; > 0 raises the risk")
    sentence: str
    action: str


class ActionOut(ApiModel):
    code: str
    text: str


class RecommendedAction(ApiModel):
    """The uplift model's best action for the subscriber (only when one is deployed: retention.policy uplift)."""

    code: str
    text: str
    expected_net_value: float = Field(
        description="estimated uplift x value_at_stake x retention.value_months - the action's cost (CNY)"
    )
    uplift: float = Field(description="estimated change in P(stay within the horizon) if contacted with it")
    model: str = Field(description="the uplift model, <registered name> v<version>")


class ChurnWarning(ApiModel):
    subscriber_id: str
    status: Status = Field(
        "ok",
        description="ok: scored; unknown: no features in the online store; stale: "
        "features older than serving.max_feature_age_days (no score for either)",
    )
    churn_probability: float | None = Field(
        None, ge=0, le=1, description="calibrated probability of churn within the label horizon"
    )
    risk_tier: Literal["high", "medium", "low"] | None = Field(
        None, description="by warnings.high_risk / medium_risk"
    )
    value_at_stake: float | None = Field(
        None, description="the subscriber's monthly value (CNY, ARPU by default)"
    )
    expected_loss: float | None = Field(
        None, description="churn_probability x value_at_stake: what the list ranks by"
    )
    vip_tier: str | None = Field(
        None, description="VIP tier by monthly value (diamond / gold / silver / mass)"
    )
    model: ModelInfo
    feature_timestamp: dt.datetime | None = Field(None, description="event time of the features scored (UTC)")
    reasons: list[ReasonOut] = []
    action: ActionOut | None = None
    recommended_action: RecommendedAction | None = Field(
        None,
        description="the action of highest expected net value by the deployed uplift model "
        "(retention.policy: uplift); null when none is deployed",
    )
    error: str | None = Field(None, description="set instead of a score when the id cannot be scored")


class ErrorOut(ApiModel):
    """The body of every 4xx/5xx answer the service writes itself."""

    error: str
    detail: list[dict] = []
