"""One pandera check on a frame, as pandera's pandas backend runs it, minus two costs that grow with rows.

* A column check drops the column's gaps first (``ignore_na``); pandera asks
  the column whether it has any each time, a scan of every cell (30 ms per
  1M text cells). Here the answer is asked once per column and kept.
* A cross-field rule lets a row pass when all its cells are missing; pandera
  computes that for every row of the frame, here only the failing rows are
  looked at (only they can change).

And a cross-field rule's failing rows become failure cases (one per cell)
without pandas' ``stack``, which costs a Python step per row (0.5 s for
1,300 failing rows).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from pandera.api.base.checks import CheckResult
from pandera.api.checks import Check
from pandera.backends.pandas.checks import PandasCheckBackend
from pandera.backends.pandas.error_formatters import reshape_failure_cases

from platform_assets.validate.parse import all_text


def has_gaps(values: pd.Series) -> bool:
    """Whether ``values`` holds a missing value; text without one is recognised in one cheap pass."""
    return not all_text(values) and bool(values.hasnans)


class _CheckBackend(PandasCheckBackend):
    """pandera's pandas check backend, told once per column whether the column has gaps."""

    def __init__(self, check: Check, gaps: Callable[[str], bool]):
        super().__init__(check)
        self.gaps = gaps

    def preprocess_table_with_key(self, check_obj, key):
        if self.check.groupby is not None:
            return super().preprocess_table_with_key(check_obj, key)
        if self.check.ignore_na and self.gaps(key):
            return check_obj[key].dropna()
        return check_obj[key]

    def postprocess_table_with_field_output(self, check_obj, check_output):
        if (check_output.dtype != bool or not self.check.ignore_na or check_output.empty
                or not check_obj.index.equals(check_output.index)):
            return super().postprocess_table_with_field_output(check_obj, check_output)
        passed = check_output.to_numpy(copy=True)
        failing = ~passed
        if failing.any():
            passed[failing] = check_obj[failing].isna().all(axis="columns").to_numpy()
        output = pd.Series(passed, index=check_output.index)  # pandera's ``a | b`` has no name either
        return CheckResult(output, output.all(), check_obj, self._get_series_failure_cases(check_obj, output))


def run_check(check: Check, frame: pd.DataFrame, key: str | None, gaps: Callable[[str], bool]) -> CheckResult:
    """``check(frame, key)`` as ``Check.__call__`` runs it (``key`` names the column of a column check)."""
    name = getattr(check._check_fn, "__name__", None)
    if name is not None and check.is_builtin_check(name):
        check._check_fn = check.get_builtin_check_fn(name)
    return _CheckBackend(check, gaps)(frame, key)


def _stackable(failed: pd.DataFrame) -> bool:
    """Whether :func:`reshape` may lay out ``failed`` itself: plain labels and one NumPy type once transposed."""
    if isinstance(failed.index, pd.MultiIndex) or isinstance(failed.columns, pd.MultiIndex):
        return False
    if {"column", "failure_case"} <= set(failed.columns) or not failed.columns.is_unique:
        return False
    if failed.empty:
        return False
    labels = (failed.index.dtype, failed.columns.dtype)
    dtypes = set(failed.T.dtypes)
    return len(dtypes) == 1 and all(isinstance(d, np.dtype) for d in (*labels, *dtypes))


def reshape(failure_cases: pd.Series | pd.DataFrame, ignore_na: bool) -> pd.DataFrame:
    """pandera's ``reshape_failure_cases``; a frame of failing rows is laid out cell by cell with NumPy.

    pandera does ``failed.unstack().reset_index()``: for a frame with a plain
    index that is ``failed.T.stack()``, one entry per cell, column by column,
    in the transposed frame's type. Missing cells are dropped (``ignore_na``,
    the default); a check that keeps them is laid out by pandera, whose
    ``stack`` writes some of them differently (``None`` for ``NaT``).
    """
    if not ignore_na or not isinstance(failure_cases, pd.DataFrame) or not _stackable(failure_cases):
        return reshape_failure_cases(failure_cases, ignore_na)
    rows, columns = failure_cases.shape
    cells = pd.DataFrame({
        "column": np.repeat(failure_cases.columns.to_numpy(), rows),
        "index": np.tile(failure_cases.index.to_numpy(), columns),
        "failure_case": failure_cases.T.to_numpy().ravel(),
    })
    return cells.dropna()
