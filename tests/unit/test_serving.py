"""The Seldon Core model server: served predictions equal the bundle's, and replace/stop work."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from platform_assets.deploy.processes import free_port, is_alive, read_record
from platform_assets.deploy.serving import (
    ModelServerError,
    predict_over_http,
    start_model_server,
    stop_model_server,
    wait_until_healthy,
)
from platform_assets.train.network import ModelBundle, Preprocessor, TabularNet, load_bundle

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVING_PYTHON = PROJECT_ROOT / ".venv-serving" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    not SERVING_PYTHON.exists(),
    reason=f"serving environment (seldon-core) missing at {SERVING_PYTHON}: run `make install`",
)


@pytest.fixture
def rows():
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "income": rng.lognormal(10.9, 0.4, 50),
            "debt_to_income": rng.uniform(0, 1, 50),
            "open_loans": rng.integers(0, 6, 50),  # numpy int64: must survive JSON
            "region": rng.choice(["north", "south", "east"], 50),
            "applied_at": pd.date_range("2026-09-01", periods=50, freq="h"),  # extra column, ignored
        }
    )


@pytest.fixture
def servers(tmp_path):
    """Record files of servers started by a test; all stopped at teardown, even on failure."""
    paths: list[Path] = []
    yield paths
    for record_path in paths:
        stop_model_server(record_path)


def _bundle(rows, directory, version):
    torch.manual_seed(0)
    pre = Preprocessor(numeric=["income", "debt_to_income", "open_loans"], categorical=["region"]).fit(rows)
    bundle = ModelBundle(
        TabularNet(pre.output_dim, (8,), 0.0), pre, {"hidden": [8], "dropout": 0.0},
        {"model_name": "loan-default", "model_version": version},
    )
    bundle.save(directory)
    return bundle


def _start(tmp_path, servers, bundle_dir, version):
    record_path = tmp_path / "server.json"
    servers.append(record_path)
    process = start_model_server(
        python=SERVING_PYTHON, model_dir=bundle_dir, use_case="loan_default", model_name="loan-default", model_version=version,
        http_port=free_port(), workdir=tmp_path, log_path=tmp_path / "server.log", record_path=record_path,
    )
    wait_until_healthy(process, timeout_s=90.0)
    return process


def test_served_predictions_equal_the_bundle(tmp_path, rows, servers):
    _bundle(rows, tmp_path / "b", "3")
    bundle = load_bundle(tmp_path / "b")  # what the server loads, not the in-memory original
    process = _start(tmp_path, servers, tmp_path / "b", "3")
    record = read_record(tmp_path / "server.json")
    assert record["pid"] == process.pid and record["url"] == process.url and record["model_version"] == "3"

    served, meta = predict_over_http(process.url, rows.to_dict("records"))
    assert len(served) == 50
    np.testing.assert_allclose(served, bundle.predict_proba(rows), atol=1e-5, rtol=0)
    assert meta["tags"] == {"model_name": "loan-default", "model_version": "3"}
    with pytest.raises(ModelServerError, match=r"HTTP 400.*lacks \['region'\]"):  # the caller's mistake
        predict_over_http(process.url, rows.drop(columns=["region"]).to_dict("records"))
    with pytest.raises(ModelServerError, match="row 0, column 'income': expected a number, got null"):  # NaN is sent as null
        predict_over_http(process.url, rows.assign(income=np.nan).head(3).to_dict("records"))

    assert stop_model_server(tmp_path / "server.json")
    assert not is_alive(process.pid)
    with pytest.raises(ProcessLookupError):  # the whole group: no orphaned gRPC or metrics process
        os.killpg(process.pid, 0)
    assert read_record(tmp_path / "server.json") is None
    assert not stop_model_server(tmp_path / "server.json")  # nothing left to stop


def test_starting_again_replaces_the_running_server(tmp_path, rows, servers):
    _bundle(rows, tmp_path / "b1", "1")
    _bundle(rows, tmp_path / "b2", "2")
    first = _start(tmp_path, servers, tmp_path / "b1", "1")
    second = _start(tmp_path, servers, tmp_path / "b2", "2")
    assert not is_alive(first.pid)
    assert is_alive(second.pid)
    assert read_record(tmp_path / "server.json")["pid"] == second.pid
    _, meta = predict_over_http(second.url, rows.head(2).to_dict("records"))
    assert meta["tags"]["model_version"] == "2"


def test_a_server_that_cannot_start_reports_its_log(tmp_path, servers):
    servers.append(tmp_path / "server.json")
    process = start_model_server(
        python=SERVING_PYTHON, model_dir=tmp_path / "no-bundle", use_case="loan_default", model_name="m", model_version="1",
        http_port=free_port(), workdir=tmp_path, log_path=tmp_path / "server.log", record_path=tmp_path / "server.json",
    )
    with pytest.raises(RuntimeError, match="no \\['model.safetensors', 'bundle.json'\\]"):
        wait_until_healthy(process, timeout_s=60.0)


def test_a_port_held_by_another_server_is_refused_before_starting(tmp_path):
    """Else the health check of the new server would be answered by the old one (another state root's)."""
    import socket

    import pytest

    from platform_assets.deploy.serving import port_is_free

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} .* SERVING_PORT"):
            port_is_free("127.0.0.1", port)
    port_is_free("127.0.0.1", port)  # let go: free again


def test_served_features_that_differ_from_the_sdk_are_counted():
    """The decision of the deployment's served_features_match_sdk check, on planted answers."""
    from platform_assets.deploy.feature_server import differing_values

    sdk = pd.DataFrame({"applicant_id": [1, 2, 3], "debt_ratio_30d": [0.1, np.nan, 0.3], "n_prior": [0, 1, 2]})
    assert differing_values(sdk[["n_prior", "applicant_id", "debt_ratio_30d"]], sdk) == 0  # order and NaN agree
    stale = sdk.assign(n_prior=[0, 0, 2], debt_ratio_30d=[0.1, 0.2, 0.3])  # one count, one missing value served
    assert differing_values(stale, sdk) == 2
    assert differing_values(sdk.drop(columns="n_prior"), sdk) is None  # a feature missing from the answer
    assert differing_values(sdk.head(2), sdk) is None  # an entity missing from the answer


def test_free_ports_are_chosen_outside_the_kernels_ephemeral_range():
    """A port chosen for later use is not one the kernel hands to the next client socket or bind(0)."""
    import socket

    from platform_assets.deploy.processes import _ephemeral_ports, free_port

    low, high = _ephemeral_ports()
    ports = [free_port() for _ in range(50)]
    assert all(not (low <= p <= high) for p in ports)
    assert len(set(ports)) > 40  # random, so two processes choosing at once rarely meet
    with socket.socket() as sock:  # and free: it can be bound
        sock.bind(("127.0.0.1", ports[0]))
