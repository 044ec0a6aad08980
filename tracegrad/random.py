"""Random numbers: PyTorch's CPU generator stream, drawn with NumPy (``torch.random``).

After ``tracegrad.manual_seed(s)``, ``rand``, ``randn``, ``randint``, ``randperm``,
``Tensor.uniform_/normal_/bernoulli_/random_``, ``nn.init`` and dropout give the numbers
PyTorch 2.x gives on the CPU after ``torch.manual_seed(s)``, and leave the generator
where PyTorch leaves it, so a sequence of calls stays in step.

>>> import tracegrad as tg
>>> _ = tg.manual_seed(0)
>>> tg.rand(2)
tensor([0.4963, 0.7682])

NOTE: [PyTorch's CPU stream]. PyTorch's CPU generator is a 32-bit Mersenne Twister
(mt19937) seeded with the low 32 bits of the seed; NumPy's ``MT19937`` bit generator
runs the same recurrence, so we give it PyTorch's seeded state and read its raw
32-bit outputs (``random_raw``). On top of those draws, as PyTorch does:

* ``random()`` is one 32-bit draw; ``random64()`` is two, the first the high word.
* uniform float32 keeps 24 bits of one draw, float64 53 bits of a ``random64()``;
  ``x * (to - from) + from`` is one fused multiply-add in PyTorch's kernel.
* ``normal_`` on 16 or more elements fills uniforms, then Box-Muller in blocks of 16
  (u1 = the first 8, u2 = the last 8); when numel % 16 != 0 it draws 16 more
  uniforms and recomputes the last 16 outputs. float32 blocks use the AVX
  ``log256_ps``/``sincos256_ps`` polynomials (see ``_log_ps``), float64 blocks the
  C library's ``log``/``cos``/``sin``. Fewer than 16 elements take a scalar path:
  one double Box-Muller pair per two outputs, the second kept in the generator
  (part of its state) for the next scalar draw.
* ``randint``/``random_(from, to)``: ``draw % (to - from) + from``, with a
  ``random64()`` draw when the range is 2**32 or more (int64/float dtypes).
* ``randperm(n)``: a forward Fisher-Yates shuffle with ``random() % (n - i)``.
* ``bernoulli_(p)`` and dropout: one float64 uniform per element, ``u < p``.
"""
from __future__ import annotations

import contextlib
import math
import secrets

import numpy as np

from . import dtypes

__all__ = ["Generator", "default_generator", "manual_seed", "seed", "initial_seed",
           "get_rng_state", "set_rng_state", "fork_rng"]

DEFAULT_SEED = 67280421310721  # PyTorch's seed for a new torch.Generator()

_N = 624  # mt19937 words
_STATE_BYTES = 5056  # sizeof(CPUGeneratorImplState): PyTorch's get_state() layout
_U64 = np.uint64
_BOX_ROWS = 2048  # rows of 16 per Box-Muller slice: its temporaries stay small


