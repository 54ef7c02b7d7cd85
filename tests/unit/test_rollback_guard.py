"""The gate's rollback rule: a rolled-back model (by its weights, not its number) stays out until a person clears it."""

from types import SimpleNamespace

import pytest

from platform_assets.evaluate.rollbacks import clear_command, rollback_reasons
from platform_assets.train.registry import (
    ROLLBACK_CLEARED_TAG, ROLLED_BACK_AT_TAG, ROLLED_BACK_TAG, clear_rollback, mark_rolled_back, rolled_back_versions)

BAD, OTHER = "a" * 64, "b" * 64


def _version(number: str, weights: str | None, **tags):
    return SimpleNamespace(version=number, tags={**({"weights_sha256": weights} if weights else {}), **tags})


ROLLED_BACK_V2 = _version("2", BAD, rolled_back="true", rolled_back_at="2026-11-30T10:00:00+00:00")


def test_identical_weights_of_a_rolled_back_version_are_refused_naming_it_and_the_way_out():
    (reason,) = rollback_reasons("3", [BAD, BAD], [ROLLED_BACK_V2], "loan_default")
    assert reason == ("FAIL: weights identical to version 2, rolled back on 2026-11-30T10:00:00+00:00; clear it with "
                      "`python -m platform_assets clear-rollback --use-case loan_default --version 2`")
    # Either hash matching refuses: the rehash of the stored file, or the tag training wrote.
    assert rollback_reasons("3", [BAD, OTHER], [ROLLED_BACK_V2], "loan_default")
    assert rollback_reasons("3", [None, BAD], [ROLLED_BACK_V2], "loan_default")


def test_different_weights_and_no_rollback_pass():
    assert rollback_reasons("3", [OTHER, OTHER], [ROLLED_BACK_V2], "loan_default") == []
    assert rollback_reasons("3", [BAD, BAD], [], "loan_default") == []


def test_the_rolled_back_version_itself_is_refused_by_its_number_even_without_a_recorded_hash():
    (reason,) = rollback_reasons("2", [OTHER], [_version("2", None, rolled_back="true")], "loan_default")
    assert reason.startswith("FAIL: version 2 was rolled back; clear it with")


def test_unknown_weights_cannot_be_told_apart_from_a_rolled_back_version():
    (reason,) = rollback_reasons("3", [None, ""], [ROLLED_BACK_V2], "loan_default")
    assert "version 3's weights hash is unknown" in reason and "version 2" in reason


def test_every_matching_rolled_back_version_is_named_in_version_order():
    again = _version("10", BAD, rolled_back="true")
    reasons = rollback_reasons("11", [BAD], [again, ROLLED_BACK_V2], "loan_default")
    assert [r.split(",")[0] for r in reasons] == ["FAIL: weights identical to version 2",
                                                  "FAIL: weights identical to version 10"]
    assert clear_command("loan_default", "10") in reasons[1]


@pytest.fixture
def registry(tmp_path):
    """A SQLite MLflow registry with model ``m``: versions 1-3, version 3 with version 2's weights."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("m")
    for weights in (OTHER, BAD, BAD):
        client.create_model_version("m", source=str(tmp_path), tags={"weights_sha256": weights})
    return client


def test_a_rollback_marks_the_version_and_a_clear_lets_identical_weights_through(registry):
    assert rolled_back_versions(registry, "m") == []
    assert rolled_back_versions(registry, "not_registered") == []
    mark_rolled_back(registry, "m", "2", "run-1")
    (marked,) = rolled_back_versions(registry, "m")
    assert marked.version == 2 and marked.tags[ROLLED_BACK_AT_TAG][:2] == "20"
    (reason,) = rollback_reasons("3", [BAD], rolled_back_versions(registry, "m"), "uc")
    assert reason.startswith(f"FAIL: weights identical to version 2, rolled back on {marked.tags[ROLLED_BACK_AT_TAG]}")

    record = clear_rollback(registry, "m", "2", "ana")
    tags = registry.get_model_version("m", "2").tags
    assert record.startswith("ana at 20") and tags[ROLLBACK_CLEARED_TAG] == record
    assert tags[ROLLED_BACK_TAG] == "cleared" and rolled_back_versions(registry, "m") == []
    assert rollback_reasons("3", [BAD], rolled_back_versions(registry, "m"), "uc") == []
    with pytest.raises(ValueError, match="version 2 is not rolled back .* is cleared"):
        clear_rollback(registry, "m", "2", "ana")
    # Rolled back again later: refused again.
    mark_rolled_back(registry, "m", "2", "run-2")
    assert rollback_reasons("3", [BAD], rolled_back_versions(registry, "m"), "uc")


def test_clear_rollback_command(registry, monkeypatch, capsys):
    from platform_assets import cli
    from tests.conftest import loan

    name = loan().model_name
    registry.create_registered_model(name)
    registry.create_model_version(name, source="/nowhere", tags={"weights_sha256": BAD})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    argv = ["clear-rollback", "--use-case", "loan_default", "--version", "1", "--by", "ana"]
    assert cli.main(argv) == 1 and "is not rolled back" in capsys.readouterr().err
    mark_rolled_back(registry, name, "1", "run-1")
    assert cli.main(argv) == 0
    assert "rollback cleared by ana at" in capsys.readouterr().out
    assert registry.get_model_version(name, "1").tags[ROLLED_BACK_TAG] == "cleared"
    assert cli.main([*argv[:-2], "--version", "9"]) == 1  # no such version
    assert cli.main(["clear-rollback", "--use-case", "nope", "--version", "1"]) == 1
