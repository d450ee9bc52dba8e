"""Response schemas of the churn-warning API (they also shape its OpenAPI spec)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str | None = None
    kind: str
    run_id: str
    bento: str | None = Field(None, description="the Bento tag served (`churn deploy`); null: the working tree")


class ReasonOut(BaseModel):
    code: str = Field(description="reason code, e.g. COMPETITOR_HOTLINE")
    feature: str
    value: float | str = Field(description="the subscriber's own feature value (text for a categorical column)")
    contribution: float = Field(description="SHAP contribution in log-odds; > 0 raises the risk")
    sentence: str
    action: str


class ActionOut(BaseModel):
    code: str
    text: str


class ChurnWarning(BaseModel):
    subscriber_id: str
    churn_probability: float | None = Field(None, ge=0, le=1, description="calibrated probability of churn "
                                            "within the label horizon")
    risk_tier: Literal["high", "medium", "low"] | None = Field(None, description="by warnings.high_risk / medium_risk")
    value_at_stake: float | None = Field(None, description="the subscriber's monthly value (CNY, ARPU by default)")
    expected_loss: float | None = Field(None, description="churn_probability x value_at_stake: what the list ranks by")
    vip_tier: str | None = Field(None, description="VIP tier by monthly value (diamond / gold / silver / mass)")
    model: ModelInfo
    reasons: list[ReasonOut] = []
    action: ActionOut | None = None
    error: str | None = Field(None, description="set instead of a score when the id cannot be scored")
