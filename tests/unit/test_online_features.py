"""The model server's feature-server client (deploy/serving/online_features.py) against stand-in servers:
retries, deadlines, error answers, and the coalescing of concurrent lookups."""

import contextlib
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


class _Handler(BaseHTTPRequestHandler):
    """A stand-in feature server's handler: keep-alive, quiet, ``answer(status, body)``."""

    protocol_version = "HTTP/1.1"

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serving(handler):
    """``handler`` served on a free loopback port for the block: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_feature_lookup_survives_a_reset_connection_once_and_reports_a_dead_server():
    """The first connection is dropped without an answer (as a server closing an idle keep-alive one does)."""
    module = _online_features_module()
    calls = []

    class Handler(_Handler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            if len(calls) == 1:
                self.connection.shutdown(2)  # no answer: the client sees the connection drop
                return
            ids = body["entities"]["applicant_id"]
            self.answer(200, json.dumps({
                "metadata": {"feature_names": ["applicant_id", "recent_application_ts", "recent_loan_amounts"]},
                "results": [{"values": ids}, {"values": [[1.0]] * len(ids)},
                            {"values": [[250.0]] * len(ids)}]}).encode())

    with _serving(Handler) as url:
        client = module.OnlineFeatures(url, timeout_s=2.0)
        expected = {"recent_application_ts": [1.0], "recent_loan_amounts": [250.0]}
        assert client.lookup("loan_default_online", "applicant_id", [7, 3]) == {3: expected, 7: expected}
        assert len(calls) == 2  # retried once, on a new connection
    dead = module.OnlineFeatures(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(module.FeatureLookupError, match="did not answer"):
        dead.lookup("loan_default_online", "applicant_id", [1])


def test_a_slow_feature_server_times_out_once_and_an_error_status_is_reported_with_its_body():
    module = _online_features_module()
    calls = []

    class Handler(_Handler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(self.path)
            if len(calls) == 1:
                time.sleep(1.0)  # past the client's deadline
            self.answer(500, b'{"detail": "feature service loan_default_online not found"}')

    with _serving(Handler) as url:
        client = module.OnlineFeatures(f"{url}/feast", timeout_s=0.3)
        with pytest.raises(module.FeatureLookupError, match=r"did not answer in 0.3 s"):
            client.lookup("loan_default_online", "applicant_id", [1])
        assert calls == ["/feast/get-online-features"]  # a timeout is not retried
        time.sleep(1.0)
        with pytest.raises(module.FeatureLookupError, match=r"answered HTTP 500: .*loan_default_online not found"):
            client.lookup("loan_default_online", "applicant_id", [1])
    with pytest.raises(ValueError, match="is not http"):
        module.OnlineFeatures("redis://127.0.0.1:6379")


@contextlib.contextmanager
def _feature_server(delay_s=0.05, fail_posts=(), leave_out=(), refuse_ids=()):
    """Answers ``n_prior = 10 * id`` per id after ``delay_s``: ``(url, posts)``, each POST's start time and ids.

    POSTs numbered in ``fail_posts`` (or ``"all"``), and those holding one of ``refuse_ids``, are answered 500.
    """
    posts, lock = [], threading.Lock()

    class Handler(_Handler):
        def do_POST(self):  # noqa: N802
            ids = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["entities"]["applicant_id"]
            with lock:
                number = len(posts)
                posts.append((time.monotonic(), ids))
            time.sleep(delay_s)
            if fail_posts == "all" or number in fail_posts:
                return self.answer(500, b'{"detail": "online store is locked"}')
            if set(ids) & set(refuse_ids):  # as Feast answers an id its store cannot read
                return self.answer(500, b'{"detail": "Value out of range"}')
            kept = [i for i in ids if i not in leave_out]
            self.answer(200, json.dumps({"metadata": {"feature_names": ["applicant_id", "n_prior"]},
                                         "results": [{"values": kept}, {"values": [10 * i for i in kept]}]}).encode())

    with _serving(Handler) as url:
        yield url, posts


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
    module = _online_features_module()
    with _feature_server(delay_s=0.05) as (url, posts):
        client = module.OnlineFeatures(url, timeout_s=5, max_in_flight=1)
        id_lists = [[k, 100 + k] for k in range(24)] + [[3, 5]]  # 3 is asked twice
        results = _concurrent_lookups(client, id_lists)
        for ids, (_, answer) in zip(id_lists, results):
            assert answer == {i: {"n_prior": 10 * i} for i in sorted(set(ids))}
        assert 2 <= len(posts) < len(id_lists)  # coalesced, yet more than one round trip
        assert {i for _, ids in posts for i in ids} == {i for ids in id_lists for i in ids}
        assert all(len(ids) == len(set(ids)) for _, ids in posts)  # an id once per POST
        assert client.posts == len(posts)
        # Every lookup's features were read by a POST that started after the lookup itself did.
        for ids, (started, _) in zip(id_lists, results):
            post = next(when for when, posted in posts if set(ids) <= set(posted))
            assert post >= started
        # One POST in flight at a time: each started after the one before it was answered.
        starts = [when for when, _ in posts]
        assert all(b - a >= 0.045 for a, b in zip(starts, starts[1:]))


def test_without_coalescing_every_lookup_posts_on_its_own():
    module = _online_features_module()
    with _feature_server(delay_s=0.02) as (url, posts):
        client = module.OnlineFeatures(url, timeout_s=5, max_in_flight=None)
        results = _concurrent_lookups(client, [[k] for k in range(8)])
        assert [answer for _, answer in results] == [{k: {"n_prior": 10 * k}} for k in range(8)]
        assert len(posts) == 8
    with pytest.raises(ValueError, match="at least 1"):
        module.OnlineFeatures("http://127.0.0.1:1", max_in_flight=0)


def test_a_refused_coalesced_post_is_asked_again_per_lookup_and_fails_only_the_lookup_at_fault():
    """One caller's id that the feature server refuses never fails the lookups it was coalesced with."""
    module = _online_features_module()
    with _feature_server(delay_s=0.02, refuse_ids={666}) as (url, posts):
        client = module.OnlineFeatures(url, timeout_s=5, max_in_flight=1)
        id_lists = [[k] for k in range(40)]
        poisoned = {5, 17, 29}
        for k in poisoned:
            id_lists[k] = [k, 666]
        results = _concurrent_lookups(client, id_lists)
        assert any(666 in ids and len(ids) > 2 for _, ids in posts)  # the bad id did share a POST
        for k, (_, answer) in enumerate(results):
            if k in poisoned:
                assert isinstance(answer, module.FeatureLookupError) and "Value out of range" in str(answer)
            else:
                assert answer == {k: {"n_prior": 10 * k}}, (k, answer)


