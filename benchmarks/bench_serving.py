"""The served model against a bare HTTP endpoint doing the same forward pass, as a client on loopback sees them.

Run: `.venv/bin/python benchmarks/bench_serving.py [--requests 10000] [--concurrency 16] [--pairs 2]`.
Prints a table and writes benchmarks/out/serving.json.

- ``served``: the stable endpoint of a release, as :mod:`platform_assets.deploy.release`
  starts it: with one version serving, the router has handed the port to the Seldon Core
  microservice's gunicorn workers (``platform_assets/deploy/handoff.py``), which accept
  callers' connections with strict request checks and the inference log;
- ``backend``: the same Seldon server asked directly (what the router costs);
- ``bare``: one Python process (``ThreadingHTTPServer``) parsing the same JSON and
  running the same bundle's ``predict_proba``, without checks or logging;
- ``uvicorn`` (``inputs`` scenario): what a user would write instead: a bare ASGI endpoint
  under uvicorn with 2 workers, uvloop and httptools, the same JSON and forward pass.

Each is asked ``--requests`` requests of 1 row and of 100 rows (``--batch-sizes``)
by ``--concurrency`` client threads on keep-alive connections, in interleaved
rounds (served, backend, bare, served, ...), so a change in machine load hits all.
Every answer must be HTTP 200: errors are counted and reported.

Two scenarios:

- ``inputs``: requests carry every model input (a synthetic bundle of the
  loan-default inputs); no lookup.
- ``lookup`` (with ``--state-root``, a ``PLATFORM_HOME`` where ``make demo`` ran,
  default ``.platform`` when a model was deployed there): the champion bundle of
  ``loan_default`` served as the deployment serves it, with its Feast feature server
  on that state's online store. Served requests carry what a caller knows (the
  application's own fields and ids, rows of the training set); the server computes
  the request features with the applicant's online features. The bare endpoint does
  the same minimal work: one POST to the same feature server for the rows'
  applicants, the use case's own ``compute`` of the request features, the forward
  pass (no checks, no log). The served workers coalesce the lookups that arrive while
  one is in flight (``--lookups-in-flight 0``: one POST per request, as the bare
  one). The ``inputs`` rows show what the lookup costs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))
NUMERIC, CATEGORICAL = ["income", "debt_to_income", "open_loans"], ["region"]


def _rows(n: int, seed: int = 1):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({"income": rng.lognormal(10.9, 0.4, n), "debt_to_income": rng.uniform(0, 1, n),
                         "open_loans": rng.integers(0, 6, n), "region": rng.choice(["north", "south", "east"], n)})


def _bundle(directory: Path) -> Path:
    import torch

    from platform_assets.train.network import ModelBundle, Preprocessor, TabularNet

    torch.manual_seed(0)
    rows = _rows(2000)
    pre = Preprocessor(numeric=NUMERIC, categorical=CATEGORICAL).fit(rows)
    ModelBundle(TabularNet(pre.output_dim, (64, 32), 0.0), pre, {"hidden": [64, 32], "dropout": 0.0},
                {"model_name": "loan-default", "model_version": "1"}).save(directory)
    return directory


def bare_server(port: int, bundle_dir: Path, lookup_url: str | None = None) -> None:
    """The bare endpoint: JSON in, the bundle's forward pass, JSON out; one process, a thread per connection.

    With ``lookup_url`` (a Feast feature server), requests are callers' rows of loan_default: one POST
    for the rows' applicants, the request features computed with the use case's own function, then
    the forward pass; no checks, no log.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import numpy as np

    from platform_assets.train.network import load_bundle

    torch_threads = os.environ.get("OMP_NUM_THREADS")
    bundle = load_bundle(bundle_dir)
    categorical, inputs = set(bundle.preprocessor.categorical), bundle.preprocessor.input_names
    if lookup_url:
        import datetime as dt

        sys.path.insert(0, str(ROOT / "deploy" / "serving"))
        from online_features import OnlineFeatures

        from platform_assets.declared import use_case

        case = use_case("loan_default")
        features, online = case.request_features_module(), OnlineFeatures(lookup_url, timeout_s=30, max_in_flight=None)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # Headers and body leave in one write, and no Nagle delay: a 40 ms delayed-ACK stall per answer
            # would make the bare endpoint look slow.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

        def do_GET(self):  # health
            self._send(200, b'{"status": "ok"}')

        def do_POST(self):
            data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["data"]
            if lookup_url:
                rows = [dict(zip(data["names"], row)) for row in data["ndarray"]]
                found = online.lookup(case.online_feature_service, features.ONLINE_ENTITY,
                                      [r[features.ONLINE_ENTITY] for r in rows])
                for r in rows:
                    stamp = r.get(case.source.event_time)  # as the server: a row without its time is of now
                    when = (dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.timezone.utc).timestamp() if stamp
                            else time.time())
                    r.update(features.compute(r, found.get(r[features.ONLINE_ENTITY]), when))
                data = {"names": inputs, "ndarray": [[r[n] for n in inputs] for r in rows]}
            columns = {name: np.array([row[i] for row in data["ndarray"]], dtype=object if name in categorical
                                      else np.float64) for i, name in enumerate(data["names"])}
            probabilities = bundle.predict_proba(columns)
            self._send(200, json.dumps({"data": {"ndarray": [[float(p)] for p in probabilities]},
                                        "meta": {"tags": {"model_version": "1"}}}).encode())

        def _send(self, status, body):
            self.wfile.write(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (status, len(body), body))

    ThreadingHTTPServer.request_queue_size = 256  # 16 clients connecting at once: no reset connections
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"bare endpoint on {port} (OMP_NUM_THREADS={torch_threads})", flush=True)
    server.serve_forever()


