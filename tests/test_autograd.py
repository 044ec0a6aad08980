"""The torch.autograd surface: requires_grad, grad, grad_fn, backward/grad arguments,
grad modes, hooks, custom Functions, gradcheck. Where torch is installed the same
snippet runs under both libraries and must print the same."""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from _torch_oracle import run_both

import tracegrad as tg

# ---- requires_grad / is_leaf / grad / grad_fn ----------------------------------------

def test_requires_grad_three_ways():
    a = tg.tensor([1.], requires_grad=True)
    b = tg.tensor([1.])
    b.requires_grad = True
    c = tg.tensor([1.]).requires_grad_()
    assert a.requires_grad and b.requires_grad and c.requires_grad
    assert a.is_leaf and b.is_leaf and c.is_leaf
    c.requires_grad_(False)
    assert not c.requires_grad
    d = a * 2
    assert d.requires_grad and not d.is_leaf
    assert d.requires_grad_() is d  # requires_grad_(True) on a non-leaf is a no-op


def test_grad_is_none_until_backward_and_nonleaf_grad_warns():
    a = tg.tensor([1., 2.], requires_grad=True)
    b = a * 2
    assert a.grad is None
    with pytest.warns(UserWarning, match="retain_grad"):
        assert b.grad is None
    b.sum().backward()
    assert a.grad.tolist() == [2., 2.]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b.retain_grad()
        assert b.grad is None  # retained, so no warning


def _names(t):
    x = t.tensor([1., 2.], requires_grad=True)
    y = t.tensor([3., 4.])
    z = x * y + x.exp() - x.sin().sum() / 2
    out = []
    node = z.grad_fn
    while node is not None:
        out.append((type(node).__name__, [None if n is None else type(n).__name__
                                          for n, _ in node.next_functions]))
        node = next((n for n, _ in node.next_functions if n is not None), None)
    return out


def test_grad_fn_names_and_next_functions():
    got = run_both(_names)
    assert got == str([("SubBackward0", ["AddBackward0", "DivBackward0"]),
                       ("AddBackward0", ["MulBackward0", "ExpBackward0"]),
                       ("MulBackward0", ["AccumulateGrad", None]),
                       ("AccumulateGrad", [])])
    x = tg.tensor([1.], requires_grad=True)
    y = x * tg.tensor([3.])
    assert y.grad_fn.next_functions[1] == (None, 0)
    acc = y.grad_fn.next_functions[0][0]
    assert acc.variable is x and acc.next_functions == ()
    assert x.grad_fn is None


def test_seed_000_next_functions_chain():
    def chain(t):
        a = t.linspace(0., 6.28, steps=5, requires_grad=True)
        d = 2 * t.sin(a) + 1
        f = d.grad_fn
        return [f.name(), f.next_functions[0][0].name(),
                f.next_functions[0][0].next_functions[0][0].name(),
                f.next_functions[0][0].next_functions[0][0].next_functions[0][0].name(),
                f.next_functions[1]]
    assert run_both(chain) == str(["AddBackward0", "MulBackward0", "SinBackward0",
                                   "torch::autograd::AccumulateGrad", (None, 0)])
    d = 2 * tg.sin(tg.ones(2, requires_grad=True)) + 1
    assert repr(d.grad_fn).startswith("<AddBackward0 object at 0x")


# ---- backward / autograd.backward / autograd.grad -------------------------------------

def test_backward_gradient_argument_and_accumulation():
    def f(t):
        x = t.tensor([1., 2., 3.], requires_grad=True)
        y = x * x
        y.backward(t.tensor([1., 0.1, 0.01]), retain_graph=True)
        g1 = x.grad.clone()
        y.backward(gradient=t.tensor([1., 1., 1.]))
        return g1, x.grad
    assert run_both(f) == "(tensor([2.0000, 0.4000, 0.0600]), tensor([4.0000, 4.4000, 6.0600]))"


def test_autograd_backward_many_tensors():
    def f(t):
        a = t.tensor([1., 2.], requires_grad=True)
        t.autograd.backward([a * 2, a * a], grad_tensors=[t.ones(2), t.tensor([1., 2.])])
        b = t.tensor([1., 2.], requires_grad=True)
        t.autograd.backward([b.sum(), (b * b).sum()])
        return a.grad, b.grad
    assert run_both(f) == "(tensor([ 4., 10.]), tensor([3., 5.]))"


