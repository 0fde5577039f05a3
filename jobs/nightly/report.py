"""The nightly run report: per stage its seconds and counts, every gate's value, the outcome;
written to `work_dir/reports/<run_id>.json`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from embeddings.files import atomic_write_json
from jobs.nightly.config import NightlyConfig, as_dict

log = logging.getLogger(__name__)

REPORTS_DIR = "reports"


class Rejected(Exception):
    """A gate failed; carries the gate's record."""

    def __init__(self, gate: dict[str, Any]) -> None:
        super().__init__(gate["detail"])
        self.gate = gate


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the report ------------------------------------------------------------------------------------
class RunReport:
    """Collects stages and gates, logs one line per stage, writes `reports/<run_id>.json`."""

    def __init__(self, config: NightlyConfig, run_id: str, resumed: bool, serving: str | None) -> None:
        self.path = config.work_dir / REPORTS_DIR / f"{run_id}.json"
        self.started = time.perf_counter()
        self.data: dict[str, Any] = {
            "run_id": run_id, "status": "running", "resumed": resumed, "started_at": now(),
            "config": as_dict(config), "serving_before": serving, "serving_after": serving,
            "published": None, "reason": None, "stages": [], "gates": [],
        }

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a stage; the yielded dict takes its counts. Logs one line whatever the outcome."""
        info: dict[str, Any] = {"name": name, "status": "running"}
        self.data["stages"].append(info)
        tick = time.perf_counter()
        try:
            yield info
            info["status"] = "ok"
        except Rejected:
            info["status"] = "rejected"
            raise
        except BaseException as exc:
            info["status"] = "error"
            info["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            info["seconds"] = round(time.perf_counter() - tick, 3)
            details = ", ".join(f"{k} {v}" for k, v in info.items()
                                if k not in ("name", "status", "seconds", "error"))
            log.info("nightly %s: %s %s in %.1fs%s", self.data["run_id"], name, info["status"],
                     info["seconds"], f" ({details})" if details else "")

    def gate(self, name: str, passed: bool, value: Any, limit: Any, detail: str) -> None:
        """Record a gate; a failed one stops the run (raises Rejected)."""
        gate = {"name": name, "passed": bool(passed), "value": value, "limit": limit, "detail": detail}
        self.data["gates"].append(gate)
        log.info("nightly %s: gate %s %s: %s", self.data["run_id"], name, "passed" if passed else "FAILED",
                 detail)
        if not passed:
            raise Rejected(gate)

    def finish(self, status: str, **fields: Any) -> dict[str, Any]:
        self.data.update(status=status, finished_at=now(),
                         seconds=round(time.perf_counter() - self.started, 3), **fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.data, self.path)
        self.data["report_path"] = str(self.path)
        return self.data
