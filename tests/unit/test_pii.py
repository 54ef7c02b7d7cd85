"""Personal data is replaced by salted tokens that still join."""

import pandas as pd
import pytest

from platform_assets.validate.pii import MASKED_PATTERN, mask_pii


def test_masking_is_consistent_salted_and_keeps_gaps():
    df = pd.DataFrame({"email": ["a@x.io", "b@x.io", "a@x.io", None], "income": [1.0, 2.0, 3.0, 4.0]})
    one = mask_pii(df, ("email", "phone"), "salt-1")
    two = mask_pii(df, ("email",), "salt-2")
    assert one["email"][0] == one["email"][2] != one["email"][1]
    assert one["email"][0] != two["email"][0]
    assert one["email"][3] is None
    assert one["email"][:3].str.fullmatch(MASKED_PATTERN).all()
    assert not one["email"][:3].str.contains("@").any()
    assert one["income"].tolist() == df["income"].tolist()
    assert df["email"][0] == "a@x.io"  # the input is not modified


def test_an_empty_salt_is_refused():
    with pytest.raises(ValueError, match="PII_SALT"):
        mask_pii(pd.DataFrame({"email": ["a@x.io"]}), ("email",), "")