def test_backward_inputs_restricts_accumulation():
    def f(t):
        a = t.tensor([1., 2.], requires_grad=True)
        b = t.tensor([3., 4.], requires_grad=True)
        (a * b).sum().backward(inputs=[a])
        m = a * 3
        (m * m).sum().backward(inputs=[m])
        return a.grad, b.grad, m.grad
    assert run_both(f) == "(tensor([3., 4.]), None, tensor([ 6., 12.]))"


def test_autograd_grad_does_not_touch_grad_and_handles_nonleaves():
    def f(t):
        a = t.tensor([1., 2.], requires_grad=True)
        b = t.tensor([1., 2.], requires_grad=True)
        c = 2 * a + 3 * b + 1
        d = 2 * c + 1
        gs = t.autograd.grad(d, (a, b, c), t.tensor([1., 1.]))
        return gs, a.grad, b.grad
    assert run_both(f) == ("((tensor([4., 4.]), tensor([6., 6.]), tensor([2., 2.])), None, None)")


def test_autograd_grad_allow_unused_and_materialize():
    def f(t):
        a = t.tensor([1., 2.], requires_grad=True)
        b = t.tensor([1., 2.], requires_grad=True)
        u = t.autograd.grad((a * 2).sum(), [a, b], allow_unused=True, retain_graph=True)
        m = t.autograd.grad((a * 2).sum(), [a, b], materialize_grads=True)
        return u, m
    assert run_both(f) == "((tensor([2., 2.]), None), (tensor([2., 2.]), tensor([0., 0.])))"


def test_create_graph_double_backward():
    def f(t):
        x = t.tensor([3.], requires_grad=True)
        y = t.pow(x, 2)
        g1 = t.autograd.grad(y, x, create_graph=True)
        g2 = t.autograd.grad(g1[0], x)
        z = t.tensor([2.], requires_grad=True)
        (z ** 3).backward(create_graph=True)
        return g1, g2, z.grad, z.grad.grad_fn is not None
    assert run_both(f) == ("((tensor([6.], grad_fn=<MulBackward0>),), (tensor([2.]),), "
                           "tensor([12.], grad_fn=<CopyBackwards>), True)")


def test_third_derivative():
    x = tg.tensor([0.5], dtype=tg.float64, requires_grad=True)
    (g,) = tg.autograd.grad(x.sin(), x, create_graph=True)
    (h,) = tg.autograd.grad(g, x, create_graph=True)
    (k,) = tg.autograd.grad(h, x)
    assert np.allclose(k.item(), -np.cos(0.5))


def test_retain_graph_keeps_saved_values_and_default_frees_them():
    x = tg.tensor([1., 2.], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4., 8.]
    assert y.grad_fn.next_functions[0][0].inputs is None  # saved inputs released
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


# ---- grad modes -------------------------------------------------------------------------

def test_no_grad_enable_grad_set_grad_enabled():
    x = tg.tensor([1.], requires_grad=True)
    with tg.no_grad():
        assert not (x * 2).requires_grad and not tg.is_grad_enabled()
        with tg.enable_grad():
            assert (x * 2).requires_grad
    assert tg.is_grad_enabled()

    @tg.no_grad()
    def doubler(v):
        return v * 2
    assert not doubler(x).requires_grad

    @tg.no_grad
    def bare(v):
        return v * 2
    assert not bare(x).requires_grad

    with tg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert tg.is_grad_enabled()
    tg.set_grad_enabled(False)
    try:
        assert not (x * 2).requires_grad

        @tg.enable_grad()
        def enabled(v):
            return v * 2
        assert enabled(x).requires_grad
    finally:
        tg.set_grad_enabled(True)

    @tg.set_grad_enabled(False)
    def off(v):
        return v * 2
    assert tg.is_grad_enabled() and not off(x).requires_grad


def test_grad_mode_on_generators_and_exceptions():
    @tg.no_grad()
    def gen():
        yield tg.is_grad_enabled()
        yield tg.is_grad_enabled()
    assert list(gen()) == [False, False] and tg.is_grad_enabled()
    with pytest.raises(ValueError):
        with tg.no_grad():
            raise ValueError
    assert tg.is_grad_enabled()