class Generator:
    """A random-number generator that draws PyTorch's CPU stream.

    >>> g = Generator().manual_seed(42)
    >>> g.initial_seed()
    42
    """

    def __init__(self, device="cpu"):
        if str(device) != "cpu":
            raise RuntimeError(f"tracegrad has only a CPU generator, got device={device!r}")
        _not_while_tracing("creating a generator")
        self._mt = np.random.MT19937(0)
        self._set_seed(DEFAULT_SEED)

    @property
    def device(self):
        from .functions import device
        return device("cpu")

    # -- seeding and state --------------------------------------------------------

    def manual_seed(self, seed: int) -> Generator:
        """Seed as PyTorch does: a negative seed is taken modulo 2**64."""
        _not_while_tracing("seeding a generator")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            # PyTorch's Generator.manual_seed raises RuntimeError here too
            raise RuntimeError(f"manual_seed expected an int, but got {type(seed).__name__}")
        seed = int(seed)
        if not -2 ** 63 <= seed < 2 ** 64:
            raise ValueError(f"manual_seed: seed {seed} is out of range; it must be in "
                             "[-2**63, 2**64)")
        self._set_seed(seed % 2 ** 64)
        return self

    def initial_seed(self) -> int:
        """The seed this generator was last seeded with."""
        return self._seed

    def seed(self) -> int:
        """Seed from the operating system's entropy and return the seed."""
        _not_while_tracing("seeding a generator")
        s = secrets.randbits(64)
        self._set_seed(s)
        return s

    def _set_seed(self, seed: int) -> None:
        self._seed = seed
        self._key = _mt_key(seed & 0xFFFFFFFF)
        self._mt.state = {"bit_generator": "MT19937", "state": {"key": self._key, "pos": _N}}
        self._next_normal = None        # the second value of the last scalar Box-Muller pair
        self._next_float_normal = None  # kept only for PyTorch's state layout

    def get_state(self):
        """The generator's state as a uint8 tensor, in PyTorch's ``get_rng_state`` layout."""
        _not_while_tracing("reading a generator's state")
        from .functions import tensor
        st = self._mt.state["state"]
        key, pos = st["key"], int(st["pos"])
        buf = np.zeros(_STATE_BYTES, np.uint8)
        # a generator not drawn from since seeding reports next == 0, as PyTorch's does
        unused = pos == _N and self._key is not None and np.array_equal(key, self._key)
        _put(buf, 0, np.uint64, self._seed)
        _put(buf, 8, np.int32, _N + 1 - pos)  # 'left': draws before the next twist, plus one
        _put(buf, 12, np.int32, 1)            # 'seeded'
        _put(buf, 16, np.uint64, 0 if unused else pos)  # 'next'
        buf[24:24 + 8 * _N] = key.astype(np.uint64).view(np.uint8)
        if self._next_normal is not None:
            _put(buf, 5024, np.float64, self._next_normal)
            _put(buf, 5040, np.int32, 1)
        if self._next_float_normal is not None:
            _put(buf, 5048, np.float32, self._next_float_normal)
            buf[5052] = 1
        return tensor(buf, dtype=dtypes.uint8)

    def set_state(self, new_state) -> Generator:
        """Restore a state from ``get_state()`` (a uint8 tensor of PyTorch's layout)."""
        _not_while_tracing("setting a generator's state")
        from .tensor import Tensor
        if not isinstance(new_state, Tensor) or new_state.dtype is not dtypes.uint8:
            raise TypeError("set_state expects a uint8 tensor (from get_state() or "
                            f"get_rng_state()), got {_describe(new_state)}")
        buf = np.ascontiguousarray(new_state.numpy()).reshape(-1)
        if buf.size != _STATE_BYTES:
            raise RuntimeError(f"Expected an RNG state of {_STATE_BYTES} bytes but got "
                               f"{buf.size}")
        left, nxt = int(_get(buf, 8, np.int32)), int(_get(buf, 16, np.uint64))
        if not (1 <= left <= _N and nxt <= _N):
            raise RuntimeError("The RNG state is invalid: its mt19937 position is out of range")
        key = buf[24:24 + 8 * _N].view(np.uint64)
        if np.any(key >> _U64(32)):
            raise RuntimeError("The RNG state is invalid: mt19937 words must fit in 32 bits")
        self._seed = int(_get(buf, 0, np.uint64))
        key = key.astype(np.uint32)
        self._key = key.copy() if nxt == 0 else None
        self._mt.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": _N + 1 - left}}
        self._next_normal = float(_get(buf, 5024, np.float64)) if _get(buf, 5040, np.int32) \
            else None
        self._next_float_normal = float(_get(buf, 5048, np.float32)) if buf[5052] else None
        return self

    # -- draws ---------------------------------------------------------------------

    def _random(self, n: int) -> np.ndarray:
        """n 32-bit draws (PyTorch's ``random()``), as uint64."""
        return self._mt.random_raw(n)

    def _random64(self, n: int) -> np.ndarray:
        """n 64-bit draws (PyTorch's ``random64()``): two 32-bit draws, high word first."""
        r = self._mt.random_raw(2 * n)
        return (r[0::2] << _U64(32)) | r[1::2]

    def _key_data(self) -> np.ndarray:
        """Two 32-bit draws: a jax PRNG key for one compiled call."""
        return self._random(2).astype(np.uint32)

    def uniform(self, shape, dtype, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        """U(low, high) of ``dtype`` (PyTorch's ``uniform_``)."""
        if low > high:
            raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found "
                               f"from={low} > to={high}")
        n = math.prod(shape)
        if dtype is dtypes.float64:
            x = (self._random64(n) & _U64(2 ** 53 - 1)).astype(np.float64) * 2.0 ** -53
            if (low, high) != (0.0, 1.0):
                x = _fma64(x, np.float64(high - low), np.float64(low))
        elif dtype in (dtypes.float32, dtypes.float16, dtypes.bfloat16):  # 16 bits: as float32
            x = (self._random(n) & _U64(2 ** 24 - 1)).astype(np.float32)
            x *= np.float32(2.0 ** -24)
            lo, hi = np.array([low, high], np.float32)
            if (lo, hi) != (0.0, 1.0):
                x = _fma32(x, np.float32(hi - lo), lo)
        else:
            raise not_implemented_for("check_uniform_bounds", dtype)
        return x.astype(dtype.np, copy=False).reshape(shape)

    def normal(self, shape, dtype, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
        """N(mean, std**2) of ``dtype`` (PyTorch's ``normal_``)."""
        if not dtype.is_floating_point:
            raise not_implemented_for("normal_kernel_cpu", dtype)
        if std < 0:
            raise RuntimeError(f"normal expects std >= 0.0, but found std {std:g}")
        n = math.prod(shape)
        if n < 16:
            out = self._scalar_normals(n)
            if (mean, std) != (0.0, 1.0):
                out = _fma64(out, np.float64(std), np.float64(mean))
            return out.astype(dtype.np).reshape(shape)
        udtype = dtypes.float64 if dtype is dtypes.float64 else dtypes.float32
        box = _box_muller_f64 if udtype is dtypes.float64 else _box_muller_f32
        full = n - n % 16
        if dtype in (dtypes.float16, dtypes.bfloat16):  # float32 math; whole blocks only
            data = np.empty(n, np.float32)
            data[:full] = self.uniform((full,), udtype)
        else:
            data = self.uniform((n,), udtype)
        blocks = data[:full].reshape(-1, 16)
        for i in range(0, len(blocks), _BOX_ROWS):  # in slices that stay in cache
            blocks[i:i + _BOX_ROWS] = box(blocks[i:i + _BOX_ROWS])
        if n % 16:
            data[-16:] = box(self.uniform((1, 16), udtype)).reshape(-1)
        if (mean, std) != (0.0, 1.0):
            fma = _fma64 if udtype is dtypes.float64 else _fma32
            data = fma(data, np.array(std, udtype.np), np.array(mean, udtype.np))
        return data.astype(dtype.np, copy=False).reshape(shape)

    def _scalar_normals(self, n: int) -> np.ndarray:
        # PyTorch's normal_distribution<double>, one value at a time: each Box-Muller
        # pair gives r*cos now and keeps r*sin in the generator for the next value
        out = []
        if n and self._next_normal is not None:
            out.append(self._next_normal)
            self._next_normal = None
        pairs = (n - len(out) + 1) // 2
        u = self.uniform((pairs, 2), dtypes.float64).tolist()
        for u1, u2 in u:
            r = math.sqrt(-2.0 * math.log1p(-u2))
            theta = 2.0 * math.pi * u1
            out += (r * math.cos(theta), r * math.sin(theta))
        if len(out) > n:
            self._next_normal = out.pop()
        return np.array(out, np.float64)

    def integers(self, shape, low: int, high: int, dtype) -> np.ndarray:
        """Integers in [low, high) (PyTorch's ``random_(from, to)``, ``randint``)."""
        if low >= high:
            raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got "
                               f"from={low} >= to={high}")
        if not -2 ** 63 <= low < high <= 2 ** 63:
            raise RuntimeError(f"random_: [{low}, {high}) does not fit in int64")
        n, span = math.prod(shape), high - low
        wide = span >= 2 ** 32 and dtype in (dtypes.int64, dtypes.float64, dtypes.float32)
        draws = self._random64(n) if wide else self._random(n)
        if span < 2 ** 64:
            draws = draws % _U64(span)
        out = draws.astype(np.int64) + np.int64(low)  # wraps as PyTorch's uint64 sum does
        return out.astype(dtype.np).reshape(shape)

    def full_range(self, shape, dtype) -> np.ndarray:
        """``random_()`` with no bounds: [0, 2**mantissa] for floats, [0, max] for ints."""
        n = math.prod(shape)
        if dtype is dtypes.bool_:
            return (self._random(n) & _U64(1)).astype(bool).reshape(shape)
        if dtype.is_floating_point:
            bits = {dtypes.float64: 53, dtypes.float32: 24, dtypes.float16: 11,
                    dtypes.bfloat16: 8}[dtype]
            draws = self._random64(n) if bits == 53 else self._random(n)
            return (draws % _U64(2 ** bits + 1)).astype(dtype.np).reshape(shape)
        draws = self._random64(n) if dtype is dtypes.int64 else self._random(n)
        return (draws % _U64(int(np.iinfo(dtype.np).max) + 1)).astype(dtype.np).reshape(shape)

    def permutation(self, n: int) -> np.ndarray:
        """``randperm(n)``: a forward Fisher-Yates shuffle of 0..n-1."""
        perm = list(range(n))
        if n > 1:
            picks = self._random(n - 1) % np.arange(n, 1, -1, dtype=np.uint64)
            for i, z in enumerate(picks.tolist()):
                j = i + z
                perm[i], perm[j] = perm[j], perm[i]
        return np.array(perm, np.int64)

    def bernoulli(self, shape, p) -> np.ndarray:
        """Booleans that are True with probability ``p`` (a float, or an array of shape).

        One uniform per element, ``u < p``: float64 uniforms for a float ``p`` or a
        float64 array, float32 ones for a float32 or float16 array (as PyTorch's kernels)."""
        if isinstance(p, np.ndarray):
            p = np.broadcast_to(p, shape)
            if np.any((p < 0) | (p > 1)):
                raise RuntimeError("bernoulli_ expects all elements of p to be in [0, 1]")
            udtype = dtypes.float64 if p.dtype == np.float64 else dtypes.float32
            return self.uniform(shape, udtype) < p.astype(udtype.np, copy=False)
        if not 0 <= p <= 1:
            raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={p}")
        return self.uniform(shape, dtypes.float64) < p

    # -- exponential and multinomial (utils.data's WeightedRandomSampler) ----------

    def multinomial(self, probs: np.ndarray, n_sample: int, replacement: bool) -> np.ndarray:
        """Category indices drawn from the rows of ``probs`` (1-d or 2-d), as PyTorch's CPU
        ``multinomial``: without replacement (or for one sample) the exponential trick,
        ``argmax``/``topk`` of ``p / Exp(1)``; with replacement, per row, a float64 uniform
        per sample looked up in the normalised cumulative sum by binary search."""
        rows = probs.reshape(-1, probs.shape[-1])
        out_shape = probs.shape[:-1] + (n_sample,)
        if math.prod(out_shape) == 0:
            return np.zeros(out_shape, np.int64)
        if not replacement or n_sample == 1:
            if not (np.max(probs) < np.inf and np.min(probs) >= 0):
                raise RuntimeError("probability tensor contains either `inf`, `nan` or "
                                   "element < 0")
            if np.any(rows.sum(axis=1, dtype=probs.dtype) == 0):
                raise RuntimeError("invalid multinomial distribution (sum of probabilities "
                                   "<= 0)")
            q = self.exponential(rows.shape, dtypes.from_numpy_dtype(probs.dtype))
            ratio = rows / q
            if n_sample == 1:  # argmax: the first largest
                return np.argmax(ratio, axis=1).astype(np.int64).reshape(out_shape)
            picks = [_topk_order(row, n_sample) for row in ratio]
            return np.array(picks, np.int64).reshape(out_shape)
        acc = np.float32 if probs.dtype == np.float16 else probs.dtype
        out = np.empty((rows.shape[0], n_sample), np.int64)
        for i, row in enumerate(rows.astype(acc)):
            bad = ~(row >= 0) | ~np.isfinite(row)
            if bad.any():  # PyTorch checks entry by entry: NaN fails ">= 0" first
                what = "< 0" if not row[np.argmax(bad)] >= 0 else "= infinity or NaN"
                raise RuntimeError(f"invalid multinomial distribution (encountering "
                                   f"probability entry {what})")
            cum = np.cumsum(row, dtype=acc)  # summed in order, in the input's precision
            total = cum[-1]
            if not total > 0:
                raise RuntimeError("invalid multinomial distribution (sum of probabilities "
                                   "<= 0)")
            cum = cum / total
            cum[-1] = 1
            u = self.uniform((n_sample,), dtypes.float64)
            # the first slot whose cumulative probability is >= u (PyTorch's binary search)
            out[i] = np.searchsorted(cum.astype(np.float64), u, side="left")
        return out.reshape(out_shape)


    # -- exponential_, geometric_, cauchy_, log_normal_ (devices/creation helper) ------
    # NOTE: [Scalar double transforms]. PyTorch's CPU kernels for these four draw one
    # double per element (a ``random64()`` uniform, or for log_normal_ a scalar Box-Muller
    # normal with its cached second value) and apply the transform in double with the C
    # library's log1p/log/tan/exp, then cast to the tensor's dtype (float16 by way of
    # float32, as c10::Half's constructor takes a float). ``math`` calls the same C library.

    def _uniform64(self, n: int) -> np.ndarray:
        return (self._random64(n) & _U64(2 ** 53 - 1)).astype(np.float64) * 2.0 ** -53

    def exponential(self, shape, dtype, lambd: float = 1.0) -> np.ndarray:
        """Exponential(lambd) (PyTorch's ``exponential_``): -1/lambd * log1p(-u)."""
        if not lambd > 0:
            raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd:g}")
        if not dtype.is_floating_point:
            raise RuntimeError("Exponential distribution is a continuous probability "
                               "distribution. dtype must be a floating point but you specified "
                               f"{_SCALAR_NAMES[dtype.name]}")
        scale = -1.0 / lambd
        u = self._uniform64(math.prod(shape)).tolist()
        return _from_doubles([scale * math.log1p(-x) for x in u], shape, dtype)

    def geometric(self, shape, dtype, p: float) -> np.ndarray:
        """Geometric(p) on {1, 2, ...} (PyTorch's ``geometric_``): ceil(log(u) / log(1 - p))."""
        if not 0 < p < 1:
            raise RuntimeError(f"geometric_ expects p to be in (0, 1), but got p={p:g}")
        if dtype is dtypes.bool_:
            raise not_implemented_for("geometric_cpu", dtype)
        denom = math.log(1.0 - p)
        u = self._uniform64(math.prod(shape)).tolist()
        # log(0) is -inf: PyTorch's ceil gives inf there, which an integer dtype wraps
        return _from_doubles([math.ceil(math.log(x) / denom) if x > 0 else math.inf
                              for x in u], shape, dtype)

    def cauchy(self, shape, dtype, median: float = 0.0, sigma: float = 1.0) -> np.ndarray:
        """Cauchy(median, sigma) (PyTorch's ``cauchy_``): median + sigma * tan(pi * (u - 1/2))."""
        if not sigma > 0:
            raise RuntimeError(f"cauchy_ expects sigma > 0.0, but found sigma={sigma:g}")
        if not dtype.is_floating_point:
            raise RuntimeError("Cauchy distribution is a continuous probability distribution. "
                               f"dtype must be a floating point but you specified "
                               f"{_C_NAMES[dtype.name]}")
        u = self._uniform64(math.prod(shape)).tolist()
        return _from_doubles([median + sigma * math.tan(math.pi * (x - 0.5)) for x in u],
                             shape, dtype)

    def log_normal(self, shape, dtype, mean: float = 1.0, std: float = 2.0) -> np.ndarray:
        """exp(N(mean, std**2)) (PyTorch's ``log_normal_``), from scalar double normals."""
        if not std > 0:
            raise RuntimeError(f"log_normal_ expects std > 0.0, but found std={std:g}")
        if not dtype.is_floating_point:
            raise not_implemented_for("log_normal_cpu", dtype)
        z = self._scalar_normals(math.prod(shape)).tolist()
        return _from_doubles([math.exp(v * std + mean) for v in z], shape, dtype)


