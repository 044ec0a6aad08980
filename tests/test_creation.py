"""Creation and sampling: legacy constructors, new_*, randint's overloads, the
exponential_/geometric_/cauchy_/log_normal_ streams, and bfloat16 -- against torch."""
from __future__ import annotations

import numpy as np
import pytest

import tracegrad as tg

torch = pytest.importorskip("torch")


def _same(ours, theirs):
    """Same dtype name, shape and values (bit for bit; nan where torch has nan)."""
    assert str(ours.dtype) == str(theirs.dtype)
    assert tuple(ours.shape) == tuple(theirs.shape)
    a = np.asarray(ours.detach().float().numpy() if ours.dtype is tg.bfloat16
                   else ours.detach().numpy())
    b = theirs.detach().float().numpy() if theirs.dtype is torch.bfloat16 \
        else theirs.detach().numpy()
    np.testing.assert_array_equal(a, b)


def _both(fn):
    """fn(lib) under both libraries; errors compared by type."""
    out = []
    for lib in (tg, torch):
        try:
            out.append(fn(lib))
        except Exception as e:  # the error type is what is compared
            out.append(type(e))
    return out


# ---- legacy constructors ----------------------------------------------------------

LEGACY_CASES = [
    ("Tensor", (2, 3)), ("Tensor", ([1, 2],)), ("Tensor", ()), ("Tensor", ((2, 3),)),
    ("Tensor", ([[1, 2], [3, 4]],)), ("FloatTensor", ([1.5, 2],)), ("FloatTensor", (4,)),
    ("DoubleTensor", ([1, 2],)), ("LongTensor", ([1.7, 2],)), ("LongTensor", (3,)),
    ("IntTensor", ([1, 2],)), ("BoolTensor", ([1, 0],)), ("ByteTensor", ([1, 200],)),
    ("HalfTensor", ([1, 2],)), ("ShortTensor", ([1, -2],)), ("CharTensor", ([1, -2],)),
    ("BFloat16Tensor", ([1.5, 2.25],)),
]


@pytest.mark.parametrize("name,args", LEGACY_CASES)
def test_legacy_constructor_matches_torch(name, args):
    ours, theirs = getattr(tg, name)(*args), getattr(torch, name)(*args)
    assert str(ours.dtype) == str(theirs.dtype) and tuple(ours.shape) == tuple(theirs.shape)
    if not args or isinstance(args[0], (list, tuple)):  # data (sizes: uninitialised in torch)
        _same(ours, theirs)
    else:
        assert not ours.numpy().any()  # tracegrad fills with zeros


def test_legacy_constructor_size_numpy_tensor_and_errors():
    _same(tg.Tensor(tg.Size([2])), torch.Tensor(torch.Size([2])).zero_())
    _same(tg.Tensor(np.array([1, 2])), torch.Tensor(np.array([1, 2])))
    x = tg.tensor([1, 2])
    assert tg.Tensor(x).dtype is tg.int64  # an alias of the tensor, as torch's
    for fn in (lambda lib: lib.Tensor(2.5), lambda lib: lib.Tensor(2, 3, dtype=lib.float64),
               lambda lib: lib.LongTensor(lib.tensor([1.0, 2.0])), lambda lib: lib.Tensor(-1)):
        a, b = _both(fn)
        assert a is b, (a, b)
    with pytest.raises(RuntimeError, match="CUDA"):
        tg.Tensor(2, device="cuda")


def test_legacy_types_isinstance_and_type_conversion():
    assert isinstance(tg.zeros(1), tg.FloatTensor)
    assert not isinstance(tg.zeros(1, dtype=tg.int64), tg.FloatTensor)
    assert isinstance(tg.zeros(1, dtype=tg.int64), tg.LongTensor)
    assert repr(tg.FloatTensor) == repr(torch.FloatTensor)
    for arg in ("LongTensor", "torch.LongTensor"):
        a = tg.tensor([1.5, 2.0]).type(getattr(tg, arg) if "." not in arg else arg)
        b = torch.tensor([1.5, 2.0]).type(getattr(torch, arg) if "." not in arg else arg)
        _same(a, b)
    assert tg.zeros(1).type() == torch.zeros(1).type()
    assert tg.zeros(1, dtype=tg.bfloat16).type() == torch.zeros(1, dtype=torch.bfloat16).type()


