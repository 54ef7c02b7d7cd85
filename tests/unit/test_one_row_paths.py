"""The model server's one-row paths judge, log and answer exactly as its general paths do.

Most requests are one row, and they take shorter paths (``deploy/serving``): the request checks
(``payload._one_row``), the inference-log record (``PlatformModel.log_record``) and Seldon's answer
(``PlatformModel.response``). Each is compared here with the general path on the same input,
including every kind of bad value the checks refuse.
"""

import importlib.util
import json
import math
import subprocess
import textwrap
from pathlib import Path

import pytest

from platform_assets.declared import use_case

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVING = PROJECT_ROOT / "deploy" / "serving"
SERVING_PYTHON = PROJECT_ROOT / ".venv-serving" / "bin" / "python"
spec = importlib.util.spec_from_file_location("payload_one_row", SERVING / "payload.py")
payload = importlib.util.module_from_spec(spec)
spec.loader.exec_module(payload)

RULES = use_case("loan_default").source.declared_rules()
NUMERIC = ["income", "loan_amount", "term_months", "employment_years", "credit_history_years", "num_open_accounts",
           "num_delinquencies", "debt_to_income"]
CATEGORIES = {"region": ["north", "south", "east", "west", "central"]}
GOOD = {"income": 52000.0, "loan_amount": 12000.0, "term_months": 36, "employment_years": 4.5,
        "credit_history_years": 9.0, "num_open_accounts": 3, "num_delinquencies": 0, "debt_to_income": 0.31,
        "region": "north"}
VALUES = [0, -0.0, 1, -5.0, 5, 0.5, 2.5, 7, 36, 120, 1e-300, 1e38, 10**30, 10**400, math.nan, math.inf, -math.inf,
          True, False, None, "12", "north", [1], {"a": 1}]


def _judged(row: dict):
    """The one-row verdict (columns or None) and the general path's errors for the same row (sent twice)."""
    names, values = list(row), list(row.values())
    fast = payload._one_row(names, values, NUMERIC, CATEGORIES, RULES)
    errors: list[str] = []
    general = payload._checked_columns(names, [values, values], NUMERIC, CATEGORIES, RULES, errors)
    return fast, general, errors


@pytest.mark.parametrize("column", [*NUMERIC, "region"])
def test_a_one_row_request_is_accepted_exactly_when_the_general_checks_find_nothing(column):
    for value in [*VALUES, "south", "West", "", "nowhere"]:
        fast, general, errors = _judged({**GOOD, column: value})
        if fast is None:
            assert errors, f"{column}={value!r}: refused by the one-row path, accepted by the general one"
        else:
            assert not errors, f"{column}={value!r}: accepted by the one-row path, refused with {errors}"
            assert {c: list(v) for c, v in fast.items()} == {c: list(v[:1]) for c, v in general.items()}


def test_a_rules_quick_verdict_agrees_with_the_rule_it_names():
    for column, rule in RULES.fields.items():
        for value in [*VALUES, "south", "nowhere"]:
            assert rule.keeps(value) == (rule.broken(column, value) is None), (column, value)


def test_a_row_rule_across_columns_refuses_one_row_too():
    fast, _, errors = _judged({**GOOD, "loan_amount": 10 * 52000.0 + 1})
    assert fast is None and any("violate" in e for e in errors)