# ----------------------------------------------------------------------------------
# PyTorch's CPU topk, in its order

def _topk_order(values: np.ndarray, k: int) -> list[int]:
    """The indices of the ``k`` largest ``values``, largest first, as PyTorch's CPU ``topk``
    gives them, tied ones (zero-probability categories in ``multinomial``) included
    (NOTE: [libstdc++ sorting] in _cpu_order.py)."""
    from ._cpu_order import topk_order
    return topk_order(values, k, largest=True, sorted=True)


def _from_doubles(values: list, shape, dtype) -> np.ndarray:
    """Doubles cast as PyTorch's ``static_cast<scalar_t>(double)`` casts them."""
    a = np.array(values, np.float64).reshape(shape)
    if dtype is dtypes.float64:
        return a
    if dtype.is_floating_point and dtype is not dtypes.float32:
        a = a.astype(np.float32)  # c10::Half / BFloat16 are made from a float
    if not dtype.is_floating_point:
        with np.errstate(invalid="ignore", over="ignore"):
            return a.astype(np.int64).astype(dtype.np)
    return a.astype(dtype.np)


_C_NAMES = {"float64": "double", "float32": "float", "float16": "c10::Half", "int64": "long int",
            "int32": "int", "int16": "short int", "int8": "signed char", "uint8": "unsigned char",
            "bool": "bool", "bfloat16": "c10::BFloat16"}


