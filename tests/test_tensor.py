"""Tensor basics that autograd leans on: detach, .data, clone, item, tolist, numpy,
__array__, from_numpy, Size, version counters."""
from __future__ import annotations

import numpy as np
import pytest
from _torch_oracle import run_both

import tracegrad as tg


def test_detach_shares_data_and_version_but_not_history():
    a = tg.tensor([1., 2.], requires_grad=True)
    d = a.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    d[0] = 5
    assert a.tolist() == [5., 2.] and a._version == 1 and d._version == 1


def test_detach_inplace():
    a = tg.tensor([1., 2.], requires_grad=True)
    c = 2 * a + 1
    cc = c.detach_()
    assert cc is c and not c.requires_grad and c.grad_fn is None and c.is_leaf


def test_data_shares_memory_with_separate_version():
    a = tg.tensor([1., 2.], requires_grad=True)
    d = a.data
    d[0] = 5
    assert a.tolist() == [5., 2.] and not d.requires_grad
    assert a._version == 0  # .data hides the change from autograd, as in PyTorch
    a.data = tg.tensor([7., 8.])
    assert a.tolist() == [7., 8.] and a.requires_grad


def test_clone_is_recorded_and_copies():
    a = tg.tensor([1., 2.], requires_grad=True)
    c = a.clone()
    assert type(c.grad_fn).__name__ == "CloneBackward0"
    (c * c).sum().backward()
    assert a.grad.tolist() == [2., 4.]
    with tg.no_grad():
        c[0] = 9
    assert a.tolist() == [1., 2.]


def test_item_and_tolist():
    a = tg.tensor([[1.5, 2.], [3., 4.]], requires_grad=True)
    assert a.sum().item() == 10.5 and isinstance(a.sum().item(), float)
    assert a.tolist() == [[1.5, 2.], [3., 4.]]
    assert tg.tensor(3).item() == 3 and isinstance(tg.tensor(3).item(), int)
    assert tg.tensor([True]).item() is True
    assert a[1, 0].item() == 3.0
    with pytest.raises(RuntimeError, match="4 elements cannot be converted to Scalar"):
        a.item()


def test_numpy_refused_while_requires_grad():
    a = tg.tensor([1., 2.], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        a.numpy()
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        np.asarray(a)
    n = a.detach().numpy()
    n[0] = 3  # shares memory, as in PyTorch
    assert a.tolist() == [3., 2.]
    assert a.numpy(force=True).tolist() == [3., 2.]


def test_numpy_takes_detached_tensors():
    a = tg.tensor([1., 2.], requires_grad=True)
    assert np.asarray(a.detach()).tolist() == [1., 2.]
    assert (np.sin(a.detach()) == np.sin(np.array([1., 2.], np.float32))).all()
    assert np.asarray(tg.tensor([1, 2]), dtype=np.float64).dtype == np.float64


def test_from_numpy_shares_memory():
    n = np.array([1., 2.])
    x = tg.from_numpy(n)
    assert x.dtype is tg.float64
    n[0] = 5
    x[1] = 7
    assert x.tolist() == [5., 7.] and n.tolist() == [5., 7.]
    with pytest.raises(TypeError, match="expected np.ndarray"):
        tg.from_numpy([1, 2])


def test_size():
    s = tg.ones(2, 3).shape
    assert repr(s) == "torch.Size([2, 3])" and str(s) == "torch.Size([2, 3])"
    assert repr(tg.ones(()).shape) == "torch.Size([])"
    assert s == (2, 3) and s.numel() == 6 and tg.ones(2, 3).size(1) == 3
    assert isinstance(tg.ones(2, 3)[0].shape, tg.Size)
    assert run_both(lambda t: (t.ones(4, 1, 2).shape, t.ones(4, 2).size())) == \
        "(torch.Size([4, 1, 2]), torch.Size([4, 2]))"


def test_version_counter_counts_inplace_ops():
    a = tg.zeros(3)
    assert a._version == 0
    a.add_(1)
    a.mul_(2)
    a[0] = 5
    assert a._version == 3
    v = a.view(3)
    v.add_(1)
    assert run_both(lambda t: _versions(t)) == "(0, 3, 1)"


def _versions(t):
    a = t.zeros(3)
    v0 = a._version
    a.add_(1)
    a.mul_(2)
    a[0] = 5
    b = a.detach()
    b.zero_()
    return v0, a._version - 1, b._version - a._version + 1


def test_format_of_0d_tensors():
    assert f"{tg.tensor(3.14159):.2f}" == "3.14"
    assert f"{tg.tensor(0.5)}" == "0.5"
    assert f"{tg.tensor(3)}" == "3"
    assert run_both(lambda t: f"{t.tensor(2.0, requires_grad=True) * 2} {t.tensor([1., 2.])}") \
        == "4.0 tensor([1., 2.])"
