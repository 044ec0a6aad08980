"""``torch.linalg``: linear algebra over the last two dims (batched), with PyTorch's
gradients (the derivatives.yaml formulas; see the linear algebra block of primitives.py).

>>> import tracegrad as tg
>>> tg.linalg.det(tg.tensor([[2., 0.], [0., 3.]]))
tensor(6.)
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from . import functions as F, primitives as P
from .tensor import Tensor, apply, trace_state

__all__ = ["cross", "inv", "det", "slogdet", "solve", "cholesky", "qr", "eigh", "eigvalsh", "svd",
           "svdvals", "pinv", "lstsq", "matrix_rank", "norm", "vector_norm", "matrix_norm",
           "LinAlgError", "multi_dot", "matrix_power", "vecdot"]


class LinAlgError(RuntimeError):
    """torch.linalg.LinAlgError: a matrix the factorisation cannot handle (singular, not
    positive-definite)."""


def _result(name, fields):
    return F._return_type(name, fields)


_slogdet_t = _result("linalg_slogdet", ("sign", "logabsdet"))
_qr_t = _result("linalg_qr", ("Q", "R"))
_eigh_t = _result("linalg_eigh", ("eigenvalues", "eigenvectors"))
_svd_t = _result("linalg_svd", ("U", "S", "Vh"))
_lstsq_t = _result("linalg_lstsq", ("solution", "residuals", "rank", "singular_values"))


def _known(x: Tensor):
    """x's array when values are at hand (eager); None while tracing."""
    return x._data if trace_state.current is None and x._data.__class__ is np.ndarray else None


def cross(input, other, *, dim: int = -1):
    """The cross product of 3-vectors along ``dim`` (inputs broadcast)."""
    return F._linalg_cross(input, other, dim)


def inv(A) -> Tensor:
    """The inverse of each square matrix; singular input raises LinAlgError."""
    x = F._check_linalg_input(F._as_tensor(A), "linalg.inv")
    a = _known(x)
    if a is not None and a.size:
        for batch in np.ndindex(*a.shape[:-2]):
            k = _zero_pivot(a[batch])
            if k:
                where = (f"(Batch element {np.ravel_multi_index(batch, a.shape[:-2])}): "
                         if batch else "")
                raise LinAlgError(f"linalg.inv: {where}The diagonal element {k} is zero, the "
                                  f"inversion could not be completed because the input matrix "
                                  f"is singular.")
    return F._linalg_inv(x)


def _zero_pivot(m) -> int:
    """LAPACK getrf's ``info`` for one matrix (NOTE: [LAPACK LU]): its first zero pivot."""
    return P.lu_factor(m)[2]


def det(A) -> Tensor:
    """The determinant of each square matrix (gradient det * A^-T: needs A invertible)."""
    return apply(P.det_p, (F._check_linalg_input(F._as_tensor(A), "linalg.det"),))


def slogdet(A):
    """(sign, log|det|) of each square matrix."""
    x = F._check_linalg_input(F._as_tensor(A), "linalg.slogdet")
    return _slogdet_t(apply(P.det_sign_p, (x,)), apply(P.logabsdet_p, (x,)))


def solve(A, B, *, left: bool = True) -> Tensor:
    """X with A X = B (B a matrix or, with one dim fewer than A, a vector per batch)."""
    a = F._check_linalg_input(F._as_tensor(A), "linalg.solve")
    b = F._as_tensor(B)
    if not left:
        return F.transpose(solve(F.transpose(a, -2, -1), F.transpose(b, -2, -1)), -2, -1)
    vector = b.ndim == 1 or (b.ndim == a.ndim - 1 and tuple(b.shape) == tuple(a.shape[:-1]))
    m = _known(a)
    if m is not None and m.size and np.any(np.linalg.matrix_rank(m) < m.shape[-1]):
        raise LinAlgError("torch.linalg.solve: The solver failed because the input matrix is "
                          "singular.")
    if vector:
        x = F._linalg_solve(a, F.unsqueeze(b, -1))
        return F._not_a_view(apply(P.reshape_p, (x,), {"shape": tuple(x.shape[:-1])},
                                   name="LinalgSolveExBackward0"))
    return F._linalg_solve(a, b)