# PyTorch's ScalarType names, for its "not implemented for 'Long'" errors
_SCALAR_NAMES = {"float64": "Double", "float32": "Float", "float16": "Half", "int64": "Long",
                 "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool",
                 "bfloat16": "BFloat16"}


def not_implemented_for(kernel: str, dtype) -> NotImplementedError:
    """PyTorch's error for a kernel that has no version for ``dtype`` (a RuntimeError)."""
    return NotImplementedError(f'"{kernel}" not implemented for \'{_SCALAR_NAMES[dtype.name]}\'')


def _not_while_tracing(what: str) -> None:
    # A compiled call runs no Python: it draws one key per call from each generator it
    # uses (NOTE: [Random draws while tracing] in functions.py). Seeding a generator or
    # reading its state inside the function would happen on the tracing call only, so
    # such a function runs eagerly, with a warning (or raises under fullgraph=True).
    from .tensor import trace_state
    tracer = trace_state.current
    if tracer is not None:
        tracer.graph_break(f"{what} inside a compiled function happens only when it is "
                           "traced (compiled calls draw a fresh key per call); seed or "
                           "save the generator outside the compiled function", depth=3)


# ----------------------------------------------------------------------------------
# seeding and state bytes

def _mt_key(seed32: int) -> np.ndarray:
    """mt19937's initial words for a 32-bit seed (Matsumoto and Nishimura's init_genrand)."""
    key = [seed32]
    for j in range(1, _N):
        s = key[-1]
        key.append((1812433253 * (s ^ (s >> 30)) + j) & 0xFFFFFFFF)
    return np.array(key, np.uint32)


