"""Response schemas of the churn-warning API (they also shape its OpenAPI spec)."""

from __future__ import annotations

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
    churn_probability: float | None = Field(None, ge=0, le=1)
    model: ModelInfo
    reasons: list[ReasonOut] = []
    action: ActionOut | None = None
    error: str | None = Field(None, description="set instead of a score when the id cannot be scored")