def cholesky(A, *, upper: bool = False) -> Tensor:
    """The lower (or upper) Cholesky factor of each symmetric positive-definite matrix."""
    x = F._check_linalg_input(F._as_tensor(A), "linalg.cholesky")
    a = _known(x)
    if a is not None and a.size:
        try:
            np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            raise LinAlgError(_not_positive_definite(a)) from None
    low = apply(P.cholesky_p, (x,))
    if not upper:
        return low
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return apply(P.permute_p, (low,), {"perm": perm}, name="LinalgCholeskyExBackward0")


def _not_positive_definite(a) -> str:
    batch = next(i for i in np.ndindex(*a.shape[:-2]) if not _is_pd(a[i]))
    m = a[batch]
    order = next(k for k in range(1, m.shape[-1] + 1) if not _is_pd(m[:k, :k]))
    where = f"(Batch element {np.ravel_multi_index(batch, a.shape[:-2])}): " if batch else ""
    return (f"linalg.cholesky: {where}The factorization could not be completed because the "
            f"input is not positive-definite (the leading minor of order {order} is not "
            f"positive-definite).")


def _is_pd(m) -> bool:
    try:
        np.linalg.cholesky(m)
        return True
    except np.linalg.LinAlgError:
        return False


def qr(A, mode: str = "reduced"):
    """(Q, R) of each matrix: ``mode='reduced'`` (Q has min(m, n) columns), 'complete'
    (Q is m x m), or 'r' (R only; Q is an empty tensor)."""
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of "
                           f"'reduced' (default), 'r', or 'complete'")
    x = F._check_linalg_input(F._as_tensor(A), "linalg.qr", square=False)
    if mode == "r":
        r = F._qr_part(x, "r", "r")
        # Q is empty, yet part of torch's node: a backward through it raises as R's does
        none = F.getitem(F.reshape(r, (-1,)), slice(0, 0))
        q = F._not_a_view(apply(P.reshape_p, (none,), {"shape": (0,)}, name="LinalgQrBackward0"))
        return _qr_t(q, r)
    return _qr_t(F._qr_part(x, "q", mode), F._qr_part(x, "r", mode))


def eigh(A, UPLO: str = "L"):
    """(eigenvalues ascending, eigenvectors as columns) of each symmetric matrix, read from
    its lower triangle (UPLO='L') or upper one."""
    x = _symmetric_from(F._check_linalg_input(F._as_tensor(A), "linalg.eigh"), UPLO)
    return _eigh_t(F._eigh_values(x), F._eigh_vectors(x))


def eigvalsh(A, UPLO: str = "L") -> Tensor:
    """The eigenvalues (ascending) of each symmetric matrix."""
    x = _symmetric_from(F._check_linalg_input(F._as_tensor(A), "linalg.eigvalsh"), UPLO)
    return F._eigh_values(x)


def _symmetric_from(x: Tensor, uplo: str) -> Tensor:
    if uplo not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {uplo}")
    return x if uplo == "L" else F.transpose(x, -2, -1)


def svd(A, full_matrices: bool = True):
    """(U, S, Vh) with A = U diag(S) Vh; full_matrices completes U and Vh to square
    orthogonal matrices (whose extra columns get no gradient, as in PyTorch)."""
    x = F._check_linalg_input(F._as_tensor(A), "linalg.svd", square=False)
    full = bool(full_matrices) and x.shape[-1] != x.shape[-2]
    return _svd_t(F._svd_part(x, "u", full), F._svd_part(x, "s"), F._svd_part(x, "vh", full))


def svdvals(A) -> Tensor:
    """The singular values of each matrix, descending."""
    return F._svd_part(F._check_linalg_input(F._as_tensor(A), "linalg.svdvals", square=False),
                       "s")


