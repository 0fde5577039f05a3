"""`recsys bench soak`: the server under steady load for minutes while new versions keep arriving,
into BENCHMARKS.md ("## Soak").

A synthetic index is built and published (`--store` keeps it for the next run), `recsys serve` runs
in its own process, and `wrk` asks for the similar items of random items at `--connections` for
`--duration` seconds. Every `--every` seconds a new version is published underneath (derived from
the serving one: its files hard-linked, one small file of its own, so each publish is a real new
version id that the server must load and swap in). Reported: every failed request (connect, read,
write, timeout, non-2xx), the versions the server swapped to, and the server's resident memory
sampled each second (first and last minute, peak, and the trend in MB per minute). Then
`--unknown-users N` distinct users the version does not know ask for 200 items each (all get the same
list; above the cache's `cache_max_k` it is not kept, so each is answered afresh), with the server's
memory before and after (the store gets behaviour data from synthetic events first, if it has none).

Each measurement owns its part of the section: a run without `--unknown-users` replaces the soak
figures, a run with it replaces only the "### Unknown users" part (its own soak, which warms the server
first, is summed up there), so a short run for the strangers keeps the long soak's figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jobs.bench.api import lua_script, stop, synthetic_embeddings, wait_ready
from jobs.bench.markdown import write_section
from jobs.errors import JobFailed, UsageError

if TYPE_CHECKING:
    from index.store import IndexStore

SECTION = "## Soak"
UNKNOWN = "### Unknown users"
KEEP_VERSIONS = 4  # the server may still be loading an older one when the next is published


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("soak", help="minutes of load while versions are published (needs wrk)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--duration", type=int, default=300, help="seconds of load")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between publishes")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--store", type=Path, default=None,
                        help="reuse (or keep) the synthetic store here instead of a temporary folder")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--port", type=int, default=8766)
    # 0 by default: fitting behaviour for a 100,000-item store took over 25 minutes on 2 busy cores.
    parser.add_argument("--unknown-users", type=int, default=0,
                        help="after the soak: distinct unknown users at k=200 (memory before, after); "
                             "written in its own part of the section, the soak figures kept")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from index.build import build_version
    from index.store import IndexStore

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the sampler asks /readyz every second
    if shutil.which("wrk") is None:
        raise UsageError("recsys bench soak needs wrk on the PATH (Debian: apt-get install -y wrk)")
    if args.items < 100 or args.duration < 60 or args.every <= 0 or args.connections < 1:
        raise UsageError("--items at least 100, --duration at least 60, --every and --connections above 0")
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    store = IndexStore(args.store or work / "store")
    try:
        if store.current_version() is None:
            build_version(synthetic_embeddings(work / "set", args.items, args.dim), store.root, publish=True)
        elif (count := int(store.versions()[-1]["count"])) != args.items:
            raise UsageError(f"--store {store.root}: holds a {count}-item index, not {args.items}")
        fit_seconds = None
        if args.unknown_users and not (store.version_dir(store.current_version()) / "behaviour").is_dir():
            started = time.perf_counter()
            _fit_behaviour(store, args.items)
            fit_seconds = time.perf_counter() - started
        result = _soak(args, store, work)
        result["fit_seconds"] = fit_seconds
    finally:
        store.prune(keep=2)
        shutil.rmtree(work, ignore_errors=True)
    print(_write(args, result))
    if result["failed"]:
        raise JobFailed(f"{result['failed']} requests failed during the soak")
    return 0


def _fit_behaviour(store: IndexStore, items: int) -> None:
    """Behaviour data for the user route: cooccurrence over synthetic events (1,000 users, 20 views
    each, over the first tenth of the items), published as a version derived from the serving one.
    1,000 users, not more: validation ranks each of them over every item once per setting it tries,
    and what an unknown user gets (the popular items) needs no more."""
    import pandas as pd

    from index.store import load_version
    from recsys.behaviour_store import FitOptions, fit_behaviour, write_version

    rng = np.random.default_rng(0)
    users, per_user = 1_000, 20
    events = pd.DataFrame({
        "user_id": np.repeat([f"user{u}" for u in range(users)], per_user),
        "item_id": [f"item{i:07d}" for i in rng.integers(0, max(items // 10, 100), users * per_user)],
        "timestamp": np.sort(rng.integers(1_700_000_000, 1_700_000_000 + 30 * 86_400, users * per_user)),
        "event": "view", "weight": 1.0})
    base = store.current_version()
    behaviour = fit_behaviour(events, load_version(store.root, base, mmap=False),
                              FitOptions(model="cooc", hybrid_weight=0.5, recency_half_life_days=0))
    write_version(store.root, base, behaviour, "synthetic soak events", publish=True)


def _unknown_users(base: str, pid: int, count: int) -> dict:
    """`count` distinct unknown users at k=200 (8 client threads); the server's RSS before and after."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    before = _rss_mib(pid)
    failed = 0
    with httpx.Client(base_url=base, timeout=30) as client:
        def ask(n: int) -> bool:
            answer = client.get(f"/v1/users/soak-stranger-{n}/recommendations", params={"k": 200})
            return answer.status_code == 200

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            failed = sum(not ok for ok in pool.map(ask, range(count)))
        seconds = time.perf_counter() - started
    return {"count": count, "before": before, "after": _rss_mib(pid), "failed": failed, "seconds": seconds}


