"""Issue 12's sweep: torch expressions over the ops it names, each evaluated under torch
and under tracegrad (the same source, ``torch`` and ``F`` bound to either library) on
fixed random inputs, in float64 and float32.

One evaluator (``_evaluate``) does everything for a row: values (shape, dtype, numbers,
NaN placement and signed zeros), gradients (sum of outputs times fixed random cotangents,
backward, every floating input's gradient) and the errors raised (same exception type).
Rows marked with ``C`` also run compiled (``tracegrad.compile`` of the expression as a
function of its inputs; two calls, the second a cache hit) and compare with eager: values
and gradients through the compiled backward. The compile check covers the first rows of
each family and every row marked ``C``, so the file stays fast; the eager checks cover
every row.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

import tracegrad as tg
from tracegrad._quiet import drop_hot_kernel_warnings

torch = pytest.importorskip("torch")

# ---- inputs: one fixed set, cast per dtype ------------------------------------------

_rng = np.random.default_rng(12)


def _spd(n):
    a = _rng.standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


FLOATS = {
    "x": _rng.standard_normal((3, 4)),
    "y": _rng.standard_normal((3, 4)),
    "z": _rng.standard_normal(4),
    "w": _rng.standard_normal((2, 3, 4)),
    "s": np.array(_rng.standard_normal()),
    "p": _rng.uniform(0.5, 2.0, (3, 4)),
    "u": _rng.uniform(-0.8, 0.8, (3, 4)),
    "q": _rng.uniform(0.1, 0.9, (3, 4)),
    "d": (_rng.permutation(12).reshape(3, 4) - 5.5) * 0.3,   # distinct: no ties
    "t": _rng.integers(0, 3, (3, 4)).astype(np.float64),     # ties
    "nx": np.where(_rng.uniform(size=(3, 4)) < 0.3, np.nan, _rng.standard_normal((3, 4))),
    "m": _rng.standard_normal((3, 3)) + 3 * np.eye(3),
    "a": _rng.standard_normal((4, 3)),
    "h": _rng.standard_normal((2, 4)),
    "spd": _spd(3),
    "bm": _rng.standard_normal((2, 3, 3)) + 3 * np.eye(3),
    "x3": _rng.standard_normal((1, 2, 5)),
    "x4": _rng.standard_normal((1, 2, 4, 4)),
    "x5": _rng.standard_normal((1, 1, 2, 3, 3)),
    "k2": _rng.standard_normal((2, 3, 3, 3)),
    "k1": _rng.standard_normal((2, 3, 3)),
    "k3": _rng.standard_normal((1, 2, 2, 2, 2)),
    "c": _rng.standard_normal((2, 3)),
    "c2": _rng.standard_normal((2, 3)),
    "src": _rng.standard_normal((3, 2)),
    "e": np.zeros((0, 3)),
    "ew": _rng.standard_normal((5, 3)),
}
INTS = {
    "idx": (_rng.integers(0, 4, (3, 2)), "int64"),
    "ii": (np.array([[0, 1, 0, 2], [2, 2, 1, 0]]), "int64"),
    "n": (np.array([[1, -8, 6, 0x1337], [-1, 7, 3, -100], [5, 0, 12, 9]]), "int32"),
    "l": (_rng.integers(-20, 20, (3, 4)), "int64"),
    "sh": (np.array([0, 1, 3, 5]), "int64"),
    "lab": (np.array([2, 0, 1]), "int64"),
    "bag": (np.array([1, 2, 4, 5, 4, 3, 2, 9]), "int64"),
    "off": (np.array([0, 4]), "int64"),
    "b": (_rng.uniform(size=(3, 4)) < 0.5, "bool"),
}
FDTYPES = {"float64": (tg.float64, torch.float64), "float32": (tg.float32, torch.float32)}

C = "compile"

# ---- the table: family -> expressions (a string, or (string, flag or xfail reason)) --

SWEEP = {
    "bitwise and shifts": [
        "n & 0x1337", "n | 6", "n ^ -3", "~n", "n << 2", "n >> 1", "sh << sh", "l >> sh",
        "torch.bitwise_and(n, 5)", "torch.bitwise_or(l, l.flip(0))", "torch.bitwise_xor(n, n)",
        "torch.bitwise_not(b)", "b & (x > 0)", "b | ~b", "b ^ (x < y)",
        "torch.bitwise_left_shift(sh, 2)", "torch.bitwise_right_shift(l, 2)", "x & y",
        "torch.bitwise_and(x, 1)",
    ],
    "creation": [
        "torch.linspace(5, 10, 3, dtype=torch.int32)", "torch.linspace(-2, 2, 5)",
        "torch.linspace(0, 1, 1)", "torch.linspace(3, -3, 7, dtype=torch.int64)",
        "torch.arange(0, 1, 0)", "torch.arange(5, 0, 1)", "torch.arange(1, 2, 0.25)",
        "torch.arange(10, 0, -3)", "torch.tensor(1., dtype='float32')",
        "torch.meshgrid(z, z[:2], indexing='ij')[1]", "torch.meshgrid(z, z[:2], indexing='xy')[0]",
        "torch.cartesian_prod(z[:2], z[1:])", "torch.diag(z)", "torch.diag(x)", "torch.diag(x, 1)",
        "torch.diag(z, -2)", "torch.diag_embed(x)", "torch.diag_embed(x, 1, 0, 2)",
        "torch.eye(3, 2)", "torch.full((2,), 7)", "torch.zeros_like(n)", "torch.ones(0, 3)",
        "torch.empty(2, 0).shape",
    ],
    "powers": [
        "(-2.0) ** x", "0 ** x", "2.0 ** x", "x ** 3", "x ** 2", "p ** 0.5", "p ** -1.5", "x ** 0",
        "p ** y", "s ** 2", "x.pow(3)", "torch.pow(2, x)", "n ** 2", "l ** 0",
        "torch.float_power(p, 2)", "x.square()", "p.rsqrt()",
    ],
    "masking and indexing": [
        "torch.masked_select(x, torch.tensor(True))", "torch.masked_select(x, b)",
        "x.masked_select(x > 0)", "torch.masked_select(s, b)", "x.masked_fill(b, 2.5)",
        "x.masked_fill(b, s)", "x.masked_fill(x < 0, -math.inf)", "torch.where(b, x, y)",
        "torch.where(b, 1.0, 0.0)", "torch.where(b, x, 0)", "torch.where(x > 0)[1]",
        "torch.where(b, 2, 3)", "x.gather(1, idx)", "x.gather(0, ii)", "torch.gather(x, 1, idx)",
        "x.gather(1, idx.float())", "torch.where(x, x, y)", "x.masked_fill(x, 1.)",
        "torch.nonzero(s)", "torch.nonzero(torch.tensor(0.))", "torch.argwhere(s)",
        "torch.nonzero(b)", "torch.argwhere(x > 0)", "torch.nonzero(b, as_tuple=True)[0]",
        "x.narrow(1, 1, 2)", "x.narrow(1, 3, 2)", "x.narrow(0, -1, 1)", "x[b]", "x[:, [0, 2]]",
        "x[ii[0]]", "x[..., None, 1:3]", "x.index_select(1, sh[:3])",
        "torch.take_along_dim(x, idx, 1)",
    ],
    "dims and shapes": [
        "torch.tensor(1.).sum(1)", "torch.tensor(1.).squeeze(10)", "s.sum(0)", "s.sum(-1)",
        "s.squeeze(0)", "s.unsqueeze(0)", "s.mean(dim=0, keepdim=True)", "x.t().view(-1)",
        "x.t().reshape(-1)", "x.reshape(-2, 3)", "x.reshape(-1, 6)", "x.view(2, -1)",
        "x.sum(axis=1)", "x.sum(axis=1, keepdims=True)", "x.mean(axis=0)",
        "torch.amax(x, axis=1, keepdims=True)", "x.std(axis=1)", "x.view(torch.int32).shape",
        "x.view(torch.uint8).shape", "x.movedim(0, 1)", "x.unflatten(1, (2, 2))", "w.flatten(1)",
        "x.expand(2, 3, 4)", "x.T", "w.mT", "x.t().contiguous().view(-1)", "x.view(12)[3:]",
    ],
    "constants": [
        "x * math.nan", "x + math.inf", "x * -0.0", "x - math.inf", "x.clamp(max=math.nan)",
        "l + 9223372036854775807 * 0 + (-9223372036854775807 - 1) * 0 + l.max()",
        "l.clamp(-9223372036854775808, 9223372036854775807)", "b & True", "b | False",
        "torch.where(b, x, -0.0)", "x.masked_fill(b, math.inf)", "torch.full_like(x, -0.0)",
        "x.new_full((2,), math.nan)", "n * -2147483648 * 0", "torch.tensor([1e308]) * x.max() * 0",
    ],
    "losses and nn functions": [
        "F.binary_cross_entropy(x, q)", "F.binary_cross_entropy(q, q.flip(0))",
        "F.binary_cross_entropy(q, p - 1)", "F.binary_cross_entropy(q, q, reduction='none')",
        "F.normalize(x)", "F.normalize(x, p=1, dim=0)", "F.normalize(s.unsqueeze(0), dim=0)",
        "F.one_hot(lab)", "F.one_hot(lab, 5)", "F.one_hot(ii)", "F.one_hot(l)",
        "F.embedding_bag(bag, ew[:, :2].repeat(2, 1), off)",
        "F.embedding_bag(bag, ew.repeat(2, 1), off, mode='max')",
        "F.embedding_bag(bag.view(2, 4), ew.repeat(2, 1), mode='sum')", "F.embedding(lab, ew)",
        "F.cross_entropy(x, lab)", "F.nll_loss(x, lab)",
    ],
    "cumulative": [
        "x.cummax(1)[0]", "x.cummax(1)[1]", "t.cummax(0)[1]", "t.cummin(1)[1]", "x.cummin(0)[0]",
        "torch.cummax(s, 0)[0]", "x.cumprod(1)", "torch.cumprod(t, 0)", "x.logcumsumexp(1)",
        "torch.logcumsumexp(s, 0)", "x.cumsum(0)", "n.cumsum(1)", "n.cumprod(0)",
        "nx.cummax(1)[0]", "nx.cummax(1)[1]", "nx.logcumsumexp(1)", "e.cumsum(0)",
        "e.cummax(1)[0]", "b.cumsum(1)",
    ],
    "scatter": [
        "x.scatter(1, idx, src)", "x.scatter(1, idx, 2.5)", "x.scatter(0, ii, y[:2])",
        "x.clone().scatter_(1, idx, src)", "x.clone().scatter_(1, idx, src, reduce='add')",
        "x.clone().scatter_(1, idx, 1.5, reduce='multiply')",
        "torch.scatter_reduce(x, 1, idx, src, 'sum')",
        "torch.scatter_reduce(x, 1, idx, src, 'prod')",
        "torch.scatter_reduce(x, 1, idx, src, 'mean')",
        "torch.scatter_reduce(x, 1, idx, src, 'amax')",
        "torch.scatter_reduce(x, 1, idx, src, 'amin')",
        "torch.scatter_reduce(x, 1, idx, src, 'amax', include_self=False)",
        "torch.scatter_reduce(x, 1, idx, src, 'amin', include_self=False)",
        "torch.scatter_reduce(x, 1, idx, src, 'mean', include_self=False)",
        "torch.scatter_reduce(x, 1, idx, src, 'prod', include_self=False)",
        "torch.scatter_reduce(x, 1, idx, src, 'sum', include_self=False)",
        "torch.scatter_reduce(x, 0, ii, y[:2], 'amax')", "x.scatter_add(1, idx, src)",
    ],
    "elementwise": [
        "torch.copysign(x, y)", "torch.copysign(x, -1.)", "torch.copysign(n, y)", "torch.asin(u)",
        "torch.acos(u)", "torch.atan(x)", "torch.atan2(x, y)", "torch.asinh(x)",
        "torch.acosh(p + 1)", "torch.atanh(u)", "torch.sinh(x)", "torch.cosh(x)",
        "torch.arcsin(u)", "torch.arctan2(y, x)", "torch.exp2(x)", "torch.exp2(n)",
        "torch.logaddexp(x, y)", "torch.logaddexp2(x, y)", "torch.hypot(x, y)",
        "torch.xlogy(p, q)", "torch.xlogy(x * 0, q)", "torch.xlogy(2., p)",
        "torch.special.xlogy(p, 3.)", "torch.erfinv(u)", "torch.lgamma(p)", "torch.lgamma(x)",
        "torch.digamma(p)", "torch.logit(q)", "torch.logit(q, eps=0.2)", "torch.frac(x * 3)",
        "torch.trunc(x * 3)", "torch.fix(x)", "torch.fmod(x, 0.7)", "torch.remainder(x, 0.7)",
        "torch.fmod(n, 3)", "torch.remainder(n, -3)", "100 % (p + 1)", "7 % n.clamp(1)", "5.5 % p",
        "-7 // n.clamp(1)", "torch.lerp(x, y, 0.3)", "torch.lerp(x, y, q)", "x.lerp(y, s)",
        "torch.clamp(x, y, p)", "x.clamp(min=y)", "x.clamp(max=s)", "torch.clamp(n, -5, 5)",
        "x.clip(-0.5, 0.5)", "torch.sign(x)", "torch.signbit(x)", "torch.nan_to_num(nx)",
        "torch.isclose(x, x + 1e-9)", "torch.isclose(x, y, atol=1.)",
        "torch.isclose(nx, nx, equal_nan=True)", "torch.allclose(x, x + 1e-9)", "torch.sinc(x)",
        "torch.deg2rad(x)", "torch.heaviside(x, y)", "torch.log1p(p)", "torch.expm1(x)",
        "torch.erf(x)", "torch.erfc(x)", "torch.special.expit(x)",
    ],
    "activations": [
        "F.silu(x)", "F.elu(x)", "F.elu(x, 0.5)", "F.celu(x, 1.5)", "F.selu(x)", "F.softplus(x)",
        "F.softplus(x, beta=2, threshold=1)", "F.softsign(x)", "F.hardtanh(x)",
        "F.hardtanh(x, -0.5, 0.3)", "F.hardsigmoid(x * 4)", "F.hardswish(x * 4)", "F.relu6(x * 4)",
        "F.mish(x)", "F.logsigmoid(x)", "F.glu(x)", "F.glu(x, 0)",
        "F.prelu(x, torch.tensor([0.25]))", "F.prelu(w, z[:3].abs())",
        "F.rrelu(x, training=False)", "F.softmin(x, 1)", "F.softmax(x4, 1)",
        "F.leaky_relu(x, 0.2)", "F.gelu(x, approximate='tanh')", "F.tanhshrink(x)",
        "F.softshrink(x, 0.3)", "F.hardshrink(x, 0.3)", "F.threshold(x, 0.1, 20.)",
        "F.log_softmax(x, 0)", "torch.nn.SiLU()(x)", "torch.nn.ELU(0.3)(x)", "torch.nn.CELU()(x)",
        "torch.nn.SELU()(x)", "torch.nn.Softplus(3)(x)", "torch.nn.Softsign()(x)",
        "torch.nn.Hardtanh(-2, 2)(x * 3)", "torch.nn.Hardsigmoid()(x)", "torch.nn.Hardswish()(x)",
        "torch.nn.ReLU6()(x * 4)", "torch.nn.Mish()(x)", "torch.nn.LogSigmoid()(x)",
        "torch.nn.GLU(1)(x)", "torch.nn.RReLU().eval()(x)", "torch.nn.Softmin(0)(x)",
        "torch.nn.Softmax2d()(x4)", "torch.nn.Softmax2d()(x4[0])",
    ],
    "einsum and products": [
        "torch.einsum('ij,kj->ik', x, y)", "torch.einsum('ij->j', x)", "torch.einsum('ii', m)",
        "torch.einsum('ii->i', m)", "torch.einsum('bij,bjk->bik', bm, bm)",
        "torch.einsum('i,j->ij', z, z)", "torch.einsum('...j,j->...', x, z)",
        "torch.einsum('ij,ij->', x, y)", "torch.einsum('ij,jk', [x, a])", "torch.outer(z, z[:3])",
        "torch.ger(z, z)", "torch.addmm(x, x, m.repeat(2, 2)[:4, :4])",
        "torch.addmm(z, x, a, beta=0.5, alpha=2)", "torch.baddbmm(bm, bm, bm)",
        "torch.baddbmm(bm, bm, bm, beta=0, alpha=-1)", "torch.addbmm(m, bm, bm)",
        "torch.addmv(x[:, 0], x, z)", "torch.cdist(x, y)", "torch.cdist(x, y, p=1)",
        "torch.cdist(x, y, p=0)", "torch.cdist(x, y, p=math.inf)", "torch.cdist(w, w)",
        "torch.cross(c, c2, dim=1)", "torch.linalg.cross(c, c2)",
        "torch.cross(c.t(), c2.t(), dim=0)", "torch.dot(z, z)", "torch.trace(m)", "torch.trace(x)",
        "torch.mv(x, z)",
    ],
    "sorting and order statistics": [
        "x.sort(1)[0]", "t.sort(1)[1]", "t.sort(dim=1, stable=True)[1]",
        "t.sort(0, descending=True)[1]", "x.argsort(0)", "t.argsort(1, descending=True)",
        "t.msort()", "torch.msort(x)", "x.topk(2)[0]", "t.topk(2)[1]",
        "t.topk(3, 0, largest=False)[1]", "d.topk(4, 1)[0]", "t.topk(2, sorted=False)[1]",
        "x.kthvalue(2)[0]", "t.kthvalue(2, 1)[1]", "t.kthvalue(2, 0, keepdim=True)[1]",
        "x.median()", "t.median()", "t.median(1)[1]", "x.median(0)[0]", "t.nanmedian(1)[1]",
        "nx.nanmedian()", "nx.nanmedian(1)[1]", "nx.median(1)[1]", "t.mode(1)[0]", "t.mode(1)[1]",
        "t.mode(0)[1]", "x.mode()[0]", "torch.unique(t)", "torch.unique(t, return_counts=True)[1]",
        "torch.unique(t, return_inverse=True)[1]", "torch.unique(t, dim=1)",
        "torch.unique_consecutive(t)", "torch.unique_consecutive(t, return_counts=True)[1]",
        "torch.unique_consecutive(t, dim=0)", "x.sort(descending=True)[0]", "nx.sort(1)[1]",
        "nx.topk(2)[1]", "s.sort()[0]", "s.topk(1)[0]", "s.kthvalue(1)[0]", "e.sort(0)[0]",
        "n.sort(1)[1]", "b.sort(1)[1]", "d.amax(1)", "t.amax(1)", "t.amin(0)", "nx.amax(1)",
        "nx.amax()", "nx.amin()", "nx.max()", "t.max()", "t.max(1)[1]", "nx.max(1)[1]",
    ],
    "repeat and layout": [
        "x.repeat(2, 1)", "x.repeat(1, 2, 1)", "z.repeat(3)", "x.repeat_interleave(2)",
        "x.repeat_interleave(2, dim=0)", "x.repeat_interleave(torch.tensor([1, 0, 2]), dim=0)",
        "torch.repeat_interleave(sh)", "torch.tile(x, (2,))", "torch.tile(z, (2, 2))", "x.roll(1)",
        "x.roll(-1, 1)", "x.roll((1, 2), (0, 1))", "torch.rot90(x)", "torch.rot90(x, 2)",
        "torch.rot90(x, -1, (1, 0))", "torch.rot90(w, 1, (1, 2))", "x.diagonal()",
        "w.diagonal(1, 1, 2)", "w.diagonal(0, -1, 0)", "torch.tril(x)", "torch.tril(x, 1)",
        "torch.triu(x, -1)", "torch.triu(w, 2)", "torch.tril(x, -5)", "x.unfold(1, 2, 1)",
        "x.unfold(1, 2, 2)", "w.unfold(2, 3, 1)", "s.unfold(0, 1, 1)", "F.unfold(x4, 2)",
        "F.unfold(x4, (2, 3), padding=1, stride=(1, 2), dilation=1)",
        "F.fold(F.unfold(x4, 2), (4, 4), 2)",
        "F.fold(torch.arange(16.).view(1, 4, 4) * s, (3, 3), 2)", "F.unfold(x4, 2, dilation=2)",
        "x.flip(1)", "x.flip(0, 1)", "x.flip((0, 1))", "x.flip(-1)", "torch.stack([x, y], 2)",
        "x.chunk(3, 1)[2]", "x.split([1, 3], 1)[1]",
    ],
    "modules": [
        "(seed(0), nn.ConvTranspose2d(2, 3, 3, 2, 0, 1).to(x4.dtype)(x4))[1]",
        "(seed(0), nn.ConvTranspose1d(2, 2, 3, groups=2, dilation=2).to(x3.dtype)(x3))[1]",
        "(seed(0), nn.ConvTranspose3d(1, 2, 2, stride=2).to(x5.dtype)(x5))[1]",
        "(seed(0), torch.nn.ConvTranspose2d(2, 3, 3))[1](x4)",
        "(seed(0), torch.nn.Conv2d(2, 3, 3))[1](x4)", "F.conv2d(x4, k2, z[:3].float())",
        "F.conv_transpose2d(x4, k2.float())",
        "torch.nn.MaxUnpool2d(2)(*torch.nn.MaxPool2d(2, return_indices=True)(x4))",
        "torch.nn.MaxUnpool1d(2)(*torch.nn.MaxPool1d(2, return_indices=True)(x3))",
        "(seed(0), torch.nn.PReLU(2).to(x4.dtype)(x4))[1]", "(seed(0), torch.nn.RReLU()(x))[1]",
        "torch.nn.Upsample(size=(3, 5), mode='bicubic')(x4)",
        "torch.nn.Fold((4, 4), 2)(torch.nn.Unfold(2)(x4))", "torch.nn.Unfold(2, padding=1)(x4)",
        "(seed(0), nn.EmbeddingBag(10, 3, mode='mean').to(x.dtype)(bag, off))[1]",
    ],
    "more torch ops": [
        "x.take(sh)", "torch.take(x, ii)", "x.take(-sh - 1)", "x.index_add(1, sh[:2], src)",
        "x.index_add(0, ii[0, :2], y[:2], alpha=-2)", "x.clone().index_add_(1, sh[:2], src)",
        "x.index_fill(1, sh[:2], -1.)", "x.index_fill(0, lab[:1], s)", "torch.sgn(x)",
        "torch.kron(m, m[:2, :2])", "torch.kron(z, x)", "torch.inner(x, y)", "torch.inner(z, s)",
        "torch.tensordot(x, a, 1)", "torch.tensordot(w, x, ([1, 2], [0, 1]))",
        "torch.tensordot(x, y, 0).shape", "torch.fliplr(x)", "torch.flipud(x)", "torch.fliplr(z)",
        "torch.hstack([x, y])", "torch.hstack([z, z])", "torch.vstack([x, z])",
        "torch.row_stack([z, z])", "torch.dstack([x, y])", "torch.column_stack([z, z])",
        "torch.column_stack([x, z[:3]])", "torch.atleast_2d(z)", "torch.atleast_3d(x).shape",
        "torch.atleast_1d(s)", "x.tensor_split(3, 1)[2]", "x.tensor_split([1, 3], 1)[1]",
        "torch.tensor_split(z, 3)[0]", "x.hsplit(2)[1]", "x.hsplit(3)", "x.vsplit([1])[1]",
        "x.nansum()", "nx.nansum(1)", "nx.nanmean(0)", "nx.nanmean()", "l.nansum(0)",
        "l.nanmean()", "x.aminmax()[0]", "x.aminmax(dim=1)[1]",
        "t.aminmax(dim=0, keepdim=True)[0]", "x.count_nonzero(1)", "t.count_nonzero()",
        "torch.count_nonzero(b, 0)", "x.diff()", "x.diff(2, 0)",
        "x.diff(dim=1, prepend=y[:, :1], append=z[:3, None])", "b.diff()", "l.diff(1, 0)",
        "torch.addcmul(x, y, p, value=0.5)", "torch.addcdiv(x, y, p, value=2)",
        "torch.addcdiv(l, l, l)", "x.clone().addcmul_(y, p)", "x.ravel()",
        "torch.linalg.multi_dot([x, a, m])", "torch.linalg.multi_dot([z, a, m[:, 0]])",
        "torch.linalg.matrix_power(m, 3)", "torch.linalg.matrix_power(m, -2)",
        "torch.linalg.matrix_power(bm, 0)", "torch.linalg.vecdot(x, y)", "d.quantile(0.3)",
        "t.quantile(0.5)", "x.quantile(torch.tensor([0.25, 0.5]), dim=1)",
        "t.quantile(q[0], 0, keepdim=True)", "nx.quantile(0.4, 1)", "nx.nanquantile(0.5, 1)",
        "nx.nanquantile(0.3)", "t.quantile(0.3, 1, interpolation='lower')",
        "t.quantile(0.3, 1, interpolation='higher')",
        "x.quantile(0.7, 0, interpolation='nearest')",
        "t.quantile(0.5, 1, interpolation='nearest')", "x.quantile(0.2, interpolation='midpoint')",
        "x.quantile(torch.tensor(0.6), 1, True)", "s.quantile(0.5)", "s.quantile(0.5, 0)",
        "x.quantile(1.5)", "l.quantile(0.5)", "e.quantile(0.5)", "x.quantile(x[0, :2], 1)",
        "x.quantile(0.5, interpolation='cubic')", "x - x.long()", "x * x.int()",
        "x.long().requires_grad", "x.bool().requires_grad", "x.to(torch.int64).requires_grad",
        "(x + x.round().long()).grad_fn is None",
    ],
    "edge values": [
        "F.silu(x * 100)", "F.elu(x * 100)", "F.celu(x * 100, 0.5)", "F.selu(x * 100)",
        "F.logsigmoid(x * 100)", "F.hardsigmoid(x * 100)", "F.softmin(x * 1e3, 1)",
        "F.glu(x * 100)", "F.log_softmax(x.masked_fill(b, -math.inf), 1)",
        "F.softmax(x.masked_fill(b, -math.inf), 0)", "F.normalize(x * 0)", "torch.cdist(x, x)",
        "torch.cdist(x, x, p=1)", "torch.linalg.norm(x * 0)", "torch.linalg.vector_norm(x * 0, 3)",
        "torch.linalg.vector_norm(x * 0, math.inf)", "x.norm(dim=1) * 0",
        "torch.hypot(x * 0, y * 0)", "torch.atan2(x * 0, y * 0)", "torch.atan2(x * 0, -y.abs())",
        "torch.sqrt(p * 0)", "torch.rsqrt(p * 0)", "(x * 0).pow(0.5)", "(x * 0) ** 2",
        "(x * 0).abs()", "torch.xlogy(x * 0, x * 0)", "torch.special.xlogy(q, x * 0)",
        "torch.logit(q * 0)", "torch.erfinv(u * 0 + 1)", "torch.acosh(p * 0 + 1)",
        "torch.atanh(u * 0 + 1)", "torch.asin(u * 0 + 1)", "F.hardtanh(x.round())",
        "F.relu6(x.round() * 6)", "F.hardswish(x * 0 + 3)", "F.hardswish(x * 0 - 3)",
        "F.softshrink(x * 0 + 0.5)", "F.threshold(x.round(), 0.0, -1.0)",
        "torch.clamp(x, min=y.round())", "torch.clamp(x.round(), -1, 1)", "x.round().amax(1)",
        "x.round().max(1)[1]", "x.round().cummax(1)[1]", "x.round().cumprod(1)",
        "torch.frac(x.round())", "torch.fmod(x, x.round())", "torch.remainder(x, y * 0)",
        "torch.lgamma(x.round())", "torch.digamma(x * 0)", "F.mish(x * 0)", "torch.sinc(x * 0)",
        "torch.copysign(x * 0, y)", "torch.copysign(x, y * 0)", "torch.copysign(x, -(y * 0))",
        "torch.logcumsumexp(x.masked_fill(b, -math.inf), 1)",
        "torch.cummax(x.masked_fill(b, math.inf), 1)[1]", "torch.cumprod(x.masked_fill(b, 0.), 1)",
        "torch.logaddexp(x.masked_fill(b, -math.inf), y.masked_fill(b, -math.inf))",
        "torch.xlogy(x.masked_fill(b, 0.), p.masked_fill(b, 0.))", "torch.hypot(x * math.inf, y)",
        "torch.copysign(x * 0, -y)", "F.softplus(x * 100)", "F.logsigmoid(x * 1000)",
        "F.mish(x * 100)", "F.elu(x.masked_fill(b, -math.inf))",
        "torch.erfinv(u.masked_fill(b, 1.))", "torch.logit(q.masked_fill(b, 0.))",
        "torch.lgamma(-p)", "torch.digamma(-p.round())", "x.topk(0)[0]", "e.topk(0, 0)[0]",
        "s.topk(0)[0]", "torch.median(e)", "e.median(1)", "torch.mode(s)", "torch.unique(e)",
        "torch.repeat_interleave(x, sh[:3], 0)", "torch.roll(s, 1)", "torch.rot90(x, 4)",
        "torch.tril(e)", "torch.diag(e[:, :0])", "torch.trace(e)", "e.unfold(1, 2, 1).shape",
        "torch.einsum('ij->', e)", "torch.cdist(e, x[:, :3])", "torch.outer(z[:0], z)",
        "F.one_hot(lab[:0], 3)", "F.normalize(e)", "torch.lerp(e, e, 0.5)", "torch.linalg.norm(e)",
        "torch.linalg.vector_norm(e, 0)", "torch.linalg.svd(e)[1]", "torch.linalg.qr(e)[1]",
        "torch.scatter_reduce(x, 1, idx[:, :0], src[:, :0], 'amax', include_self=False)",
        "F.interpolate(x4, scale_factor=(1.3, 0.7), mode='bilinear')",
        "F.interpolate(x4, scale_factor=(1.3, 0.7), mode='nearest')",
        "F.interpolate(x4, size=(7, 3), mode='nearest-exact')",
        "F.interpolate(x3, scale_factor=1.7, mode='linear', recompute_scale_factor=True)",
        "torch.clamp(x, min=p, max=-p)", "torch.where(b, s, x.long())", "torch.where(b, 1, 2.5)",
        "torch.where(b, True, 0)", "torch.isclose(x, x.masked_fill(b, math.nan))",
        "torch.isclose(n, n + 1, atol=1)", "torch.allclose(x.float(), x.float())", "(~b).sum()",
        "n >> 33", "n << 40", "l >> 64", "l << -1", "torch.bitwise_left_shift(n, sh[:4].int())",
        "x.std_mean(0, correction=2)", "e.var_mean(0)", "x.var_mean(unbiased=True)",
        "torch.std_mean(s)", "x.amax((0, 1))", "x.amin(-1, True)", "nx.amin((0, 1), keepdim=True)",
    ],
    "interpolate": [
        "F.interpolate(x4, scale_factor=2)", "F.interpolate(x4, size=(3, 5))",
        "F.interpolate(x4, scale_factor=1.5, mode='nearest-exact')",
        "F.interpolate(x3, 7, mode='linear')",
        "F.interpolate(x3, 7, mode='linear', align_corners=True)",
        "F.interpolate(x4, scale_factor=2, mode='bilinear')",
        "F.interpolate(x4, size=(3, 6), mode='bilinear', align_corners=True)",
        "F.interpolate(x4, scale_factor=2, mode='bicubic', align_corners=True)",
        "F.interpolate(x4, size=(5, 3), mode='bicubic')",
        "F.interpolate(x5, scale_factor=2, mode='trilinear')",
        "F.interpolate(x5, size=(3, 2, 4), mode='trilinear', align_corners=True)",
        "F.interpolate(x5, scale_factor=2, mode='nearest')",
        "F.interpolate(x4, scale_factor=0.5, mode='bilinear', recompute_scale_factor=True)",
        "F.interpolate(x4, scale_factor=0.6, mode='bilinear')",
        "F.interpolate(x3, scale_factor=2.5, mode='nearest')",
        "torch.nn.Upsample(scale_factor=2)(x4)",
        "torch.nn.Upsample(size=6, mode='bilinear', align_corners=False)(x4)",
        "torch.nn.UpsamplingNearest2d(scale_factor=2)(x4)",
        "torch.nn.UpsamplingBilinear2d(scale_factor=2)(x4)",
        "F.interpolate(x4, scale_factor=2, mode='area')",
    ],
    "convolution transposed and unpooling": [
        "F.conv_transpose1d(x3, k1)", "F.conv_transpose1d(x3, k1, stride=2, output_padding=1)",
        "F.conv_transpose1d(x3, k1[:, :1].repeat(1, 2, 1), groups=2, dilation=2)",
        "F.conv_transpose2d(x4, k2)", "F.conv_transpose2d(x4, k2, stride=2, padding=1)",
        "F.conv_transpose2d(x4, k2, stride=2, output_padding=1, dilation=1)",
        "F.conv_transpose2d(x4, k2[:, :1].repeat(1, 2, 1, 1), groups=2, dilation=2)",
        "F.conv_transpose2d(x4, k2, z[:3])", "F.conv_transpose3d(x5.repeat(1, 2, 1, 1, 1), k3)",
        "F.conv_transpose3d(x5.repeat(1, 2, 1, 1, 1), k3, stride=2, output_padding=1)",
        "F.max_unpool2d(*F.max_pool2d(x4, 2, return_indices=True), 2)",
        "F.max_unpool1d(*F.max_pool1d(x3, 2, return_indices=True), 2, output_size=(5,))",
        "F.max_unpool3d(*F.max_pool3d(x5, (1, 2, 2), return_indices=True), (1, 2, 2))",
        "F.max_pool2d(x4, 2, return_indices=True)[1]",
        "F.max_pool2d((x4 * 10).long(), 2, return_indices=True)[0]",
    ],
    "reductions": [
        "torch.std_mean(x)[0]", "torch.std_mean(x, 1)[1]", "torch.var_mean(x, 0, correction=0)[0]",
        "torch.var_mean(x, (0, 1), keepdim=True)[1]", "x.var(1, unbiased=False)", "x.std()",
        "x.logsumexp(1)", "x.prod(1)", "t.prod()", "x.norm()", "x.norm(1, 1)", "x.norm(p='fro')",
        "b.all(1)", "b.any()", "x.mean((0, 1))", "n.sum()", "b.sum()", "e.sum(0)", "e.amax(1)",
        "e.prod()", "e.mean()",
    ],
    "linalg": [
        "torch.linalg.norm(x)", "torch.linalg.norm(z, 3)", "torch.linalg.norm(x, 'nuc')",
        "torch.linalg.norm(x, -math.inf)", "torch.linalg.vector_norm(x, 0.5, 1)",
        "torch.linalg.vector_norm(x, math.inf)", "torch.linalg.vector_norm(w, 1, (0, 2))",
        "torch.linalg.matrix_norm(x)", "torch.linalg.matrix_norm(x, 2)",
        "torch.linalg.matrix_norm(bm, -1)", "torch.linalg.matrix_norm(x, 'nuc')",
        "torch.linalg.inv(m)", "torch.linalg.inv(bm)", "torch.inverse(spd)", "torch.linalg.det(m)",
        "torch.linalg.det(bm)", "torch.det(spd)", "torch.linalg.slogdet(m)[1]",
        "torch.linalg.slogdet(-m)[0]", "torch.logdet(spd)", "torch.linalg.solve(m, x[:, :3])",
        "torch.linalg.solve(m, z[:3])", "torch.linalg.solve(bm, bm)",
        "torch.linalg.solve(m, x.t()[:, :3], left=False)", "torch.linalg.cholesky(spd)",
        "torch.linalg.cholesky(spd, upper=True)", "torch.linalg.qr(a)[0].abs()",
        "torch.linalg.qr(a)[1].abs()", "torch.linalg.qr(a, mode='complete')[1].abs()",
        "torch.linalg.qr(a, mode='r')[1].abs()", "torch.linalg.qr(a, mode='r')[0]",
        "torch.linalg.eigh(spd)[0]", "torch.linalg.eigh(spd)[1].abs()",
        "torch.linalg.eigvalsh(spd, UPLO='U')", "torch.linalg.svd(a)[1]",
        "torch.linalg.svd(a, full_matrices=False)[0].abs()", "torch.linalg.svd(h)[2].abs()[:2]",
        "torch.linalg.svdvals(x)", "torch.svd(a)[1]", "torch.linalg.pinv(a)",
        "torch.linalg.pinv(h)", "torch.linalg.pinv(x.t() @ x)", "torch.linalg.lstsq(a, x.t())[0]",
        "torch.linalg.lstsq(a, x.t()[:, 0])[0]", "torch.linalg.lstsq(a, x.t())[1]",
        "torch.linalg.lstsq(a, x.t())[2]", "torch.linalg.lstsq(a, x.t())[3]",
        "torch.linalg.lstsq(h, x[:2])[0]", "torch.linalg.lstsq(bm, bm)[0]",
        "torch.linalg.matrix_rank(x)", "torch.linalg.matrix_rank(spd - spd)",
        "torch.linalg.cross(c, c2)", "torch.linalg.det(m * 0)", "torch.linalg.slogdet(m * 0)[0]",
        "torch.linalg.inv(m * 0)", "torch.linalg.solve(m * 0, z[:3])",
        "torch.linalg.cholesky(-spd)", "torch.linalg.inv(x)",
        "torch.linalg.lstsq(a, x.t(), driver='gelsd')[1]",
        "torch.linalg.lstsq(a, x.t(), driver='gelss')[3]",
        "torch.linalg.lstsq(a, x.t(), driver='gels')[1]",
        "torch.linalg.lstsq(bm, bm, driver='gelsd')[2]", "torch.linalg.inv(m - m)",
        "torch.linalg.slogdet(spd - spd)[1]",
        "torch.linalg.det(torch.tensor([[0., 1.], [0., 1.]]) * s)",
        "x.clone().unfold(1, 2, 1).mul_(2)", "x.clone().unfold(1, 2, 1)[0, 1].mul_(2)",
        "torch.linalg.inv(torch.stack([m, m * 0]))", "x.amax()", "nx.amin(1)",
        "torch.linalg.det(x)",
    ],
}


# rows compiled besides each family's first three
COMPILE_TOO = {
    "100 % (p + 1)", "F.conv_transpose2d(x4, k2[:, :1].repeat(1, 2, 1, 1), groups=2, dilation=2)",
    "F.embedding_bag(bag, ew.repeat(2, 1), off, mode='max')", "F.fold(F.unfold(x4, 2), (4, 4), 2)",
    "F.glu(x, 0)", "F.interpolate(x4, scale_factor=2, mode='bicubic', align_corners=True)",
    "F.interpolate(x5, size=(3, 2, 4), mode='trilinear', align_corners=True)",
    "F.max_pool2d((x4 * 10).long(), 2, return_indices=True)[0]",
    "F.max_pool2d(x4, 2, return_indices=True)[1]",
    "F.max_unpool2d(*F.max_pool2d(x4, 2, return_indices=True), 2)", "F.mish(x)",
    "F.one_hot(lab, 5)", "l >> sh", "n & 0x1337", "nx.amax()", "t.cummin(1)[1]",
    "t.kthvalue(2, 1)[1]", "t.median(1)[1]", "t.mode(1)[1]", "t.sort(0, descending=True)[1]",
    "t.topk(2)[1]", "torch.cdist(x, y, p=1)", "torch.clamp(x, y, p)",
    "torch.einsum('bij,bjk->bik', bm, bm)", "torch.erfinv(u)", "torch.isclose(x, y, atol=1.)",
    "torch.lerp(x, y, q)", "torch.linalg.det(m * 0)",
    "torch.linalg.det(torch.tensor([[0., 1.], [0., 1.]]) * s)", "torch.linalg.inv(m - m)",
    "torch.linalg.lstsq(a, x.t())[0]", "torch.linalg.slogdet(m * 0)[0]",
    "torch.linalg.slogdet(m)[1]", "torch.linalg.slogdet(spd - spd)[1]", "torch.linalg.svd(a)[1]",
    "torch.logaddexp(x, y)", "torch.rot90(w, 1, (1, 2))",
    "torch.scatter_reduce(x, 1, idx, src, 'amax', include_self=False)",
    "torch.scatter_reduce(x, 1, idx, src, 'prod', include_self=False)", "torch.std_mean(x, 1)[1]",
    "torch.where(b, 1.0, 0.0)", "torch.xlogy(x * 0, q)", "x.amax()", "x.logcumsumexp(1)",
    "x.repeat_interleave(2, dim=0)", "x.unfold(1, 2, 1)", "x.view(torch.int32).shape", "~n",
}
# float32 results that must be bitwise torch's (small integer powers are multiplications)
EXACT32 = {"x ** 3", "x ** 2", "x.pow(3)", "x.square()", "s ** 2"}

# ---- rows -----------------------------------------------------------------------------

# (expression, dtype) -> what differs from torch; checked strictly: the row must still fail
XFAIL: dict[tuple, str] = {
    **{("x.clone().unfold(1, 2, 1).mul_(2)", dt): "an in-place op on unfold windows that share "
       "elements: torch applies it once per window an element is in (order-dependent); "
       "tracegrad refuses with torch's overlap message" for dt in FDTYPES},
    ("F.softshrink(x, 0.3)", "float64"):
        "the sign of a zero result: torch's AVX512 loop gives +0.0 for a negative input in the "
        "band in its first 8 elements and -0.0 in the scalar tail; tracegrad -0.0 throughout",
}


def _rows():
    rows = []
    for family, exprs in SWEEP.items():
        for i, e in enumerate(exprs):
            flag = None
            if isinstance(e, tuple):
                e, flag = e
            compiled = i < 3 or flag == C or e in COMPILE_TOO or family == "constants"
            rows.append(pytest.param(family, e, compiled, id=e))
    return rows


_NAMES = re.compile(r"\b[a-z][a-z0-9]*\b")


def _inputs_of(expr):
    found = set(_NAMES.findall(re.sub(r"'[^']*'", "", expr)))
    return [n for n in list(FLOATS) + list(INTS) if n in found]


def _make(T, name, fdtype, grad):
    if name in FLOATS:
        return T.tensor(FLOATS[name], dtype=fdtype, requires_grad=grad)
    a, dt = INTS[name]
    return T.tensor(a, dtype=getattr(T, dt))


def _namespace(T):
    return {"torch": T, "F": T.nn.functional, "nn": T.nn, "math": math, "seed": T.manual_seed}


def _flat(out) -> list:
    if isinstance(out, (tuple, list)) and not isinstance(out, torch.Size) \
            and not isinstance(out, tg.Size):
        return [v for o in out for v in _flat(o)]
    return [out]


def _is_tensor(v):
    return isinstance(v, (torch.Tensor, tg.Tensor))


def _error(e) -> str:
    name = type(e).__name__
    return {"LinAlgError": "_LinAlgError"}.get(name, name)


def _evaluate(T, expr, names, fdtype, fn=None):
    """('ok', outputs as arrays/values, grads) or ('raises', exception type name); eager
    tracegrad (forward and backward) must leak no NumPy warning, as torch is silent."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drop_hot_kernel_warnings()  # (tracegrad's own filter, as a user's script has it)
        result = _run(T, expr, names, fdtype, fn)
    if T is tg and fn is None:
        leaked = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert not leaked, f"{expr}: NumPy warnings leak: {leaked}"
    return result