def _put(buf: np.ndarray, offset: int, dtype, value) -> None:
    size = np.dtype(dtype).itemsize
    buf[offset:offset + size] = np.array([value], dtype).view(np.uint8)


def _get(buf: np.ndarray, offset: int, dtype):
    return buf[offset:offset + np.dtype(dtype).itemsize].view(dtype)[0]


def _describe(x) -> str:
    dtype = getattr(x, "dtype", None)
    return f"{type(x).__name__} of dtype {dtype}" if dtype is not None else type(x).__name__


# ----------------------------------------------------------------------------------
# arithmetic rounded as PyTorch's compiled kernels round it

def _fma32(a: np.ndarray, b, c) -> np.ndarray:
    """float32 ``a * b + c`` rounded once (the FMA instruction GCC emits for it).

    The product of two float32s is exact in float64, so only the sum rounds twice
    (to float64, then float32); that differs from one rounding about once in 2**29."""
    t = np.multiply(a, b, dtype=np.float64)
    t += c
    return t.astype(np.float32)


def _fma64(a: np.ndarray, b, c) -> np.ndarray:
    """float64 ``a * b + c`` rounded once (up to double-rounding ties), by error-free
    transformations: Dekker's product and Knuth's sum."""
    a, b, c = (np.asarray(v, np.float64) for v in (a, b, c))
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    p_err = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    s = p + c
    t = s - p
    s_err = (p - (s - t)) + (c - t)
    return s + (p_err + s_err)