def uvicorn_app():
    """The ``uvicorn`` target (``--factory``): a bare ASGI endpoint with the bundle of ``BENCH_BUNDLE``."""
    import numpy as np

    from platform_assets.train.network import load_bundle

    bundle = load_bundle(Path(os.environ["BENCH_BUNDLE"]))
    categorical = set(bundle.preprocessor.categorical)
    headers = [(b"content-type", b"application/json")]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        if scope["method"] == "GET":
            answer = b'{"status": "ok"}'
        else:
            data = json.loads(body)["data"]
            columns = {name: np.array([row[i] for row in data["ndarray"]], dtype=object if name in categorical
                                      else np.float64) for i, name in enumerate(data["names"])}
            probabilities = bundle.predict_proba(columns)
            answer = json.dumps({"data": {"ndarray": [[float(p)] for p in probabilities]},
                                 "meta": {"tags": {"model_version": "1"}}}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


def start_uvicorn(port: int, bundle_dir: Path, workers: int) -> subprocess.Popen:
    """``uvicorn --factory bench_serving:uvicorn_app`` with ``workers`` workers, uvloop and httptools."""
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "bench_serving:uvicorn_app", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
         "--no-access-log", "--log-level", "warning"],
        cwd=ROOT / "benchmarks", start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "BENCH_BUNDLE": str(bundle_dir),
             "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])})


def load(url: str, body: bytes, requests: int, concurrency: int) -> dict:
    """``requests`` POSTs of ``body`` by ``concurrency`` threads on keep-alive connections."""
    parsed = http.client.urlsplit(url)
    latencies, errors, lock, counter = [], [], threading.Lock(), iter(range(requests))

    def worker():
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        mine = []
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            start = time.perf_counter()
            try:
                connection.request("POST", "/api/v1.0/predictions", body=body,
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(response.status)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(type(exc).__name__)
                connection.close()
                connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
            mine.append(time.perf_counter() - start)
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"requests": requests, "errors": len(errors), "error_kinds": sorted({str(e) for e in errors})[:5],
            "seconds": round(wall, 2), "throughput_rps": round(requests / wall, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 2)}


def _message(batch: int) -> bytes:
    rows = _rows(batch, seed=batch)
    return json.dumps({"data": {"names": NUMERIC + CATEGORICAL, "ndarray": [
        [float(r.income), float(r.debt_to_income), int(r.open_loans), r.region] for r in rows.itertuples()]}}).encode()


def _body(rows, names: list[str]) -> bytes:
    from platform_assets.deploy.serving import _plain

    return json.dumps({"data": {"names": names, "ndarray": [[_plain(v) for v in row] for row in
                                                            rows[names].itertuples(index=False)]}}).encode()