def _run(T, expr, names, fdtype, fn):
    xs = {n: _make(T, n, fdtype, grad=n in FLOATS) for n in names}
    try:
        out = fn(**xs) if fn is not None else eval(expr, _namespace(T), dict(xs))
    except Exception as e:  # the error itself is what is compared
        return ("raises", _error(e))
    outs = _flat(out)
    values = [_value(o) for o in outs]
    seeds = [o for o in outs if _is_tensor(o) and o.requires_grad and o.dtype.is_floating_point]
    wrt = [xs[n] for n in names if n in FLOATS]
    grads = None
    if seeds and wrt:
        rng = np.random.default_rng(5)
        cot = [T.tensor(rng.standard_normal(tuple(o.shape)), dtype=o.dtype) for o in seeds]
        try:
            gs = T.autograd.grad(seeds, wrt, cot, allow_unused=True)
        except Exception as e:
            return ("ok", values, ("raises", _error(e)))
        grads = [np.zeros(tuple(x.shape)) if g is None else _array(g)
                 for g, x in zip(gs, wrt, strict=True)]
    return ("ok", values, grads)


def _array(t):
    t = t.detach()
    return t.numpy(force=True) if isinstance(t, torch.Tensor) else t.numpy()  # (ZeroTensor)


def _value(o):
    if _is_tensor(o):
        return (tuple(o.shape), str(o.dtype).replace("tracegrad.", "torch."),
                o.detach().numpy().copy())
    if isinstance(o, (torch.Size, tg.Size)):
        return tuple(o)
    return o