MODEL_SCRIPT = textwrap.dedent("""
    import json, os, sys, datetime as dt
    import numpy as np
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from seldon_core.utils import construct_response_json
    from PlatformModel import PlatformModel
    from inference_log import InferenceLog, encode_rows
    import payload
    model = PlatformModel()
    found = {}
    for unit in ("", "model-a"):
        os.environ["PREDICTIVE_UNIT_ID"], os.environ["PREDICTIVE_UNIT_IMAGE"] = unit, "image:1"
        if not unit:
            del os.environ["PREDICTIVE_UNIT_ID"]
        model._request_path = None
        probabilities = np.array([0.25, 0.5])
        kept = {"puid": "r-1"}
        found[unit or "plain"] = [model.response("r-1", probabilities), construct_response_json(
            model, False, {"data": {}, "meta": kept}, probabilities.reshape(-1, 1), kept)]
    message = {"data": {"names": ["income", "debt_to_income", "open_loans", "region"],
                        "ndarray": [[52000.0, 0.3, 2, "north"]]}}
    scored = model.score_request(message, 1764000000.5)
    served = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.timezone.utc)
    same, each = model.log_fields("r-2", scored, served, 1.5)
    record = model.log_record("r-2", scored, served, 1.5)
    found["log"] = [record, {**same, **{k: v[0] for k, v in each.items()}}, encode_rows(1, same, each)[0]]
    log = InferenceLog(sys.argv[3])
    log.write_record(record, served)
    log.write(1, same, each, served)
    print(json.dumps(found))
""")


@pytest.mark.skipif(not SERVING_PYTHON.exists(), reason=f"serving environment missing at {SERVING_PYTHON}")
def test_one_row_log_records_and_answers_equal_the_general_ones(tmp_path):
    import os

    import numpy as np
    import pandas as pd
    import torch

    from platform_assets.train.network import ModelBundle, Preprocessor, TabularNet

    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"income": rng.lognormal(10.9, 0.4, 50), "debt_to_income": rng.uniform(0, 1, 50),
                         "open_loans": rng.integers(0, 6, 50), "region": rng.choice(["north", "south"], 50)})
    torch.manual_seed(0)
    pre = Preprocessor(numeric=["income", "debt_to_income", "open_loans"], categorical=["region"]).fit(rows)
    ModelBundle(TabularNet(pre.output_dim, (4,), 0.0), pre, {"hidden": [4], "dropout": 0.0},
                {"model_name": "m", "model_version": "3"}).save(tmp_path / "bundle")
    env = {**os.environ, "MODEL_DIR": str(tmp_path / "bundle"), "USE_CASE": "loan_default",
           "PLATFORM_PARTITIONS_START": "2025-01-01"}
    done = subprocess.run([str(SERVING_PYTHON), "-c", MODEL_SCRIPT, str(PROJECT_ROOT), str(SERVING),
                           str(tmp_path / "log")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    for case in ("plain", "model-a"):
        ours, seldons = found[case]
        assert ours == seldons
    assert found["model-a"][0]["meta"]["requestPath"] == {"model-a": "image:1"}
    record, merged, line = found["log"]
    assert record == merged and json.loads(line) == merged and list(record) == list(merged)
    [written] = (tmp_path / "log").glob("day=*/*.jsonl")
    lines = [json.loads(text) for text in written.read_text().splitlines()]
    assert lines == [merged, merged]  # write_record and write put the same line in the same file


def test_one_rows_encoding_equals_the_preprocessors_transform():
    import numpy as np

    from platform_assets.train.network import Preprocessor

    rng = np.random.default_rng(5)
    fitted = {"income": rng.lognormal(10.9, 0.4, 200), "open_loans": rng.integers(0, 6, 200),
              "region": rng.choice(["north", "south", "east"], 200)}
    pre = Preprocessor(numeric=["income", "open_loans"], categorical=["region"]).fit(fitted)
    rows = [(float(rng.lognormal(10.9, 1.0)), int(rng.integers(0, 9)), str(rng.choice(["north", "east", "west"])))
            for _ in range(300)]
    rows += [(1e38, 0, "north"), (1e300, 3, "south"), (-0.0, 2**40, "nowhere"), (5e-324, 1, "east")]
    with np.errstate(over="ignore", invalid="ignore"):
        for income, loans, region in rows:
            columns = {"income": np.array([float(income)]), "open_loans": np.array([float(loans)]),
                       "region": np.array([region], dtype=object)}
            one, general = pre.transform_one(columns), pre.transform(columns)
            assert one.dtype == general.dtype == np.float32 and one.shape == general.shape
            assert np.array_equal(one, general, equal_nan=True), (income, loans, region)
    with pytest.raises(KeyError, match="open_loans"):
        pre.transform_one({"income": [1.0], "region": ["north"]})