def test_inference_mode():
    x = tg.tensor([1.], requires_grad=True)
    with tg.inference_mode():
        assert not (x * 2).requires_grad
    with tg.inference_mode(False):
        assert (x * 2).requires_grad


def test_grad_mode_is_thread_local():
    seen = []
    with tg.no_grad():
        th = threading.Thread(target=lambda: seen.append(tg.is_grad_enabled()))
        th.start()
        th.join()
        assert not tg.is_grad_enabled()
    assert seen == [True]


def test_no_grad_weight_update():
    w = tg.tensor([1., 2.], requires_grad=True)
    (w * w).sum().backward()
    with tg.no_grad():
        w -= 0.1 * w.grad
    assert w.is_leaf and w.requires_grad and w.grad_fn is None
    assert np.allclose(w.tolist(), [0.8, 1.6]) and w._version == 1
    w.grad.zero_()
    (w * w).sum().backward()
    assert np.allclose(w.grad.tolist(), [1.6, 3.2])


# ---- hooks ------------------------------------------------------------------------------

def _hook_order(t):
    log = []
    a = t.tensor([1., 2.], requires_grad=True)
    a.register_hook(lambda g: log.append(("a1", g.tolist())))
    b = a * 2
    b.register_hook(lambda g: log.append(("b", g.tolist())) or g * 10)
    a.register_hook(lambda g: log.append(("a2", g.tolist())))
    c = b * a
    c.register_hook(lambda g: log.append(("c", g.tolist())))
    c.sum().backward()
    return log, a.grad


def test_hook_order_and_replacement():
    assert run_both(_hook_order) == str(([("c", [1.0, 1.0]), ("b", [1.0, 2.0]),
                                          ("a1", [22.0, 44.0]), ("a2", [22.0, 44.0])],
                                         tg.tensor([22., 44.])))


def test_hook_remove_and_leaf_hook():
    a = tg.tensor([1., 2.], requires_grad=True)
    h = a.register_hook(lambda g: g * 100)
    (a * 2).sum().backward()
    assert a.grad.tolist() == [200., 200.]
    h.remove()
    (a * 2).sum().backward()
    assert a.grad.tolist() == [202., 202.]


def test_hook_on_nonleaf_prints_gradient(capsys):
    a = tg.tensor([1., 2.], requires_grad=True)
    c = 2 * a + 1
    d = 2 * c + 1
    h = c.register_hook(print)
    d.backward(tg.tensor([1., 1.]))
    h.remove()
    assert capsys.readouterr().out == "tensor([2., 2.])\n"


def test_retain_grad():
    def f(t):
        a = t.tensor([1., 2.], requires_grad=True)
        b = a * 2
        b.retain_grad()
        c = b * b
        c.sum().backward(retain_graph=True)
        c.sum().backward()
        return b.grad, b.retains_grad, a.grad
    assert run_both(f) == "(tensor([ 8., 16.]), True, tensor([16., 32.]))"


# ---- custom Functions ---------------------------------------------------------------------

class Exp3(tg.autograd.Function):
    """3x + 2y + e^x + e^y, saving intermediate values (seed 001)."""

    @staticmethod
    def forward(ctx, x, y):
        expx, expy = tg.exp(x), tg.exp(y)
        ctx.save_for_backward(expx, expy)
        return 3 * x + 2 * y + expx + expy

    @staticmethod
    def backward(ctx, g):
        expx, expy = ctx.saved_tensors
        return g * (3 + expx), g * (2 + expy)


def test_function_save_for_backward_and_apply():
    x = tg.tensor([1., 2.], requires_grad=True)
    y = tg.tensor([3., 4.], requires_grad=True)
    z = Exp3.apply(x, y)
    assert type(z.grad_fn).__name__ == "Exp3Backward"
    z.backward(tg.tensor([1., 1.]))
    assert repr((x.grad, y.grad)) == "(tensor([ 5.7183, 10.3891]), tensor([22.0855, 56.5981]))"


