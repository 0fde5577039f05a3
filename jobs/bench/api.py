"""`recsys bench api`: load test of the HTTP API on loopback, into BENCHMARKS.md ("## API" and
"## API, shop-grade requests").

A 100,000-item index of synthetic clustered unit vectors is built and published, `recsys serve`
runs in its own process, and `wrk` (a separate client process on the same cores) asks for the
similar items of random items at concurrency 1, 16 and 64; then again at each level while another
version is published underneath, counting every failed request; then the shop-grade requests
(filtered GET similar, POST /v1/recommend) at concurrency 16. `--shop-only` runs only those.
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
import time
from pathlib import Path

import pandas as pd

from jobs.bench.markdown import write_section
from jobs.errors import JobFailed, UsageError

SECTION = "## API"
SHOP_SECTION = "## API, shop-grade requests"

# wrk request functions, one per scenario; `{items}` is the catalogue size. The filters are over the
# synthetic catalogue's `bucket` column (item number modulo 100): `lt 10` matches 10% of the items,
# `= 0` matches 1%.
SCENARIOS = {
    "similar": """
request = function()
  return wrk.format("GET", string.format("/v1/items/item%07d/similar?k=10", math.random(0, {items} - 1)))
end""",
    "filter 10%": """
request = function()
  return wrk.format("GET", string.format(
    "/v1/items/item%07d/similar?k=10&filter=%%7B%%22bucket%%22%%3A%%7B%%22lt%%22%%3A10%%7D%%7D",
    math.random(0, {items} - 1)))
end""",
    "filter 1%": """
request = function()
  return wrk.format("GET", string.format(
    "/v1/items/item%07d/similar?k=10&filter=%%7B%%22bucket%%22%%3A0%%7D", math.random(0, {items} - 1)))
end""",
    "session, 5 positives": """
request = function()
  local ids = {{}}
  for j = 1, 5 do ids[j] = string.format('"item%07d"', math.random(0, {items} - 1)) end
  local body = '{{"positive": [' .. table.concat(ids, ",") .. '], "k": 10}}'
  return wrk.format("POST", "/v1/recommend", {{["Content-Type"] = "application/json"}}, body)
end""",
}
SHOP_CONCURRENCY = 16  # issue 13's targets are at 16 connections
DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_script(scenario: str, items: int) -> str:
    return SCENARIOS[scenario].format(items=items) + DONE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("api", help="load test GET similar on loopback (needs wrk)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--concurrency", default="1,16,64", help="connections, comma-separated")
    parser.add_argument("--reload-duration", type=int, default=30,
                        help="seconds of each run during which a new version is published")
    parser.add_argument("--store", type=Path, default=None,
                        help="reuse (or keep) the synthetic store here instead of a temporary folder")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--shop-only", action="store_true",
                        help="only the shop-grade requests (filtered GET similar, POST /v1/recommend)")
    parser.set_defaults(func=run)


def synthetic_embeddings(folder: Path, items: int, dim: int, seed: int = 0) -> Path:
    """A complete embedding set of clustered unit vectors, with a catalogue (no images)."""
    from index.synthetic import clustered_vectors, write_embedding_set

    ids = [f"item{i:07d}" for i in range(items)]
    catalog = pd.DataFrame({
        "item_id": ids,
        "image": [f"https://images.example/{i}.jpg" for i in ids],
        "category": [("shoes", "bags", "hats", "coats")[i % 4] for i in range(items)],
        "title": [f"Product {i}" for i in range(items)],
        "in_stock": [i % 5 != 0 for i in range(items)],
        "bucket": [i % 100 for i in range(items)],  # what the filtered scenarios select on
    })
    return write_embedding_set(folder, ids, clustered_vectors(items, dim, seed=seed), catalog)


def _wrk(url: str, script: Path, connections: int, duration: int) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    match = re.search(r"RESULT (\{.*\})", done.stdout)
    if done.returncode != 0 or match is None:
        raise JobFailed(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["failed"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def _get_json(url: str) -> dict:
    import httpx

    return httpx.get(url, timeout=5).json()


def stop(server: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate a server process, and kill it when it does not exit within `timeout` seconds."""
    server.terminate()
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()


