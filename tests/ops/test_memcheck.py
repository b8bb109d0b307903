"""The interpreter's out-of-bounds check (memcheck.py), which conftest.py turns on for every
test of this folder: a kernel that reads or writes one element past its buffer fails, the
same kernel within bounds (and a view into a larger buffer) does not."""

import pytest
import torch
import triton
import triton.language as tl


def _copy_twice(X, Y, n, READ_PAST: tl.constexpr, WRITE_PAST: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    x = tl.load(X + i, mask=i < n + READ_PAST, other=0.0)
    tl.store(Y + i, x * 2, mask=i < n + WRITE_PAST)


def _kernel():
    """Decorated here, inside a test, where conftest.py has set TRITON_INTERPRET."""
    return triton.jit(_copy_twice)


@pytest.mark.interpret
def test_in_bounds_passes_and_views_count_their_whole_buffer():
    copy_twice = _kernel()
    x, y = torch.randn(10), torch.empty(10)
    copy_twice[(1,)](x, y, 10, READ_PAST=0, WRITE_PAST=0, BLOCK=16)
    assert torch.equal(y, 2 * x)
    wide = torch.randn(20)
    copy_twice[(1,)](wide[5:15], y, 11, READ_PAST=0, WRITE_PAST=-1, BLOCK=16)  # reads wide[15]
    assert torch.equal(y[:10], 2 * wide[5:15])


@pytest.mark.interpret
@pytest.mark.parametrize("read, write, what", [(1, 0, "load"), (0, 1, "store")])
def test_one_element_past_the_end_fails(read, write, what):
    copy_twice = _kernel()
    x, y = torch.randn(10), torch.empty(10)
    with pytest.raises(Exception, match=rf"_copy_twice: {what} of 1 of 11 active lanes outside"):
        copy_twice[(1,)](x, y, 10, READ_PAST=read, WRITE_PAST=write, BLOCK=16)
