"""float32 stays float32: every op-table row run on float32 inputs gives float32 results,
and no primitive's NumPy kernel mixes a float64 value into float32 arithmetic (a NumPy
float64 scalar such as ``np.sqrt(2.0)`` promotes a float32 array under NumPy 2's rules,
so the kernel silently computes in float64 and is slower and further from torch).

The kernels are probed by handing them float32 arrays of a subclass whose
``__array_ufunc__`` records every ufunc call (scipy.special's included) that reads or
makes a float64 value. Calls that leave the subclass (``np.asarray``) are not seen: the
probe is a sample of each kernel's arithmetic, not a proof."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from op_table import ROWS, as_outputs, make_inputs, make_tensors, samples

import tracegrad as tg
from tracegrad import primitives as P


def _is_f64(v):
    if isinstance(v, np.ndarray | np.generic):
        return v.dtype == np.float64
    return False


class _Probe(np.ndarray):
    hits: list = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        raw = [i.view(np.ndarray) if isinstance(i, _Probe) else i for i in inputs]
        if "out" in kw:
            kw["out"] = tuple(o.view(np.ndarray) if isinstance(o, _Probe) else o
                              for o in kw["out"])
        res = getattr(ufunc, method)(*raw, **kw)
        outs = res if isinstance(res, tuple) else (res,)
        if any(_is_f64(i) for i in raw) or any(_is_f64(o) for o in outs):
            kinds = ", ".join(str(getattr(i, "dtype", type(i).__name__)) for i in raw)
            _Probe.hits.append(f"{ufunc.__name__}.{method}({kinds})")
        wrapped = tuple(o.view(_Probe) if o.__class__ is np.ndarray else o for o in outs)
        return wrapped if isinstance(res, tuple) else wrapped[0]


def _probe_arg(a):
    if a.__class__ is np.ndarray and a.dtype == np.float32:
        return a.view(_Probe)
    return a


def _probed(prim, fn, seen):
    def run(*args, **params):
        before = len(_Probe.hits)
        out = fn(*[_probe_arg(a) for a in args], **params)
        if len(_Probe.hits) > before:
            seen.setdefault(prim.name, []).extend(_Probe.hits[before:])
        if isinstance(out, _Probe):
            out = out.view(np.ndarray)
        return out
    return run


# the kinds that compute (layout, index, creation and random ops only move or make data)
_ARITHMETIC = {"elementwise", "reduction", "scan", "normalization", "loss", "matmul", "conv",
               "pool"}


@pytest.fixture
def probed_kernels(monkeypatch):
    seen: dict[str, list] = {}
    _Probe.hits = []
    for prim in P.PRIMITIVES.values():
        if prim.kind not in _ARITHMETIC:
            continue
        monkeypatch.setattr(prim, "impl", _probed(prim, prim.impl, seen))
        if prim.raw_impl is not None:
            monkeypatch.setattr(prim, "raw_impl", _probed(prim, prim.raw_impl, seen))
    return seen


# rows whose result is float64 by design (torch's too)
_FLOAT64_OUT = {"double", "float_power", "float_power_tensor", "sum_dtype", "view_dtype_wider"}
# kernels that compute in float64 on purpose, and why
_FLOAT64_INSIDE = {
    # pow(float32, p) for p other than 2, 3, -0.5, -1, -2: torch's SLEEF pow (1 ulp) is
    # nearest to the float64 power rounded to float32
    "pow_scalar",
}


# One sample per row: the first (the richest shape).
_FIRST = {}
for _row, _shapes in samples():
    _FIRST.setdefault(_row.name, (_row, _shapes))


def _float32_run(row, shapes):
    arrays = make_inputs(row, shapes)
    xs = make_tensors(tg, arrays, tg.float32, row)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        outs = as_outputs(row.fn(tg, *xs))
        diff = [o for o in outs if o.requires_grad and o.dtype.is_floating_point]
        if row.grad and diff:
            tg.autograd.backward([o.sum() for o in diff])
    return xs, outs


@pytest.mark.parametrize("name", sorted(_FIRST))
def test_float32_in_float32_out_and_no_float64_arithmetic(name, probed_kernels):
    row, shapes = _FIRST[name]
    if name in _FLOAT64_OUT:
        pytest.skip("float64 result by design")
    xs, outs = _float32_run(row, shapes)
    for prim in _FLOAT64_INSIDE:
        probed_kernels.pop(prim, None)
    for o in outs:
        if o.dtype.is_floating_point:
            assert o.dtype == tg.float32, f"{name}: float32 inputs gave {o.dtype}"
    for x in xs:
        if getattr(x, "grad", None) is not None:
            assert x.grad.dtype == tg.float32, f"{name}: float32 input got a {x.grad.dtype} grad"
    assert not probed_kernels, f"{name}: float64 arithmetic inside {probed_kernels}"


def test_probe_catches_the_float64_scalar_trap(probed_kernels):
    # the probe itself: a kernel written with np.sqrt(2.0) is caught
    seen: dict = {}
    bad = _probed(P.gelu_p, lambda x: x / np.sqrt(2.0), seen)
    out = bad(np.ones(3, np.float32))
    assert out.dtype == np.float64 and seen == {"gelu": ["divide.__call__(float32, float64)"]}
    assert len(ROWS) > 100  # the table the test above walks


def test_gelu_float32_matches_torch_formula():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000).astype(np.float32) * 3,
                        np.linspace(-10, 10, 20001, dtype=np.float32)])
    got = tg.nn.functional.gelu(tg.tensor(x)).numpy()
    assert got.dtype == np.float32
    tx = torch.from_numpy(x)
    ref = torch.nn.functional.gelu(tx).numpy()
    # torch's GELU kernel rounds its own vectorised erf: not bit-exact with scipy's
    # correctly rounded float32 erf; the difference is a few float32 ulps of x
    err = np.abs(got.astype(np.float64) - ref) / np.maximum(np.abs(x), 1e-30)
    assert err.max() <= 8 * 2.0 ** -24
    assert (got == ref).mean() > 0.6
    # the float32 erf itself is within one ulp of torch.erf
    c = np.float32(np.sqrt(0.5))
    e_tg = tg.erf(tg.tensor(x * c)).numpy()
    e_t = torch.erf(torch.from_numpy(x * c)).numpy()
    ulps = np.abs(e_tg.view(np.int32).astype(np.int64) - e_t.view(np.int32).astype(np.int64))
    assert ulps.max() <= 1