def wait_ready(base: str, process: subprocess.Popen, timeout: float = 300) -> dict:
    """/readyz's answer once it is 200 (JobFailed if the server exits or the time runs out)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise JobFailed(f"recsys serve exited with {process.returncode}")
        try:
            response = httpx.get(base + "/readyz", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise JobFailed(f"recsys serve was not ready within {timeout} s")


def run(args: argparse.Namespace) -> int:
    from index.build import build_version
    from index.store import IndexStore

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if shutil.which("wrk") is None:
        raise UsageError("recsys bench api needs wrk on the PATH (Debian: apt-get install -y wrk)")
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1:
        raise UsageError(f"--concurrency {args.concurrency!r}: give positive numbers, comma-separated")
    if args.items < 100:
        raise UsageError(f"--items must be at least 100, not {args.items}")
    args.load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    store = args.store or work / "store"
    try:
        build_s = None
        kept = IndexStore(store)
        if kept.current_version() is None:
            started = time.perf_counter()
            build_version(synthetic_embeddings(work / "set", args.items, args.dim), store, publish=True)
            build_s = time.perf_counter() - started
        elif (count := int(kept.versions()[-1]["count"])) != args.items:
            raise UsageError(f"--store {store}: holds a {count}-item index, not {args.items}")
        # The version published under load: one already in a kept store, else built now, before
        # the measurement, so that the build does not share the cores with it.
        others = [v for v in kept.version_ids() if v != kept.current_version()]
        if others or args.shop_only:  # --shop-only publishes nothing: no second version needed
            second = others[-1] if others else ""
        else:
            embeddings = work / "set"
            if not embeddings.exists():
                synthetic_embeddings(embeddings, args.items, args.dim)
            second = str(build_version(embeddings, store, publish=False))
        return _measure(args, store, second, levels, work, build_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(args: argparse.Namespace, store: Path, second: str, levels: list[int], work: Path,
             build_s: float | None) -> int:
    from index.store import IndexStore

    script = work / "similar.lua"
    script.write_text(lua_script("similar", args.items))
    shop_scripts = {}
    for scenario in list(SCENARIOS)[1:]:
        shop_scripts[scenario] = work / f"{len(shop_scripts)}.lua"
        shop_scripts[scenario].write_text(lua_script(scenario, args.items))
    base = f"http://127.0.0.1:{args.port}"
    env = {k: v for k, v in os.environ.items() if k != "RECSYS_ADMIN_TOKEN"}
    log = open(work / "serve.log", "wb")  # closed in the finally below
    server = subprocess.Popen(
        [sys.executable, "-m", "jobs", "serve", "--store", str(store), "--port", str(args.port),
         "--reload-interval", "0.5", "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.perf_counter()
        ready = wait_ready(base, server)
        load_s = time.perf_counter() - started
        first = ready["version"]
        _wrk(base + "/", script, 16, 3)  # warm-up
        rows = [] if args.shop_only else [(c, _wrk(base + "/", script, c, args.duration)) for c in levels]
        shop = [(name, _wrk(base + "/", path, SHOP_CONCURRENCY, args.duration))
                for name, path in shop_scripts.items()]
        # The same under a hot reload at each level, publishing the two versions in turn.
        reloads = []
        target = second
        for c in [] if args.shop_only else levels:
            reloads.append((c, target, _reload_run(base, script, c, args.reload_duration, store, target)))
            target = first if target == second else second
    finally:
        stop(server)
        log.close()
    exports = _exports(store, work)  # after the server has stopped: the export has the cores
    args.load_after = os.getloadavg()[0]
    IndexStore(store).prune(keep=2)
    if not args.shop_only:
        report = _report(args, rows, reloads, first, load_s, build_s)
        write_section(args.out, SECTION, report)
        print(report + "\n")
    report = _shop_report(args, shop, exports)
    write_section(args.out, SHOP_SECTION, report)
    print(report)
    return 0


def _reload_run(base: str, script: Path, connections: int, duration: int, store: Path, target: str) -> dict:
    """wrk for `duration` seconds; a sixth of the way in, CURRENT is switched to `target`.

    Loading a 100,000-item version (checksums, items, metadata) takes seconds while the same
    process serves thousands of requests a second, hence a longer run than the others."""
    from index.store import IndexStore

    wrk = subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(script),
         base + "/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(duration / 6)
    published = time.monotonic()
    IndexStore(store).publish(target)
    swapped_after = None
    while wrk.poll() is None:  # light polling: when does the server answer from the new version?
        if _get_json(base + "/readyz").get("version") == target:
            swapped_after = time.monotonic() - published
            break
        time.sleep(0.1)
    out, err = wrk.communicate(timeout=duration + 60)
    match = re.search(r"RESULT (\{.*\})", out)
    if match is None:
        raise JobFailed(f"wrk failed during the reload run: {out[-500:]} {err[-500:]}")
    if swapped_after is None:
        serving = _get_json(base + "/readyz").get("version")
        raise JobFailed(f"the server did not switch to version {target} within the {duration} s run "
                        f"(serving {serving}); try a longer --reload-duration")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["failed"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    result["swapped_after"] = swapped_after
    return result


def _line(label: str, r: dict) -> str:
    return (f"| {label} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} | {r['p90_us'] / 1000:.2f} | "
            f"{r['p99_us'] / 1000:.2f} | {r['max_us'] / 1000:.1f} | {r['requests']:,} | {r['failed']} |")


def _command(args: argparse.Namespace) -> str:
    """The command line and when and where it ran, with the machine's load before and after."""
    command = (f"recsys bench api --items {args.items} --dim {args.dim} --duration {args.duration} "
               + ("--shop-only" if args.shop_only else
                  f"--concurrency {args.concurrency} --reload-duration {args.reload_duration}")
               + (f" --store {args.store}" if args.store else ""))
    return (f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}; load average "
            f"{args.load_before:.1f} when it started and {args.load_after:.1f} when it ended: a load above "
            "about 1 means other work shared the cores and the figures are lower bounds).")