def test_set_default_dtype_changes_tensor_constructor():
    tg.set_default_dtype(tg.float64)
    try:
        assert tg.Tensor([1]).dtype is tg.float64 and tg.Tensor(2).dtype is tg.float64
    finally:
        tg.set_default_dtype(tg.float32)


# ---- new_* ------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda x: x.new_zeros(2, 3), lambda x: x.new_zeros((2, 3)), lambda x: x.new_ones([4]),
    lambda x: x.new_full((2,), 7), lambda x: x.new_empty((2, 2)).zero_(),
    lambda x: x.new_tensor([1, 2]), lambda x: x.new_tensor([1.5], dtype=None),
    lambda x: x.new_zeros(2, dtype=x.new_tensor(0).dtype),
])
@pytest.mark.parametrize("dtype", ["float64", "int32", "bfloat16"])
def test_new_methods_match_torch(call, dtype):
    ours = call(tg.zeros(1, dtype=getattr(tg, dtype)))
    theirs = call(torch.zeros(1, dtype=getattr(torch, dtype)))
    _same(ours, theirs)


def test_new_methods_requires_grad_and_device():
    t = tg.zeros(1).new_ones(2, requires_grad=True, device="cpu")
    assert t.requires_grad and t.dtype is tg.float32
    with pytest.raises(RuntimeError, match="CPU"):
        tg.zeros(1).new_zeros(2, device="cuda")


# ---- randint ------------------------------------------------------------------------

RANDINT_CALLS = [
    lambda lib: lib.randint(10, (3,)), lambda lib: lib.randint(3, 10, (3,)),
    lambda lib: lib.randint(10, size=(3,)), lambda lib: lib.randint(low=3, high=10, size=(5,)),
    lambda lib: lib.randint(high=10, size=(3,)), lambda lib: lib.randint(10, [2, 2]),
    lambda lib: lib.randint(10, lib.Size([4])),
    lambda lib: lib.randint(10, (3,), dtype=lib.float32),
    lambda lib: lib.randint(10, (40,), dtype=lib.float64),
    lambda lib: lib.randint(-5, 5, (20,), dtype=lib.int8),
    lambda lib: lib.randint(2, (7,), dtype=lib.bool),
    lambda lib: lib.randint(0, 2 ** 40, (6,)),
    lambda lib: lib.randint(10, (3,), dtype=lib.float32, requires_grad=True),
    lambda lib: lib.randint(10, (3,), device="cpu"),
    lambda lib: lib.randint(10, (3,), out=lib.empty(3, dtype=lib.int64)),
    lambda lib: lib.randint(10, (3,), generator=lib.Generator().manual_seed(1)),
    lambda lib: lib.randint(4, (3,), dtype=lib.bfloat16),
]


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("call", RANDINT_CALLS)
def test_randint_overloads_match_torch(call, seed):
    tg.manual_seed(seed)
    torch.manual_seed(seed)
    _same(call(tg), call(torch))
    _same(tg.rand(3), torch.rand(3))  # the stream continues in step


@pytest.mark.parametrize("call", [
    lambda lib: lib.randint(10, 3), lambda lib: lib.randint(10),
    lambda lib: lib.randint(3, 10), lambda lib: lib.randint(0, (4,)),
    lambda lib: lib.randint(10.5, (3,)), lambda lib: lib.randint(5, 2, (3,)),
    lambda lib: lib.randint(10, size=3), lambda lib: lib.randint(10, (3,), requires_grad=True),
])
def test_randint_errors_match_torch(call):
    tg.manual_seed(3)
    torch.manual_seed(3)
    ours, theirs = _both(call)
    assert ours is theirs
    _same(tg.rand(2), torch.rand(2))  # a failed call draws what torch's draws


