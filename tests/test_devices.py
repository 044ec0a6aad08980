"""The device and runtime lines at the top of real scripts, as a CPU-only torch 2.13 runs
them: torch.cuda, devices, .to/.cuda, amp (autocast, GradScaler), backends, accelerator,
distributed, nn.parallel, onnx/jit/hub, utils.checkpoint, thread and determinism settings."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import tracegrad as tg

torch = pytest.importorskip("torch")


def _both(fn):
    """fn(lib) under tracegrad and torch; an exception becomes its type."""
    out = []
    for lib in (tg, torch):
        try:
            out.append(fn(lib))
        except Exception as e:  # the error type is what is compared
            out.append(type(e))
    return out


def _warnings(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        result = fn()
    return result, [(x.category, str(x.message)) for x in w]


def _np(t):
    return t.detach().float().numpy()


# ---- torch.cuda ---------------------------------------------------------------------

@pytest.mark.parametrize("name,args", [
    ("is_available", ()), ("device_count", ()), ("memory_allocated", ()),
    ("max_memory_allocated", ()), ("memory_reserved", ()), ("is_bf16_supported", ()),
    ("empty_cache", ()), ("manual_seed", (0,)), ("manual_seed_all", (0,)),
    ("is_initialized", ()),
])
def test_cuda_queries_match_torch(name, args):
    ours, theirs = _both(lambda lib: getattr(lib.cuda, name)(*args))
    assert ours == theirs


@pytest.mark.parametrize("name", ["current_device", "get_device_name", "synchronize",
                                  "get_device_properties", "get_device_capability",
                                  "mem_get_info", "current_stream"])
def test_cuda_calls_that_need_a_device_raise_as_torch(name):
    args = (0,) if name == "get_device_properties" else ()
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled") as e:
        getattr(tg.cuda, name)(*args)
    assert isinstance(e.value, RuntimeError) and "jax" in str(e.value) and "CPU" in str(e.value)
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
        getattr(torch.cuda, name)(*args)


def test_cuda_harmless_calls():
    tg.cuda.reset_peak_memory_stats()
    tg.cuda.seed_all()
    assert tg.cuda.memory_stats() == {}
    with pytest.raises(AssertionError):
        tg.cuda.Stream()


# ---- devices ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["cpu", "cpu:0", "cuda", "cuda:1", "mps", ("cpu", 0),
                                  ("cuda", 2), "meta"])
def test_device_objects_match_torch(spec):
    args = spec if isinstance(spec, tuple) else (spec,)
    a, b = tg.device(*args), torch.device(*args)
    assert (repr(a), str(a), a.type, a.index) == (repr(b), str(b), b.type, b.index)
    assert (a == tg.device("cpu")) == (b == torch.device("cpu"))
    assert hash(a) == hash(tg.device(*args)) and pickle.loads(pickle.dumps(a)) == a


@pytest.mark.parametrize("call", [
    lambda lib: lib.device("foo"), lambda lib: lib.device(0), lambda lib: lib.device("cpu:x"),
    lambda lib: lib.device("cpu:0", 0), lambda lib: lib.device("cpu") == "cpu",
    lambda lib: lib.zeros(1).device == lib.device("cpu"), lambda lib: lib.zeros(1).device == "cpu",
    lambda lib: str(lib.zeros(1, device="cpu:0").device), lambda lib: lib.zeros(1).is_cuda,
    lambda lib: lib.zeros(1).is_cpu, lambda lib: lib.zeros(1).get_device(),
    lambda lib: lib.zeros(1).is_pinned(), lambda lib: lib.zeros(1).pin_memory(),
    lambda lib: str(lib.get_default_device()),
])
def test_device_behaviour_matches_torch(call):
    ours, theirs = _both(call)
    assert ours == theirs, (ours, theirs)


def test_bad_device_string_message_matches_torch():
    with pytest.raises(RuntimeError) as ours:
        tg.device("foo")
    with pytest.raises(RuntimeError) as theirs:
        torch.device("foo")
    assert str(ours.value) == str(theirs.value)


CREATION = [
    lambda lib, d: lib.zeros(2, 3, device=d), lambda lib, d: lib.ones(2, device=d),
    lambda lib, d: lib.empty(2, device=d).zero_(), lambda lib, d: lib.full((2,), 3.0, device=d),
    lambda lib, d: lib.eye(3, device=d), lambda lib, d: lib.arange(5, device=d),
    lambda lib, d: lib.linspace(0, 1, 5, device=d), lambda lib, d: lib.tensor([1, 2], device=d),
    lambda lib, d: lib.as_tensor([1.5], device=d), lambda lib, d: lib.rand(3, device=d),
    lambda lib, d: lib.randn(3, device=d), lambda lib, d: lib.randint(5, (3,), device=d),
    lambda lib, d: lib.randperm(4, device=d), lambda lib, d: lib.normal(0.0, 1.0, (3,), device=d),
    lambda lib, d: lib.zeros_like(lib.ones(2), device=d),
    lambda lib, d: lib.full_like(lib.ones(2), 4, device=d),
    lambda lib, d: lib.randint_like(lib.ones(2), 3, device=d),
    lambda lib, d: lib.rand_like(lib.ones(2), device=d),
]


@pytest.mark.parametrize("make", CREATION)
def test_creation_accepts_cpu_devices(make):
    for ours_dev, their_dev in [("cpu", "cpu"), ("cpu:0", "cpu:0"), (None, None),
                                (tg.device("cpu"), torch.device("cpu"))]:
        tg.manual_seed(0)
        torch.manual_seed(0)
        a, b = make(tg, ours_dev), make(torch, their_dev)
        assert str(a.dtype) == str(b.dtype)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert str(a.device) == str(b.device) == "cpu"


@pytest.mark.parametrize("make", CREATION)
def test_creation_refuses_cuda_and_mps_clearly(make):
    for dev in ("cuda", "cuda:0", tg.device("cuda"), 0):
        with pytest.raises(AssertionError, match="Torch not compiled with CUDA") as e:
            make(tg, dev)
        assert isinstance(e.value, RuntimeError) and "jax" in str(e.value)
    with pytest.raises(RuntimeError, match="mps") as e:
        make(tg, "mps")
    assert "CPU" in str(e.value) and "jax" in str(e.value)
    with pytest.raises(AssertionError):  # torch raises the same kind for cuda
        make(torch, "cuda")


@pytest.mark.parametrize("call", [
    lambda lib, x: x.to("cpu") is x, lambda lib, x: x.to(lib.device("cpu")) is x,
    lambda lib, x: x.cpu() is x, lambda lib, x: x.to(lib.float32) is x, lambda lib, x: x.to(x) is x,
    lambda lib, x: x.to("cpu", copy=True) is x,
    lambda lib, x: x.to("cpu:0", non_blocking=True) is x,
    lambda lib, x: str(x.to("cpu", lib.float64).dtype),
    lambda lib, x: str(x.to(device="cpu", dtype=lib.float16).dtype),
    lambda lib, x: str(x.to(lib.ones(1, dtype=lib.int64)).dtype),
    lambda lib, x: str(x.to(lib.device("cpu"), lib.bfloat16, non_blocking=True).dtype),
    lambda lib, x: x.to("cuda"), lambda lib, x: x.cuda(), lambda lib, x: x.to("mps"),
    lambda lib, x: x.to(lib.device("cuda", 0)),
])
def test_tensor_to_matches_torch(call):
    a, b = _both(lambda lib: call(lib, lib.ones(2)))
    if isinstance(b, type):  # an error: of torch's type (CUDA's is also a RuntimeError)
        assert isinstance(a, type) and issubclass(a, b), (a, b)
    else:
        assert a == b


def test_tensor_to_error_types():
    with pytest.raises(AssertionError):
        tg.ones(2).to("cuda")
    with pytest.raises(RuntimeError, match="jax"):
        tg.ones(2).cuda()
    x = tg.ones(2)
    y = x.to("cpu", copy=True)
    assert y is not x and y.tolist() == x.tolist()


def test_module_to_cpu_cuda():
    for lib in (tg, torch):
        lib.manual_seed(0)
    mt, mg = torch.nn.Linear(3, 2), tg.nn.Linear(3, 2)
    assert mg.to("cpu") is mg and mg.cpu() is mg and mg.to(tg.device("cpu:0")) is mg
    assert mg.to("cpu", non_blocking=True) is mg
    mg.to("cpu", tg.float64)
    mt.to("cpu", torch.float64)
    assert mg.weight.dtype is tg.float64
    np.testing.assert_array_equal(mg.weight.detach().numpy(), mt.weight.detach().numpy())
    for call in (lambda m: m.cuda(), lambda m: m.to("cuda"), lambda m: m.to("cuda:0")):
        with pytest.raises(AssertionError, match="CUDA"):
            call(mg)
        with pytest.raises(AssertionError):
            call(mt)


def test_default_device():
    tg.set_default_device("cpu")
    assert str(tg.get_default_device()) == str(torch.get_default_device()) == "cpu"
    tg.set_default_device(None)
    with pytest.raises(AssertionError, match="CUDA"):
        tg.set_default_device("cuda")
    with pytest.raises(RuntimeError, match="mps"):
        tg.set_default_device("mps")
    with tg.device("cpu"):
        assert tg.zeros(1).device == tg.device("cpu")
    assert str(tg.get_default_device()) == "cpu"


# ---- the script-shaped test ---------------------------------------------------------------

def _script(lib):
    """The top of a real training script, then a few steps: device lines, backends flags,
    a disabled GradScaler and autocast('cuda'), DataParallel, checkpointing."""
    lib.manual_seed(0)
    lib.backends.cudnn.benchmark = True
    lib.backends.cuda.matmul.allow_tf32 = True
    device = "cuda" if lib.cuda.is_available() else "cpu"
    if lib.cuda.is_available():
        lib.cuda.manual_seed_all(0)
    n_gpu = lib.cuda.device_count()
    model = lib.nn.Sequential(lib.nn.Linear(6, 16), lib.nn.ReLU(), lib.nn.Linear(16, 3))
    model.to(device)
    if n_gpu > 1:
        model = lib.nn.DataParallel(model)
    opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaler = lib.amp.GradScaler("cuda", enabled=device == "cuda" or True)
    x = lib.randn(32, 6).to(device, non_blocking=True)
    y = lib.randint(0, 3, (32,)).to(device)
    losses = []
    for _ in range(6):
        opt.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with lib.autocast(device_type="cuda", enabled=device == "cuda"):
                logits = lib.utils.checkpoint.checkpoint(model, x, use_reentrant=False)
                loss = lib.nn.functional.cross_entropy(logits, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    lib.backends.cuda.matmul.allow_tf32 = False
    return device, n_gpu, losses, scaler.get_scale(), model(x).detach().cpu().numpy()


def test_script_runs_identically_under_tracegrad_and_torch():
    import torch.utils.checkpoint  # noqa: F401  (torch.utils.checkpoint is not loaded eagerly)
    ours, theirs = _script(tg), _script(torch)
    assert ours[:2] == theirs[:2] == ("cpu", 0)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-5)
    assert ours[3] == theirs[3] == 1.0
    np.testing.assert_allclose(ours[4], theirs[4], rtol=1e-4, atol=1e-6)


# ---- amp: GradScaler ----------------------------------------------------------------------

def test_grad_scaler_cuda_disabled_as_torch():
    ours, w_ours = _warnings(lambda: tg.amp.GradScaler("cuda"))
    theirs, w_theirs = _warnings(lambda: torch.amp.GradScaler("cuda"))
    assert w_ours == w_theirs
    _, w_ours = _warnings(lambda: tg.cuda.amp.GradScaler())
    _, w_theirs = _warnings(lambda: torch.cuda.amp.GradScaler())
    assert w_ours == w_theirs
    for s in (ours, theirs):
        x = tg.tensor(3.0) if s is ours else torch.tensor(3.0)
        assert s.scale(x) is x and s.get_scale() == 1.0 and s.state_dict() == {}
        assert not s.is_enabled()
        s.load_state_dict({"scale": 4.0})
        assert s.get_scale() == 1.0
        assert s.update() is None
    assert not tg.amp.GradScaler("cuda", enabled=False).is_enabled()
    _, w = _warnings(lambda: tg.amp.GradScaler("cuda", enabled=False))
    assert w == []


def _scaler_run(lib, steps=7):
    lib.manual_seed(0)
    model = lib.nn.Linear(4, 2)
    opt = lib.optim.SGD(model.parameters(), lr=0.05)
    scaler = lib.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)
    data = lib.randn(8, 4)
    scales, losses = [], []
    for i in range(steps):
        x = data * 1e30 if i == 3 else data  # an overflowing step: skipped, scale backed off
        opt.zero_grad()
        loss = (model(x) ** 2).mean()
        scaled = scaler.scale(loss)
        losses.append(scaled.item())
        scaled.backward()
        if i == 5:
            scaler.unscale_(opt)
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    return scales, losses, model.weight.detach().numpy().copy(), scaler.state_dict()


def test_grad_scaler_cpu_matches_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow on the inf step
        ours, theirs = _scaler_run(tg), _scaler_run(torch)
    assert ours[0] == theirs[0]  # the scale, step by step (growth and backoff)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-6)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-6)
    assert ours[3] == theirs[3]


def test_grad_scaler_cpu_api():
    s = tg.amp.GradScaler("cpu")
    t = torch.amp.GradScaler("cpu")
    assert s.state_dict() == t.state_dict()
    assert s.get_scale() == t.get_scale() == 65536.0
    out = s.scale([tg.tensor(1.0), (tg.tensor(2.0),)])
    assert out[0].item() == 65536.0 and out[1][0].item() == 131072.0
    with pytest.raises(ValueError, match="outputs must be a Tensor"):
        s.scale(3)
    opt = tg.optim.SGD([tg.nn.Parameter(tg.ones(1))], lr=0.1)
    with pytest.raises(AssertionError, match="No inf checks were recorded"):
        s.update()
    s.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        s.step(opt)
    with pytest.raises(RuntimeError, match="unscale_\\(\\) is being called after step"):
        s.unscale_(opt)
    s.update(1024.0)
    assert s.get_scale() == 1024.0
    s2 = tg.amp.GradScaler("cpu")
    s2.load_state_dict(s.state_dict())
    assert s2.state_dict() == s.state_dict()
    with pytest.raises(RuntimeError, match="state dict is empty"):
        s2.load_state_dict({})
    s3 = pickle.loads(pickle.dumps(s))
    assert s3.get_scale() == 1024.0
    with pytest.raises(AssertionError, match="growth factor"):
        tg.amp.GradScaler("cpu", growth_factor=1.0)


# ---- amp: autocast ---------------------------------------------------------------------------

def _pair_linear(seed=0, n_in=32, n_out=16):
    tg.manual_seed(seed)
    torch.manual_seed(seed)
    return tg.nn.Linear(n_in, n_out), torch.nn.Linear(n_in, n_out)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_autocast_linear_matmul_conv_match_torch(dtype):
    lg, lt = _pair_linear()
    x = np.random.default_rng(0).standard_normal((2, 8, 32)).astype(np.float32)
    xg, xt = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    with tg.autocast("cpu", dtype=getattr(tg, dtype)):
        yg = lg(xg)
        zg = yg.relu() @ tg.ones(16, 4)
        mg = tg.mm(xg[0], tg.ones(32, 2))
        bg = tg.bmm(xg, tg.ones(2, 32, 3))
        sg = (yg * 2).sum()
        lossg = tg.nn.functional.mse_loss(zg, tg.zeros(2, 8, 4))
    with torch.autocast("cpu", dtype=getattr(torch, dtype)):
        yt = lt(xt)
        zt = yt.relu() @ torch.ones(16, 4)
        mt = torch.mm(xt[0], torch.ones(32, 2))
        bt = torch.bmm(xt, torch.ones(2, 32, 3))
        st = (yt * 2).sum()
        losst = torch.nn.functional.mse_loss(zt, torch.zeros(2, 8, 4))
    for a, b in [(yg, yt), (zg, zt), (mg, mt), (bg, bt), (sg, st), (lossg, losst)]:
        assert str(a.dtype) == str(b.dtype)
        np.testing.assert_array_equal(_np(a), _np(b))
    lossg.backward()
    losst.backward()
    assert lg.weight.grad.dtype is tg.float32 and xg.grad.dtype is tg.float32
    np.testing.assert_allclose(lg.weight.grad.numpy(), lt.weight.grad.numpy(), rtol=2e-2,
                               atol=1e-3)

    tg.manual_seed(1)
    torch.manual_seed(1)
    cg, ct = tg.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3)
    im = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with tg.autocast("cpu", dtype=getattr(tg, dtype)):
        og = cg(tg.tensor(im))
    with torch.autocast("cpu", dtype=getattr(torch, dtype)):
        ot = ct(torch.tensor(im))
    assert str(og.dtype) == str(ot.dtype)
    if dtype == "bfloat16":
        np.testing.assert_array_equal(_np(og), _np(ot))
    else:  # float16 keeps 3 more bits, so float32 summation order can show (1 in ~300)
        np.testing.assert_allclose(_np(og), _np(ot), rtol=2e-3)
    assert type(og.grad_fn).__name__ == type(ot.grad_fn).__name__


def test_autocast_float32_ops_and_untouched_ops():
    a = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    t = [0, 1, 2, 1]
    for lib in (tg, torch):
        x = lib.tensor(a).bfloat16()
        target = lib.tensor(t)
        with lib.autocast("cpu"):
            assert lib.nn.functional.cross_entropy(x, target).dtype is lib.float32
            assert lib.nn.functional.nll_loss(x, target).dtype is lib.float32
            assert lib.nn.functional.mse_loss(x, x.float()).dtype is lib.float32
            assert lib.nn.functional.binary_cross_entropy_with_logits(
                x, x.float().sigmoid()).dtype is lib.float32
            assert lib.nn.functional.softmax(x, -1).dtype is lib.bfloat16
            assert lib.randn(3).sum().dtype is lib.float32
            d = lib.ones(2, 2, dtype=lib.float64)
            assert (d @ d).dtype is lib.float64  # float64 is not lowered
            assert lib.is_autocast_enabled("cpu") and not lib.is_autocast_enabled()
            with lib.autocast("cpu", enabled=False):
                assert (lib.ones(2, 2) @ lib.ones(2, 2)).dtype is lib.float32
                assert not lib.is_autocast_enabled("cpu")
        assert not lib.is_autocast_enabled("cpu")
        assert lib.get_autocast_dtype("cpu") is lib.bfloat16


def test_autocast_identity_paths_are_exact():
    lg, lt = _pair_linear(3)
    x = np.random.default_rng(3).standard_normal((5, 32)).astype(np.float32)
    plain = lg(tg.tensor(x))
    with tg.autocast("cpu", enabled=False):
        off = lg(tg.tensor(x))
    _, w_ours = _warnings(lambda: tg.autocast("cuda").__enter__())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tg.autocast("cuda"):
            cuda = lg(tg.tensor(x))
        with tg.cuda.amp.autocast():
            cuda2 = lg(tg.tensor(x))
    for y in (off, cuda, cuda2):
        assert y.dtype is tg.float32
        np.testing.assert_array_equal(y.detach().numpy(), plain.detach().numpy())
    np.testing.assert_allclose(plain.detach().numpy(), lt(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    _, w_theirs = _warnings(lambda: torch.autocast("cuda").__enter__())
    assert w_ours == w_theirs
    assert not tg.is_autocast_enabled("cpu")


def test_autocast_decorator_and_bad_dtype():
    @tg.autocast("cpu")
    def f(a):
        return a @ a

    assert f(tg.ones(2, 2)).dtype is tg.bfloat16
    assert not tg.is_autocast_enabled("cpu")
    ctx, w_ours = _warnings(lambda: tg.autocast("cpu", dtype=tg.float64))
    _, w_theirs = _warnings(lambda: torch.autocast("cpu", dtype=torch.float64))
    assert w_ours == w_theirs
    with ctx:
        assert (tg.ones(2, 2) @ tg.ones(2, 2)).dtype is tg.float32
    a, b = _both(lambda lib: lib.autocast("xyz"))
    assert a is b is RuntimeError


def test_autocast_compiled_step():
    lg, _ = _pair_linear(4, 8, 4)

    @tg.compile
    def step(x):
        with tg.autocast("cpu"):
            return lg(x)

    x = tg.randn(3, 8)
    with tg.autocast("cpu"):
        eager = lg(x)
    for _ in range(3):
        out = step(x)
        assert out.dtype is tg.bfloat16
        np.testing.assert_allclose(_np(out), _np(eager), rtol=1e-2, atol=1e-2)


# ---- backends, accelerator, settings --------------------------------------------------------

@pytest.mark.parametrize("read", [
    lambda lib: lib.backends.cuda.matmul.allow_tf32,
    lambda lib: lib.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
    lambda lib: lib.backends.cudnn.allow_tf32, lambda lib: lib.backends.cudnn.benchmark,
    lambda lib: lib.backends.cudnn.deterministic, lambda lib: lib.backends.cudnn.enabled,
    lambda lib: lib.backends.cudnn.is_available(), lambda lib: lib.backends.cudnn.version(),
    lambda lib: lib.backends.mps.is_available(), lambda lib: lib.backends.mps.is_built(),
    lambda lib: lib.backends.mkldnn.is_available(), lambda lib: lib.backends.mkldnn.enabled,
    lambda lib: lib.backends.mkl.is_available(), lambda lib: lib.backends.openmp.is_available(),
    lambda lib: lib.backends.opt_einsum.enabled, lambda lib: lib.backends.opt_einsum.strategy,
    lambda lib: lib.backends.cuda.is_built(), lambda lib: lib.backends.cuda.flash_sdp_enabled(),
    lambda lib: lib.accelerator.is_available(), lambda lib: lib.accelerator.device_count(),
    lambda lib: lib.accelerator.current_accelerator(),
    lambda lib: lib.accelerator.current_device_index(),
    lambda lib: lib.are_deterministic_algorithms_enabled(),
    lambda lib: lib.is_deterministic_algorithms_warn_only_enabled(),
    lambda lib: lib.get_float32_matmul_precision(), lambda lib: lib.get_deterministic_debug_mode(),
])
def test_backend_flags_defaults_match_torch(read):
    ours, theirs = _both(read)
    assert ours == theirs


def test_backend_flags_settable():
    try:
        for lib in (tg, torch):
            lib.backends.cudnn.benchmark = True
            lib.backends.cudnn.deterministic = True
            lib.backends.cuda.matmul.allow_tf32 = True
        assert tg.backends.cudnn.benchmark and tg.backends.cudnn.deterministic
        assert tg.get_float32_matmul_precision() == torch.get_float32_matmul_precision() == "high"
        for lib in (tg, torch):
            lib.set_float32_matmul_precision("medium")
        assert tg.backends.cuda.matmul.allow_tf32 == torch.backends.cuda.matmul.allow_tf32
        _, w_ours = _warnings(lambda: tg.set_float32_matmul_precision("low"))
        assert w_ours and tg.get_float32_matmul_precision() == "medium"
        a, b = _both(lambda lib: lib.set_float32_matmul_precision(3))
        assert a is b is RuntimeError
        with tg.backends.cudnn.flags(enabled=False):
            assert tg.backends.cudnn.enabled is False
        assert tg.backends.cudnn.enabled is True
    finally:
        for lib in (tg, torch):
            lib.backends.cudnn.benchmark = False
            lib.backends.cudnn.deterministic = False
            lib.set_float32_matmul_precision("highest")


def test_deterministic_algorithms():
    try:
        for lib in (tg, torch):
            lib.use_deterministic_algorithms(True, warn_only=True)
        assert tg.are_deterministic_algorithms_enabled() and \
            tg.is_deterministic_algorithms_warn_only_enabled()
        assert tg.get_deterministic_debug_mode() == torch.get_deterministic_debug_mode() == 1
        a, b = _both(lambda lib: lib.use_deterministic_algorithms("yes"))
        assert a is b is TypeError
    finally:
        for lib in (tg, torch):
            lib.use_deterministic_algorithms(False)
    assert not tg.are_deterministic_algorithms_enabled()


def test_threads():
    from threadpoolctl import threadpool_info
    n = tg.get_num_threads()
    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert n == (max(blas) if blas else n) and n >= 1
    try:
        tg.set_num_threads(1)
        assert tg.get_num_threads() == 1
        x = tg.randn(64, 64)
        np.testing.assert_allclose((x @ x).numpy(), x.numpy() @ x.numpy(), rtol=1e-5)
    finally:
        tg.set_num_threads(n)
    assert tg.get_num_threads() == n
    for call in (lambda lib: lib.set_num_threads(0), lambda lib: lib.set_num_threads(1.5),
                 lambda lib: lib.set_num_interop_threads(0)):
        a, b = _both(call)
        assert a is b is RuntimeError
    assert tg.get_num_interop_threads() >= 1


# ---- distributed ------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda lib: lib.distributed.is_available(), lambda lib: lib.distributed.is_initialized(),
    lambda lib: lib.distributed.get_rank(), lambda lib: lib.distributed.get_world_size(),
    lambda lib: lib.distributed.barrier(), lambda lib: lib.distributed.get_backend(),
    lambda lib: lib.distributed.all_reduce(lib.ones(1)),
    lambda lib: lib.distributed.broadcast(lib.ones(1), 0),
    lambda lib: lib.distributed.destroy_process_group(),
    lambda lib: repr(lib.distributed.ReduceOp.SUM), lambda lib: lib.distributed.is_nccl_available(),
    lambda lib: lib.distributed.is_gloo_available(),
    lambda lib: lib.nn.parallel.DistributedDataParallel(lib.nn.Linear(1, 1)),
])
def test_distributed_uninitialised_matches_torch(call):
    import torch.distributed  # noqa: F401
    ours, theirs = _both(call)
    assert ours == theirs


def test_distributed_uninitialised_message():
    with pytest.raises(ValueError) as ours:
        tg.distributed.get_rank()
    with pytest.raises(ValueError) as theirs:
        torch.distributed.get_rank()
    assert str(ours.value) == str(theirs.value)


def test_distributed_world_of_one(monkeypatch):
    dist = tg.distributed
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="environment variable RANK expected"):
        dist.init_process_group("gloo")
    with pytest.raises(RuntimeError, match="NCCL"):
        dist.init_process_group("nccl", rank=0, world_size=1)
    with pytest.raises(RuntimeError, match="one process"):
        dist.init_process_group("gloo", rank=0, world_size=2)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist.init_process_group("gloo")
    try:
        assert dist.is_initialized() and dist.get_rank() == 0 and dist.get_world_size() == 1
        assert dist.get_backend() == "gloo"
        x = tg.tensor([1.0, 2.0])
        assert dist.all_reduce(x, op=dist.ReduceOp.SUM) is None and x.tolist() == [1.0, 2.0]
        assert dist.all_reduce(x, async_op=True).wait()
        out = [tg.zeros(2)]
        dist.all_gather(out, x)
        assert out[0].tolist() == [1.0, 2.0]
        objs = [None]
        dist.all_gather_object(objs, {"a": 1})
        assert objs == [{"a": 1}]
        dist.barrier()
        dist.broadcast(x, src=0)
        with pytest.raises(ValueError):
            dist.broadcast(x, src=1)
        with pytest.raises(ValueError, match="twice"):
            dist.init_process_group("gloo")
        tg.manual_seed(0)
        model = tg.nn.Linear(3, 2)
        ddp = tg.nn.parallel.DistributedDataParallel(model)
        inp = tg.randn(4, 3)
        np.testing.assert_array_equal(ddp(inp).detach().numpy(), model(inp).detach().numpy())
        assert ddp.module is model and list(ddp.state_dict()) == ["module.weight", "module.bias"]
        with ddp.no_sync():
            ddp(inp).sum().backward()
        assert model.weight.grad is not None
    finally:
        dist.destroy_process_group()
    assert not dist.is_initialized()


def test_data_parallel_matches_torch():
    tg.manual_seed(0)
    torch.manual_seed(0)
    dg = tg.nn.DataParallel(tg.nn.Linear(2, 3))
    dt = torch.nn.DataParallel(torch.nn.Linear(2, 3))
    assert repr(dg) == repr(dt) and list(dg.state_dict()) == list(dt.state_dict())
    assert dg.device_ids == dt.device_ids == []
    assert isinstance(dg.module, tg.nn.Linear) and tg.nn.parallel.DataParallel is tg.nn.DataParallel
    x = np.ones((4, 2), np.float32)
    np.testing.assert_array_equal(dg(tg.tensor(x)).detach().numpy(),
                                  dt(torch.tensor(x)).detach().numpy())
    assert len(list(dg.parameters())) == 2


# ---- onnx, jit, hub --------------------------------------------------------------------------

def test_onnx_jit_hub():
    model = tg.nn.Linear(2, 2)
    with pytest.raises(NotImplementedError, match="ONNX"):
        tg.onnx.export(model, tg.ones(1, 2), "model.onnx")
    assert tg.onnx.is_in_onnx_export() is False
    with pytest.raises(RuntimeError, match="network"):
        tg.hub.load("pytorch/vision", "resnet18")
    with pytest.raises(RuntimeError, match="network"):
        tg.hub.load_state_dict_from_url("https://example.invalid/w.pt")
    assert tg.hub.get_dir().endswith("hub")
    scripted = tg.jit.script(model)
    x = tg.ones(3, 2)
    np.testing.assert_array_equal(scripted(x).detach().numpy(), model(x).detach().numpy())
    traced = tg.jit.trace(model, (x,))
    np.testing.assert_array_equal(traced(x).detach().numpy(), model(x).detach().numpy())

    @tg.jit.ignore
    def helper(a):
        return a + 1

    @tg.jit.ignore(drop=True)
    def dropped(a):
        return a * 3

    assert helper(1) == 2 and dropped(2) == 6 and tg.jit.unused(helper) is helper
    assert tg.jit.is_scripting() is torch.jit.is_scripting() is False
    assert tg.jit.Final[int] is int
    with pytest.raises(NotImplementedError, match="TorchScript"):
        tg.jit.save(scripted, "m.pt")


# ---- utils.checkpoint ------------------------------------------------------------------------

def _ckpt_model(lib):
    lib.manual_seed(0)
    return lib.nn.Sequential(lib.nn.Linear(5, 8), lib.nn.Tanh(), lib.nn.Dropout(0.3),
                             lib.nn.Linear(8, 3))


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpoint_values_and_grads_match_plain_and_torch(reentrant):
    import torch.utils.checkpoint  # noqa: F401
    results = []
    for lib in (tg, torch):
        model = _ckpt_model(lib)
        x = lib.randn(4, 5, requires_grad=True)
        state = lib.get_rng_state()
        y = lib.utils.checkpoint.checkpoint(model, x, use_reentrant=reentrant)
        y.pow(2).sum().backward()
        ckpt = (_np(y), _np(x.grad), _np(model[0].weight.grad), type(y.grad_fn).__name__)
        lib.set_rng_state(state)  # the same dropout mask, without checkpointing
        for p in list(model.parameters()) + [x]:
            p.grad = None
        y2 = model(x)
        y2.pow(2).sum().backward()
        plain = (_np(y2), _np(x.grad), _np(model[0].weight.grad))
        for a, b in zip(ckpt, plain, strict=False):
            np.testing.assert_array_equal(a, b)
        results.append(ckpt)
    ours, theirs = results
    assert ours[3] == theirs[3]  # CheckpointFunctionBackward or the model's own last node
    for a, b in zip(ours[:3], theirs[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_checkpoint_warnings_kwargs_and_sequential():
    import torch.utils.checkpoint as tcp
    cp = tg.utils.checkpoint
    x, xt = tg.ones(2), torch.ones(2)
    _, w_ours = _warnings(lambda: cp.checkpoint(lambda a: a * 2, x))
    _, w_theirs = _warnings(lambda: tcp.checkpoint(lambda a: a * 2, xt))
    assert w_ours == w_theirs
    assert cp.checkpoint(lambda a, k: a * k, x, use_reentrant=False, k=3).tolist() == [3.0, 3.0]
    a, b = _both(lambda lib: (cp if lib is tg else tcp).checkpoint(
        lambda a, k: a * k, x if lib is tg else xt, use_reentrant=True, k=3))
    assert a is b is ValueError
    for reentrant in (True, False):
        for lib, mod in ((tg, cp), (torch, tcp)):
            lib.manual_seed(1)
            seq = lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.ReLU(), lib.nn.Linear(4, 4),
                                    lib.nn.ReLU(), lib.nn.Linear(4, 2))
            inp = lib.ones(2, 3, requires_grad=True)
            out = mod.checkpoint_sequential(seq, 2, inp, use_reentrant=reentrant)
            out.sum().backward()
            if lib is tg:
                ours = (_np(out), _np(inp.grad), type(out.grad_fn).__name__)
            else:
                theirs = (_np(out), _np(inp.grad), type(out.grad_fn).__name__)
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5)
        assert ours[2] == theirs[2]


def test_custom_fwd_bwd():
    class Mul(tg.autograd.Function):
        @staticmethod
        @tg.amp.custom_fwd(device_type="cpu", cast_inputs=tg.float32)
        def forward(ctx, x):
            ctx.dtype = x.dtype
            return x @ x

        @staticmethod
        @tg.amp.custom_bwd(device_type="cpu")
        def backward(ctx, g):
            return g

    x = tg.ones(2, 2, dtype=tg.bfloat16)
    with tg.autocast("cpu"):
        assert Mul.apply(x).dtype is tg.float32  # cast to float32, run with autocast off
    assert Mul.apply(x).dtype is tg.bfloat16
    ours = _warnings(lambda: tg.cuda.amp.custom_fwd(lambda c, a: a))[1]
    assert ours == _warnings(lambda: torch.cuda.amp.custom_fwd(lambda c, a: a))[1]