def _report(args: argparse.Namespace, rows: list, reloads: list, first: str, load_s: float,
            build_s: float | None) -> str:
    swaps = ", ".join(f"{r['swapped_after']:.1f}" for _, _, r in reloads)
    lines = [
        _command(args),
        "",
        f"`GET /v1/items/{{random item}}/similar?k=10` on a {args.items:,}-item, {args.dim}-d index of "
        "synthetic clustered unit vectors; one `recsys serve` process (uvicorn, one worker) and one "
        "`wrk -t1` client process share the same cores. "
        + (f"Index build {build_s:.0f} s; " if build_s is not None else "")
        + f"server start to ready {load_s:.1f} s. The answers come from the version's stored "
        "neighbour lists, through the fast path in front of FastAPI's routing (recsys/api/fastpath.py).",
        "",
        "| concurrency | requests/s | p50 ms | p90 ms | p99 ms | max ms | requests | failed |",
        "|---|---|---|---|---|---|---|---|",
        *[_line(str(c), r) for c, r in rows],
        *[_line(f"{c}, hot reload mid-run", r) for c, _, r in reloads],
        "",
        f"Hot reload runs: the server started on version {first}; in each run CURRENT was switched "
        f"(to {', '.join(v for _, v, _ in reloads)}, in turn) a sixth of the way into a "
        f"{args.reload_duration} s run, and the server's watcher (polling every 0.5 s) was answering "
        f"from the new version {swaps} s later. "
        "`failed` counts socket errors, timeouts and non-2xx answers.",
    ]
    return "\n".join(lines)


EXPORT_K = 20
EXPORTS = {"every item": [], "filter 10%": ["--filter", '{"bucket": {"lt": 10}}']}


def _exports(store: Path, work: Path) -> list[tuple[str, float, int]]:
    """`recsys export -k 20` of every item of the serving version, plain and with the 10% filter:
    (label, wall seconds of the whole command, rows written)."""
    import pyarrow.parquet as pq

    out = []
    for label, extra in EXPORTS.items():
        folder = work / f"export-{len(out)}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jobs", "export", "--store", str(store), "--out", str(folder),
                        "-k", str(EXPORT_K), *extra], check=True, stdout=subprocess.DEVNULL)
        out.append((label, time.perf_counter() - started,
                    pq.ParquetFile(folder / "similar_items.parquet").metadata.num_rows))
    return out


def _shop_report(args: argparse.Namespace, shop: list, exports: list[tuple[str, float, int]]) -> str:
    lines = [
        _command(args),
        "",
        f"Shop-grade requests at concurrency {SHOP_CONCURRENCY} on the same {args.items:,}-item index, one "
        "`recsys serve` process and one `wrk -t1` client on the same cores (no behaviour data: sessions "
        "are answered by image similarity): GET similar of random items with a `filter` matching 10% "
        '(`{"bucket": {"lt": 10}}`) and 1% (`{"bucket": 0}`) of the items, searched inside the index; '
        "`POST /v1/recommend` with 5 random positives. Both are answered by the fast path in front of "
        "FastAPI's routing (recsys/api/fastpath.py), on the event loop. `failed` counts socket errors, "
        "timeouts and non-2xx answers.",
        "",
        "| request | requests/s | p50 ms | p90 ms | p99 ms | max ms | requests | failed |",
        "|---|---|---|---|---|---|---|---|",
        *[_line(name, r) for name, r in shop],
        "",
        f"`recsys export --store STORE --out DIR -k {EXPORT_K}` of the same version (every item's top "
        f"{EXPORT_K} neighbours to Parquet, every core, after the server stopped), timed as a whole "
        "command (start-up and index load included):",
        "",
        "| export | seconds | rows |",
        "|---|---|---|",
        *[f"| {label} | {seconds:.1f} | {rows:,} |" for label, seconds, rows in exports],
    ]
    return "\n".join(lines)