def test_function_needs_input_grad_and_non_tensor_args():
    seen = []

    class Scale(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x, y, k):
            seen.append(ctx.needs_input_grad)
            ctx.k = k
            return x * y * k

        @staticmethod
        def backward(ctx, g):
            return g * ctx.k, None, None
    x = tg.ones(2, requires_grad=True)
    Scale.apply(x, tg.ones(2), 3).sum().backward()
    assert seen == [(True, False, False)] and x.grad.tolist() == [3., 3.]


def test_function_mark_non_differentiable_and_multiple_outputs():
    class TwoOut(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            idx = x.argmax()
            ctx.mark_non_differentiable(idx)
            ctx.save_for_backward(x)
            return x * 2, x * x, idx

        @staticmethod
        def backward(ctx, g1, g2, gi):
            (x,) = ctx.saved_tensors
            return g1 * 2 + g2 * 2 * x

    a = tg.tensor([1., 3.], requires_grad=True)
    y, z, i = TwoOut.apply(a)
    assert y.grad_fn is z.grad_fn and not i.requires_grad and i.item() == 1
    z.sum().backward()  # y gets no gradient: materialized as zeros
    assert a.grad.tolist() == [2., 6.]
    a.grad = None
    y, z, _ = TwoOut.apply(a)
    (y + z).sum().backward()
    assert a.grad.tolist() == [4., 8.]


def test_function_double_backward_through_differentiable_backward():
    class Cube(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x ** 2 * g

    x = tg.tensor([2.], dtype=tg.float64, requires_grad=True)
    (g,) = tg.autograd.grad(Cube.apply(x), x, create_graph=True)
    (h,) = tg.autograd.grad(g, x)
    assert g.item() == 12. and h.item() == 12.
    assert tg.autograd.gradgradcheck(Cube.apply, (x,))


def test_once_differentiable_refuses_double_backward():
    class Square(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @tg.autograd.once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = tg.tensor([2.], dtype=tg.float64, requires_grad=True)
    assert tg.autograd.gradcheck(Square.apply, (x,))
    (g,) = tg.autograd.grad(Square.apply(x), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.backward()


def test_function_saved_tensors_freed_after_backward():
    class Twice(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2
    x = tg.tensor([2.], requires_grad=True)
    y = Twice.apply(x)
    assert y.grad_fn.saved_tensors[0] is x
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        _ = y.grad_fn.saved_tensors


# ---- gradcheck ------------------------------------------------------------------------------

def test_gradcheck_passes_and_fails_with_jacobians():
    rs = np.random.RandomState(0)
    x = tg.tensor(rs.randn(4), requires_grad=True)
    y = tg.tensor(rs.randn(4), requires_grad=True)
    assert tg.autograd.gradcheck(Exp3.apply, (x, y), atol=1e-4)
    assert tg.autograd.gradcheck(lambda a, b: (a * b).sin().sum(), (x, y))
    assert tg.autograd.gradgradcheck(lambda a, b: (a * b).sin(), (x, y))

    class Wrong(tg.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * a

        @staticmethod
        def backward(ctx, g):
            return g * 3

    z = tg.tensor([1., 2.], dtype=tg.float64, requires_grad=True)
    with pytest.raises(tg.autograd.GradcheckError) as info:
        tg.autograd.gradcheck(Wrong.apply, (z,))
    msg = str(info.value)
    assert ("numerical:tensor([[2.0000, 0.0000],\n        [0.0000, 4.0000]], dtype=torch.float64)"
            in msg)
    assert "analytical:tensor([[3., 0.],\n        [0., 3.]], dtype=torch.float64)" in msg
    assert tg.autograd.gradcheck(Wrong.apply, (z,), raise_exception=False) is False


def test_gradcheck_defaults_match_torch():
    import inspect
    sig = inspect.signature(tg.autograd.gradcheck).parameters
    assert (sig["eps"].default, sig["atol"].default, sig["rtol"].default) == (1e-6, 1e-5, 1e-3)
    assert sig["raise_exception"].default is True


def test_gradcheck_warns_on_float32():
    x = tg.tensor([1., 2.], requires_grad=True)
    with pytest.warns(UserWarning, match="double precision"):
        tg.autograd.gradcheck(lambda a: a * 2, (x,), raise_exception=False)
