"""The stable endpoint's router: the hand-written one (``git show HEAD:...``) against the aiohttp one.

Run: `.venv/bin/python benchmarks/bench_router.py [--requests 20000] [--concurrency 16] [--rounds 2]
[--old-ref HEAD] [--out benchmarks/out/router.json]`. Prints a table and writes JSON to ``--out``.

Both routers run as their own process in front of the same fast stand-in model server
(aiohttp on uvloop, its own process, answering a prediction with the request's ``meta.puid``),
and are asked ``--requests`` POSTs of a one-row prediction by ``--concurrency`` keep-alive
callers (one aiohttp client process); ``direct`` asks the stand-in itself (what a router adds).
Rounds interleave (old, new, direct, old, ...) so that a change in machine load hits all.
Reported per target: requests per second, p50 and p99 latency, the router's CPU seconds
(user + system, from ``/proc``) per request, errors and wrong answers (an answer not
carrying its own request's puid). The old router's file is ``git show <old-ref>:`` of the
router module; a ref where the router is already the aiohttp one makes both rows the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUTER = "platform_assets/deploy/router.py"
PREDICT_PATH = "/api/v1.0/predictions"
sys.path.insert(0, str(ROOT))


def serve_stand_in(port: int) -> None:
    """The stand-in model server (``--stand-in PORT``): answers each prediction with its request's puid."""
    import uvloop
    from aiohttp import web

    async def handle(request: web.BaseRequest) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        return web.json_response({"data": {"names": ["proba"], "ndarray": [[0.5]]},
                                  "meta": {"puid": (body.get("meta") or {}).get("puid")}})

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(web.Server(handle, access_log=None), "127.0.0.1",
                                                                port, backlog=1024)
        print("stand-in ready", flush=True)
        await server.serve_forever()

    uvloop.run(main())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, requests: int, concurrency: int) -> dict:
    """``requests`` predictions from ``concurrency`` keep-alive callers; latencies, errors, wrong answers."""
    import aiohttp

    latencies, errors, wrong = [], 0, 0

    async def caller(index: int) -> None:
        nonlocal errors, wrong
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            for _ in range(index, requests, concurrency):
                puid = uuid.uuid4().hex
                body = json.dumps({"data": {"names": ["income", "region"], "ndarray": [[50000.0, "north"]]},
                                   "meta": {"puid": puid}})
                started = time.perf_counter()
                try:
                    async with session.post(url + PREDICT_PATH, data=body,
                                            headers={"Content-Type": "application/json"}) as answer:
                        got = await answer.read()
                    latencies.append(time.perf_counter() - started)
                    if answer.status != 200 or json.loads(got)["meta"]["puid"] != puid:
                        wrong += 1
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return {"seconds": time.perf_counter() - started, "latencies": latencies, "errors": errors, "wrong": wrong}


def wait_for(process: subprocess.Popen, marker: str) -> None:
    for line in process.stdout:
        if marker in line:
            return
    raise RuntimeError(f"process {process.args} ended before saying {marker!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--old-ref", default="HEAD", help="git ref of the hand-written router")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "router.json")
    parser.add_argument("--stand-in", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stand_in:
        serve_stand_in(args.stand_in)
        return 0
    from platform_assets.deploy.processes import free_port
    from platform_assets.deploy.router import Routes

    folder = Path(tempfile.mkdtemp(prefix="bench_router_"))
    old_router = folder / "old_router.py"
    old_router.write_bytes(subprocess.run(["git", "show", f"{args.old_ref}:{ROUTER}"], cwd=ROOT, check=True,
                                          capture_output=True).stdout)
    stand_in_port = free_port()
    Routes(stable=f"http://127.0.0.1:{stand_in_port}").write(folder / "routes.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    popen = dict(cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    processes = {"stand-in": subprocess.Popen([sys.executable, __file__, "--stand-in", str(stand_in_port)], **popen)}
    urls, pids = {"direct": f"http://127.0.0.1:{stand_in_port}"}, {}
    try:
        wait_for(processes["stand-in"], "stand-in ready")
        for name, command in (("old", [sys.executable, str(old_router)]),
                              ("new", [sys.executable, "-m", "platform_assets.deploy.router",
                                       "--admin-port", str(free_port())])):
            port = free_port()
            processes[name] = subprocess.Popen([*command, "--routes", str(folder / "routes.json"), "--port",
                                                str(port)], **popen)
            wait_for(processes[name], "router on")
            urls[name], pids[name] = f"http://127.0.0.1:{port}", processes[name].pid
        results = {name: {"seconds": 0.0, "latencies": [], "errors": 0, "wrong": 0, "cpu": 0.0} for name in urls}
        for name, url in urls.items():  # warm-up: connections, caches
            asyncio.run(load(url, 500, args.concurrency))
        for _ in range(args.rounds):
            for name, url in urls.items():
                cpu = cpu_seconds(pids[name]) if name in pids else 0.0
                run = asyncio.run(load(url, args.requests, args.concurrency))
                result = results[name]
                result["cpu"] += (cpu_seconds(pids[name]) - cpu) if name in pids else 0.0
                for key in ("seconds", "errors", "wrong"):
                    result[key] += run[key]
                result["latencies"] += run["latencies"]
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(10)
    rows = []
    for name, result in results.items():
        latencies, total = sorted(result["latencies"]), args.requests * args.rounds
        rows.append({"target": name, "requests": total, "concurrency": args.concurrency,
                     "req_per_s": round(total / result["seconds"], 1),
                     "p50_ms": round(1000 * statistics.median(latencies), 2),
                     "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
                     "router_cpu_ms_per_request": round(1000 * result["cpu"] / total, 3) if name in pids else None,
                     "errors": result["errors"], "wrong": result["wrong"]})
    print(f"{'target':8} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'router CPU ms/req':>18} "
          f"{'errors':>6} {'wrong':>6}")
    for row in rows:
        cpu = "-" if row["router_cpu_ms_per_request"] is None else f"{row['router_cpu_ms_per_request']:.3f}"
        print(f"{row['target']:8} {row['requests']:>9} {row['req_per_s']:>8.0f} {row['p50_ms']:>7.2f} "
              f"{row['p99_ms']:>7.2f} {cpu:>18} {row['errors']:>6} {row['wrong']:>6}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpus": os.cpu_count(), "python": sys.version.split()[0], "rows": rows},
                                   indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
