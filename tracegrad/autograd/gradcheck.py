"""gradcheck / gradgradcheck: analytical Jacobians against central differences."""
from __future__ import annotations

import warnings

import numpy as np


class GradcheckError(RuntimeError):
    pass


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _differentiable_outputs(outputs):
    return [o for o in outputs if o.dtype.is_floating_point]


def _output_arrays(func, inputs):
    """Copies of the floating-point outputs of ``func(*inputs)``, computed without grad."""
    from .grad_mode import no_grad

    with no_grad():
        return [o.detach()._data.copy() for o in _differentiable_outputs(_as_tuple(func(*inputs)))]


def _numerical_jacobian(func, inputs, wrt, eps):
    """J[k][j] is d output_k / d input_j, each of shape (out.numel(), in.numel())."""
    from .grad_mode import no_grad

    with no_grad():
        base = [o.detach() for o in _differentiable_outputs(_as_tuple(func(*inputs)))]
    jac = [[np.zeros((o.numel(), inputs[j].numel())) for j in wrt] for o in base]
    for jj, j in enumerate(wrt):
        x = inputs[j]
        flat = x._data.reshape(-1)  # a view: perturb in place, restore after
        if not np.shares_memory(flat, x._data):
            raise GradcheckError("gradcheck needs contiguous inputs")
        for e in range(flat.size):
            orig = flat[e].item()
            flat[e] = orig + eps
            plus = _output_arrays(func, inputs)
            flat[e] = orig - eps
            minus = _output_arrays(func, inputs)
            flat[e] = orig
            for k in range(len(base)):
                jac[k][jj][:, e] = ((plus[k] - minus[k]) / (2 * eps)).reshape(-1)
    return jac


def _analytical_jacobian(func, inputs, wrt):
    from .. import functions as F
    from . import grad as autograd_grad

    outputs = _differentiable_outputs(_as_tuple(func(*inputs)))
    diff_inputs = [inputs[j] for j in wrt]
    jac = [[np.zeros((o.numel(), inputs[j].numel())) for j in wrt] for o in outputs]
    for k, o in enumerate(outputs):
        if not o.requires_grad:
            continue
        for r in range(o.numel()):
            seed = F.zeros(o.shape, dtype=o.dtype)
            seed._data.reshape(-1)[r] = 1
            grads = autograd_grad(o, diff_inputs, seed, retain_graph=True, allow_unused=True)
            for jj, g in enumerate(grads):
                if g is not None:
                    jac[k][jj][r, :] = np.asarray(g.detach()._data, dtype=np.float64).reshape(-1)
    return jac


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              nondet_tol=0.0, check_undefined_grad=True, check_grad_dtypes=False,
              check_batched_grad=False, fast_mode=False, masked=None) -> bool:
    """Check gradients of ``func`` at ``inputs`` against central finite differences.

    >>> import tracegrad as tg
    >>> x = tg.randn(3, dtype=tg.float64, requires_grad=True)
    >>> tg.autograd.gradcheck(lambda t: (t * t).sin(), (x,))
    True
    """
    from ..tensor import Tensor

    inputs = _as_tuple(inputs)
    wrt = [j for j, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, "
                         "but none of the them have requires_grad=True.")
    for j in wrt:
        if inputs[j].dtype.name != "float64":
            warnings.warn(f"Input #{j} requires gradient and is not a double precision floating "
                          "point. This check will likely fail if all the inputs are not of "
                          "double precision floating point. ", stacklevel=2)
    numerical = _numerical_jacobian(func, inputs, wrt, eps)
    analytical = _analytical_jacobian(func, inputs, wrt)
    for k in range(len(numerical)):
        for jj, j in enumerate(wrt):
            n, a = numerical[k][jj], analytical[k][jj]
            if not np.allclose(a, n, rtol=rtol, atol=atol):
                msg = (f"Jacobian mismatch for output {k} with respect to input {j},\n"
                       f"numerical:{_show(n)}\nanalytical:{_show(a)}\n")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True


def _show(m):
    from .. import functions as F
    return repr(F.tensor(m, dtype=F.dtypes.float64))


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, nondet_tol=0.0,
                  check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
                  check_fwd_over_rev=False, check_rev_over_rev=True, fast_mode=False,
                  masked=False) -> bool:
    """Check second derivatives: gradcheck of the function (inputs, v) -> v^T J."""
    from .. import functions as F
    from ..tensor import Tensor
    from . import grad as autograd_grad

    inputs = _as_tuple(inputs)
    outputs = _differentiable_outputs(_as_tuple(func(*inputs)))
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        grad_outputs = tuple(F.tensor(rng.standard_normal(o.shape), dtype=o.dtype,
                                      requires_grad=True) for o in outputs)
    grad_outputs = _as_tuple(grad_outputs)
    n_in = len(inputs)
    wrt = [j for j, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]

    def first_order(*args):
        # the numerical Jacobian calls this under no_grad; the inner grad needs a graph
        from .grad_mode import enable_grad

        xs, vs = args[:n_in], args[n_in:]
        with enable_grad():
            outs = _differentiable_outputs(_as_tuple(func(*xs)))
            grads = autograd_grad(outs, [xs[j] for j in wrt], vs, create_graph=True,
                                  allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_order, inputs + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)