def _split(x):
    t = 134217729.0 * x  # 2**27 + 1
    hi = t - (t - x)
    return hi, x - hi


def _libm_log(x: np.ndarray) -> np.ndarray:
    """float64 log(x) exactly as the C library computes it (PyTorch calls std::log).

    NumPy's SIMD log differs from it in the last bit now and then. Where long double
    has more bits than double, its log rounded to double is the C library's result
    unless the exact value is near halfway between two doubles (glibc's log is within
    0.52 ulp); those few ask ``math.log``, i.e. the C library itself."""
    nmant = np.finfo(np.longdouble).nmant
    if nmant < 60:  # long double is double (MSVC, some ARM): ask the C library for all
        return np.array([math.log(v) for v in x.ravel().tolist()]).reshape(x.shape)
    wide = np.log(x.astype(np.longdouble))
    out = wide.astype(np.float64)
    if nmant == 63:  # x87 extended: the 11 mantissa bits below double's say how near
        low = (wide.view(np.uint64)[..., 0::2] & _U64(0x7FF)).astype(np.int64)
        hard = np.abs(low - 0x400) < 64  # within 1/32 ulp of halfway
    else:
        hard = np.abs((wide - out).astype(np.float64) / np.spacing(out)) > 0.45
    if hard.any():
        out[hard] = [math.log(v) for v in x[hard].tolist()]
    return out


