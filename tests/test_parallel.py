"""xds.parallel: one executor, the same outcomes in-process and in a process pool."""

from __future__ import annotations

import pytest

from xds.errors import XdsError
from xds.parallel import Executor


def square_or_fail(x: int) -> int:
    """A cell function: module level, so it pickles to workers."""
    if x == 3:
        raise XdsError("three is bad input", file="cell")
    if x == 5:
        raise ZeroDivisionError("bug in cell 5")
    return x * x


@pytest.mark.parametrize("workers,batch", [(1, None), (2, None), (2, 1), (2, 7)])
def test_every_cell_once_with_its_value_or_error(workers, batch):
    out = sorted(Executor(workers=workers).map(square_or_fail, list(range(9)), batch=batch),
                 key=lambda o: o.index)
    assert [o.index for o in out] == list(range(9))
    assert [o.value for o in out if o.error is None] == [0, 1, 4, 16, 36, 49, 64]
    assert out[3].error == "cell: three is bad input"
    assert out[5].error == "internal error: ZeroDivisionError: bug in cell 5"


def test_progress_counts_every_cell():
    seen = []
    list(Executor(workers=1).map(square_or_fail, [1, 2], progress=lambda d, n: seen.append((d, n))))
    assert seen == [(1, 2), (2, 2)]


def test_bad_executor_flags_are_user_errors():
    with pytest.raises(XdsError, match="--workers"):
        Executor(workers=0)
    with pytest.raises(XdsError, match="not both"):
        Executor(workers=2, ray="local")
