"""The model server under faults: slow clients cannot stall it, it listens on loopback, bad requests get 400.

One real server (``deploy/serving/model_server.py`` from the serving environment)
for the whole module, with short timeouts so that the tests see them expire; a second
one that looks features up from a stand-in feature server and logs what it answers.
"""

import datetime as dt
import glob
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import torch

from platform_assets.deploy.processes import free_port, read_record
from platform_assets.deploy.serving import (
    PREDICT_PATH,
    ModelServerError,
    predict_over_http,
    start_model_server,
    stop_model_server,
    wait_until_healthy,
)
from platform_assets.train.network import ModelBundle, Preprocessor, TabularNet, load_bundle

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVING_PYTHON = PROJECT_ROOT / ".venv-serving" / "bin" / "python"
KEEPALIVE_S, READ_TIMEOUT_S = 5, 5.0
NAMES = ["income", "debt_to_income", "open_loans", "region"]
GOOD_ROW = [52000.0, 0.31, 2, "north"]

pytestmark = pytest.mark.skipif(
    not SERVING_PYTHON.exists(),
    reason=f"serving environment (seldon-core) missing at {SERVING_PYTHON}: run `make install`",
)


def _bundle(directory: Path) -> None:
    """A small bundle whose network turns one finite but huge income into NaN.

    Hidden units 0 and 1 read only income, with a weight so large that they
    overflow to +inf together, and reach the output with opposite signs
    (inf - inf = NaN). At ordinary incomes they add about 1e-26: nothing.
    """
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({
        "income": rng.lognormal(10.9, 0.4, 200), "debt_to_income": rng.uniform(0, 1, 200),
        "open_loans": rng.integers(0, 6, 200), "region": rng.choice(["north", "south", "east"], 200),
    })
    torch.manual_seed(0)
    pre = Preprocessor(numeric=NAMES[:3], categorical=["region"]).fit(rows)
    net = TabularNet(pre.output_dim, (8,), 0.0)
    with torch.no_grad():
        first, last = net.layers[0], net.layers[3]
        first.weight[:2] = 0.0
        first.weight[:2, 0] = 1e4
        first.bias[:2] = 0.0
        last.weight[0, :2] = torch.tensor([1e-30, -1e-30])
    ModelBundle(net, pre, {"hidden": [8], "dropout": 0.0}, {"model_name": "m", "model_version": "7"}).save(directory)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The running server (its record) and the bundle it serves; stopped at the end of the module."""
    tmp = tmp_path_factory.mktemp("serving_faults")
    _bundle(tmp / "bundle")
    record_path = tmp / "server.json"
    process = start_model_server(
        python=SERVING_PYTHON, model_dir=tmp / "bundle", use_case="loan_default", model_name="m", model_version="7",
        http_port=free_port(), workdir=tmp, log_path=tmp / "server.log", record_path=record_path,
        keepalive_s=KEEPALIVE_S, read_timeout_s=READ_TIMEOUT_S,
    )
    try:
        wait_until_healthy(process, timeout_s=90.0)
        yield read_record(record_path), load_bundle(tmp / "bundle")
    finally:
        stop_model_server(record_path)


def _strict_json(text: str):
    """Parses ``text`` as JSON proper: NaN and Infinity are not JSON, and fail here."""
    def refuse(constant):
        raise AssertionError(f"response body holds {constant}: {text[:300]}")
    return json.loads(text, parse_constant=refuse)


def _body(rows, names=NAMES) -> str:
    return json.dumps({"data": {"names": names, "ndarray": rows}})


def _is_open(sock: socket.socket) -> bool:
    """Whether the server has not closed ``sock`` (nothing to read yet, no end of stream)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True