def _box_muller_f64(u: np.ndarray) -> np.ndarray:
    """PyTorch's normal_fill_16 for float64: rows of 16 uniforms -> 16 normals."""
    radius = np.sqrt(-2.0 * _libm_log(1.0 - u[:, :8]))
    theta = (2.0 * math.pi) * u[:, 8:]
    out = np.empty_like(u)
    np.multiply(radius, np.cos(theta), out=out[:, :8])
    np.multiply(radius, np.sin(theta), out=out[:, 8:])
    return out


def _box_muller_f32(u: np.ndarray) -> np.ndarray:
    """PyTorch's AVX normal_fill_16 for float32: rows of 16 uniforms -> 16 normals."""
    f = np.float32
    radius = np.sqrt(f(-2.0) * _log_ps(f(1.0) - u[:, :8]))
    sin, cos = _sincos_ps(f(2.0 * math.pi) * u[:, 8:])
    out = np.empty_like(u)
    np.multiply(radius, cos, out=out[:, :8])
    np.multiply(radius, sin, out=out[:, 8:])
    return out


# NOTE: [AVX math]. PyTorch's AVX2/AVX512 float32 normal_ computes log, sin and cos
# with the Cephes-derived polynomials of avx_mathfun.h (sse_mathfun's method), and
# GCC fuses each multiply that feeds an add into one FMA. These two functions are
# that method written with NumPy float32 operations, fused where GCC fuses, so the
# results agree bit for bit. The constants are Cephes' (Stephen L. Moshier).

