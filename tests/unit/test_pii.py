"""Personal data is replaced by keyed HMAC tokens that still join; any column shape masks."""

import hashlib
import hmac
import warnings

import numpy as np
import pandas as pd
import pytest

from platform_assets import settings
from platform_assets.validate.pii import MASKED_PATTERN, mask_pii
from tests.conftest import TEST_PII_KEY


def test_masking_is_consistent_keyed_and_keeps_gaps():
    df = pd.DataFrame({"email": ["a@x.io", "b@x.io", "a@x.io", None], "income": [1.0, 2.0, 3.0, 4.0]})
    one = mask_pii(df, ("email", "phone"), "key-1")
    two = mask_pii(df, ("email",), "key-2")
    assert one["email"][0] == one["email"][2] != one["email"][1]
    assert one["email"][0] != two["email"][0]
    assert one["email"][3] is None
    assert one["email"][:3].str.fullmatch(MASKED_PATTERN).all()
    assert not one["email"][:3].str.contains("@").any()
    assert one["income"].tolist() == df["income"].tolist()
    assert df["email"][0] == "a@x.io"  # the input is not modified


def test_tokens_are_an_hmac_under_the_key_not_a_salted_hash():
    token = mask_pii(pd.DataFrame({"phone": ["+44 7700 900123"]}), ("phone",), "k" * 32)["phone"][0]
    assert token == hmac.new(b"k" * 32, b"+44 7700 900123", hashlib.sha256).hexdigest()[:32]
    assert token != hashlib.sha256(b"k" * 32 + b"\x00+44 7700 900123").hexdigest()[:32]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([None, None, None], id="all-missing"),
        pytest.param([np.nan, np.nan], id="all-nan"),
        pytest.param([], id="empty"),
        pytest.param([None, "a@x.io", 447700900123, 3.5, np.nan, "447700900123"], id="mixed"),
    ],
)
def test_any_column_shape_masks(values):
    df = pd.DataFrame({"email": pd.Series(values, dtype=object), "row": range(len(values))})
    masked = mask_pii(df, ("email",), "key")
    assert len(masked) == len(df) and masked["row"].tolist() == list(range(len(values)))
    present = df["email"].notna()
    assert masked["email"][~present].map(lambda v: v is None).all()
    assert masked["email"][present].str.fullmatch(MASKED_PATTERN).all()
    if len(values) == 6:  # a number is masked as its text: the same person joins across file formats
        assert masked["email"][2] == masked["email"][5] != masked["email"][1]


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="PII_HMAC_KEY"):
        mask_pii(pd.DataFrame({"email": ["a@x.io"]}), ("email",), "")


@pytest.fixture
def env(monkeypatch):
    for name in (settings.PROFILE_ENV, settings.PII_KEY_ENV, settings.PII_KEY_DEPRECATED_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_local_mode_without_a_key_uses_the_development_key_and_warns(env):
    with pytest.warns(settings.PiiKeyWarning, match="DEVELOPMENT key"):
        setting = settings.pii_key_setting()
    assert setting.variable is None and setting.source == "development"


@pytest.mark.parametrize("key", [None, "short", settings.DEVELOPMENT_PII_KEY])
def test_another_profile_without_a_usable_key_refuses(env, key):
    env.setenv(settings.PROFILE_ENV, "prod")
    if key:
        env.setenv(settings.PII_KEY_ENV, key)
    with pytest.raises(settings.ConfigurationError, match="PII_HMAC_KEY"):
        settings.pii_key_setting()


def test_another_profile_with_a_key_reads_it_from_the_environment(env):
    env.setenv(settings.PROFILE_ENV, "prod")
    env.setenv(settings.PII_KEY_ENV, TEST_PII_KEY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        setting = settings.pii_key_setting()
    assert setting.variable == "PII_HMAC_KEY" and setting.source == "configured"


def test_the_old_salt_variable_still_works_with_a_deprecation_warning(env):
    env.setenv(settings.PROFILE_ENV, "prod")
    env.setenv(settings.PII_KEY_DEPRECATED_ENV, "an-old-but-long-enough-salt")
    with pytest.warns(settings.PiiKeyWarning, match="PII_SALT is deprecated"):
        setting = settings.pii_key_setting()
    assert setting.variable == "PII_SALT"


def test_the_resource_passes_the_key_as_an_environment_variable(env):
    """The key is read at run time and never shown as a literal in the UI's resource config."""
    import dagster as dg

    from platform_assets.resources import PiiMasking

    env.setenv(settings.PII_KEY_ENV, TEST_PII_KEY)
    resource = PiiMasking.from_environment()
    assert isinstance(resource.key, dg.EnvVar) and resource.key_source == "configured"
    assert PiiMasking.development().key_source == "development"