# ---- exponential_, geometric_, cauchy_, log_normal_ ----------------------------------

FILLS = [("exponential_", ()), ("exponential_", (1.5,)), ("exponential_", (0.25,)),
         ("geometric_", (0.3,)), ("geometric_", (0.9,)), ("cauchy_", ()),
         ("cauchy_", (0.5, 2.0)), ("log_normal_", ()), ("log_normal_", (0.2, 0.5))]
SIZES = [1, 2, 7, 15, 16, 17, 31, 64, 100, 257]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,args", FILLS)
def test_random_fills_bit_for_bit(name, args, dtype):
    for seed in range(12):
        for n in SIZES:
            tg.manual_seed(seed)
            torch.manual_seed(seed)
            ours = getattr(tg.empty(n, dtype=getattr(tg, dtype)), name)(*args)
            theirs = getattr(torch.empty(n, dtype=getattr(torch, dtype)), name)(*args)
            _same(ours, theirs)
        _same(tg.rand(5), torch.rand(5))  # the generator is left where torch's is


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int64", "int32", "uint8"])
def test_random_fills_other_dtypes(dtype):
    names = FILLS if dtype in ("float16", "bfloat16") else [("geometric_", (0.05,))]
    for name, args in names:
        for seed in range(4):
            tg.manual_seed(seed)
            torch.manual_seed(seed)
            ours = getattr(tg.empty(40, dtype=getattr(tg, dtype)), name)(*args)
            theirs = getattr(torch.empty(40, dtype=getattr(torch, dtype)), name)(*args)
            _same(ours, theirs)


def test_random_fills_2d_generator_and_mixed_sequence():
    g1, g2 = tg.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    _same(tg.empty(4, 5).exponential_(2.0, generator=g1),
          torch.empty(4, 5).exponential_(2.0, generator=g2))
    tg.manual_seed(11)
    torch.manual_seed(11)
    for lib_calls in [lambda lib: lib.randn(3), lambda lib: lib.empty(3).log_normal_(),
                      lambda lib: lib.randn(1), lambda lib: lib.empty(3).cauchy_(),
                      lambda lib: lib.rand(4)]:
        _same(lib_calls(tg), lib_calls(torch))  # log_normal_ shares randn's cached value


@pytest.mark.parametrize("call", [
    lambda lib: lib.empty(3).exponential_(0), lambda lib: lib.empty(3).exponential_(-1),
    lambda lib: lib.empty(3, dtype=lib.int64).exponential_(),
    lambda lib: lib.empty(3).geometric_(0), lambda lib: lib.empty(3).geometric_(1),
    lambda lib: lib.empty(3, dtype=lib.bool).geometric_(0.5),
    lambda lib: lib.empty(3).log_normal_(0, 0), lambda lib: lib.empty(3).log_normal_(0, -1),
    lambda lib: lib.empty(3, dtype=lib.int64).log_normal_(),
    lambda lib: lib.empty(3).cauchy_(0, 0), lambda lib: lib.empty(3, dtype=lib.int64).cauchy_(),
    lambda lib: lib.empty(3, requires_grad=True).exponential_(),
])
def test_random_fill_errors_match_torch(call):
    ours, theirs = _both(call)
    assert ours is theirs


def test_random_fill_error_messages():
    for name, args, text in [("exponential_", (0,), "exponential_ expects lambda > 0.0"),
                             ("geometric_", (1,), "geometric_ expects p to be in (0, 1)"),
                             ("cauchy_", (0, -1), "cauchy_ expects sigma > 0.0"),
                             ("log_normal_", (0, 0), "log_normal_ expects std > 0.0")]:
        with pytest.raises(RuntimeError) as ours:
            getattr(tg.empty(2), name)(*args)
        with pytest.raises(RuntimeError) as theirs:
            getattr(torch.empty(2), name)(*args)
        assert text in str(ours.value) and text in str(theirs.value)