_LOG_POLY = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
             1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
             3.3333331174e-1)


def _log_ps(x: np.ndarray) -> np.ndarray:
    """float32 log of positive x: mantissa in [sqrt(1/2), sqrt(2)) times 2**e."""
    f = np.float32
    bits = np.maximum(x, f(1.17549435e-38)).view(np.int32)
    e = ((bits >> 23) - 0x7F).astype(np.float32) + f(1)
    m = ((bits & ~0x7F800000) | 0x3F000000).view(np.float32)  # mantissa in [0.5, 1)
    small = m < f(0.707106781186547524)
    e -= small
    m = (m - f(1)) + m * small  # m - 1, or 2m - 1 when m < sqrt(1/2)
    z = m * m
    y = _fma32(f(_LOG_POLY[0]), m, f(_LOG_POLY[1]))
    for c in _LOG_POLY[2:]:
        y = _fma32(y, m, f(c))
    y = _fma32(y * m, z, e * f(-2.12194440e-4))
    y -= z * f(0.5)
    return _fma32(e, f(0.693359375), m + y)


def _sincos_ps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 (sin x, cos x): reduce by multiples of pi/4, then one of two polynomials."""
    f = np.float32
    sign = x.view(np.int32) & np.int32(-2 ** 31)  # sin's sign bit
    x = np.abs(x)
    j = (x * f(1.27323954473516)).astype(np.int32)  # 4/pi
    j = (j + 1) & ~1
    y = j.astype(np.float32)
    # extended-precision x - y * pi/4, pi/4 = DP1 + DP2 + DP3
    for dp in (-0.78515625, -2.4187564849853515625e-4, -3.77489497744594108e-8):
        x = _fma32(y, f(dp), x)
    sin_sign = sign ^ ((j & 4) << 29)
    cos_sign = (~(j - 2) & 4) << 29
    sin_poly = -((j & 2) == 0).view(np.int8).astype(np.int32)  # all ones where sin's
    z = x * x
    yc = _fma32(f(2.443315711809948e-5), z, f(-1.388731625493765e-3))
    yc = _fma32(yc, z, f(4.166664568298827e-2))
    yc = _fma32(yc * z, z, -(z * f(0.5))) + f(1)
    ys = _fma32(f(-1.9515295891e-4), z, f(8.3321608736e-3))
    ys = _fma32(ys, z, f(-1.6666654611e-1))
    ys = _fma32(ys * z, x, x)
    ys, yc = ys.view(np.int32), yc.view(np.int32)
    sin = (ys & sin_poly) | (yc & ~sin_poly)
    cos = (yc & sin_poly) | (ys & ~sin_poly)
    return (sin ^ sin_sign).view(np.float32), (cos ^ cos_sign).view(np.float32)


# ----------------------------------------------------------------------------------
# the default generator and torch.random's functions

default_generator = Generator()
default_generator.seed()  # as PyTorch's: a fresh seed per process


def manual_seed(seed) -> Generator:
    """Seed the default generator (rand, randn, randint, randperm, dropout, nn.init).

    Like ``torch.manual_seed``, anything ``int()`` accepts is a seed.

    >>> _ = manual_seed(0)
    >>> initial_seed()
    0
    """
    return default_generator.manual_seed(int(seed))


def seed() -> int:
    """Seed the default generator from the operating system's entropy; return the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    """The default generator's last seed."""
    return default_generator.initial_seed()


def get_rng_state():
    """The default generator's state: a uint8 tensor in PyTorch's layout (5056 bytes)."""
    return default_generator.get_state()


def set_rng_state(new_state) -> None:
    """Restore the default generator's state from ``get_rng_state()``."""
    default_generator.set_state(new_state)


@contextlib.contextmanager
def fork_rng(devices=None, enabled: bool = True, **_):
    """Restore the default generator's state on leaving the block.

    >>> with fork_rng():
    ...     _ = manual_seed(1)
    """
    if not enabled:
        yield
        return
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
