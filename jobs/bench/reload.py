"""`recsys bench reload`: how fast the server starts and swaps in a new version, into BENCHMARKS.md
("## Reload, N items").

A synthetic store with two versions of one embedding set is built (`--store` keeps it for the next
run; `--build-only` stops there, so that a long build can run at low priority and the measurement
at normal priority). `recsys serve` starts on one version: start to ready is the time from launching
the process to its first 200 from /readyz. Then `wrk` asks for the similar items of random items at
`--connections` while CURRENT is switched between the two versions `--swaps` times, each switch
`--gap` seconds after the server answered from the version before. Beside wrk, a probe asks GET
similar of random items one request after another; a swap's time is from CURRENT's modification
time to the first probe answer that names the new version. Reported: every swap time, every failed
request (wrk's and the probe's), the load times the server logged, and its memory (resident set once
ready, its peak over the run, and the part that is its own rather than memory-mapped files).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobs.bench.api import lua_script, stop, synthetic_embeddings
from jobs.bench.markdown import write_section
from jobs.errors import JobFailed, UsageError

SECTION = "## Reload"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reload", help="server start to ready and hot reload times (needs wrk)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--factory", default="auto",
                        help="FAISS factory of the two synthetic versions (auto: what `recsys index build` "
                             "chooses; a cheap one such as IVF1024,Flat builds 1,000,000 items in minutes)")
    parser.add_argument("--swaps", type=int, default=4, help="how many times CURRENT is switched under load")
    parser.add_argument("--gap", type=float, default=12.0, help="seconds between two switches")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections")
    parser.add_argument("--starts", type=int, default=3, help="server starts timed (start to ready)")
    parser.add_argument("--reload-interval", type=float, default=0.5,
                        help="the server's --reload-interval (seconds between its checks of CURRENT)")
    parser.add_argument("--store", type=Path, default=None,
                        help="reuse (or keep) the synthetic store here instead of a temporary folder")
    parser.add_argument("--build-only", action="store_true", help="build the store's two versions, then stop")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--port", type=int, default=8767)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if shutil.which("wrk") is None and not args.build_only:
        raise UsageError("recsys bench reload needs wrk on the PATH (Debian: apt-get install -y wrk)")
    if args.items < 100 or args.swaps < 1 or args.gap <= 0 or args.connections < 1 or args.starts < 1:
        raise UsageError("--items at least 100; --swaps, --gap, --connections and --starts above 0")
    args.load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    try:
        store = args.store or work / "store"
        versions, build_s = _two_versions(args, store, work)
        if args.build_only:
            print(f"{store}: versions {', '.join(versions)} ({args.items:,} items)")
            return 0
        return _measure(args, store, versions, build_s, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _two_versions(args: argparse.Namespace, store: Path, work: Path) -> tuple[list[str], float | None]:
    """Two complete versions of one synthetic set (built unless the store has them), CURRENT first;
    and the seconds the builds took (None when none was needed)."""
    from index.build import build_version
    from index.store import IndexStore

    kept = IndexStore(store)
    ids = kept.version_ids()
    if ids:
        count = int(kept.versions()[-1]["count"])
        if count != args.items:
            raise UsageError(f"--store {store}: holds a {count}-item index, not {args.items}")
    build_s = None
    if len(ids) < 2:
        started = time.perf_counter()
        embeddings = synthetic_embeddings(work / "set", args.items, args.dim)
        while len(ids) < 2:
            build_version(embeddings, store, factory=args.factory, publish=not ids)
            ids = kept.version_ids()
        build_s = time.perf_counter() - started
    current = kept.current_version()
    other = [v for v in ids if v != current][-1]
    return [current, other], build_s


def _status(pid: int) -> dict[str, int]:
    """The memory lines of /proc/<pid>/status, in kB (VmRSS, VmHWM, RssAnon, RssFile)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve(args: argparse.Namespace, store: Path, log_path: Path) -> tuple[subprocess.Popen, float, float]:
    """`recsys serve` started and ready; returns it, the seconds from launch to the first 200 from
    /readyz (asked every 20 ms), and the CPU seconds it had used by then."""
    import httpx

    env = {k: v for k, v in os.environ.items() if k != "RECSYS_ADMIN_TOKEN"}
    base = f"http://127.0.0.1:{args.port}"
    with open(log_path, "ab") as log:
        started = time.monotonic()
        server = subprocess.Popen(
            [sys.executable, "-m", "jobs", "serve", "--store", str(store), "--port", str(args.port),
             "--reload-interval", str(args.reload_interval), "--log-level", "info"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = started + 600
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise JobFailed(f"recsys serve exited with {server.returncode}; see {log_path}")
            try:
                if client.get(base + "/readyz").status_code == 200:
                    return server, time.monotonic() - started, _cpu_seconds(server.pid)
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    stop(server)
    raise JobFailed("recsys serve was not ready within 600 s")


def _measure(args: argparse.Namespace, store: Path, versions: list[str], build_s: float | None,
             work: Path) -> int:
    import httpx

    from index.store import CURRENT, IndexStore

    script = work / "similar.lua"
    script.write_text(lua_script("similar", args.items))
    base = f"http://127.0.0.1:{args.port}"
    log_path = work / "serve.log"
    IndexStore(store).publish(versions[0])
    starts = []  # (wall seconds, CPU seconds) to ready
    for _ in range(args.starts - 1):  # the last start is the one measured under load
        server, *seconds = _serve(args, store, log_path)
        starts.append(seconds)
        stop(server)
    server, *seconds = _serve(args, store, log_path)
    starts.append(seconds)
    swaps: list[float] = []
    probe_failed = probes = 0
    wrk = None
    try:
        memory_ready = _status(server.pid)
        # Long enough for every switch (each must land within a gap) and a gap after the last; wrk
        # is stopped then (SIGINT: it reports what it measured so far).
        duration = round(args.gap * (2 * args.swaps + 2))
        wrk = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(script),
             base + "/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        rng = random.Random(0)
        store_obj = IndexStore(store)
        with httpx.Client(timeout=5) as client:
            for n in range(1, args.swaps + 1):
                time.sleep(args.gap)  # each switch finds the server settled on the version before, under load
                target = versions[n % 2]
                store_obj.publish(target)  # checksums verified first, then CURRENT replaced
                switched = store.joinpath(CURRENT).stat().st_mtime
                while True:
                    item = f"item{rng.randrange(args.items):07d}"
                    response = client.get(f"{base}/v1/items/{item}/similar", params={"k": 10})
                    probes += 1
                    if response.status_code != 200:
                        probe_failed += 1
                    elif response.json()["version"] == target:
                        swaps.append(time.time() - switched)
                        break
                    if time.time() - switched > args.gap:
                        raise JobFailed(f"the server did not answer from version {target} within "
                                        f"{args.gap} s of the switch; see {log_path}")
        time.sleep(args.gap)
        wrk.send_signal(signal.SIGINT)
        out, err = wrk.communicate(timeout=60)
        memory_end = _status(server.pid)
    finally:
        if wrk is not None and wrk.poll() is None:
            wrk.kill()
        stop(server)
    result = _wrk_result(out, err)
    args.load_after = os.getloadavg()[0]
    loads = [float(s) for s in re.findall(r"items in ([0-9.]+) s", log_path.read_text(errors="replace"))]
    report = _report(args, store, starts, swaps, result, probes, probe_failed, memory_ready, memory_end,
                     build_s, loads)
    write_section(args.out, f"{SECTION}, {args.items:,} items", report)
    print(report)
    return 0 if result["failed"] == 0 and probe_failed == 0 else 1


def _wrk_result(out: str, err: str) -> dict:
    import json

    match = re.search(r"RESULT (\{.*\})", out)
    if match is None:
        raise JobFailed(f"wrk failed during the reload run: {out[-500:]} {err[-500:]}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["failed"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def _report(args: argparse.Namespace, store: Path, starts: list[list[float]], swaps: list[float], wrk: dict,
            probes: int, probe_failed: int, ready: dict[str, int], end: dict[str, int],
            build_s: float | None, loads: list[float]) -> str:
    from index.store import IndexStore

    meta = IndexStore(store).versions()[-1]
    files = {name: (store / "versions" / meta["version"] / name).stat().st_size
             for name in meta.get("checksums", {})}
    held = ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in sorted(files.items()))
    neighbours = (meta.get("neighbours") or {}).get("k")
    command = (f"recsys bench reload --items {args.items} --dim {args.dim} --factory {args.factory} "
               f"--swaps {args.swaps} --gap {args.gap:g} --connections {args.connections} "
               f"--starts {args.starts} --reload-interval {args.reload_interval:g}"
               + (f" --store {args.store}" if args.store else ""))

    def mib(kb: int) -> str:
        return f"{kb / 1024:,.0f} MiB"

    lines = [
        f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}; load average "
        f"{args.load_before:.1f} when it started and {args.load_after:.1f} when it ended: a load above "
        "about 1 means other work shared the cores and the figures are upper bounds).",
        "",
        f"Each version: {args.items:,} synthetic clustered unit vectors of {args.dim} dimensions, "
        f"`{meta.get('factory')}` (search {meta.get('search')}, recall@10 {meta.get('recall@10')}), "
        + (f"stored neighbour lists of {neighbours} (computed by the index)" if neighbours else
           "no stored neighbour lists (a build stores them up to 250,000 items: GET similar is a live "
           "search)")
        + f"; files: {held}. Both versions are builds of the same embedding set"
        + (f" ({build_s:.0f} s for the set and the builds)." if build_s is not None else "."),
        "",
        f"- Server start to ready (`recsys serve` launched, to the first 200 from /readyz): "
        f"**{', '.join(f'{wall:.2f}' for wall, _ in starts)} s**, the server having used "
        f"{', '.join(f'{cpu:.2f}' for _, cpu in starts)} s of CPU by then (interpreter, imports, "
        "loading the version).",
        f"- Hot reload under `wrk -t1 -c{args.connections}` (GET similar of random items, "
        f"{wrk['rps']:,.0f} requests/s, p99 {wrk['p99_us'] / 1000:.1f} ms, "
        f"max {wrk['max_us'] / 1000:.0f} ms, "
        f"{wrk['requests']:,} requests, **{wrk['failed']} failed**): CURRENT switched {len(swaps)} times, "
        f"each {args.gap:g} s after the server answered from the version before; from the switch to the "
        "first answer from the new version: "
        f"**{', '.join(f'{s:.2f}' for s in swaps)} s** (the server's watcher checks CURRENT every "
        f"{args.reload_interval:g} s). The probe sent {probes:,} requests beside wrk, {probe_failed} failed.",
        f"- Version loads as the server logged them ({args.starts} at start, then one a swap): "
        f"{', '.join(f'{s:.2f}' for s in loads)} s.",
        f"- Server memory: resident {mib(ready['VmRSS'])} once ready ({mib(ready['RssAnon'])} of it its own, "
        f"the rest memory-mapped files); peak resident over the run {mib(end['VmHWM'])}; at the end "
        f"{mib(end['VmRSS'])} resident, {mib(end['RssAnon'])} its own.",
    ]
    return "\n".join(lines)
