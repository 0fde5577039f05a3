"""The serving version's catalogue health report (recsys/api/health_reports.py finds it):
`GET /v1/health/report` is the report page itself (health.html, plots inline), `GET
/v1/health/summary` its counts as JSON (what /ui links and /metrics exports). 404 when there is
none for the version being served."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import FileResponse

from recsys.api.deps import CurrentSnapshot
from recsys.api.errors import ApiError
from recsys.api.health_reports import HealthReport, HealthReports
from recsys.api.responses import JSONBytes
from recsys.api.schemas import ErrorAnswer

router = APIRouter(prefix="/v1/health", tags=["health"])

REPORT_PATH = "/v1/health/report"


class HealthSummary(BaseModel):
    version: str
    report: str
    modified: float
    items: int | None
    duplicate_groups: int
    duplicate_items: int
    placeholders: int
    placeholder_items: int
    failures: int | None
    failures_by_type: dict[str, int]
    cold_items: int | None
    drift: dict[str, Any] | None


async def _report(request: Request, version: str) -> HealthReport:
    reports: HealthReports = request.app.state.health_reports
    report = await anyio.to_thread.run_sync(reports.latest, version)
    if report is None:
        raise ApiError(404, reports.missing(version), code="no_report")
    return report


@router.get("/report", response_class=FileResponse,
            responses={200: {"content": {"text/html": {}}}, 404: {"model": ErrorAnswer}})
async def report_page(request: Request, snapshot: CurrentSnapshot) -> FileResponse:
    """The newest health report on the serving version, as its HTML page."""
    report = await _report(request, snapshot.version)
    if not report.html_path.is_file():
        raise ApiError(404, f"{report.html_path}: not written (yet)", code="no_report")
    return FileResponse(report.html_path, media_type="text/html; charset=utf-8")


@router.get("/summary", response_model=HealthSummary, responses={404: {"model": ErrorAnswer}})
async def summary(request: Request, snapshot: CurrentSnapshot) -> JSONBytes:
    """The counts of the newest health report on the serving version, and where to read it."""
    report = await _report(request, snapshot.version)
    return JSONBytes({**report.summary, "report": REPORT_PATH})