@pytest.mark.parametrize("name,args,grad_fn", [
    ("exponential_", (), "ExponentialBackward0"), ("geometric_", (0.5,), "GeometricBackward0"),
    ("cauchy_", (), "CauchyBackward0"), ("log_normal_", (), "LogNormalBackward0")])
def test_random_fill_grad_fn(name, args, grad_fn):
    x = tg.ones(3, requires_grad=True)
    y = getattr(x.clone(), name)(*args)
    assert type(y.grad_fn).__name__ == grad_fn == type(
        getattr(torch.ones(3, requires_grad=True).clone(), name)(*args).grad_fn).__name__
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(3, np.float32))  # as torch's


@pytest.mark.parametrize("name,args", FILLS)
def test_random_fills_compiled_draw_fresh_values(name, args):
    @tg.compile
    def draw(x):
        return getattr(x.clone(), name)(*args)

    x = tg.zeros(2000)
    tg.manual_seed(0)
    results = [draw(x).numpy() for _ in range(4)]
    assert all(r.shape == (2000,) and r.dtype == np.float32 for r in results)
    assert not np.array_equal(results[2], results[3])  # compiled calls draw afresh
    med = {"exponential_": np.log(2) / (args[0] if args else 1.0),
           "cauchy_": args[0] if args else 0.0,
           "log_normal_": np.exp(args[0] if args else 1.0),
           "geometric_": None}[name]
    for r in results[2:]:
        if med is not None:  # the median of the distribution, roughly
            assert abs(np.median(r) - med) < 0.25 * max(1.0, abs(med))
        else:
            assert r.min() >= 1 and np.all(r == np.round(r))


# ---- bfloat16 -------------------------------------------------------------------------

def test_bfloat16_dtype_attributes():
    assert repr(tg.bfloat16) == repr(torch.bfloat16) == "torch.bfloat16"
    assert tg.bfloat16.is_floating_point and tg.bfloat16.itemsize == 2
    assert tg.bfloat16.is_signed == torch.bfloat16.is_signed


VALUES = [1.5, 2.2, 3.14159, 1e-3, 300.7, -7.77, 1e10, 1e-10, 0.0, -0.0, 65504.0, 1e38]


def test_bfloat16_casts_and_printing_match_torch():
    for src in ("float32", "float64", "float16", "int64", "int32", "bool"):
        vals = VALUES if src.startswith("float") else [1, 2, 300, 7, 0]
        if src == "bool":
            vals = [True, False]
        if src == "float16":
            vals = [v for v in vals if abs(v) < 6e4]
        a = tg.tensor(vals, dtype=getattr(tg, src)).bfloat16()
        b = torch.tensor(vals, dtype=getattr(torch, src)).bfloat16()
        _same(a, b)
        assert repr(a) == repr(b)
        for dst in ("float32", "float64", "float16", "int64", "int32", "bool"):
            if dst.startswith("int") and src.startswith("float"):
                continue  # out-of-range float -> int casts are undefined in C++
            _same(a.to(getattr(tg, dst)), b.to(getattr(torch, dst)))
    for vals in ([1.0, 2.0], [[1e-5, 1.0], [2.5, 3.0]], 3.25, [1e20]):
        a, b = tg.tensor(vals, dtype=tg.bfloat16), torch.tensor(vals, dtype=torch.bfloat16)
        assert repr(a) == repr(b)