def _assert_same(got, want, tol, what):
    assert got[0] == want[0], f"{what}: {got[:2]} vs torch {want[:2]}"
    if got[0] == "raises":
        return
    _, gv, gg = got
    _, wv, wg = want
    assert len(gv) == len(wv), f"{what}: {len(gv)} outputs vs torch {len(wv)}"
    for a, b in zip(gv, wv, strict=True):
        if isinstance(b, tuple) and len(b) == 3 and isinstance(b[2], np.ndarray):
            assert isinstance(a, tuple), f"{what}: {a!r} vs torch tensor"
            assert a[:2] == b[:2], f"{what}: shape/dtype {a[:2]} vs torch {b[:2]}"
            _close(a[2], b[2], tol, what)
        else:
            assert a == b or (a != a and b != b), f"{what}: {a!r} vs torch {b!r}"
    if isinstance(wg, tuple) or isinstance(gg, tuple):
        assert gg == wg, f"{what}: gradient {gg} vs torch {wg}"
        return
    assert (gg is None) == (wg is None), f"{what}: gradient {gg} vs torch {wg}"
    for a, b in zip(gg or (), wg or (), strict=True):
        _close(a, b, tol, what + " gradient")


def _close(a, b, tol, what):
    if a.dtype.kind in "biu" or b.dtype.kind in "biu":
        np.testing.assert_array_equal(a, b, err_msg=what)
        return
    if np.float32 in (a.dtype, b.dtype) and tol:
        tol = max(tol, 2e-4)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol, equal_nan=True, err_msg=what)
    if "gradient" in what:
        return
    exact_zero = (b == 0) & (a == 0)
    np.testing.assert_array_equal(np.signbit(a[exact_zero]), np.signbit(b[exact_zero]),
                                  err_msg=what + " (signed zeros)")