def _lookup_scenario(state_root: Path, tmp: Path, serving_python: Path, workers: int, threads: int | None = None,
                     in_flight: int | None = None):
    """The champion of ``loan_default`` in ``state_root`` with its feature server: (spec, bundle, bodies)."""
    import pandas as pd

    from platform_assets import settings
    from platform_assets.declarations import use_case_to_dict
    from platform_assets.declared import use_case
    from platform_assets.deploy import release
    from platform_assets.traffic import request_fields

    case = use_case("loan_default")
    deployed = state_root / "serving" / case.name / "deployment.json"
    if not deployed.exists():
        raise SystemExit(f"no model of loan_default was deployed under {state_root} ({deployed}): run `make demo`")
    deployment = json.loads(deployed.read_text())
    bundle_dir = Path(deployment["bundle"])
    training = pd.read_parquet(settings.paths(state_root).of(case.name).training_set)
    caller = [c for c in request_fields(case.source) if c in training.columns]
    spec = release.BackendSpec(
        python=serving_python, bundle=bundle_dir, use_case=case.name, declaration=use_case_to_dict(case),
        model_name=case.model_name, version=str(deployment["model_version"]), feature_repo=ROOT / "feature_repo",
        state_root=state_root, inference_log_dir=tmp / "inference_lookup", workers=workers,
        **({"lookup_threads": threads} if threads else {}),
        **({"lookups_in_flight": in_flight} if in_flight is not None else {}))

    def bodies(batch: int) -> tuple[bytes, bytes]:
        rows = training.sample(batch, random_state=batch, replace=len(training) < batch)
        return _body(rows, caller), _body(rows, caller)

    return spec, bundle_dir, bodies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-sizes", default="1,100")
    parser.add_argument("--pairs", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--workers", type=int, default=2, help="the model server's gunicorn workers")
    parser.add_argument("--lookup-threads", type=int, default=None,
                        help="requests a worker scores at once in the lookup scenario (default: the deployer's)")
    parser.add_argument("--lookups-in-flight", type=int, default=None,
                        help="feature-server POSTs at once per worker in the lookup scenario, lookups beyond "
                             "coalesced; 0: one POST per request as the bare endpoint (default: the deployer's)")
    parser.add_argument("--scenarios", default="inputs,lookup", help="which of inputs,lookup to run")
    parser.add_argument("--state-root", help="PLATFORM_HOME of a `make demo` for the lookup scenario "
                        "(default .platform, when a model serves there)")
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--lookup-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server:
        bare_server(args.bare_server, Path(args.bundle), args.lookup_url)
        return 0

    from platform_assets.declarations import use_case_to_dict
    from platform_assets.declared import use_case
    from platform_assets.deploy import release
    from platform_assets.deploy.processes import free_port, terminate_process_group, wait_until_answers

    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark still stops its servers
    tmp = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    bundle_dir = _bundle(tmp / "bundle")
    serving_python = ROOT / ".venv-serving" / "bin" / "python"
    spec = release.BackendSpec(
        python=serving_python, bundle=bundle_dir, use_case="loan_default",
        declaration=use_case_to_dict(use_case("loan_default")), model_name="loan-default", version="1",
        feature_repo=None, state_root=tmp, inference_log_dir=tmp / "inference", workers=args.workers)
    wanted = set(args.scenarios.split(","))
    scenarios = [("inputs", spec, bundle_dir, lambda batch: (_message(batch), _message(batch)))]
    state_root = Path(args.state_root).resolve() if args.state_root else ROOT / ".platform"
    if args.state_root or (state_root / "serving" / "loan_default" / "deployment.json").exists():
        scenarios.append(("lookup", *_lookup_scenario(state_root, tmp, serving_python, args.workers,
                                                      args.lookup_threads, args.lookups_in_flight)))
    scenarios = [s for s in scenarios if s[0] in wanted]
    results: list[dict] = []
    for scenario, spec, bare_bundle, bodies in scenarios:
        port, bare_port = free_port(), free_port()
        serving_dir, bare, uvicorn = tmp / f"serving_{scenario}", None, None
        try:
            record = release.release(spec, serving_dir, host="127.0.0.1", port=port,
                                     smoke_test=lambda url: None, log=lambda m: None)
            # In the lookup scenario the bare endpoint asks the same feature server.
            lookup = ["--lookup-url", record["stable"]["feature_server_url"]] if scenario == "lookup" else []
            bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bare_port), "--bundle",
                                     str(bare_bundle), *lookup], env={**os.environ, "OMP_NUM_THREADS": "1"},
                                    start_new_session=True)
            wait_until_answers(f"http://127.0.0.1:{bare_port}/", pid=bare.pid, log_path=None, timeout_s=60,
                               what="bare")
            targets = {"served": record["url"], "backend": record["stable"]["url"],
                       "bare": f"http://127.0.0.1:{bare_port}"}
            if scenario == "inputs":
                uvicorn_port = free_port()
                uvicorn = start_uvicorn(uvicorn_port, bare_bundle, args.workers)
                wait_until_answers(f"http://127.0.0.1:{uvicorn_port}/", pid=uvicorn.pid, log_path=None,
                                   timeout_s=60, what="uvicorn")
                targets["uvicorn"] = f"http://127.0.0.1:{uvicorn_port}"
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                served_body, bare_body = bodies(batch)
                body_of = {"served": served_body, "backend": served_body, "bare": bare_body, "uvicorn": bare_body}
                for name, url in targets.items():  # warm-up: the first requests load the model in each worker
                    load(url, body_of[name], 200, args.concurrency)
                for round_ in range(args.pairs):
                    for name, url in targets.items():
                        result = {"scenario": scenario, "target": name, "batch": batch, "round": round_,
                                  **load(url, body_of[name], args.requests, args.concurrency)}
                        print(json.dumps(result), flush=True)
                        results.append(result)
        finally:
            release.stop_serving(serving_dir)
            for process in (bare, uvicorn):
                if process is not None:
                    terminate_process_group(process.pid)

    summary = []
    for scenario, batch in sorted({(r["scenario"], r["batch"]) for r in results}, key=lambda k: (k[0] != "inputs", k)):
        medians = {}
        for name in ("served", "backend", "bare", "uvicorn"):
            mine = [r for r in results if r["batch"] == batch and r["target"] == name and r["scenario"] == scenario]
            if mine:
                medians[name] = {k: statistics.median(r[k] for r in mine) for k in ("throughput_rps", "p50_ms", "p99_ms")}
                medians[name]["errors"] = sum(r["errors"] for r in mine)
        for name in ("served", "backend"):
            for reference in ("bare", "uvicorn"):
                if reference not in medians:
                    continue
                mine, ref = medians[name], medians[reference]
                summary.append({"scenario": scenario, "batch": batch, "target": name, **mine, "against": reference,
                                "reference": ref,
                                "throughput_ratio": round(mine["throughput_rps"] / ref["throughput_rps"], 2),
                                "p50_ratio": round(mine["p50_ms"] / ref["p50_ms"], 2),
                                "p99_ratio": round(mine["p99_ms"] / ref["p99_ms"], 2)})
    print(f"\n{'scenario':>8} {'batch':>5} {'target':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} | "
          f"{'against':>8} {'req/s':>8} {'p50':>8} {'p99':>8} | {'thr x':>5} {'p50 x':>5} {'p99 x':>5}")
    for s in summary:
        ref = s["reference"]
        print(f"{s['scenario']:>8} {s['batch']:>5} {s['target']:>8} {s['throughput_rps']:>8.0f} {s['p50_ms']:>8.1f} "
              f"{s['p99_ms']:>8.1f} {s['errors']:>6} | {s['against']:>8} {ref['throughput_rps']:>8.0f} "
              f"{ref['p50_ms']:>8.1f} {ref['p99_ms']:>8.1f} | {s['throughput_ratio']:>5} {s['p50_ratio']:>5} "
              f"{s['p99_ratio']:>5}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "serving.json").write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "requests": args.requests, "concurrency": args.concurrency, "workers": args.workers,
        "runs": results, "summary": summary}, indent=2))
    return 0 if not any(r["errors"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