class Sampler(threading.Thread):
    """Every second: the server's resident memory (/proc) and the version /readyz names."""

    def __init__(self, pid: int, base: str) -> None:
        super().__init__(daemon=True)
        self.pid, self.base = pid, base
        self.stop = threading.Event()
        self.rss: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self.versions: list[str] = []

    def run(self) -> None:
        import httpx

        start = time.monotonic()
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while not self.stop.wait(1.0):
                self.rss.append((time.monotonic() - start, _rss_mib(self.pid)))
                try:
                    version = client.get("/readyz").json().get("version")
                except httpx.HTTPError:
                    continue
                if version and (not self.versions or self.versions[-1] != version):
                    self.versions.append(version)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _publish_new(store: IndexStore, n: int) -> str:
    """A new version derived from the serving one (files hard-linked, one of its own), published."""
    with store.write_version(base=store.current_version()) as writer:
        writer.file("soak.txt").write_text(f"soak publish {n}\n")
        writer.commit({})
    store.publish(writer.version)
    store.prune(keep=KEEP_VERSIONS)
    return writer.version


def _soak(args: argparse.Namespace, store: IndexStore, work: Path) -> dict:
    script = work / "similar.lua"
    script.write_text(lua_script("similar", args.items))
    base = f"http://127.0.0.1:{args.port}"
    env = {k: v for k, v in os.environ.items() if k not in ("RECSYS_ADMIN_TOKEN", "RECSYS_API_TOKEN")}
    with open(work / "serve.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "jobs", "serve", "--store", str(store.root), "--port", str(args.port),
             "--reload-interval", "0.5", "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        first = wait_ready(base, server, timeout=600)["version"]
        sampler = Sampler(server.pid, base)
        sampler.start()
        load_before = os.getloadavg()[0]
        wrk = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "5s", "-s",
             str(script), base + "/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        published, started = [], time.monotonic()
        while wrk.poll() is None:
            due = started + args.every * (len(published) + 1)
            if due > started + args.duration - args.every / 2:  # leave the last swap time to finish
                break
            time.sleep(max(0.0, due - time.monotonic()))
            published.append(_publish_new(store, len(published) + 1))
        out, err = wrk.communicate(timeout=args.duration + 120)
        load_after = os.getloadavg()[0]
        sampler.stop.set()
        sampler.join(10)
        import httpx

        metrics = httpx.get(base + "/metrics", timeout=5).text
        strangers = _unknown_users(base, server.pid, args.unknown_users) if args.unknown_users else None
    finally:
        stop(server)
    match = re.search(r"RESULT (\{.*\})", out)
    if wrk.returncode != 0 or match is None:
        raise JobFailed(f"wrk failed ({wrk.returncode}): {out[-500:]} {err[-500:]}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["failed"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    served = [v for v in sampler.versions if v != first]
    result.update(first=first, published=published, swapped=[v for v in published if v in served],
                  rss=sampler.rss, load=(load_before, load_after), strangers=strangers,
                  reload_failures=_metric(metrics, 'recsys_reloads_total{result="failure"}'))
    return result



def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def _write(args: argparse.Namespace, result: dict) -> str:
    """The run's figures into its part of the section (module docstring); returns them."""
    soak, strangers = _section(args.out)
    if args.unknown_users:
        strangers = _strangers_report(args, result)
        soak = soak or _report(args, result)
    else:
        soak = _report(args, result)
    write_section(args.out, SECTION, soak.strip() + ("\n\n" + strangers.strip() if strangers else ""))
    return _report(args, result) + ("\n" + _strangers_report(args, result) if args.unknown_users else "")


def _section(path: Path) -> tuple[str, str]:
    """The soak figures and the unknown-users part now in the section of `path` ("" where none)."""
    text = Path(path).read_text() if Path(path).exists() else ""
    match = re.search(rf"^{re.escape(SECTION)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if match is None:
        return "", ""
    soak, _, strangers = match.group(1).partition(UNKNOWN)
    return soak.strip(), (UNKNOWN + strangers).strip() if strangers else ""


def _command(args: argparse.Namespace) -> str:
    return (f"nice -n 0 recsys bench soak --items {args.items} --dim {args.dim} "
            f"--duration {args.duration} --every {args.every:g} --connections {args.connections}"
            + (f" --unknown-users {args.unknown_users}" if args.unknown_users else ""))


def _strangers_report(args: argparse.Namespace, r: dict) -> str:
    u = r["strangers"]
    mib = np.array([m for _, m in r["rss"]])
    fitted = f"fitted here in {r['fit_seconds']:.0f} s, validation included" if r.get("fit_seconds") \
        else "already in the store"
    return f"""{UNKNOWN}

`{_command(args)}` (jobs/bench/soak.py): the server and load above over a version with behaviour data
(synthetic: 1,000 users with 20 views each over the first tenth of the items, `_fit_behaviour`; {fitted})
for {args.duration} s ({r['requests']:,} requests, {r['failed']} failed; {len(r['swapped'])} of
{len(r['published'])} versions published seen served; resident memory peak {mib.max():.0f} MiB), then
{u['count']:,} distinct user ids the version does not know asked for 200 items each
(`GET /v1/users/{{id}}/recommendations?k=200`, 8 client threads, {u['seconds']:.1f} s, {u['failed']} failed).
Every unknown user gets the same list (the popular items); at k=200 (above the cache's `cache_max_k`,
100) it is not kept, so nothing per user stays behind.

| unknown users | k | RSS before MiB | RSS after MiB | growth MiB | target |
|---:|---:|---:|---:|---:|---|
| {u['count']:,} | 200 | {u['before']:.0f} | {u['after']:.0f} | **{u['after'] - u['before']:+.0f}** | \
at most 150 MB (143 MiB) |
"""


def _report(args: argparse.Namespace, r: dict) -> str:
    times = np.array([t for t, _ in r["rss"]])
    mib = np.array([m for _, m in r["rss"]])
    first_min, last_min = mib[times <= 60], mib[times >= times.max() - 60]
    slope = float(np.polyfit(times / 60, mib, 1)[0]) if len(mib) > 2 else float("nan")
    after_warmup = times >= 60
    late_slope = float(np.polyfit(times[after_warmup] / 60, mib[after_warmup], 1)[0]) \
        if after_warmup.sum() > 2 else float("nan")
    command = _command(args)
    errors = "/".join(str(r[k]) for k in ("connect", "read", "write", "timeout", "status"))
    return f"""`{command}` (jobs/bench/soak.py): `recsys serve` on loopback over a {args.items:,}-item
synthetic index (dim {args.dim}), `wrk -t1 -c{args.connections}` asking GET similar of random items for
{args.duration} s, while a new version (derived from the serving one: files hard-linked, a file of its own)
was published every {args.every:g} s. The client, the server and the publisher share this machine's
{os.cpu_count()} cores ({platform.processor() or platform.machine()}); load average {r['load'][0]:.1f}
before, {r['load'][1]:.1f} after.

| requests | req/s | p50 ms | p99 ms | max ms | failed (connect/read/write/timeout/non-2xx) |
|---:|---:|---:|---:|---:|---|
| {r['requests']:,} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.1f} | {r['p99_us'] / 1000:.1f} | \
{r['max_us'] / 1000:.0f} | **{r['failed']}** ({errors}) |

- Versions published during the run: {len(r['published'])}; seen served by /readyz (sampled each
  second): {len(r['swapped'])}; failed reloads (`recsys_reloads_total{{result="failure"}}`):
  {r['reload_failures']:.0f}.
- Server resident memory (VmRSS, each second): first minute median {np.median(first_min):.0f} MiB, last
  minute median {np.median(last_min):.0f} MiB, peak {mib.max():.0f} MiB; trend {slope:+.1f} MiB/min over
  the whole run, {late_slope:+.1f} MiB/min after the first minute.
"""