def _read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes ``sock``, and when it closed (seconds from now)."""
    start, received = time.monotonic(), b""
    sock.settimeout(limit_s)
    while chunk := sock.recv(4096):
        received += chunk
    return received, time.monotonic() - start


def test_idle_and_slow_clients_do_not_stall_other_requests(server):
    record, _ = server
    address, url = ("127.0.0.1", record["http_port"]), record["url"] + PREDICT_PATH
    body = _body([GOOD_ROW]).encode()
    idle = socket.create_connection(address)  # sends nothing
    half_headers = socket.create_connection(address)
    half_headers.sendall(b"POST " + PREDICT_PATH.encode() + b" HTTP/1.1\r\nHost: test\r\nContent-Ty")
    half_body = socket.create_connection(address)
    half_body.sendall(
        b"POST " + PREDICT_PATH.encode() + b" HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body) + body[: len(body) // 2]
    )
    slow = (idle, half_headers, half_body)
    try:
        time.sleep(0.5)  # let the server take the three connections before the others arrive
        latencies = []
        for _ in range(100):
            start = time.monotonic()
            response = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
            latencies.append(time.monotonic() - start)
            assert response.status_code == 200, response.text
            assert len(_strict_json(response.text)["data"]["ndarray"]) == 1
        assert max(latencies) < 1.0, f"slowest of 100 requests took {max(latencies):.2f} s"
        # The slow clients were held open by the server the whole time.
        assert all(_is_open(sock) for sock in slow), "a slow client was dropped before the requests ended"

        # Nothing stuck: the server closes each of them once its time is up.
        answer, waited = _read_until_closed(half_body, READ_TIMEOUT_S + 5)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        _strict_json(answer.split(b"\r\n\r\n", 1)[1].decode())
        for sock, limit in ((half_headers, READ_TIMEOUT_S), (idle, KEEPALIVE_S)):
            answer, waited = _read_until_closed(sock, limit + 5)
            assert answer == b"" and waited < limit + 3
    finally:
        for sock in slow:
            sock.close()


def test_a_client_trickling_its_request_is_cut_off_at_the_deadline(server):
    record, _ = server
    sock = socket.create_connection(("127.0.0.1", record["http_port"]))
    request = b"POST " + PREDICT_PATH.encode() + b" HTTP/1.1\r\nHost: test\r\n" + b"X-Pad: " + b"a" * 100
    start = time.monotonic()
    try:
        for byte in request:  # one byte every 0.2 s: each read is quick, the whole request never ends
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed by the server
                break
            if not _is_open(sock):
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - start
    finally:
        sock.close()
    assert elapsed < READ_TIMEOUT_S + 3, f"server still reading a trickled request after {elapsed:.1f} s"
    assert elapsed > READ_TIMEOUT_S - 1  # closed by the deadline, not at once


def _process_group_listeners(pgid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by a process of group ``pgid``."""
    inodes = set()
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            inodes |= {t[8:-1] for t in (os.readlink(fd) for fd in (proc / "fd").iterdir()) if t.startswith("socket:[")}
        except OSError:  # a process that ended meanwhile
            continue
    listeners = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            listeners.add((socket.inet_ntop(family, raw), int(port, 16)))
    return listeners


def test_every_port_of_the_server_listens_on_loopback_only(server):
    record, _ = server
    listeners = _process_group_listeners(record["pid"])
    assert {port for _, port in listeners} == {record["http_port"], record["metrics_port"]}  # and no gRPC
    assert {address for address, _ in listeners} == {"127.0.0.1"}
    metrics = requests.get(f"http://127.0.0.1:{record['metrics_port']}/metrics", timeout=5)
    assert metrics.status_code == 200  # Seldon's metrics endpoint, on loopback


def _row(**changes):
    return [changes.get(name, value) for name, value in zip(NAMES, GOOD_ROW)]


def _rows_text(*rows_text: str, names=NAMES) -> str:
    """A request body with rows written as JSON text (to carry NaN, Infinity, 1e400 verbatim)."""
    return '{"data": {"names": %s, "ndarray": [%s]}}' % (json.dumps(names), ", ".join(rows_text))


GOOD_TEXT = json.dumps(GOOD_ROW)
# A caller's row form: the row's own fields with its ids and time (this bundle's inputs, and what the
# loan-default request features need); the module's server has no feature server to complete it.
ROW_NAMES = ["application_id", "applicant_id", "application_ts", *NAMES, "loan_amount", "term_months"]
AN_HOUR_AGO = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).replace(tzinfo=None).isoformat()
ROW_GOOD = ["app-1", 17, AN_HOUR_AGO, *GOOD_ROW, 12000.0, 36]