ROWS = _rows()


@pytest.mark.parametrize("fdtype", list(FDTYPES))
@pytest.mark.parametrize("family,expr,compiled", ROWS)
def test_sweep_matches_torch(family, expr, compiled, fdtype):
    names = _inputs_of(expr)
    tg_dtype, torch_dtype = FDTYPES[fdtype]
    tol = 1e-9 if fdtype == "float64" else 0.0 if expr in EXACT32 else 2e-4
    want = _evaluate(torch, expr, names, torch_dtype)
    got = _evaluate(tg, expr, names, tg_dtype)
    if (expr, fdtype) in XFAIL:
        with pytest.raises(AssertionError):
            _assert_same(got, want, tol, expr)
        pytest.xfail(XFAIL[expr, fdtype])
    _assert_same(got, want, tol, expr)


def _compiled_fn(expr, names):
    env = _namespace(tg)
    exec(f"def fn({', '.join(names)}):\n    return {expr}\n", env)
    return tg.compile(env["fn"])


COMPILED = [r for r in ROWS if r.values[2]]


COMPILED_XFAIL = {
    "torch.linalg.inv(m - m)": "compiled, a singular matrix's inverse is LU's inf/nan: the "
    "LinAlgError torch raises needs the values, which a compiled call does not read",
    "100 % (p + 1)": "compiled, the call itself raises torch's 'derivative for aten::remainder "
    "is not implemented' (the graph's backward is built at the call), where eager raises it at "
    "backward()",
    "F.binary_cross_entropy(x, q)": "compiled, an input outside [0, 1] gives nan: the range "
    "check that raises torch's error reads the values, which a compiled call does not",
    "F.binary_cross_entropy(q, p - 1)": "compiled, a target outside [0, 1] gives a value: the "
    "range check that raises torch's error reads the values, which a compiled call does not",
}


@pytest.mark.parametrize("family,expr,compiled", COMPILED)
def test_sweep_compiled_matches_eager(family, expr, compiled):
    names = _inputs_of(expr)
    eager = _evaluate(tg, expr, names, tg.float64)
    fn = _compiled_fn(expr, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a graph break's warning: the values still count
        first = _evaluate(tg, expr, names, tg.float64, fn)
        hit = _evaluate(tg, expr, names, tg.float64, fn)
    if expr in COMPILED_XFAIL:
        with pytest.raises(AssertionError):
            _assert_same(hit, eager, 1e-9, expr)
        pytest.xfail(COMPILED_XFAIL[expr])
    _assert_same(first, eager, 1e-9, expr + " (first compiled call)")
    _assert_same(hit, eager, 1e-9, expr + " (cached compiled call)")


def test_the_sweep_is_large_and_covers_every_family():
    assert len(ROWS) >= 400
    assert len(COMPILED) >= 3 * len(SWEEP)
    for family, exprs in SWEEP.items():
        assert len(exprs) >= 10, family
