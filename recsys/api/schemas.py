"""Request and answer shapes of the HTTP API (DESIGN.md), for validation and /openapi.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.answers import DEFAULT_MODE, K_MAX, MODES

Mode = Literal[MODES]  # type: ignore[valid-type]
BATCH_MAX = 100  # item ids in one POST /v1/similar


class Result(BaseModel):
    """One neighbour: its id, its score, then the item's catalogue metadata."""

    model_config = ConfigDict(extra="allow")
    item_id: str
    score: float


class SimilarAnswer(BaseModel):
    item_id: str
    version: str
    mode: Mode = Field(description="the mode that answered (visual when behaviour data is absent)")
    requested_mode: Mode
    note: str | None = Field(None, description="why the answering mode differs from the requested one")
    results: list[Result]


class SimilarRequest(BaseModel):
    """Many queries at once: item ids, or one raw vector of the index's dimension."""

    model_config = ConfigDict(extra="forbid")
    item_ids: list[str] | None = Field(None, min_length=1, max_length=BATCH_MAX)
    vector: list[float] | None = Field(None, min_length=1, max_length=4096)
    k: int = Field(10, ge=1, le=K_MAX)
    mode: Mode = DEFAULT_MODE
    exclude: list[str] = Field(default_factory=list, max_length=1000)
    category: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def one_query_kind(self) -> SimilarRequest:
        if (self.item_ids is None) == (self.vector is None):
            raise ValueError("give exactly one of item_ids or vector")
        return self


class BatchEntry(BaseModel):
    item_id: str | None = None
    error: str | None = Field(None, description="why this query has no results (unknown item)")
    results: list[Result]


class BatchAnswer(BaseModel):
    version: str
    mode: Mode
    requested_mode: Mode
    note: str | None = None
    queries: list[BatchEntry]


class ImageAnswer(BaseModel):
    version: str
    mode: Literal["visual"]
    model_id: str
    results: list[Result]


class Recommendation(BaseModel):
    model_config = ConfigDict(extra="allow")
    item_id: str
    score: float


class RecommendationsAnswer(BaseModel):
    user_id: str
    version: str
    known_user: bool | None = Field(None, description="false when the answer falls back to popular items")
    results: list[Recommendation]


class ItemSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    item_id: str


class ItemsAnswer(BaseModel):
    version: str
    total: int
    offset: int
    items: list[ItemSummary]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    version: str | None
    items: int | None = None
    behaviour: bool | None = None
    behaviour_note: str | None = Field(None, description="why behaviour and hybrid modes are unavailable")
    loaded_at: float | None = None
    reloads: int
    last_reload_failure: dict[str, Any] | None = None


class ReloadAnswer(BaseModel):
    reloaded: bool
    version: str | None
    previous: str | None


class ErrorAnswer(BaseModel):
    error: str
    message: str