def _caller_row(**changes):
    return [changes.get(name, value) for name, value in zip(ROW_NAMES, ROW_GOOD)]


def _caller_body(**changes) -> str:
    return _body([_caller_row(**changes)], ROW_NAMES)


TOMORROW = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).replace(tzinfo=None).isoformat()
# Requests the platform's own schema rejects (the declared bounds the validation stage quarantines rows by).
SCHEMA_VIOLATIONS = {
    "negative income": (_caller_body(income=-5.0), ["row 0, column 'income': -5.0 violates income > 0"]),
    "negative loan amount": (_caller_body(loan_amount=-1.0), ["loan_amount > 0"]),
    "7-month term": (_caller_body(term_months=7), ["row 0, column 'term_months': 7 violates term_months in [36, 60]"]),
    "debt_to_income 5": (_body([_row(debt_to_income=5)]), ["row 0, column 'debt_to_income': 5 violates "
                                                            "debt_to_income <= 1"]),
    "loan of 1e38": (_caller_body(loan_amount=1e38), ["violate loan_within_income_multiple"]),
    "year 1": (_caller_body(application_ts="0001-01-01T00:00:00"), ["application_ts >= 2025-01-01"]),
    "year 9999": (_caller_body(application_ts="9999-01-01T00:00:00"), ["application_ts <= now + 300 s"]),
    "tomorrow": (_caller_body(application_ts=TOMORROW), ["not in the future"]),
    "applicant_id beyond int64": (_caller_body(applicant_id=2**63), ["9223372036854775808 violates",
                                                                     "signed 64-bit"]),
    "lone surrogate id": (_caller_body(application_id="\ud800x"), ["column 'application_id'", "lone surrogate"]),
    "lone surrogate request id": (_body([GOOD_ROW])[:-1] + ', "meta": {"puid": "\\udfff"}}', ["'meta.puid'",
                                                                                              "lone surrogate"]),
    "deeply nested JSON": ("[" * 100_000 + "]" * 100_000, ["nests JSON deeper than 1024 levels"]),
    "deep value": (_rows_text('[%s, 0.3, 2, "north"]' % ("[" * 1000 + "]" * 1000)),
                   ["row 0, column 'income': expected a number, got array [[[...]]]"]),
    "non-UTF-8 body": (_body([GOOD_ROW]).encode().replace(b"north", b"nor\xffth"), ["not UTF-8 text (byte 0xff"]),
}
BAD_REQUESTS = {
    "missing column": (_body([GOOD_ROW[:3]], NAMES[:3]), ["'region'", "lacks"]),
    "misspelled column": (_body([GOOD_ROW], ["incme", *NAMES[1:]]), ["'income'", "'incme'"]),
    "row too short": (_body([GOOD_ROW, GOOD_ROW[:3]]), ["row 1 has 3 values"]),
    "row too long": (_body([[*GOOD_ROW, 1]]), ["row 0 has 5 values"]),
    "text in a number": (_body([GOOD_ROW, _row(income="a lot")]), ["row 1, column 'income'", "'a lot'"]),
    "true in a number": (_body([_row(open_loans=True)]), ["row 0, column 'open_loans'", "true"]),
    "null in a number": (_body([GOOD_ROW, GOOD_ROW, _row(debt_to_income=None)]), ["row 2, column 'debt_to_income'", "null"]),
    "NaN in a number": (_rows_text('[NaN, 0.3, 2, "north"]'), ["row 0, column 'income'", "NaN"]),
    "Infinity": (_rows_text(GOOD_TEXT, '[52000, Infinity, 2, "north"]'), ["row 1, column 'debt_to_income'", "Infinity"]),
    "-Infinity": (_rows_text('[-Infinity, 0.3, 2, "north"]'), ["row 0, column 'income'", "-Infinity"]),
    "1e400": (_rows_text('[52000, 0.3, 1e400, "north"]'), ["row 0, column 'open_loans'", "not a finite number"]),
    "1e308 (finite, overflows the model)": (_rows_text(GOOD_TEXT, '[1e308, 0.3, 2, "north"]'), ["row 1, column 'income'", "too large"]),
    "null region": (_body([_row(region=None)]), ["row 0, column 'region'", "null"]),
    "unknown region": (_body([GOOD_ROW, _row(region="atlantis")]), ["row 1, column 'region'", "'atlantis'"]),
    "number as region": (_body([_row(region=3)]), ["row 0, column 'region'"]),
    "data is text": ('{"data": "x"}', ["'data'", "string 'x'"]),
    "no data": ('{"meta": {}}', ["no 'data'"]),
    "body is a list": ("[[1, 2, 3]]", ["JSON object", "array"]),
    "not JSON": ("{data: x", ["JSON"]),
    "ndarray is text": ('{"data": {"names": ["income"], "ndarray": "x"}}', ["'data.ndarray'"]),
    "ndarray not a list of lists": (_body([52000, 0.3, 2, "north"]), ["row 0 is number 52000", "data.ndarray"]),
    "ndarray empty": (_body([]), ["'data.ndarray'", "non-empty"]),
    "names missing": ('{"data": {"ndarray": [[1]]}}', ["'data.names'"]),
    "names empty": (_body([[]], []), ["'data.names'", "non-empty"]),
    "empty name": (_body([GOOD_ROW], ["income", "", "open_loans", "region"]), ["'data.names' entries [1]"]),
    "repeated name": (_body([GOOD_ROW], ["income", "income", "open_loans", "region"]), ["repeats ['income']"]),
    "tensor instead of ndarray": ('{"data": {"names": ["income"], "tensor": {"shape": [1], "values": [1]}}}', ["'tensor'"]),
    "meta not an object": (_body([GOOD_ROW])[:-1] + ', "meta": "x"}', ["'meta'"]),
    **SCHEMA_VIOLATIONS,
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_caller_mistake_gets_400_naming_the_field_and_row(server, case):
    record, _ = server
    body, expected = BAD_REQUESTS[case]
    response = requests.post(record["url"] + PREDICT_PATH, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 400, response.text
    status = _strict_json(response.text)["status"]
    assert status["reason"] == "MICROSERVICE_BAD_DATA"
    for text in expected:
        assert text in status["info"], status["info"]


def test_a_finite_input_the_network_turns_into_nan_gets_400_naming_its_row(server):
    record, bundle = server
    pre = bundle.preprocessor
    huge_income = pre.means[0] + 1e35 * pre.stds[0]  # encodes to 1e35: finite in float32
    rows = pd.DataFrame([GOOD_ROW, _row(income=huge_income)], columns=NAMES)
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isfinite(pre.transform(rows)).all()
        assert np.isnan(bundle.predict_proba(rows)[1])  # what the server would have sent

    with pytest.raises(ModelServerError, match=r"HTTP 400.*rows \[1\] give no finite probability") as caught:
        predict_over_http(record["url"], rows.to_dict("records"))
    assert caught.value.status == 400
    _strict_json(caught.value.body)

    served, meta = predict_over_http(record["url"], rows.head(1).to_dict("records"))  # the ordinary row alone
    np.testing.assert_allclose(served, bundle.predict_proba(rows.head(1)), atol=1e-5, rtol=0)
    assert meta["tags"] == {"model_name": "m", "model_version": "7"}


def test_other_http_mistakes_get_their_own_status_not_500(server):
    record, _ = server
    base = record["url"]
    assert requests.get(base + "/no/such/path", timeout=5).status_code == 404
    assert requests.put(base + PREDICT_PATH, data="{}", timeout=5).status_code == 405
    too_big = b'{"data": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    response = requests.post(base + PREDICT_PATH, data=too_big, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert "limit" in _strict_json(response.text)["status"]["info"]
    # A chunked body is read as it arrives and counted against the same limit.
    chunked = requests.post(base + PREDICT_PATH, data=iter([_body([GOOD_ROW]).encode()]),
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 200, chunked.text
    chunks = (b"x" * (1024 * 1024) for _ in range(17))
    too_big = requests.post(base + PREDICT_PATH, data=chunks, headers={"Content-Type": "application/json"}, timeout=30)
    assert too_big.status_code == 413 and "at most" in _strict_json(too_big.text)["status"]["info"]
    huge_head = requests.post(base + PREDICT_PATH, data=_body([GOOD_ROW]), timeout=10,
                              headers={"Content-Type": "application/json", "X-Padding": "p" * (70 * 1024)})
    assert huge_head.status_code == 431


def _read_responses(sock: socket.socket, count: int, limit_s: float = 10.0) -> list[tuple[int, bytes]]:
    """``count`` HTTP responses read off ``sock`` in order: (status, body); each must have a Content-Length."""
    sock.settimeout(limit_s)
    reader, answers = sock.makefile("rb"), []
    for _ in range(count):
        status = int(reader.readline().split()[1])
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        answers.append((status, reader.read(int(headers["content-length"]))))
    return answers


def test_pipelined_requests_are_answered_in_order_by_a_worker_scoring_on_threads(server, tmp_path):
    """A server whose workers score on 4 threads (as for a model that looks features up): answers keep the
    order of the requests on one connection, a 400 does not end it, and Seldon's other routes still answer."""
    record, bundle = server
    record_path = tmp_path / "threaded.json"
    process = start_model_server(
        python=SERVING_PYTHON, model_dir=Path(record["model_dir"]), use_case="loan_default", model_name="m",
        model_version="7", http_port=free_port(), workdir=tmp_path, log_path=tmp_path / "server.log",
        record_path=record_path, threads=4)
    try:
        wait_until_healthy(process, timeout_s=90.0)
        rows = [GOOD_ROW, [30000.0, 0.9, 5, "south"], [80000.0, 0.1, 0, "east"]]
        bodies = [_body([rows[0]]), _body([["not a number", 0.5, 1, "north"]]), _body([rows[1], rows[2]])]
        wire = b"".join(b"POST " + PREDICT_PATH.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        + b"Content-Length: %d\r\n\r\n" % len(b) + b.encode() for b in bodies)
        with socket.create_connection(("127.0.0.1", process.http_port)) as sock:
            sock.sendall(wire)  # three requests in one write
            answers = _read_responses(sock, 3)
            assert [status for status, _ in answers] == [200, 400, 200]
            frame = pd.DataFrame([rows[0], rows[1], rows[2]], columns=NAMES)
            served = [p[0] for p in _strict_json(answers[0][1].decode())["data"]["ndarray"]]
            served += [p[0] for p in _strict_json(answers[2][1].decode())["data"]["ndarray"]]
            np.testing.assert_allclose(served, bundle.predict_proba(frame), atol=1e-6, rtol=0)
            assert "income" in _strict_json(answers[1][1].decode())["status"]["info"]
            sock.sendall(b"GET /health/status HTTP/1.1\r\nHost: t\r\n\r\n")  # Seldon's Flask route, same connection
            [(status, _)] = _read_responses(sock, 1)
            assert status == 200
        assert requests.get(process.url + "/api/v1.0/metadata", timeout=5).status_code == 200
    finally:
        stop_model_server(record_path)


def test_a_body_not_sent_as_json_gets_400_saying_what_is_wrong(server):
    record, _ = server
    url, body = record["url"] + PREDICT_PATH, _body([GOOD_ROW])
    for headers, expected in (({"Content-Type": "text/plain"}, "Content-Type 'text/plain'"),
                              ({}, "no Content-Type"),
                              ({"Content-Type": "application/x-www-form-urlencoded"}, "without a 'json' field")):
        response = requests.post(url, data=body.encode(), headers=headers, timeout=10)
        assert response.status_code == 400, (headers, response.text)
        assert expected in _strict_json(response.text)["status"]["info"]
    form = requests.post(url, data={"json": body}, timeout=10)  # Seldon's own form payload still answers
    assert form.status_code == 200, form.text


def test_a_failed_lookup_answers_503_without_blaming_the_caller(server):
    """This server has no feature server: a valid caller's row cannot be completed (not the caller's fault)."""
    record, _ = server
    response = requests.post(record["url"] + PREDICT_PATH, data=_caller_body(),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 503, response.text
    status = _strict_json(response.text)["status"]
    assert status["reason"] == "FEATURES_UNAVAILABLE" and "FEATURE_SERVER_URL" in status["info"]


class _FeatureServer:
    """A stand-in for Feast's feature server; it fails a whole POST on an id its store cannot hold, as Feast does."""

    def __init__(self):
        self.seen: list[int] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                ids = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["entities"]["applicant_id"]
                owner.seen.extend(ids)
                if any(not 0 <= i < 2**63 for i in ids):
                    status, out = 500, b'"Value out of range"'
                else:
                    status, out = 200, json.dumps({
                        "metadata": {"feature_names": ["applicant_id", "recent_application_ts", "recent_loan_amounts"]},
                        "results": [{"values": ids}, {"values": [[] for _ in ids]}, {"values": [[] for _ in ids]}],
                    }).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def lookup_server(server, tmp_path_factory):
    """A server that looks features up (coalesced, several requests per worker at once) and logs its answers."""
    record, _ = server
    tmp = tmp_path_factory.mktemp("lookups")
    features = _FeatureServer()
    record_path = tmp / "server.json"
    process = start_model_server(
        python=SERVING_PYTHON, model_dir=Path(record["model_dir"]), use_case="loan_default", model_name="m",
        model_version="7", http_port=free_port(), workdir=tmp, log_path=tmp / "server.log", record_path=record_path,
        feature_server_url=features.url, inference_log_dir=tmp / "inference", threads=8)
    try:
        wait_until_healthy(process, timeout_s=90.0)
        yield process.url, tmp / "inference", features
    finally:
        stop_model_server(record_path)
        features.httpd.shutdown()


def test_bad_ids_among_concurrent_lookups_fail_only_their_own_requests(lookup_server):
    """320 requests at once, 20 with an id beyond 64 bits: each valid one is answered 200, each bad one 400."""
    url, _, features = lookup_server
    bad = set(range(7, 320, 16))
    bodies = [_caller_body(application_id=f"c-{k}", applicant_id=2**63 + k if k in bad else 100 + k % 40)
              for k in range(320)]
    local = threading.local()

    def send(body):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session.post(url + PREDICT_PATH, data=body, headers={"Content-Type": "application/json"}, timeout=30)

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, bodies))
    statuses = {k: answer.status_code for k, answer in enumerate(answers)}
    assert {k: s for k, s in statuses.items() if k not in bad and s != 200} == {}, answers[0].text
    assert all(statuses[k] == 400 and "signed 64-bit" in answers[k].json()["status"]["info"] for k in bad)
    assert features.seen and max(features.seen) < 2**63  # refused at the door: never looked up


def _logged(directory: Path) -> dict[str, dict]:
    return {json.loads(line)["request_id"]: json.loads(line)
            for path in glob.glob(str(directory / "day=*" / "*.jsonl")) for line in Path(path).read_text().splitlines()}


def test_smoke_traffic_is_logged_apart_from_callers(lookup_server):
    url, log_dir, _ = lookup_server
    for puid, headers in (("smoke-1", {"X-Platform-Traffic": "smoke"}), ("caller-1", {}),
                          ("check-1", {"X-Platform-Traffic": "check"})):
        body = _body([_caller_row(application_id=puid)], ROW_NAMES)[:-1] + f', "meta": {{"puid": "{puid}"}}}}'
        response = requests.post(url + PREDICT_PATH, data=body, timeout=10,
                                 headers={"Content-Type": "application/json", **headers})
        assert response.status_code == 200, response.text
    production, smoke = _logged(log_dir), _logged(log_dir / "smoke")
    assert "smoke-1" in smoke and "smoke-1" not in production
    assert "caller-1" in production and "caller-1" not in smoke
    assert "check-1" in smoke and "check-1" not in production  # any mark of the platform's own traffic
    assert smoke["smoke-1"]["application_id"] == "smoke-1"  # the same record, in its own folder
    assert set(smoke["smoke-1"]) == set(production["caller-1"])
