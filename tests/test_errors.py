"""Bad input: a clear error that names the problem and the fix, and nothing left
half-updated."""
from __future__ import annotations

import pytest

import tracegrad as tg


def test_backward_twice_through_freed_graph():
    x = tg.tensor([1., 2.], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*"
                       "retain_graph=True"):
        y.backward()
    assert x.grad.tolist() == [2., 4.]  # the failed call added nothing


def test_implicit_gradient_needs_scalar_output():
    x = tg.tensor([1., 2.], requires_grad=True)
    with pytest.raises(RuntimeError,
                       match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()
    assert x.grad is None


def test_backward_on_tensor_without_grad_fn():
    with pytest.raises(RuntimeError, match="does not require grad and does not have a grad_fn"):
        tg.tensor([1., 2.]).sum().backward()


def test_requires_grad_on_nonleaf_and_integer_tensors():
    x = tg.tensor([1.], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError,
                       match="only change requires_grad flags of leaf variables.*detach"):
        y.requires_grad = False
    with pytest.raises(RuntimeError, match="leaf variables"):
        y.requires_grad = True
    with pytest.raises(RuntimeError,
                       match="only Tensors of floating point dtype can require gradients"):
        tg.tensor([1, 2], requires_grad=True)
    i = tg.tensor([1, 2])
    with pytest.raises(RuntimeError, match=r"x.float\(\)"):
        i.requires_grad_()
    assert not i.requires_grad


def test_gradient_of_wrong_shape():
    x = tg.tensor([1., 2.], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Mismatch in shape: grad_output\[0\] has a shape of "
                       r"torch.Size\(\[3\]\) and output\[0\] has a shape of torch.Size\(\[2\]\)"):
        (x * 2).backward(tg.ones(3))
    with pytest.raises(RuntimeError, match="got 1 tensors in grad_outputs but 2 outputs"):
        tg.autograd.backward([x * 2, x * 3], [tg.ones(2)])
    assert x.grad is None


def test_numpy_on_tensor_that_requires_grad():
    with pytest.raises(RuntimeError, match=r"Use tensor.detach\(\).numpy\(\) instead"):
        tg.ones(2, requires_grad=True).numpy()


def test_unused_input_in_autograd_grad():
    a = tg.tensor([1., 2.], requires_grad=True)
    b = tg.tensor([1., 2.], requires_grad=True)
    with pytest.raises(RuntimeError, match="Tensor at index 1 appears to not have been used in the "
                       "graph. Set allow_unused=True"):
        tg.autograd.grad((a * 2).sum(), [a, b])
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.autograd.grad((a * 2).sum(), [tg.ones(2)])


def test_inplace_on_leaf_that_requires_grad_is_refused_and_leaves_it_intact():
    a = tg.tensor([1., 2.], requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an "
                       "in-place operation"):
        tg.sin_(a)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        a += 1
    assert a.tolist() == [1., 2.] and a._version == 0


class _Two(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        return x * y

    @staticmethod
    def backward(ctx, g):
        return g  # one gradient for two inputs


class _TooMany(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g, g


class _WrongShape(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return tg.ones(3)


class _NotATensor(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return [1.0, 2.0]


@pytest.mark.parametrize("fn, nargs, pattern", [
    (_Two, 2, r"function _TwoBackward returned an incorrect number of gradients "
              r"\(expected 2, got 1\)"),
    (_TooMany, 1, r"returned an incorrect number of gradients \(expected 1, got 2\)"),
    (_WrongShape, 1, r"_WrongShapeBackward returned an invalid gradient at index 0 - got \[3\] but "
                     r"expected shape compatible with \[2\]"),
])
def test_custom_function_backward_returning_wrong_gradients(fn, nargs, pattern):
    a = tg.tensor([1., 2.], requires_grad=True)
    with pytest.raises(RuntimeError, match=pattern):
        fn.apply(*[a] * nargs).sum().backward()
    assert a.grad is None


def test_custom_function_backward_returning_a_non_tensor():
    a = tg.tensor([1., 2.], requires_grad=True)
    with pytest.raises(TypeError,
                       match="returned a gradient of type list at index 0; expected a Tensor"):
        _NotATensor.apply(a).sum().backward()


def test_hook_returning_wrong_shape():
    a = tg.tensor([1., 2.], requires_grad=True)
    b = a * 2
    b.register_hook(lambda g: tg.ones(3))
    with pytest.raises(RuntimeError,
                       match=r"hook returned a gradient of shape \[3\], expected \[2\]"):
        b.sum().backward()


def test_item_of_many_elements_and_hooks_on_constants():
    with pytest.raises(RuntimeError,
                       match="a Tensor with 2 elements cannot be converted to Scalar"):
        tg.ones(2).item()
    with pytest.raises(RuntimeError,
                       match="cannot register a hook on a tensor that doesn't require gradient"):
        tg.ones(2).register_hook(print)
    with pytest.raises(RuntimeError,
                       match="can't retain_grad on Tensor that has requires_grad=False"):
        tg.ones(2).retain_grad()


def test_assigning_a_bad_grad():
    a = tg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError,
                       match=r"assigned grad has data of a different size: \[3\] vs \[2\]"):
        a.grad = tg.ones(3)
    with pytest.raises(TypeError, match="expected to be a Tensor or None"):
        a.grad = [1., 1.]
    assert a.grad is None
