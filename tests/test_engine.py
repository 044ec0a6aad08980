"""The backward engine: accumulation, shared subexpressions, deep graphs, freeing
saved values, no reference cycles, version counters on saved tensors."""
from __future__ import annotations

import gc
import weakref

import pytest
from _torch_oracle import run_both

import tracegrad as tg


def test_gradients_accumulate_over_two_backwards():
    x = tg.tensor([1., 2.], requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    assert x.grad.tolist() == [4., 8.]
    x.grad.zero_()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3., 3.]


def test_value_used_along_several_paths():
    def f(t):
        w = t.tensor([1.], requires_grad=True)
        x = t.tensor([2.], requires_grad=True)
        a = t.add(w, x)
        b = t.add(w, 1)
        y = t.mul(a, b)
        y1 = t.add(a, b)
        t.cat([y, y1], dim=0).backward(gradient=t.tensor([1, 2]))
        return w.grad, x.grad
    assert run_both(f) == "(tensor([9.]), tensor([4.]))"
    x = tg.tensor([3.], requires_grad=True)
    y = x * x * x + x * x
    y.backward()
    assert x.grad.item() == 33.


def test_seed_jacobian_product_with_retain_graph():
    inp = tg.eye(4, 5, requires_grad=True)
    out = (inp + 1).pow(2).t()
    out.backward(tg.ones_like(out), retain_graph=True)
    out.backward(tg.ones_like(out), retain_graph=True)
    assert inp.grad.tolist()[0] == [8., 4., 4., 4., 4.]


def test_100k_node_chain_backward_and_delete():
    x = tg.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    first = weakref.ref(x.grad_fn if x.grad_fn else y.grad_fn)
    y.backward(retain_graph=True)
    assert x.grad.item() == 1.0
    del y  # freeing a 100,000-deep graph must not recurse
    gc.collect()
    assert first() is None


def test_no_reference_cycles():
    gc.collect()
    gc.disable()
    try:
        a = tg.tensor([1., 2.], requires_grad=True)
        b = a * 2
        c = b.exp()
        wb, wfn, wc = weakref.ref(b), weakref.ref(b.grad_fn), weakref.ref(c.grad_fn)
        del b, c
        assert wb() is None and wfn() is None and wc() is None

        b = a * 2
        b.retain_grad()
        b.register_hook(lambda g: g)
        loss = (b * b).sum()
        wb, wfn = weakref.ref(b), weakref.ref(b.grad_fn)
        loss.backward()
        del b, loss
        assert wb() is None and wfn() is None

        class Twice(tg.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = x * 2
                ctx.save_for_backward(x, y)
                return y

            @staticmethod
            def backward(ctx, g):
                return g * 2
        y = Twice.apply(a * 1)
        wy, wfn = weakref.ref(y), weakref.ref(y.grad_fn)
        del y
        assert wy() is None and wfn() is None
    finally:
        gc.enable()


def test_saved_values_are_freed_after_backward():
    x = tg.tensor([1., 2.], requires_grad=True)
    e = x.exp()
    y = (e * x).sum()
    y.backward()
    mul = y.grad_fn.next_functions[0][0]
    assert mul.inputs is None and e.grad_fn._out_data is None


def test_inplace_on_saved_tensor_raises_naming_op_and_versions():
    a = tg.tensor([1., 2.], requires_grad=True)
    b = a * 2
    c = b * b
    b.add_(1)
    with pytest.raises(RuntimeError, match=r"\[torch.FloatTensor \[2\]\], which is output 0 of "
                       r"Add, is at version 1; expected version 0 instead"):
        c.sum().backward()


def test_inplace_on_saved_output_raises():
    a = tg.tensor([1., 2.], requires_grad=True)
    b = a.exp()
    b.add_(1)  # exp's backward reads its output
    with pytest.raises(RuntimeError, match="output 0 of Exp, is at version 1; expected version 0"):
        b.sum().backward()
    b = a.exp()
    b.detach().zero_()  # detach shares the version counter
    with pytest.raises(RuntimeError, match="is at version 1; expected version 0"):
        b.sum().backward()


def test_inplace_on_leaf_saved_under_no_grad_raises():
    w = tg.tensor([1., 2.], requires_grad=True)
    c = w * w
    with tg.no_grad():
        w.add_(1)
    with pytest.raises(RuntimeError, match=r"\[torch.FloatTensor \[2\]\] is at version 1"):
        c.sum().backward()


def test_inplace_ops_on_nonleaf_give_correct_gradients():
    def f(t):
        a = t.tensor([1., 2.], requires_grad=True)
        c = t.tensor([3., 4.], requires_grad=True)
        b = a * 1
        b.mul_(c)  # the old b is needed for c's gradient
        b.exp_()  # exp_ saves its own (new) output
        b.sum().backward()
        return a.grad, c.grad, b.grad_fn.name()
    assert run_both(f) == ("(tensor([   60.2566, 11923.8320]), tensor([  20.0855, 5961.9160]), "
                           "'ExpBackward0')")


def test_inplace_mul_of_self_gives_correct_gradient():
    a = tg.tensor([1., 2.], requires_grad=True)
    b = a * 1
    b.mul_(b)  # PyTorch refuses this one; tracegrad keeps the old value and is right
    b.sum().backward()
    assert a.grad.tolist() == [2., 4.]


def test_inplace_on_operand_not_needed_for_backward_is_allowed():
    w = tg.tensor([1., 2.], requires_grad=True)
    x = w * 1
    y = x * 2
    x.add_(1)
    y.sum().backward()
    assert w.grad.tolist() == [2., 2.]


def test_multi_output_node_gradients():
    x = tg.tensor([[1., 2.], [3., 4.]], requires_grad=True)
    p, q = x.unbind(0)
    (p * 2 + q * 3).sum().backward()
    assert x.grad.tolist() == [[2., 2.], [3., 3.]]


def test_grad_dtype_follows_the_tensor():
    x = tg.tensor([1., 2.], dtype=tg.float64, requires_grad=True)
    (x.float() * 2).sum().backward()
    assert x.grad.dtype is tg.float64
    y = tg.tensor([1., 2.], requires_grad=True)
    (y * 2).backward(tg.tensor([1, 1]))
    assert y.grad.dtype is tg.float32 and y.grad.tolist() == [2., 2.]
