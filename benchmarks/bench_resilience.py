"""Serving under faults, as callers see it: cross-talk, a blue/green switch and kill -9 of each server, under load.

Run after `make demo`: `.venv/bin/python benchmarks/bench_resilience.py [--state-root .platform]`.
Prints a table and writes benchmarks/out/resilience.json.

The champion of ``loan_default`` in the demo's state is released on its own serving folder
and port (the demo's endpoint is left alone), with its Feast feature server, supervised, as
the deployment releases it. Callers send what a caller knows (the application's own fields
and ids); the server looks the applicant's history up online. Each request carries its own
``meta.puid``, and an answer with another request's id counts as wrong.

1. ``crosstalk``: 16 keep-alive callers, 10,000 requests, a tenth with ``Expect: 100-continue``
   and a tenth with chunked bodies, through the stable endpoint.
2. ``blue/green``: 8 callers while the same bundle is released again as a new backend (smoke test
   and lookup warm-up included); every request must get 200.
3. ``kill <server>``: 8 callers while the model server, the router and the feature server are each
   killed with SIGKILL; the outage (the longest time after the kill without a successful answer:
   callers failed or waited meanwhile), the failed requests, the slowest request, and whether any
   process of the killed server's group is left.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class Callers:
    """``n`` threads sending one caller row each request on keep-alive connections, answers recorded."""

    def __init__(self, url: str, rows: list[dict], n: int, requests: int | None = None, odd_share: float = 0.0):
        self.url, self.rows, self.n, self.requests, self.odd_share = url, rows, n, requests, odd_share
        self.answers: list[tuple[float, object, bool | None]] = []
        self.stop, self.lock, self.sent = threading.Event(), threading.Lock(), 0
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(n)]

    def _body(self, i: int) -> tuple[bytes, str]:
        puid = uuid.uuid4().hex
        row = self.rows[i % len(self.rows)]
        names = list(row)
        return json.dumps({"data": {"names": names, "ndarray": [[row[n] for n in names]]},
                           "meta": {"puid": puid}}).encode(), puid

    def _run(self, index: int) -> None:
        parsed = http.client.urlsplit(self.url)
        connection, count = None, index
        while not self.stop.is_set():
            with self.lock:
                if self.requests is not None and self.sent >= self.requests:
                    return
                self.sent += 1
                number = self.sent
            body, puid = self._body(count)
            count += self.n
            began = time.monotonic()
            kind = number % 10 if self.odd_share else -1
            headers = {"Content-Type": "application/json"}
            try:
                connection = connection or http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
                if kind == 1:  # a tenth announce their body (a client waiting for 100 Continue)
                    connection.request("POST", "/api/v1.0/predictions", body=body,
                                       headers={**headers, "Expect": "100-continue"})
                elif kind == 2:  # a tenth send it chunked
                    connection.request("POST", "/api/v1.0/predictions", body=iter([body[:7], body[7:]]),
                                       headers=headers, encode_chunked=True)
                else:
                    connection.request("POST", "/api/v1.0/predictions", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                own = json.loads(answer)["meta"]["puid"] == puid if response.status == 200 else None
                self.answers.append((began, time.monotonic(), response.status, own))
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                self.answers.append((began, time.monotonic(), type(exc).__name__, None))
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(0.02)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def wait(self) -> None:
        for thread in self.threads:
            thread.join()

    def summary(self, since: float = 0.0) -> dict:
        """Requests answered since ``since``, failed and wrong ones, and the outage: the longest time after
        ``since`` without a successful answer (callers failed or waited meanwhile)."""
        after = [a for a in self.answers if a[1] >= since]
        failed = [a for a in after if a[2] != 200]
        done = sorted(a[1] for a in after if a[2] == 200)
        outage = max(b - a for a, b in zip([since, *done], done)) if done and since else None
        return {"requests": len(after), "failed": len(failed), "wrong": sum(1 for a in after if a[3] is False),
                "failure_kinds": sorted({str(a[2]) for a in failed})[:5],
                "slowest_s": round(max((a[1] - a[0] for a in after), default=0.0), 2),
                "outage_s": round(outage, 2) if outage is not None else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-root", default=str(ROOT / ".platform"))
    parser.add_argument("--crosstalk-requests", type=int, default=10_000)
    args = parser.parse_args(argv)

    import pandas as pd

    from bench_serving import _lookup_scenario
    from platform_assets import settings
    from platform_assets.declared import use_case
    from platform_assets.deploy import release
    from platform_assets.deploy.processes import free_port, group_members
    from platform_assets.deploy.serving import _plain
    from platform_assets.deploy.supervision import Supervisor
    from platform_assets.train.network import load_bundle

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark still stops its servers
    state_root = Path(args.state_root).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="bench_resilience_"))
    case = use_case("loan_default")
    spec, bundle_dir, _ = _lookup_scenario(state_root, tmp, ROOT / ".venv-serving" / "bin" / "python", 2)
    training = pd.read_parquet(settings.paths(state_root).of(case.name).training_set)
    test = training.query("split == 'test'").head(50)
    bundle = load_bundle(bundle_dir)
    caller = [{k: _plain(v) for k, v in row.items()}
              for row in release.caller_rows(training.sample(2000, random_state=1), case, bundle.preprocessor)]
    serving_dir, port = tmp / "serving", free_port()

    def smoke(url):
        return release.smoke_test_against_bundle(url, bundle_dir, test, spec.version, use_case=case)

    results = []
    try:
        started = time.monotonic()
        record = release.release(spec, serving_dir, host="127.0.0.1", port=port, smoke_test=smoke, log=print)
        print(f"released in {time.monotonic() - started:.1f} s")
        url = record["url"]

        with Callers(url, caller, 16, requests=args.crosstalk_requests, odd_share=0.2) as callers:
            callers.wait()
        results.append({"case": "crosstalk (16 callers, 1/10 Expect, 1/10 chunked)", **callers.summary()})
        print(results[-1], flush=True)

        with Callers(url, caller, 8) as callers:
            time.sleep(2.0)
            switch = time.monotonic()
            record = release.release(spec, serving_dir, host="127.0.0.1", port=port, smoke_test=smoke, log=print)
            switched = time.monotonic()
            time.sleep(3.0)
        results.append({"case": "blue/green with feature lookup (8 callers)", **callers.summary(),
                        "release_s": round(switched - switch, 1)})
        print(results[-1], flush=True)

        supervisor = Supervisor(serving_dir)
        group = record["stable"]["group"]
        for what, (g, name) in {"model server": (group, "model"), "router": (release.ROUTER_GROUP, "router"),
                                "feature server": (group, "feature")}.items():
            pid = supervisor.pid(g, name)
            with Callers(url, caller, 8) as callers:
                time.sleep(2.0)
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                deadline, respawned = killed + 60, None
                # supervisord sees an exit within about a second, and until then the dead server's workers
                # may still answer: wait for the new process, then for a second of its answers.
                while time.monotonic() < deadline:
                    if respawned is None and supervisor.pid(g, name) not in (0, pid):
                        respawned = time.monotonic()
                    restarted = [a for a in callers.answers if a[2] == 200 and respawned and a[0] > respawned]
                    if restarted and time.monotonic() - min(a[1] for a in restarted) > 1.0:
                        break
                    time.sleep(0.1)
            left = group_members(pid)
            results.append({"case": f"kill -9 {what} (8 callers)", **callers.summary(killed),
                            "orphans_left": len(left), "restarted": supervisor.pid(g, name) not in (0, pid)})
            print(results[-1], flush=True)
    finally:
        release.stop_serving(serving_dir)

    print(f"\n{'case':<52} {'requests':>8} {'failed':>6} {'wrong':>5} {'outage s':>8} {'slowest s':>9} "
          f"{'orphans':>7}")
    for r in results:
        outage = "-" if r.get("outage_s") is None else f"{r['outage_s']:.2f}"
        print(f"{r['case']:<52} {r['requests']:>8} {r['failed']:>6} {r['wrong']:>5} {outage:>8} "
              f"{r['slowest_s']:>9.2f} {r.get('orphans_left', '-'):>7}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "resilience.json").write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
