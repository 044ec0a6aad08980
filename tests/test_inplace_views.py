"""In-place ops through views while recording (PyTorch's CopySlices): values, gradients,
grad_fn names and refusals against torch; gradcheck through CopySlices; the version
counter a view shares with its base. See NOTE: [In-place through a view] in
tracegrad/autograd/views.py."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import tracegrad as tg

X = np.arange(12.0).reshape(4, 3) / 10 - 0.4
W = np.array([0.5, -1.5, 2.0, 0.25])

# Each program runs with x (4x3, requires grad), w (4, requires grad), y = x * 2 made
# before it; it leaves `v` (the view written, or read) and may replace `y`. The loss
# weighs y and v differently so a gradient through either is seen.
PROGRAMS = {
    "select_mul": "v = y[0]; v.mul_(3)",
    "transpose_add_exp": "v = y.t(); v.add_(1); v.exp_()",
    "view_of_view_sin": "z = y.view(12); v = z[2:5]; v.sin_()",
    "column_copy_w": "v = y[:, 1]; v.copy_(w)",
    "permute_mul_w": "v = y.permute(1, 0); v.mul_(w)",
    "unsqueeze_add": "v = y.unsqueeze(0); v.add_(1)",
    "reshape_div": "v = y.reshape(2, 6); v.div_(4)",
    "flatten_sub_alpha": "v = y.flatten(); v.sub_(y.flatten().detach(), alpha=0.5)",
    "narrow_clamp": "v = y.narrow(0, 1, 2); v.clamp_(min=0.1)",
    "strided_mul_w": "v = y[::2, 1:]; v.mul_(w[::2, None])",
    "int_int_index": "v = y[1, 2]; v.mul_(5)",
    "none_ellipsis_index": "v = y[None, ..., 1]; v.sigmoid_()",
    "mT_tanh": "v = y.mT; v.tanh_()",
    "squeeze_neg": "v = y[1:2].squeeze(0); v.neg_()",
    "select_zero": "v = y[2]; v.zero_()",
    "column_fill": "v = y[:, 0]; v.fill_(2.0)",
    "masked_fill": "v = y[1:]; v.masked_fill_(v > 0, 0.0)",
    "setitem_through_view": "v = y[1:]; v[0] = w[:3]",
    "add_w_through_view": "v = y[:, 2]; v += w",
    "two_views_of_one_base": "a = y[0]; v = y[1]; a.mul_(2); v.add_(a)",
    "write_base_read_old_view": "v = y[0]; y.mul_(3)",
    "write_view_read_sibling": "v = y[:, 0]; y[1].mul_(w[:3])",
    "view_written_twice": "v = y[1:3]; v.mul_(2); v[0].add_(w[:3])",
    "base_without_grad": "y = T.zeros(4, 3); v = y[1:]; v.add_(w[1:, None])",
    "base_without_grad_sibling": "y = T.zeros(4, 3); v = y[:2]; y[1:].add_(w[1:, None])",
    "t_in_place_on_view": "v = y[0:2]; v.t_()",
}


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _name(t):
    return None if t.grad_fn is None else type(t.grad_fn).__name__


def _run(T, src):
    x = T.tensor(X, requires_grad=True)
    w = T.tensor(W, requires_grad=True)
    ns = {"T": T, "x": x, "w": w, "y": x * 2}
    exec(src, ns)
    y, v = ns["y"], ns["v"]
    seen = {"y": _np(y).copy(), "v": _np(v).copy(), "y.grad_fn": _name(y),
            "v.grad_fn": _name(v), "y.requires_grad": y.requires_grad,
            "v.requires_grad": v.requires_grad}
    cy = T.tensor(np.linspace(-1, 1, 12).reshape(4, 3))
    loss = (y * cy).sum() + (v * 0.5).sum() if v.requires_grad or y.requires_grad else None
    if loss is not None:
        loss.backward()
    for name, t in (("x.grad", x), ("w.grad", w)):
        seen[name] = None if t.grad is None else _np(t.grad).copy()
    return seen


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_program_matches_torch(name):
    torch = pytest.importorskip("torch")
    got, want = _run(tg, PROGRAMS[name]), _run(torch, PROGRAMS[name])
    assert got.keys() == want.keys()
    for key in got:
        a, b = got[key], want[key]
        if isinstance(b, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=key)
        else:
            assert a == b, key


# (program, what PyTorch says): both libraries must refuse with the same message
REFUSED = {
    "view_of_leaf": "x[0].mul_(2)",
    "view_of_leaf_rhs_free": "x.t().zero_()",
    "made_under_no_grad": "with T.no_grad():\n    v = y[1:]\nv.mul_(2)",
    "no_grad_view_base_written": "with T.no_grad():\n    v = y[1:]\ny.mul_(2)\nv.grad_fn",
    "split_piece": "y.split(2)[1].mul_(2)",
    "split_with_sizes_piece": "y.split([1, 3])[1].add_(1)",
    "chunk_piece": "y.chunk(2)[0].exp_()",
    "unbind_piece": "y.unbind()[2].mul_(2)",
    "view_of_split_piece": "y.split(2)[1][0].mul_(2)",
    "split_piece_base_written": "a = y.unbind()\ny.mul_(2)\na[0].grad_fn",
    "split_of_base_without_grad": "T.zeros(4).split(2)[0].add_(w[:2])",
    "expand": "y[0].expand(2, 3).mul_(2)",
    "saved_output_then_sibling_write": "v = y.t(); v.exp_(); y.view(12)[2:5].sin_()\n"
                                       "y.sum().backward()",
    "saved_base_then_view_write": "e = y * y; y[0].mul_(2); e.sum().backward()",
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refusal_matches_torch(name):
    torch = pytest.importorskip("torch")
    messages = []
    for T in (tg, torch):
        x = T.tensor(X, requires_grad=True)
        w = T.tensor(W, requires_grad=True)
        with pytest.raises(RuntimeError) as info:
            exec(REFUSED[name], {"T": T, "x": x, "w": w, "y": x * 2})
        messages.append(str(info.value))
    if "inplace operation: [" in messages[1]:  # the version-counter message: same facts
        assert "modified by an inplace operation" in messages[0]
    else:
        assert messages[0] == messages[1]


def test_view_of_a_no_grad_view_is_refused():
    # (PyTorch's message names the outer view's grad_fn: its no_grad view of a base
    # that requires grad requires grad too, with no grad_fn; tracegrad's does not)
    y = tg.ones(3, requires_grad=True) * 2
    with tg.no_grad():
        v = y[1:]
    with pytest.raises(RuntimeError, match="created in no_grad mode and is being modified"):
        v[0:1].add_(tg.ones(1, requires_grad=True))


def test_views_without_grad_are_unrestricted():
    b = tg.zeros(4)
    b.split(2)[0].add_(1)
    with tg.no_grad():
        v = b[1:]
    v.add_(1)
    x = tg.ones(2, 3, requires_grad=True)
    with tg.no_grad():
        x[0].mul_(2)               # e.g. initialising a parameter's row
        x.t()[2].zero_()
    assert x.tolist() == [[2., 2., 0.], [1., 1., 0.]] and x.grad_fn is None


def test_copy_slices_backward_is_the_vjp():
    # gradient to the base: g with the written region replaced by the op's VJP
    x = tg.tensor([1., 2., 3., 4.], requires_grad=True)
    y = x * 1
    y[1:3].mul_(tg.tensor([10., 100.]))
    assert type(y.grad_fn).__name__ == "CopySlices"
    assert y.grad_fn.name() == "torch::autograd::CopySlices"
    y.backward(tg.tensor([1., 2., 3., 4.]))
    assert x.grad.tolist() == [1., 20., 300., 4.]


def _through_views(x, w):
    y = x * 1.5
    y.t()[1:].mul_(w)                  # transpose, then a slice of it
    y.view(-1)[::4].sin_()             # a strided slice of a reshape
    v = y[2]
    y[:, 0].add_(w.sum())              # the base written while v is alive
    return y.exp().sum() + (v * v).sum()


def test_gradcheck_through_copy_slices():
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.uniform(-1, 1, (3, 3)), dtype=tg.float64, requires_grad=True)
    w = tg.tensor(rng.uniform(-1, 1, (3,)), dtype=tg.float64, requires_grad=True)
    assert tg.autograd.gradcheck(_through_views, (x, w))
    assert tg.autograd.gradgradcheck(_through_views, (x, w))


def test_old_view_sees_a_later_write_to_its_base():
    x = tg.tensor([1., 2., 3.], requires_grad=True)
    y = x * 2
    v = y[:2]
    assert type(v.grad_fn).__name__ == "SliceBackward0"
    y.mul_(3)
    assert type(v.grad_fn).__name__ == "AsStridedBackward0"
    v.sum().backward()
    assert x.grad.tolist() == [6., 6., 0.]


def test_view_and_base_share_the_version_counter():
    x = tg.tensor([1., 2., 3.], requires_grad=True)
    y = x * 2
    v = y[1:]
    assert v._version == y._version == 0
    v.mul_(2)
    assert v._version == y._version == 1
    y.add_(1)
    assert v._version == y._version == 2


def test_matmul_result_is_not_a_view():
    # internally a reshape of the product: an ordinary in-place target, as in PyTorch
    x = tg.tensor([[1., 2.], [3., 4.]], requires_grad=True)
    r = x @ x[0]
    r.mul_(2)
    assert type(r.grad_fn).__name__ == "MulBackward0"
    r.sum().backward()
    assert x.grad.tolist() == [[10., 16.], [2., 4.]]


def test_no_reference_cycle_through_copy_slices():
    gc.collect()
    gc.disable()
    try:
        x = tg.tensor([1., 2., 3.], requires_grad=True)
        y = x * 2
        y[1:].mul_(3)
        wy, wfn = weakref.ref(y), weakref.ref(y.grad_fn)
        del y
        assert wy() is None and wfn() is None
    finally:
        gc.enable()