def _tolerance(s: Tensor, shape, atol, rtol):
    smax = F.amax(s, -1, keepdim=True) if s.shape[-1] else s
    if rtol is None:
        rtol = 0.0 if atol not in (None, 0) else builtins.max(shape[-2:]) * float(
            np.finfo(s.dtype.np).eps)
    return F.maximum(F.mul(smax, rtol), F._const(atol or 0.0, s.dtype))


def pinv(A, *, atol=None, rtol=None, hermitian: bool = False) -> Tensor:
    """The Moore-Penrose pseudo-inverse, V diag(1/S) U^T over the singular values above the
    tolerance (gradients through the SVD: distinct singular values)."""
    x = F._check_linalg_input(F._as_tensor(A), "linalg.pinv", square=False)
    u, s, vh = (F._svd_part(x, p) for p in ("u", "s", "vh"))
    keep = F.gt(s, _tolerance(s, x.shape, atol, rtol))
    s_inv = F.where(keep, F.reciprocal(F.where(keep, s, 1.0)), 0.0)
    scaled = F.mul(F.transpose(vh, -2, -1), F.unsqueeze(s_inv, -2))
    return apply(P.matmul_p, (scaled, F.transpose(u, -2, -1)), name="LinalgPinvBackward0")


_LSTSQ_DRIVERS = ("gels", "gelsy", "gelsd", "gelss")


def lstsq(A, B, rcond=None, *, driver=None):
    """The least-squares solution of A X = B (pinv(A) @ B), with the fields PyTorch's CPU
    drivers fill: ``gelsy`` (the default) the rank; ``gelsd``/``gelss`` the rank and the
    singular values; ``gels``, ``gelsd`` and ``gelss`` the squared residuals when
    A is tall and full-rank. Fields a driver does not compute are empty."""
    driver = "gelsy" if driver is None else driver
    if driver not in _LSTSQ_DRIVERS:
        raise RuntimeError("parameter `driver` should be one of (gels, gelsy, gelsd, gelss)")
    a = F._check_linalg_input(F._as_tensor(A), "linalg.lstsq", square=False)
    b = F._as_tensor(B)
    vector = b.ndim == a.ndim - 1
    bm = F.unsqueeze(b, -1) if vector else b
    sol = apply(P.matmul_p, (pinv(a, rtol=rcond), bm), name="LinalgLstsqBackward0")
    m, n = a.shape[-2], a.shape[-1]
    empty = F.zeros(0, dtype=a.dtype)
    residuals = F._not_a_view(apply(P.reshape_p, (F.getitem(F.reshape(sol, (-1,)), slice(0, 0)),),
                                    {"shape": (0,)}, name="LinalgLstsqBackward0"))
    rank = matrix_rank(a.detach()) if driver != "gels" else F.zeros(0, dtype=F.dtypes.int64)
    if driver != "gelsy" and m > n and bool(F.all(matrix_rank(a.detach()) == n)):
        diff = F.sub(F.matmul(a, sol), bm)
        residuals = apply(P.sum_p, (F.mul(diff, diff),), {"axis": (diff.ndim - 2,),
                                                          "keepdim": False},
                          name="LinalgLstsqBackward0")
    if vector:
        sol = F.squeeze(sol, -1)
    values = F._svd_part(a.detach(), "s") if driver in ("gelsd", "gelss") else empty
    return _lstsq_t(sol, residuals, rank, values)


def matrix_rank(A, *, atol=None, rtol=None, hermitian: bool = False) -> Tensor:
    """The number of singular values above the tolerance (int64)."""
    x = F._check_linalg_input(F._as_tensor(A), "linalg.matrix_rank", square=False).detach()
    s = F._svd_part(x, "s")
    return F.sum(F.gt(s, _tolerance(s, x.shape, atol, rtol)), -1)


