"""The Seldon Core model server: served predictions equal the bundle's, and replace/stop work."""

import numpy as np
import pandas as pd
import pytest
import torch

from platform_assets.deploy.serving import (
    free_port,
    is_alive,
    predict_over_http,
    read_server_record,
    start_model_server,
    stop_model_server,
    wait_until_healthy,
)
from platform_assets.train.network import ModelBundle, Preprocessor, TabularNet
from tests.conftest import SERVING_PYTHON

pytestmark = pytest.mark.skipif(
    not SERVING_PYTHON.exists(), reason=f"serving environment missing at {SERVING_PYTHON}: run `make install`"
)


@pytest.fixture
def rows():
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {"income": rng.lognormal(10.9, 0.4, 50), "debt_to_income": rng.uniform(0, 1, 50),
         "region": rng.choice(["north", "south", "east"], 50)}
    )


def _bundle(rows, directory, version):
    torch.manual_seed(0)
    pre = Preprocessor(numeric=["income", "debt_to_income"], categorical=["region"]).fit(rows)
    bundle = ModelBundle(TabularNet(pre.output_dim, (8,), 0.0), pre, {"hidden": [8], "dropout": 0.0},
                         {"model_name": "m", "model_version": version})
    bundle.save(directory)
    return bundle


def _start(tmp_path, bundle_dir, version):
    process = start_model_server(
        python=SERVING_PYTHON, model_dir=bundle_dir, model_name="m", model_version=version,
        http_port=free_port(), log_path=tmp_path / "server.log", pid_path=tmp_path / "server.json",
    )
    wait_until_healthy(process.url, pid=process.pid, log_path=tmp_path / "server.log")
    return process


def test_served_predictions_equal_the_bundle(tmp_path, rows):
    bundle = _bundle(rows, tmp_path / "b", "3")
    process = _start(tmp_path, tmp_path / "b", "3")
    try:
        served, meta = predict_over_http(process.url, rows.to_dict("records"))
        np.testing.assert_allclose(served, bundle.predict_proba(rows), atol=1e-5, rtol=0)
        assert meta["tags"] == {"model_name": "m", "model_version": "3"}
        with pytest.raises(RuntimeError, match="missing columns"):
            predict_over_http(process.url, rows.drop(columns=["region"]).to_dict("records"))
    finally:
        assert stop_model_server(tmp_path / "server.json")
    assert not is_alive(process.pid)
    assert read_server_record(tmp_path / "server.json") is None


def test_starting_again_replaces_the_running_server(tmp_path, rows):
    _bundle(rows, tmp_path / "b1", "1")
    _bundle(rows, tmp_path / "b2", "2")
    first = _start(tmp_path, tmp_path / "b1", "1")
    try:
        second = _start(tmp_path, tmp_path / "b2", "2")
        assert not is_alive(first.pid)
        _, meta = predict_over_http(second.url, rows.head(2).to_dict("records"))
        assert meta["tags"]["model_version"] == "2"
    finally:
        stop_model_server(tmp_path / "server.json")
