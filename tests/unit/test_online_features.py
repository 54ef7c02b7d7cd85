"""The model server's feature-server client (deploy/serving/online_features.py) against stand-in servers:
retries, deadlines, error answers, and the coalescing of concurrent lookups."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from platform_assets.deploy.processes import free_port


def _online_features_module():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "deploy" / "serving" / "online_features.py"
    spec = importlib.util.spec_from_file_location("online_features_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_feature_lookup_survives_a_reset_connection_once_and_reports_a_dead_server():
    """The first connection is dropped without an answer (as a server closing an idle keep-alive one does)."""

    module = _online_features_module()
    calls = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            if len(calls) == 1:
                self.connection.shutdown(2)  # no answer: the client sees the connection drop
                return
            ids = body["entities"]["applicant_id"]
            answer = json.dumps({"metadata": {"feature_names": ["applicant_id", "recent_application_ts",
                                                                "recent_loan_amounts"]},
                                 "results": [{"values": ids}, {"values": [[1.0]] * len(ids)},
                                             {"values": [[250.0]] * len(ids)}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = module.OnlineFeatures(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=2.0)
        expected = {"recent_application_ts": [1.0], "recent_loan_amounts": [250.0]}
        assert client.lookup("loan_default_online", "applicant_id", [7, 3]) == {3: expected, 7: expected}
        assert len(calls) == 2  # retried once, on a new connection
    finally:
        server.shutdown()
        server.server_close()
    dead = module.OnlineFeatures(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(module.FeatureLookupError, match="did not answer"):
        dead.lookup("loan_default_online", "applicant_id", [1])


def test_a_slow_feature_server_times_out_once_and_an_error_status_is_reported_with_its_body():

    module = _online_features_module()
    calls = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(self.path)
            if len(calls) == 1:
                time.sleep(1.0)  # past the client's deadline
            answer = b'{"detail": "feature service loan_default_online not found"}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = module.OnlineFeatures(f"http://127.0.0.1:{server.server_address[1]}/feast", timeout_s=0.3)
        with pytest.raises(module.FeatureLookupError, match=r"did not answer in 0.3 s"):
            client.lookup("loan_default_online", "applicant_id", [1])
        assert calls == ["/feast/get-online-features"]  # a timeout is not retried
        time.sleep(1.0)
        with pytest.raises(module.FeatureLookupError, match=r"answered HTTP 500: .*loan_default_online not found"):
            client.lookup("loan_default_online", "applicant_id", [1])
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ValueError, match="is not http"):
        module.OnlineFeatures("redis://127.0.0.1:6379")


class FeatureServer:
    """Answers ``value = 10 * id`` per id after ``delay_s``; records each POST's ids and start time."""

    def __init__(self, delay_s=0.05, fail_posts=(), leave_out=()):
        self.posts, self.lock = [], threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ids = body["entities"]["applicant_id"]
                with server.lock:
                    number = len(server.posts)
                    server.posts.append((time.monotonic(), ids))
                time.sleep(delay_s)
                if number in fail_posts:
                    answer, status = b'{"detail": "online store is locked"}', 500
                else:
                    kept = [i for i in ids if i not in leave_out]
                    answer, status = json.dumps({
                        "metadata": {"feature_names": ["applicant_id", "n_prior"]},
                        "results": [{"values": kept}, {"values": [10 * i for i in kept]}]}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


def _concurrent_lookups(client, id_lists):
    """Each list looked up on its own thread, all at once: (start time, answer or error) per list."""
    results, barrier = [None] * len(id_lists), threading.Barrier(len(id_lists))

    def one(k):
        barrier.wait()
        started = time.monotonic()
        try:
            results[k] = (started, client.lookup("loan_default_online", "applicant_id", id_lists[k]))
        except Exception as exc:  # noqa: BLE001 - recorded for the test to look at
            results[k] = (started, exc)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(id_lists))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_lookups_are_coalesced_and_each_gets_exactly_its_own_fresh_features():
    module, server = _online_features_module(), FeatureServer(delay_s=0.05)
    try:
        client = module.OnlineFeatures(server.url, timeout_s=5, max_in_flight=1)
        id_lists = [[k, 100 + k] for k in range(24)] + [[3, 5]]  # 3 is asked twice
        results = _concurrent_lookups(client, id_lists)
        for ids, (_, answer) in zip(id_lists, results):
            assert answer == {i: {"n_prior": 10 * i} for i in sorted(set(ids))}
        assert 2 <= len(server.posts) < len(id_lists)  # coalesced, yet more than one round trip
        assert {i for _, ids in server.posts for i in ids} == {i for ids in id_lists for i in ids}
        assert all(len(ids) == len(set(ids)) for _, ids in server.posts)  # an id once per POST
        assert client.posts == len(server.posts)
        # Every lookup's features were read by a POST that started after the lookup itself did.
        for ids, (started, _) in zip(id_lists, results):
            post = next(when for when, posted in server.posts if set(ids) <= set(posted))
            assert post >= started
        # One POST in flight at a time: each started after the one before it was answered.
        starts = [when for when, _ in server.posts]
        assert all(b - a >= 0.045 for a, b in zip(starts, starts[1:]))
    finally:
        server.close()


def test_without_coalescing_every_lookup_posts_on_its_own():
    module, server = _online_features_module(), FeatureServer(delay_s=0.02)
    try:
        client = module.OnlineFeatures(server.url, timeout_s=5, max_in_flight=None)
        results = _concurrent_lookups(client, [[k] for k in range(8)])
        assert [answer for _, answer in results] == [{k: {"n_prior": 10 * k}} for k in range(8)]
        assert len(server.posts) == 8
    finally:
        server.close()
    with pytest.raises(ValueError, match="at least 1"):
        module.OnlineFeatures("http://127.0.0.1:1", max_in_flight=0)


def test_a_failed_coalesced_post_fails_each_of_its_lookups_and_the_next_ones_succeed():
    module, server = _online_features_module(), FeatureServer(delay_s=0.05, fail_posts={1})
    try:
        client = module.OnlineFeatures(server.url, timeout_s=5, max_in_flight=1)
        results = _concurrent_lookups(client, [[k] for k in range(12)])
        failed = {k for k, (_, answer) in enumerate(results) if isinstance(answer, Exception)}
        assert failed and len(failed) < 12
        assert {k for k in failed if k in server.posts[1][1]} == failed  # exactly the lookups of the failed POST
        for k, (_, answer) in enumerate(results):
            if k in failed:
                assert isinstance(answer, module.FeatureLookupError) and "answered HTTP 500" in str(answer)
            else:
                assert answer == {k: {"n_prior": 10 * k}}
        assert client.lookup("loan_default_online", "applicant_id", [7]) == {7: {"n_prior": 70}}
    finally:
        server.close()


def test_an_id_left_out_fails_only_the_lookups_that_asked_for_it():
    module, server = _online_features_module(), FeatureServer(delay_s=0.05, leave_out={5})
    try:
        client = module.OnlineFeatures(server.url, timeout_s=5, max_in_flight=1)
        results = _concurrent_lookups(client, [[k] for k in range(10)])
        for k, (_, answer) in enumerate(results):
            if k == 5:
                assert isinstance(answer, module.FeatureLookupError) and "left out applicant_id [5]" in str(answer)
            else:
                assert answer == {k: {"n_prior": 10 * k}}
    finally:
        server.close()
