"""The nightly pipeline: embed incrementally, build the index, fit behaviour, gate, publish, prune.

Work folder (`work_dir` in the config):
- `nightly.lock`: flock'ed for the whole run, so two runs never overlap (the second fails at once).
- `state.json`: `last_good` (the run whose embedding set the next run reuses, and the version it
  published) and `in_progress` (the run id, catalogue fingerprint and candidate versions of a run
  that has not finished). A run that dies keeps `in_progress`; the next run takes the same id, so
  the embed step resumes from the parts already written into `runs/<run_id>/embeddings/`.
- `runs/<run_id>/embeddings/`: one embedding set per run; only the last good run's and the
  latest run's are kept.
- `reports/<run_id>.json`: the run report (per stage: seconds and counts; every gate's value).

Nothing is published until every gate has passed: the index and behaviour are written as
unpublished store versions, and a failed gate deletes them (unless `keep_rejected`: then they are
listed in `state.json` `kept_rejected`) and leaves CURRENT alone.

A crash can leave what no bookkeeping tracks; a run first tidies the store: staging folders of dead
writers (`IndexStore.clean_stale_staging`), and versions built from this work folder's embedding sets
(their meta.json `embeddings.path` is under `runs/`) that are neither published nor tracked are
deleted (a resumed run builds its candidates again anyway).
"""

from __future__ import annotations

import logging
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from embeddings import faults
from embeddings.embedding_set import MANIFEST as EMBEDDING_MANIFEST
from jobs.errors import JobFailed
from jobs.nightly.config import NightlyConfig
from jobs.nightly.health import health_stage
from jobs.nightly.report import Rejected, RunReport, now
from jobs.nightly.state import read_state, run_lock, write_state
from recsys.errors import InputError as RecsysInputError

if TYPE_CHECKING:
    from index.loaded import LoadedIndex
    from index.store import IndexStore
    from recsys.behaviour_store import Behaviour
    from recsys.split import Split

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
RECALL_K = 10
# The offline gate's absolute floor: hybrid Recall@10 on the held-out window below this means a broken
# model whatever the shop (popular items alone reach several times more on any of our data sets).
FIRST_RUN_FLOOR = 0.02


