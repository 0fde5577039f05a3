"""What one API replica costs: `python -m jobs.bench.replica --store STORE [--next VERSION]`.

Starts `recsys serve` over STORE (a folder or an object-storage URL, cached in a fresh folder) in
its own process and measures the seconds until /readyz answers (for a URL: download, SHA-256
check and load), its resident memory once ready, then, with --next, the seconds from publishing
VERSION until the replica serves it and its peak memory across the swap (two versions are held
for a moment); CURRENT is put back afterwards. `--copy DIR` first uploads every version of a local
store to the URL and publishes the one its CURRENT names (the local folder doubles as the cache).
Prints one Markdown table row per measurement, for docs/scaling.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from index.remote import RemoteStore, is_url, open_store, parse_location
from index.store import IndexStore


def copy_store(local: Path, url: str) -> None:
    remote = RemoteStore(url, cache=local)  # every version is already "downloaded": the local store
    remote.fs.mkdirs(url.split("://", 1)[1].split("/", 1)[0], exist_ok=True)
    store = IndexStore(local)
    for version in store.version_ids():
        remote.upload(store, version)
    if store.current_version():
        remote.publish(store.current_version())


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def wait(predicate, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"not done in {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench.replica", description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--copy", type=Path, default=None, help="a local store to upload to --store first")
    parser.add_argument("--next", default=None, help="a version to publish while the replica serves")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    store = parse_location(args.store)
    if args.copy is not None:
        started = time.monotonic()
        copy_store(args.copy, str(store))
        print(f"uploaded {args.copy} to {store} in {time.monotonic() - started:.1f} s")
    handle = open_store(store)
    first = handle.current_version()
    base = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory(prefix="replica-cache-") as cache:
        env = {**os.environ, "RECSYS_CACHE_DIR": cache}
        command = [sys.executable, "-m", "jobs", "serve", "--store", str(store), "--port", str(args.port),
                   "--reload-interval", "0.5", "--log-level", "warning"]
        server = subprocess.Popen(command, env=env)
        try:
            ready_s = wait(lambda: httpx.get(base + "/readyz").status_code == 200, args.timeout)
            ready = httpx.get(base + "/readyz").json()
            kind = "object storage" if is_url(store) else "local folder"
            print("| store | items | event | seconds | RSS MiB | peak RSS MiB |")
            print("|---|---|---|---|---|---|")
            mem = memory_kib(server.pid)
            print(f"| {kind} | {ready['items']:,} | start to ready | {ready_s:.1f} | "
                  f"{mem['VmRSS'] // 1024} | {mem['VmHWM'] // 1024} |")
            if args.next:
                handle.publish(args.next)
                swap_s = wait(lambda: httpx.get(base + "/readyz").json()["version"] == args.next,
                              args.timeout)
                time.sleep(1.0)  # the old version's memory goes once its last request is done
                mem = memory_kib(server.pid)
                print(f"| {kind} | {ready['items']:,} | publish to serving the new version | {swap_s:.1f} | "
                      f"{mem['VmRSS'] // 1024} | {mem['VmHWM'] // 1024} |")
        finally:
            server.terminate()
            server.wait(30)
            if args.next and first:
                handle.publish(first)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
