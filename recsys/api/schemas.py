"""Request and answer shapes of the HTTP API (DESIGN.md), for validation and /openapi.json."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.answers import DEFAULT_MODE, K_MAX, MODES

Mode = Literal[MODES]  # type: ignore[valid-type]
BATCH_MAX = 100  # item ids in one POST /v1/similar
FILTER_HELP = ('catalogue conditions, all must hold: {"category": "shoes"} (equal), {"brand": ["a", "b"]} '
               '(any of), {"price": {"gte": 10, "lt": 50}} (range), {"colour": {"ne": "red"}} (not equal)')
GROUP_BY_HELP = "a catalogue column: at most one result (the best) per value"
DIVERSITY_HELP = "0 to 1: maximal-marginal-relevance trade-off on the visual vectors (0: off)"

# The shop-grade query parameters of GET routes (the same fields in POST bodies).
FilterParam = Annotated[str | None, Query(max_length=20_000, description="JSON: " + FILTER_HELP)]
GroupByParam = Annotated[str | None, Query(max_length=200, description=GROUP_BY_HELP)]
DiversityParam = Annotated[float, Query(ge=0.0, le=1.0, description=DIVERSITY_HELP)]


class Why(BaseModel):
    sources: dict[str, float] = Field(description="each source's part of the score (visual, behaviour, ...)")
    rule: str | None = Field(None, description="the business rule (rules.toml) that moved this item")


class Result(BaseModel):
    """One neighbour: its id, its score, why, then the item's catalogue metadata."""

    model_config = ConfigDict(extra="allow")
    item_id: str
    score: float
    why: Why


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
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)
    group_by: str | None = Field(None, max_length=200, description=GROUP_BY_HELP)
    diversity: float = Field(0.0, ge=0.0, le=1.0, description=DIVERSITY_HELP)

    @model_validator(mode="after")
    def one_query_kind(self) -> SimilarRequest:
        if (self.item_ids is None) == (self.vector is None):
            raise ValueError("give exactly one of item_ids or vector")
        return self


class SessionRequest(BaseModel):
    """An anonymous session, or "more like these, less like that"."""

    model_config = ConfigDict(extra="forbid")
    positive: list[str] = Field(min_length=1, max_length=BATCH_MAX, description="items liked or viewed")
    negative: list[str] = Field(default_factory=list, max_length=BATCH_MAX,
                                description="items to move away from")
    k: int = Field(10, ge=1, le=K_MAX)
    mode: Mode = DEFAULT_MODE
    exclude: list[str] = Field(default_factory=list, max_length=1000)
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)
    group_by: str | None = Field(None, max_length=200, description=GROUP_BY_HELP)
    diversity: float = Field(0.0, ge=0.0, le=1.0, description=DIVERSITY_HELP)


class SessionResult(Result):
    because: list[str] = Field(description="up to 3 positives that led to this item, the strongest first")


class SessionAnswer(BaseModel):
    version: str
    mode: Mode
    requested_mode: Mode
    note: str | None = None
    unknown: list[str] = Field(description="ids the version does not know (ignored)")
    results: list[SessionResult]


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
    because: list[str] = Field(default_factory=list,
                               description="up to 3 of the user's history items that led to it")
    why: Why


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
