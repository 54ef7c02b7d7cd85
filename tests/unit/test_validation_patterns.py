"""fullmatch (RE2 over Arrow strings) answers what pandas' str.fullmatch (Python's re) answers, cell for cell."""

import numpy as np
import pandas as pd
import pytest

from platform_assets.use_cases.loan_default.schema import EMAIL_PATTERN, PHONE_PATTERN
from platform_assets.validate.patterns import fullmatch

# Where RE2 and re differ: \s takes \x0b and non-breaking spaces in re only, \d takes other scripts' digits
# in re only, $ and newlines; plus missing values, non-ASCII text and empty strings.
CELLS = ["a@b.co", "a b@c.d", "x@y", "é@ü.de", "a@b.c\n", "a\x0b@b.c", "a@b.c\u00a0", "a@@b.c", "a@b.c\t", "",
         "+44 (0)20-7946", "12", "١٢٣٤٥٦٧٨", "+1234567", "1234567\n", "abc_123", "ab\u00e7"]
PATTERNS = [EMAIL_PATTERN, PHONE_PATTERN, r"\d{3,}", r"\w+@\w+\.\w+", r"a|b", r"(?i)AB.", r"(a)\1@b", r"(?=a)a@b.co"]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("with_missing", [False, True], ids=["text", "with-missing"])
def test_fullmatch_answers_what_str_fullmatch_answers(pattern, with_missing):
    cells = CELLS + ([None, np.nan] if with_missing else [])
    values = pd.Series(cells, dtype=object, index=pd.RangeIndex(100, 100 + len(cells)), name="col")
    got, want = fullmatch(values, pattern), values.str.fullmatch(pattern)
    assert got.index.equals(want.index) and got.name == want.name and got.dtype == want.dtype
    assert [None if pd.isna(v) else bool(v) for v in got] == [None if pd.isna(v) else bool(v) for v in want]


def test_a_column_that_is_not_text_is_judged_by_python():
    values = pd.Series([1234567, "+1234567", 12.5], dtype=object)
    got, want = fullmatch(values, PHONE_PATTERN), values.str.fullmatch(PHONE_PATTERN)
    assert [None if pd.isna(v) else v for v in got] == [None if pd.isna(v) else v for v in want] == [None, True, None]