def test_a_feature_server_refusing_every_post_fails_every_lookup_and_the_next_ones_succeed():
    module = _online_features_module()
    with _feature_server(delay_s=0.02, fail_posts="all") as (url, posts):
        client = module.OnlineFeatures(url, timeout_s=5, max_in_flight=1)
        results = _concurrent_lookups(client, [[k] for k in range(12)])
        for _, answer in results:
            assert isinstance(answer, module.FeatureLookupError) and "answered HTTP 500" in str(answer)
        assert len(posts) <= 2 * 12  # at most the batch's POST and one of its own per lookup
    with _feature_server(delay_s=0.02, fail_posts={0}) as (url, posts):
        client = module.OnlineFeatures(url, timeout_s=5, max_in_flight=1)
        with pytest.raises(module.FeatureLookupError, match="answered HTTP 500"):  # alone: not asked again
            client.lookup("loan_default_online", "applicant_id", [3])
        assert client.lookup("loan_default_online", "applicant_id", [7]) == {7: {"n_prior": 70}}
        assert len(posts) == 2


def test_a_coalesced_post_that_times_out_fails_its_lookups_without_asking_again():
    """No answer is the feature server's state, not an id's: the batch is not split into more waits."""
    module = _online_features_module()
    with _feature_server(delay_s=0.6) as (url, posts):
        client = module.OnlineFeatures(url, timeout_s=0.3, max_in_flight=1)
        results = _concurrent_lookups(client, [[k] for k in range(6)])
        for _, answer in results:
            assert isinstance(answer, module.FeatureLookupError) and "did not answer" in str(answer)
        assert len(posts) <= 3  # one per batch, never one per lookup


def test_an_id_left_out_fails_only_the_lookups_that_asked_for_it():
    module = _online_features_module()
    with _feature_server(delay_s=0.05, leave_out={5}) as (url, posts):
        client = module.OnlineFeatures(url, timeout_s=5, max_in_flight=1)
        results = _concurrent_lookups(client, [[k] for k in range(10)])
        for k, (_, answer) in enumerate(results):
            if k == 5:
                assert isinstance(answer, module.FeatureLookupError) and "left out applicant_id [5]" in str(answer)
            else:
                assert answer == {k: {"n_prior": 10 * k}}