def _bf16_pair(shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return tg.tensor(x).bfloat16(), torch.tensor(x).bfloat16()


@pytest.mark.parametrize("op", [
    lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x - y, lambda x, y: x / y,
    lambda x, y: x * 1.5 + 2, lambda x, y: x.exp(), lambda x, y: x.abs().log(),
    lambda x, y: x.tanh(), lambda x, y: x.sigmoid(), lambda x, y: x.relu(),
    lambda x, y: x.abs().sqrt(), lambda x, y: x.abs().rsqrt(), lambda x, y: x ** 2,
    lambda x, y: x.clamp(-0.5, 0.5), lambda x, y: x.maximum(y), lambda x, y: x > y,
    lambda x, y: x.sin(), lambda x, y: x @ y.T, lambda x, y: x.sum(), lambda x, y: x.sum(0),
    lambda x, y: x.mean(1), lambda x, y: x.var(0), lambda x, y: x.softmax(-1),
    lambda x, y: x.std(0), lambda x, y: x.std(),
    lambda x, y: x.logsumexp(0), lambda x, y: x.cumsum(1), lambda x, y: x.prod(0),
    lambda x, y: x.amax(1), lambda x, y: x.argmax(1), lambda x, y: x.norm(),
    lambda x, y: x.reshape(-1)[3:9], lambda x, y: x.T.contiguous(),
])
def test_bfloat16_ops_match_torch(op):
    for seed in range(3):
        (a, b), (c, d) = _bf16_pair((16, 24), seed), _bf16_pair((16, 24), seed + 100)
        _same(op(a, c), op(b, d))


def test_bfloat16_promotion_matches_torch():
    a, b = tg.tensor([1.5], dtype=tg.bfloat16), torch.tensor([1.5], dtype=torch.bfloat16)
    for other in ("float16", "float32", "float64", "int64"):
        _same(a + tg.ones(1, dtype=getattr(tg, other)),
              b + torch.ones(1, dtype=getattr(torch, other)))
        _same(a + tg.ones((), dtype=getattr(tg, other)),
              b + torch.ones((), dtype=getattr(torch, other)))
    _same(a + 1.5, b + 1.5)
    _same(a * 2, b * 2)


def test_bfloat16_random_streams_match_torch():
    for n in (5, 16, 20, 33):
        for fn in (lambda lib, n=n: lib.rand(n, dtype=lib.bfloat16),
                   lambda lib, n=n: lib.randn(n, dtype=lib.bfloat16),
                   lambda lib, n=n: lib.empty(n, dtype=lib.bfloat16).uniform_(-2, 3),
                   lambda lib, n=n: lib.empty(n, dtype=lib.bfloat16).normal_(1, 2),
                   lambda lib, n=n: lib.empty(n, dtype=lib.bfloat16).random_()):
            tg.manual_seed(n)
            torch.manual_seed(n)
            _same(fn(tg), fn(torch))


def test_bfloat16_modules_gradients_and_compile():
    tg.manual_seed(0)
    torch.manual_seed(0)
    lt, lg = torch.nn.Linear(8, 4).bfloat16(), tg.nn.Linear(8, 4).bfloat16()
    assert lg.weight.dtype is tg.bfloat16
    xt, xg = _bf16_pair((3, 8), 1)[::-1]
    xt.requires_grad_(True)
    xg.requires_grad_(True)
    yt, yg = lt(xt), lg(xg)
    _same(yg, yt)
    assert type(yg.grad_fn).__name__ == type(yt.grad_fn).__name__ == "AddmmBackward0"
    yt.float().sum().backward()
    yg.float().sum().backward()
    assert lg.weight.grad.dtype is tg.bfloat16 and xg.grad.dtype is tg.bfloat16
    np.testing.assert_allclose(lg.weight.grad.float().numpy(), lt.weight.grad.float().numpy(),
                               rtol=1e-2, atol=1e-2)

    @tg.compile
    def f(a):
        return (a * 2).exp().sum(0)

    a = _bf16_pair((4, 5), 3)[0]
    eager = (a * 2).exp().sum(0)
    for _ in range(3):
        out = f(a)
        assert out.dtype is tg.bfloat16
        np.testing.assert_allclose(out.float().numpy(), eager.float().numpy(), rtol=1e-2)


def test_bfloat16_from_numpy_and_tensor():
    import ml_dtypes
    arr = np.array([1.5, 2.25], ml_dtypes.bfloat16)
    assert tg.from_numpy(arr).dtype is tg.bfloat16
    assert tg.tensor(arr).dtype is tg.bfloat16
    with pytest.raises(TypeError, match="must be torch.dtype, not str"):  # as torch's
        tg.tensor([1.0], dtype="bfloat16")
    assert tg.tensor([1.0], dtype=tg.bfloat16).dtype is tg.bfloat16