class GateFailed(JobFailed):
    """A gate failed: nothing was published (exit code 1). `report` is the written run report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


# -- the run ---------------------------------------------------------------------------------------
def run_nightly(config: NightlyConfig) -> dict[str, Any]:
    """One nightly run; returns the report of a published run.

    Raises RunLocked when another run is going, GateFailed (with the report) when a gate failed;
    any other error leaves the run unfinished, to be resumed by the next run.
    """
    with run_lock(config.work_dir):
        return _run_locked(config)


def _run_locked(config: NightlyConfig) -> dict[str, Any]:
    from embeddings.runner import catalog_fingerprint
    from index.store import IndexStore

    work = config.work_dir
    state = read_state(work)
    store = IndexStore(config.store)
    store.clean_stale_staging()  # left by a crashed run or build
    catalog = _read_catalog(config)
    _remove_untracked(config, state, store)
    run, resumed = _start_run(state, catalog_fingerprint(catalog), config, store)
    write_state(work, state)
    faults.point("nightly:started")
    serving = store.current_version()
    report = RunReport(config, run["run_id"], resumed, serving)
    log.info("nightly %s: %s, serving %s, %d catalogue items", run["run_id"],
             "resuming an unfinished run" if resumed else "new run", serving or "nothing", len(catalog))
    try:
        candidate = _stages(config, catalog, run, state, store, report, serving)
        health_stage(config, store, candidate, serving, report)
        faults.point("nightly:gated")
        with report.stage("publish") as info:
            store.publish(candidate)
            faults.point("nightly:published")
            info["version"] = candidate
            info["pruned"] = store.prune(config.keep_versions)
    except Rejected as rejected:
        if config.keep_rejected:
            state["kept_rejected"] = state.get("kept_rejected", []) + run["candidates"]
        _discard_candidates(store, run, keep=config.keep_rejected)
        state.pop("in_progress", None)
        state["last_rejected"] = {"run_id": run["run_id"], "finished_at": now(),
                                  "gate": rejected.gate["name"]}
        write_state(work, state)
        _clean_runs(work, state, run["run_id"])
        data = report.finish("rejected", reason=str(rejected))
        raise GateFailed(f"gate {rejected.gate['name']} failed: {rejected}; nothing published, "
                         f"{serving or 'no version'} still serving (report {report.path})", data) from None
    except BaseException as exc:
        report.finish("failed", reason=f"{type(exc).__name__}: {exc}")
        raise
    state["last_good"] = {"run_id": run["run_id"], "embeddings": str(_embed_dir(work, run["run_id"])),
                          "version": candidate, "finished_at": now()}
    state.pop("in_progress", None)
    write_state(work, state)
    faults.point("nightly:recorded")
    _clean_runs(work, state, run["run_id"])
    return report.finish("published", published=candidate, serving_after=candidate)


def _read_catalog(config: NightlyConfig) -> pd.DataFrame:
    from embeddings.catalog import catalog_from_folder, read_catalog

    return read_catalog(config.catalog) if config.catalog else catalog_from_folder(config.images)


def _embed_dir(work: Path, run_id: str) -> Path:
    return work / RUNS_DIR / run_id / "embeddings"


def _start_run(state: dict[str, Any], fingerprint: str, config: NightlyConfig,
               store: IndexStore) -> tuple[dict[str, Any], bool]:
    """Resume the unfinished run when it had the same catalogue and model; else start a new one."""
    run = state.get("in_progress")
    same = run and (run.get("catalog"), run.get("model"), run.get("part_size")) == (
        fingerprint, config.model, config.part_size)
    if same:
        _discard_candidates(store, run, keep=False)  # built by the dead run; rebuilt below
        return run, True
    if run:
        log.info("nightly: the unfinished run %s had another catalogue or model; starting afresh",
                 run["run_id"])
        _discard_candidates(store, run, keep=False)
        shutil.rmtree(config.work_dir / RUNS_DIR / run["run_id"], ignore_errors=True)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
    run = {"run_id": run_id, "catalog": fingerprint, "model": config.model, "part_size": config.part_size,
           "started_at": now(), "candidates": []}
    state["in_progress"] = run
    return run, False


def _remove_untracked(config: NightlyConfig, state: dict[str, Any], store: IndexStore) -> None:
    """Versions a crash left untracked (committed, then the run died before recording them).

    A version built from this work folder's embedding sets that is not published, not a candidate
    of the unfinished run, not a kept rejected one, and not derived from a published version (a
    user's `behaviour fit` or `rules` on top of it) is deleted: whichever run built it, the run
    that resumes or replaces it builds its candidates again (`_start_run` discards them).
    """
    from index.errors import IndexLoadError
    from index.store import read_meta

    run = state.get("in_progress")
    published = _published(store)
    kept = [v for v in state.get("kept_rejected", []) if store.version_dir(v).is_dir()]
    if kept or "kept_rejected" in state:
        state["kept_rejected"] = kept
    tracked = published | set(kept) | set((run or {}).get("candidates", []))
    runs = (config.work_dir / RUNS_DIR).resolve()
    for version in store.version_ids():
        if version in tracked:
            continue
        try:
            meta = read_meta(store.version_dir(version))
        except IndexLoadError:
            continue
        source = Path(str((meta.get("embeddings") or {}).get("path", "")))
        if not source.is_relative_to(runs) or meta.get("base_version") in published:
            continue  # not the nightly's, or a user's version derived from a published one
        log.info("nightly: removing %s, an unpublished version a dead run left untracked", version)
        shutil.rmtree(store.version_dir(version), ignore_errors=True)


def _published(store: IndexStore) -> set[str | None]:
    return set(store.history()) | {store.current_version()}


def _discard_candidates(store: IndexStore, run: dict[str, Any], keep: bool) -> None:
    """Delete the run's unpublished versions (a published one is never touched)."""
    published = _published(store)
    if not keep:
        for version in run.get("candidates", []):
            if version not in published and store.version_dir(version).is_dir():
                shutil.rmtree(store.version_dir(version))
    run["candidates"] = []


def _add_candidate(config: NightlyConfig, state: dict[str, Any], run: dict[str, Any], version: str) -> None:
    run["candidates"].append(version)
    write_state(config.work_dir, state)  # so a crash from here on can clean it up


def _clean_runs(work: Path, state: dict[str, Any], run_id: str) -> None:
    """Keep the embedding sets of the last good run and of this run; delete the others."""
    keep = {run_id, (state.get("last_good") or {}).get("run_id")}
    runs = work / RUNS_DIR
    for folder in sorted(runs.iterdir()) if runs.is_dir() else []:
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def _stages(config: NightlyConfig, catalog: pd.DataFrame, run: dict[str, Any], state: dict[str, Any],
            store: IndexStore, report: RunReport, serving: str | None) -> str:
    """Embed, index, behaviour and their gates; returns the version to publish."""
    from index.store import read_meta

    embed_dir = _embed_dir(config.work_dir, run["run_id"])
    with report.stage("embed") as info:
        manifest = _embed(config, catalog, embed_dir, state, info)
        rate = float(manifest.get("failure_rate", 0.0))
        counts = manifest["counts"]
        report.gate("failure_rate", rate <= config.max_failure_rate, rate, config.max_failure_rate,
                    f"{counts['failed']} of {counts['total']} items failed ({rate:.1%}; limit "
                    f"{config.max_failure_rate:.1%})")
    faults.point("nightly:embedded")

    with report.stage("index") as info:
        candidate, recall = _build(config, embed_dir, store)
        faults.point("nightly:built")  # committed, not yet recorded as a candidate
        _add_candidate(config, state, run, candidate)
        meta = read_meta(store.version_dir(candidate))
        info.update(version=candidate, factory=meta["factory"], count=meta["count"], recall_at_10=recall)
        report.gate("index_recall", recall >= config.target_recall, recall, config.target_recall,
                    f"measured recall@10 {recall:.4f}, target {config.target_recall:.4f} ({meta['factory']})")
        served = _item_ids(store, serving) if serving else set()
        if served:
            missing = len(served - _item_ids(store, candidate))
            drop = missing / len(served)
            report.gate("item_drop", drop <= config.max_item_drop, round(drop, 6), config.max_item_drop,
                        f"{missing} of the {len(served)} serving items missing from the candidate's "
                        f"{meta['count']} ({drop:.1%}; limit {config.max_item_drop:.1%})")
        else:
            report.gate("item_drop", True, None, config.max_item_drop, "no serving version to compare with")

    faults.point("nightly:indexed")
    if config.events is None:
        return candidate
    from recsys.events import load_events

    with report.stage("behaviour") as info:
        events = load_events(config.events)  # read once: the fit and the offline gate share it
        candidate = _fit_behaviour(config, store, candidate, state, run, info, events)
    faults.point("nightly:fitted")
    with report.stage("offline_eval") as info:
        _offline_gate(report, info, store, candidate, serving, events, config.recall_margin)
    return candidate


def _item_ids(store: IndexStore, version: str) -> set[str]:
    """The item ids of a version's index (its items.parquet)."""
    from index.loaded import ITEMS_FILE

    path = store.version_dir(version) / ITEMS_FILE
    return set(pd.read_parquet(path, columns=["item_id"])["item_id"].astype(str))


def _embed(config: NightlyConfig, catalog: pd.DataFrame, embed_dir: Path, state: dict[str, Any],
           info: dict[str, Any]) -> dict[str, Any]:
    """The run's embedding set, reusing the last good run's vectors of unchanged images."""
    from embeddings.engines import embed
    from embeddings.runner import EmbedFailed, EmbedOptions

    previous = (state.get("last_good") or {}).get("embeddings")
    previous_dir = Path(previous) if previous and (Path(previous) / EMBEDDING_MANIFEST).is_file() else None
    options = EmbedOptions(batch_size=config.batch_size, workers=config.workers, device=config.device,
                           part_size=config.part_size, max_failure_rate=config.max_failure_rate,
                           previous=previous_dir, progress=False)
    try:
        manifest = embed(catalog, embed_dir, config.model, options, engine=config.engine,
                         runtime=config.runtime, source=str(config.catalog or config.images))
    except EmbedFailed as exc:  # the failure-rate gate below reads the same report
        manifest = exc.report
    info.update(manifest["counts"])
    info["previous"] = str(previous_dir) if previous_dir else None
    return manifest


def _build(config: NightlyConfig, embed_dir: Path, store: IndexStore) -> tuple[str, float]:
    """An unpublished version and its measured recall@10 (a target above 1 is measured against 1)."""
    from index.build import build_version
    from index.errors import RecallNotMet
    from index.factory import parse_size
    from index.store import read_meta

    try:
        version = build_version(embed_dir, store.root, config.factory, parse_size(config.memory_budget),
                                min(config.target_recall, 1.0), publish=False, keep=config.keep_versions)
    except RecallNotMet as exc:  # kept unpublished in the store; the gate rejects it
        return exc.version, float(exc.recall)
    return version, float(read_meta(store.version_dir(version))["recall@10"])


def _fit_behaviour(config: NightlyConfig, store: IndexStore, candidate: str, state: dict[str, Any],
                   run: dict[str, Any], info: dict[str, Any], events: pd.DataFrame) -> str:
    """A new unpublished version: the candidate's index plus behaviour; the index-only one is dropped."""
    from index.store import load_version
    from recsys.behaviour_store import FitOptions, fit_behaviour, write_version

    loaded = load_version(store.root, candidate, mmap=False)
    behaviour = fit_behaviour(events, loaded, FitOptions(model=config.behaviour_model))
    version = write_version(store.root, candidate, behaviour, str(config.events), publish=False)
    _add_candidate(config, state, run, version)
    shutil.rmtree(store.version_dir(candidate))  # never published; its files are linked into `version`
    info.update(version=version, events=len(events), model=behaviour.manifest["model"],
                hybrid_weight=behaviour.manifest["hybrid_weight"])
    return version


def _offline_gate(report: RunReport, info: dict[str, Any], store: IndexStore, candidate: str,
                  serving: str | None, events: pd.DataFrame, margin: float) -> None:
    """The offline-recall gate. Fails closed: a candidate whose saved models cannot be read or scored
    is rejected. Passes unmeasured only when the events are too few to hold a window out. A first
    run (nothing serving, or nothing serving with behaviour) must reach FIRST_RUN_FLOOR."""
    from recsys.split import split_events

    try:
        window = split_events(events, "temporal", 0.2)
    except RecsysInputError as exc:  # too few events to hold a window out: like the behaviour fit, go on
        report.gate("offline_recall", True, None, None, f"not measured: {exc}")
        return
    try:
        new, old = _offline_recalls(store, candidate, serving, window)
    except Exception as exc:  # noqa: BLE001 - anything unexpected rejects the candidate
        report.gate("offline_recall", False, None, None,
                    f"candidate {candidate} could not be scored: {type(exc).__name__}: {exc}")
        return
    info.update(candidate_recall_at_10=new, serving_recall_at_10=old)
    if old is None:
        report.gate("offline_recall", new >= FIRST_RUN_FLOOR, new, FIRST_RUN_FLOOR,
                    f"hybrid Recall@{RECALL_K} {new:.4f}; no serving behaviour to compare with, absolute "
                    f"floor {FIRST_RUN_FLOOR}")
        return
    floor = round(max(old - margin, FIRST_RUN_FLOOR), 6)
    report.gate("offline_recall", new >= floor, new, floor,
                f"hybrid Recall@{RECALL_K} {new:.4f} against {old:.4f} serving (margin {margin}, "
                f"absolute floor {FIRST_RUN_FLOOR})")


def _offline_recalls(store: IndexStore, candidate: str, serving: str | None,
                     window: Split) -> tuple[float, float | None]:
    """Hybrid Recall@10 of the candidate's and the serving version's own saved models (behaviour
    model, visual neighbour lists, blend, cold donors: what each version serves) on the held-out
    window (`window`, a temporal Split): histories from the events before it, answers over each
    version's showable catalogue, held-out items its catalogue still has. Nothing is refitted, so a
    candidate whose files are broken fails here. The candidate's models were fitted on all the events,
    the window included: its figure is an upper bound, which is why the gate keeps a margin.

    Raises whatever reading or scoring the candidate raises; the serving version's figure is None
    when it has no (readable) behaviour data."""
    from index.store import load_version
    from recsys.behaviour_store import load_behaviour

    new_loaded = load_version(store.root, candidate, mmap=False)
    catalogue = set(new_loaded.items["item_id"].astype(str))
    new = _hybrid_recall(window, new_loaded, load_behaviour(Path(new_loaded.path)), catalogue)
    if serving is None:
        return new, None
    old_loaded = load_version(store.root, serving, mmap=False)
    try:
        old_behaviour = load_behaviour(Path(old_loaded.path))
    except RecsysInputError as exc:  # no or unreadable behaviour data: compare with the floor only
        log.warning("offline gate: serving version %s has no usable behaviour (%s)", serving, exc)
        return new, None
    return new, _hybrid_recall(window, old_loaded, old_behaviour, catalogue)


def _hybrid_recall(window: Split, loaded: LoadedIndex, behaviour: Behaviour, catalogue: set[str]) -> float:
    """Recall@10 of `behaviour.hybrid()` as the service answers: the same recent-weighted histories,
    seen items dropped, only items of `catalogue` that the version may show (in its index, in stock)."""
    from recsys.interactions import from_events
    from recsys.metrics import recall_at_k

    hybrid = behaviour.hybrid()
    space = hybrid.item_ids
    in_space = set(space)
    history_events = window.train[window.train.item_id.isin(in_space)]
    if len(history_events) == 0:
        raise RecsysInputError("no history events over the version's items")
    half_life = behaviour.manifest.get("recency_half_life_days") or None
    histories = from_events(history_events, space, half_life)
    items = loaded.items
    showable = pd.Index(space).isin(list(set(items["item_id"].astype(str)) & catalogue))
    if "in_stock" in items.columns:
        stock = items.set_index(items["item_id"].astype(str))["in_stock"].reindex(space).fillna(False)
        showable &= stock.astype(bool).to_numpy()
    # items without an event up to the window's end (arrived since) did not exist in it: a list that
    # shows them (new items promoted) is not marked down for it
    showable &= pd.Index(space).isin(pd.concat([window.train.item_id, window.test.item_id]).unique())
    position = {item: i for i, item in enumerate(space)}
    users = histories.user_index()
    relevant: dict[int, set[int]] = {}
    for user, item in zip(window.test.user_id, window.test.item_id):
        u, i = users.get(user), position.get(item)
        if u is not None and i is not None and showable[i]:
            relevant.setdefault(u, set()).add(i)
    relevant = {u: rel - set(histories.matrix[u].indices) for u, rel in relevant.items()}
    relevant = {u: rel for u, rel in relevant.items() if rel}
    if not relevant:
        raise RecsysInputError("no held-out events of known users on showable items")
    rows = np.array(sorted(relevant))
    recalls = []
    for start in range(0, len(rows), 512):
        batch = rows[start:start + 512]
        scores = hybrid.score_histories(histories.recent[batch])
        if not np.isfinite(scores).all():
            raise ValueError("the hybrid gave non-finite scores")
        seen = histories.matrix[batch].tocoo()
        scores[seen.row, seen.col] = -np.inf
        scores[:, ~showable] = -np.inf
        for row, u in enumerate(batch):
            top = hybrid._top(scores[row], RECALL_K)[0]
            recalls.append(recall_at_k([position[str(i)] for i in top], relevant[u], RECALL_K))
    return round(float(np.mean(recalls)), 6)