def vector_norm(x, ord=2, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """(sum |x|^ord)^(1/ord) over ``dim`` (all dims if None); ord inf/-inf: max/min |x|,
    0: the count of nonzeros."""
    t = F._as_tensor(x)
    if dtype is not None:
        t = F.cast(t, dtype)
    if not t.dtype.is_floating_point:
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as "
                           f"input. Got {F._TYPE_WORD[t.dtype.name]}")
    axes = F._axes(dim, t.ndim)
    if dim is None and not keepdim:
        t, axes = F.reshape(t, (-1,)), (0,)
    ord = float(ord)
    return apply(P.norm_p, (t,), {"ord": ord, "axis": axes, "keepdim": bool(keepdim)})


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim: bool = False, *, dtype=None) -> Tensor:
    """'fro', 'nuc', inf, -inf, 1, -1, 2, -2 norms of the matrices in ``dim``."""
    x = F._as_tensor(A)
    if dtype is not None:
        x = F.cast(x, dtype)
    if x.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 "
                           "dimensions.")
    d0, d1 = (F._dim(d, x.ndim) for d in dim)
    if ord == "fro":
        return vector_norm(x, 2, (d0, d1), keepdim)
    if ord in ("nuc", 2, -2):
        moved = F.movedim(x, (d0, d1), (-2, -1))
        s = F._svd_part(moved, "s")
        if ord == "nuc":
            r = F.sum(s, -1)
        else:
            r = F.amax(s, -1) if ord == 2 else F.amin(s, -1)
        if keepdim:
            for d in sorted((d0, d1)):
                r = F.unsqueeze(r, d)
        return r
    if ord in (math.inf, -math.inf, 1, -1):
        # inf: the largest row sum of |A| (sum over dim1), 1: the largest column sum
        inner, outer = (d1, d0) if abs(ord) == math.inf else (d0, d1)
        sums = F.sum(F.abs(x), inner, keepdim=keepdim)
        if not keepdim and inner < outer:
            outer -= 1
        return (F.amax if ord > 0 else F.amin)(sums, outer, keepdim=keepdim)
    raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")


def norm(A, ord=None, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """A vector norm (1-d input, or a single dim) or a matrix norm (2-d input, a pair of
    dims, or a string ord); ord=None: the 2-norm of all entries."""
    x = F._as_tensor(A)
    if isinstance(dim, int):
        dim = (dim,)
    if ord is None:
        return vector_norm(x, 2, dim, keepdim, dtype=dtype)
    if isinstance(ord, str) or (dim is not None and len(dim) == 2) or (dim is None and
                                                                      x.ndim == 2):
        return matrix_norm(x, ord, (-2, -1) if dim is None else dim, keepdim, dtype=dtype)
    return vector_norm(x, ord, dim, keepdim, dtype=dtype)


def multi_dot(tensors) -> Tensor:
    """A chain of matmuls (the first may be a row vector, the last a column vector)."""
    ts = [F._as_tensor(t) for t in tensors]
    if len(ts) < 2:
        raise RuntimeError(f"multi_dot(): expected at least 2 tensors but got {len(ts)}")
    out = ts[0]
    for t in ts[1:]:
        out = F.matmul(out, t)
    return out


def matrix_power(A, n: int) -> Tensor:
    """A @ A @ ... (n times); n = 0: the identity; n < 0: powers of inv(A)."""
    x = F._check_linalg_input(F._as_tensor(A), "linalg.matrix_power")
    if n == 0:
        eye = F.eye(x.shape[-1], dtype=x.dtype)
        return F.add(F.mul(x, 0), eye) if x.ndim > 2 else eye
    base = inv(x) if n < 0 else x
    result, power, k = None, base, abs(n)
    while k:  # binary powers, as torch's
        if k & 1:
            result = power if result is None else F.matmul(result, power)
        k >>= 1
        if k:
            power = F.matmul(power, power)
    return result


def vecdot(x, y, *, dim: int = -1) -> Tensor:
    """sum(x * y) over ``dim`` (broadcasting)."""
    return F.sum(F.mul(x, y), dim)

