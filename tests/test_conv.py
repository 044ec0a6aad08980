"""Convolutional networks as a PyTorch user writes them: layers' init, reprs and
errors against torch; a small CNN trained eagerly against torch and compiled against
eager (parameters and BatchNorm running statistics after every step)."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import tracegrad as tg

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().numpy()


def _cnn(T):
    nn = T.nn
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=1), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
        nn.Linear(16, 10))


def _data(n=16, size=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 1, size, size)).astype(np.float32),
            rng.integers(0, 10, n))


def _step(T, model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = T.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def _state(model):
    """Parameters and buffers (running statistics, num_batches_tracked) by name."""
    out = {k: _np(v) for k, v in model.named_parameters()}
    out.update({k: _np(v) for k, v in model.named_buffers()})
    return out


def test_conv_layer_init_is_torchs():
    for seed in (0, 7):
        tg.manual_seed(seed)
        torch.manual_seed(seed)
        for make in (lambda T: T.nn.Conv2d(3, 8, (3, 5)), lambda T: T.nn.Conv1d(4, 6, 3, groups=2),
                     lambda T: T.nn.Conv2d(2, 4, 1, bias=False)):
            a, b = make(tg), make(torch)
            for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(),
                                          strict=True):
                assert na == nb
                np.testing.assert_array_equal(_np(pa), _np(pb))


def test_cnn_init_equals_torch():
    tg.manual_seed(0)
    torch.manual_seed(0)
    a, b = _state(_cnn(tg)), _state(_cnn(torch))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("make", [
    lambda T: T.nn.Conv2d(1, 32, 3),
    lambda T: T.nn.Conv2d(4, 8, (3, 2), stride=2, padding=1, dilation=(2, 1), groups=2,
                          bias=False),
    lambda T: T.nn.Conv1d(2, 4, 3, padding="same"),
    lambda T: T.nn.Conv1d(2, 4, 3, padding=1, padding_mode="circular"),
    lambda T: T.nn.Conv3d(2, 4, 3, padding="same", padding_mode="reflect", bias=False),
    lambda T: T.nn.MaxPool2d(3, 2, 1),
    lambda T: T.nn.AvgPool2d(2),
    lambda T: T.nn.AdaptiveAvgPool2d((1, 1)),
    lambda T: T.nn.MaxPool1d(3),
    lambda T: T.nn.MaxPool3d((2, 1, 2), 1, 1, ceil_mode=True),
    lambda T: T.nn.AvgPool1d(3, 2, 1),
    lambda T: T.nn.AvgPool3d(2, divisor_override=3),
    lambda T: T.nn.AdaptiveAvgPool1d(3),
    lambda T: T.nn.AdaptiveAvgPool3d((2, None, 1)),
    lambda T: T.nn.AdaptiveMaxPool1d(3),
    lambda T: T.nn.AdaptiveMaxPool2d((3, 2), return_indices=True),
    lambda T: T.nn.AdaptiveMaxPool3d(2),
    lambda T: T.nn.BatchNorm1d(4, momentum=None, affine=False),
    lambda T: T.nn.BatchNorm2d(8),
])
def test_layer_repr_matches_torch(make):
    assert repr(make(tg)) == repr(make(torch))


@pytest.mark.parametrize("call", [
    lambda T: T.conv2d(T.ones(2, 4, 8, 8), T.ones(6, 3, 3, 3)),
    lambda T: T.nn.functional.conv2d(T.ones(2, 4, 8, 8), T.ones(6, 2, 3, 3), groups=3),
    lambda T: T.nn.functional.conv2d(T.ones(2, 4, 2, 2), T.ones(6, 2, 3, 3), groups=2),
    lambda T: T.nn.functional.conv2d(T.ones(2, 2, 8, 8), T.ones(6, 2, 3, 3), stride=2,
                                     padding="same"),
    lambda T: T.nn.functional.conv2d(T.ones(8, 8), T.ones(6, 2, 3, 3)),
    lambda T: T.nn.functional.conv2d(T.ones(1, 2, 8, 8), T.ones(6, 2, 3, 3), T.ones(5)),
    lambda T: T.nn.functional.conv2d(T.ones(1, 2, 8, 8), T.ones(6, 2, 3, 3), padding="foo"),
    lambda T: T.nn.functional.max_pool2d(T.ones(1, 2, 8, 8), 3, padding=2),
    lambda T: T.nn.functional.avg_pool2d(T.ones(1, 2, 8, 8), 3, padding=2),
    lambda T: T.nn.functional.max_pool2d(T.ones(1, 4, 1, 1), 2),
    lambda T: T.nn.functional.batch_norm(T.ones(1, 3), T.zeros(3), T.ones(3), training=True),
    lambda T: T.nn.BatchNorm2d(3)(T.ones(2, 3, 4)),
    lambda T: T.nn.Conv2d(3, 4, 3, groups=2),
], ids=lambda f: "")
def test_errors_are_worded_as_torch(call):
    with pytest.raises(Exception) as theirs:
        call(torch)
    with pytest.raises(Exception) as ours:
        call(tg)
    assert type(theirs.value).__name__ in ("RuntimeError", "ValueError")
    assert isinstance(ours.value, type(theirs.value))
    assert str(ours.value) == str(theirs.value)


# pooling argument errors, each as PyTorch words it (F: torch.nn.functional)
POOL_ERRORS = [
    "max_pool2d(ones(8, 8), 2)", "avg_pool2d(ones(8, 8), 2)",
    "max_pool2d(ones(1, 1, 8, 8), (2, 2, 2))", "max_pool2d(ones(1, 1, 8, 8), 2, (2, 2, 2))",
    "max_pool2d(ones(1, 1, 8, 8), 2, 2, (1, 1, 1))",
    "max_pool2d(ones(1, 1, 8, 8), 2, 2, 0, (1, 1, 1))", "avg_pool2d(ones(1, 1, 8, 8), (2, 2, 2))",
    "avg_pool2d(ones(1, 1, 8, 8), 2, (2, 2, 2))", "avg_pool2d(ones(1, 1, 8, 8), 2, 2, (1, 1, 1))",
    "max_pool2d(ones(1, 1, 8, 8), 0)", "max_pool2d(ones(1, 1, 8, 8), 0, 1)",
    "max_pool2d(ones(1, 1, 8, 8), 2, 1, -1)", "max_pool2d(ones(1, 1, 8, 8), 2, 1, 0, 0)",
    "avg_pool2d(ones(1, 1, 8, 8), 0, 1)", "avg_pool2d(ones(1, 1, 8, 8), 2, 0)",
    "avg_pool2d(ones(1, 1, 8, 8), 2, 1, -1)", "avg_pool2d(ones(1, 1, 8, 8), 2, divisor_override=0)",
    "max_pool2d(ones(1, 0, 8, 8), 2)", "max_pool2d(ones(1, 1, 0, 8), 2)",
    "avg_pool2d(ones(1, 0, 8, 8), 2)", "max_pool2d(ones(1, 1, 20, 20), 3, 1, 3, 3)",
    "adaptive_avg_pool2d(ones(1, 1, 8, 8), (2, -1))",
    "adaptive_avg_pool2d(ones(1, 1, 8, 8), (2, 2, 2))",
    "adaptive_avg_pool2d(ones(1, 1, 0, 8), (2, 2))", "adaptive_avg_pool2d(ones(8, 8), (2, 2))",
    "adaptive_avg_pool2d(ones(1, 1, 8, 8), (3,))",
    "max_pool3d(ones(1, 1, 20, 20, 20), 3, 1, 3, 3)", "max_pool3d(ones(8, 8), 2)",
    "avg_pool3d(ones(8, 8), 2)", "max_pool3d(ones(1, 1, 8, 8, 8), (2, 2, 2, 2))",
    "max_pool3d(ones(1, 1, 8, 8, 8), 2, (2, 2))", "max_pool3d(ones(1, 1, 8, 8, 8), 2, 2, (1, 1))",
    "max_pool3d(ones(1, 1, 8, 8, 8), 2, 2, 0, (1, 1))", "avg_pool3d(ones(1, 1, 8, 8, 8), (2, 2))",
    "avg_pool3d(ones(1, 1, 8, 8, 8), 2, (2, 2))", "avg_pool3d(ones(1, 1, 8, 8, 8), 2, 2, (1, 1))",
    "max_pool3d(ones(1, 1, 8, 8, 8), 0)", "max_pool3d(ones(1, 1, 8, 8, 8), 0, 1)",
    "max_pool3d(ones(1, 1, 8, 8, 8), 2, 1, -1)", "max_pool3d(ones(1, 1, 8, 8, 8), 2, 1, 0, 0)",
    "avg_pool3d(ones(1, 1, 8, 8, 8), 0, 1)", "avg_pool3d(ones(1, 1, 8, 8, 8), 2, 0)",
    "avg_pool3d(ones(1, 1, 8, 8, 8), 2, divisor_override=0)", "max_pool3d(ones(1, 0, 8, 8, 8), 2)",
    "avg_pool3d(ones(1, 0, 8, 8, 8), 2)", "max_pool3d(ones(1, 1, 1, 1, 1), 2)",
    "avg_pool3d(ones(1, 1, 3, 1, 3), 2, padding=1)", "max_pool1d(ones(1, 1, 8), 0)",
    "max_pool1d(ones(1, 1, 8), 2, 0)", "max_pool1d(ones(1, 1, 8), 2, 1, -1)",
    "max_pool1d(ones(1, 1, 8), 2, 1, 0, 0)", "max_pool1d(ones(1, 1, 8), (2, 2))",
    "max_pool1d(ones(1, 0, 8), 2)", "max_pool1d(ones(8), 2)", "max_pool1d(ones(1, 1, 1), 2)",
    "max_pool1d(ones(1, 1, 8), 3, 1, 2, 2)", "avg_pool1d(ones(1, 1, 8), 0)",
    "avg_pool1d(ones(1, 1, 8), 2, 1, -1)", "avg_pool1d(ones(1, 1, 8), (2, 2))",
    "avg_pool1d(ones(8), 2)", "avg_pool1d(ones(1, 0, 8), 2)",
    "adaptive_avg_pool1d(ones(1, 1, 8), -1)", "adaptive_avg_pool1d(ones(1, 1, 0), 2)",
    "adaptive_avg_pool1d(ones(1, 1, 8), None)", "adaptive_avg_pool1d(ones(1, 1, 8), (2, 2))",
    "adaptive_avg_pool1d(ones(8), 2)", "adaptive_avg_pool3d(ones(1, 1, 8, 8, 8), (2, -1, 2))",
    "adaptive_avg_pool3d(ones(1, 1, 0, 8, 8), 2)", "adaptive_avg_pool3d(ones(2, 8, 8), 3)",
    "adaptive_max_pool2d(ones(1, 1, 8, 8), (2, 2, 2))",
    "adaptive_max_pool2d(ones(1, 1, 8, 8), (2, -1))", "adaptive_max_pool2d(ones(1, 1, 0, 8), 2)",
    "adaptive_max_pool2d(ones(2, 8), 3)", "adaptive_max_pool3d(ones(1, 1, 8, 8, 8), (2, 2))",
    "adaptive_max_pool1d(ones(1, 1, 8), (2, 2))", "adaptive_max_pool1d(ones(1, 1, 8), -2)",
    "adaptive_max_pool1d(ones(1, 1, 8), None)",
]


@pytest.mark.parametrize("call", POOL_ERRORS)
def test_pooling_errors_are_worded_as_torch(call):
    def run(T):
        with pytest.raises(Exception) as caught:
            eval(f"F.{call}", {"F": T.nn.functional, "ones": T.ones})
        return caught.value
    theirs, ours = run(torch), run(tg)
    assert isinstance(ours, type(theirs))
    assert str(ours) == str(theirs)


@pytest.mark.parametrize("call", [
    "max_pool1d(x, 2)", "max_pool1d(x, 3, 1, 1, 2, True)", "avg_pool1d(x, 3, 2, 1)",
    "adaptive_avg_pool1d(x, 4)", "adaptive_max_pool1d(x, 4)",
])
def test_torch_namespace_1d_pooling(call):
    x = np.random.default_rng(0).standard_normal((2, 3, 9))
    outs = []
    for T in (tg, torch):
        out = eval(f"T.{call}", {"T": T, "x": T.tensor(x)})
        outs.append([_np(o) for o in (out if isinstance(out, tuple) else (out,))])
    for a, b in zip(*outs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_pools_on_empty_batches_match_torch():
    for call in ("max_pool1d(ones(0, 2, 8), 2)", "max_pool2d(ones(0, 2, 4, 4), 2, 1, 1)",
                 "max_pool3d(ones(0, 1, 2, 2, 2), 2)", "avg_pool3d(ones(0, 1, 2, 2, 2), 2)",
                 "adaptive_max_pool2d(ones(1, 1, 4, 4), 0)"):
        shapes = [tuple(eval(f"F.{call}", {"F": T.nn.functional, "ones": T.ones}).shape)
                  for T in (tg, torch)]
        assert shapes[0] == shapes[1], call


# F.pad's errors (F: torch.nn.functional); where torch's own checks misfire (a
# negative amount leaving a 2-d or 3-d pad empty) ours say what was wrong instead
PAD_ERRORS = [
    "pad(ones(5), (1, 1), mode='reflect')", "pad(ones(1, 2, 5), (5, 1), mode='reflect')",
    "pad(ones(1, 2, 5), (-3, -3), mode='reflect')",
    "pad(ones(1, 2, 5), (-3, -2), mode='replicate')",
    "pad(ones(1, 2, 5), (6, 1), mode='circular')", "pad(ones(1, 2, 5), (1, 1, 1))",
    "pad(ones(1, 2, 5), (1, 1, 1, 1, 1, 1, 1, 1))", "pad(ones(1, 2, 5), (1, 1), mode='reflect', "
    "value=1.0)", "pad(ones(1, 2, 5), (1, 1), mode='foo')", "pad(ones(1, 2, 5), (-3, -3))",
    "pad(ones(2, 2, 5), (1, 1, 1, 1, 1, 1), mode='replicate')",
    "pad(ones(1, 2, 0), (1, 1), mode='replicate')", "pad(ones(1, 0, 3), (1, 1), mode='reflect')",
    "pad(ones(1, 2, 3, 4), (1, 1, 3, 2), mode='reflect')",
    "pad(ones(1, 2, 3, 4, 4), (1, 1, 2, 2, 3, 3), mode='reflect')",
    "pad(ones(1, 2, 3, 4, 5), (5, 0, 0, 0, 0, 0), mode='reflect')",
    "pad(ones(1, 2, 3, 4), (-2, -2, -3, -2), mode='replicate')",
    "pad(ones(1, 0, 3, 4, 2), (1, 1, 1, 1, 1, 1), mode='replicate')",
    "pad(ones(1, 2, 3, 4, 2), (1, 1, 1, 1, 1, -5), mode='circular')",
    "pad(ones(2, 2, 5), (1, 1), mode='circular', value=1)", "pad(ones(2, 5), (), mode='reflect')",
    "pad(ones(2, 3, dtype=bool), (1, 1), mode='reflect')",
    "pad(ones(2, 3, dtype=bool), (1, 1), mode='replicate')", "pad(ones(2, 3), (1.0, 1))",
]


@pytest.mark.parametrize("call", PAD_ERRORS)
def test_pad_errors_are_worded_as_torch(call):
    def run(T):
        with pytest.raises(Exception) as caught:
            eval(f"F.{call}", {"F": T.nn.functional, "ones": T.ones, "bool": T.bool})
        return caught.value
    theirs, ours = run(torch), run(tg)
    assert isinstance(ours, type(theirs))
    assert str(ours) == str(theirs)


def test_pad_dtypes_match_torch():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)) * 3
    for dtype in ("int64", "bool", "float16", "float32"):
        for mode in ("constant", "reflect", "replicate", "circular"):
            if dtype == "bool" and mode in ("reflect", "replicate"):
                continue
            kw = {"value": 2.5} if mode == "constant" else {}
            a, b = (T.nn.functional.pad(T.tensor(x).to(getattr(T, dtype)), (1, 2), mode=mode, **kw)
                    for T in (tg, torch))
            assert str(a.dtype) == str(b.dtype)
            np.testing.assert_array_equal(a.numpy(), b.numpy())


PADDED_CONVS = [
    lambda T, mode: T.nn.Conv1d(3, 4, 3, padding=2, stride=2, padding_mode=mode),
    lambda T, mode: T.nn.Conv2d(3, 4, (3, 2), padding="same", dilation=2, padding_mode=mode),
    lambda T, mode: T.nn.Conv2d(2, 4, 3, padding=(1, 2), groups=2, padding_mode=mode),
    lambda T, mode: T.nn.Conv3d(2, 3, 2, padding=1, bias=False, padding_mode=mode),
]
PADDED_INPUTS = [(2, 3, 9), (2, 3, 6, 7), (2, 5, 6), (1, 2, 3, 4, 3)]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("which", range(len(PADDED_CONVS)))
def test_conv_padding_modes_match_torch(which, mode):
    x = np.random.default_rng(which).standard_normal(PADDED_INPUTS[which]).astype(np.float32)
    results = []
    for T in (tg, torch):
        T.manual_seed(0)
        conv = PADDED_CONVS[which](T, mode)
        xt = T.tensor(x, requires_grad=True)
        out = conv(xt)
        (out * out).sum().backward()
        pads = list(conv._reversed_padding_repeated_twice)
        results.append((out, xt.grad, conv.weight.grad, pads))
    (out, gx, gw, pads), (out_t, gx_t, gw_t, pads_t) = results
    assert pads == pads_t
    assert type(out.grad_fn).__name__ == type(out_t.grad_fn).__name__
    for a, b in ((out, out_t), (gx, gx_t), (gw, gw_t)):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_modes_compiled_equal_eager(mode):
    for make, shape in zip(PADDED_CONVS, PADDED_INPUTS, strict=True):
        tg.manual_seed(0)
        conv = make(tg, mode)
        x = tg.randn(*shape)
        step = tg.compile(lambda x, conv=conv: conv(x))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no graph breaks
            outs = [step(x) for _ in range(3)]
        for out in outs:
            np.testing.assert_allclose(_np(out), _np(conv(x)), rtol=1e-5, atol=1e-6)
        assert step.cache_info().hits >= 1


def test_conv_padding_mode_errors():
    with pytest.raises(ValueError, match=r"padding_mode must be one of \{.*'circular'.*\}, but "
                                         r"got padding_mode='wrap'"):
        tg.nn.Conv2d(1, 1, 3, padding_mode="wrap")
    with pytest.raises(RuntimeError, match="Argument #4: Padding size should be less"):
        tg.nn.Conv1d(1, 1, 5, padding=4, padding_mode="reflect")(tg.ones(1, 1, 3))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_module_train_eval_matches_torch(momentum):
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 2 + 1 for _ in range(3)]
    ours, theirs = tg.nn.BatchNorm2d(3, momentum=momentum), torch.nn.BatchNorm2d(3,
                                                                                 momentum=momentum)
    for mode in ("train", "train", "train", "eval"):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        for x in xs:
            np.testing.assert_allclose(_np(ours(tg.tensor(x))), _np(theirs(torch.tensor(x))),
                                       rtol=1e-5, atol=1e-5)
        for k, v in _state(ours).items():
            np.testing.assert_allclose(v, _state(theirs)[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert int(ours.num_batches_tracked) == 9


def test_batch_norm_without_running_stats_uses_batch_stats_in_eval():
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    ours = tg.nn.BatchNorm1d(3, track_running_stats=False).eval()
    theirs = torch.nn.BatchNorm1d(3, track_running_stats=False).eval()
    assert ours.running_mean is None
    np.testing.assert_allclose(_np(ours(tg.tensor(x))), _np(theirs(torch.tensor(x))), rtol=1e-5,
                               atol=1e-6)


def test_cnn_20_sgd_steps_eager_equals_torch():
    tg.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = _cnn(tg), _cnn(torch)
    step_o = _step(tg, ours, tg.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9))
    step_t = _step(torch, theirs, torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9))
    x, y = _data()
    xo, yo, xt, yt = tg.tensor(x), tg.tensor(y), torch.tensor(x), torch.tensor(y)
    losses = []
    for _ in range(20):
        lo, lt = step_o(xo, yo), step_t(xt, yt)
        losses.append(lt.item())
        np.testing.assert_allclose(lo.item(), lt.item(), rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]  # it learns
    theirs_state = _state(theirs)
    for k, v in _state(ours).items():
        np.testing.assert_allclose(v, theirs_state[k], rtol=1e-4, atol=1e-5, err_msg=k)
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(_np(ours(xo)), _np(theirs(xt)), rtol=1e-4, atol=1e-5)


def test_cnn_compiled_step_equals_eager():
    tg.manual_seed(0)
    model_e = _cnn(tg)
    model_c = copy.deepcopy(model_e)
    step_e = _step(tg, model_e, tg.optim.SGD(model_e.parameters(), lr=0.1, momentum=0.9))
    step_c = tg.compile(_step(tg, model_c, tg.optim.SGD(model_c.parameters(), lr=0.1,
                                                        momentum=0.9)))
    x, y = _data()
    x, y = tg.tensor(x), tg.tensor(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no graph breaks
        for _ in range(20):
            lc, le = step_c(x, y), step_e(x, y)
            np.testing.assert_allclose(lc.item(), le.item(), rtol=1e-5, atol=1e-6)
            eager = _state(model_e)
            for k, v in _state(model_c).items():
                np.testing.assert_allclose(v, eager[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert int(model_c[1].num_batches_tracked) == 20
    assert step_c.cache_info().hits >= 15


def test_compiled_eval_forward_equals_eager():
    tg.manual_seed(1)
    model = _cnn(tg).eval()
    x = tg.tensor(_data(4)[0])
    fwd = tg.compile(model)
    fwd(x)
    np.testing.assert_allclose(_np(fwd(x)), _np(model(x)), rtol=1e-5, atol=1e-6)


# ---- perf (issue 14): conv by scatter (NOTE: [Conv by scatter]) --------------------------

def _conv_params(rng, nsp):
    groups = int(rng.choice([1, 2]))
    c, o = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    k, sp = tuple(rng.integers(1, 4, nsp)), tuple(rng.integers(1, 7, nsp))
    params = dict(stride=(1,) * nsp, dilation=tuple(int(d) for d in rng.integers(1, 3, nsp)),
                  lhs_dilation=tuple(int(d) for d in rng.integers(1, 3, nsp)),
                  padding=tuple((int(rng.integers(-1, 4)), int(rng.integers(-1, 4)))
                                for _ in range(nsp)), groups=groups)
    return rng.standard_normal((2, c) + sp), rng.standard_normal((o, c // groups) + k), params


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_conv_scatter_and_per_output_equal_im2col(nsp):
    # the three orders of the same sums, on random shapes, paddings (crops too), dilations,
    # input dilations and groups, in float64 and float32
    from tracegrad import primitives as P
    rng = np.random.default_rng(nsp)
    checked = per_out = 0
    for _ in range(80):
        x, w, params = _conv_params(rng, nsp)
        try:
            P._conv_shape(tg.tensor(x), tg.tensor(w), **params)
        except P.ShapeError:
            continue
        want = P._conv_im2col(x, w, **params)
        got = P._conv_scatter(x, w, params["padding"], params["dilation"],
                              params["lhs_dilation"], params["groups"])
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=str(params))
        got32 = P._conv_scatter(x.astype(np.float32), w.astype(np.float32), params["padding"],
                                params["dilation"], params["lhs_dilation"], params["groups"])
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, want, rtol=1e-4, atol=1e-4)
        if params["groups"] == 1 and all(d == 1 for d in params["lhs_dilation"]):
            # the per-output-position path (any kernel size; chosen for large kernels)
            per = P._conv_per_output(x, w, params["padding"], params["dilation"])
            assert per.shape == want.shape and per.dtype == want.dtype
            np.testing.assert_allclose(per, want, rtol=1e-12, atol=1e-12, err_msg=str(params))
            per_out += 1
        checked += 1
    assert checked > 30 and per_out > 2


def test_conv_grads_take_the_fast_paths_and_match_torch():
    torch = pytest.importorskip("torch")
    from tracegrad import primitives as P
    rng = np.random.default_rng(0)
    xa = rng.standard_normal((4, 6, 12, 12)).astype(np.float32)
    wa = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    # the VJP wrt x of this conv (LeNet's second) is a conv of g padded by 4: scatter
    g = np.zeros((4, 16, 8, 8), np.float32)
    wt = np.zeros((6, 16, 5, 5), np.float32)
    assert P._conv_scatter_cheaper(g, wt, (1, 1), ((4, 4), (4, 4)), (1, 1), (1, 1), 1)
    assert not P._conv_scatter_cheaper(xa, wa, (1, 1), ((0, 0),) * 2, (1, 1), (1, 1), 1)
    # its VJP wrt w convolves x (C, N, 12, 12) with g (O, N, 8, 8): per output position
    assert P._conv_by_output_position(np.zeros((6, 4, 12, 12)), np.zeros((16, 4, 8, 8)),
                                      (1, 1), (1, 1), 1)
    assert not P._conv_by_output_position(xa, wa, (1, 1), (1, 1), 1)
    for stride, padding, groups in [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 0, 2)]:
        w = wa[:, : 6 // groups]
        x, wt_ = tg.tensor(xa, requires_grad=True), tg.tensor(w, requires_grad=True)
        tx, tw = torch.tensor(xa, requires_grad=True), torch.tensor(w, requires_grad=True)
        out = tg.nn.functional.conv2d(x, wt_, stride=stride, padding=padding, groups=groups)
        tout = torch.nn.functional.conv2d(tx, tw, stride=stride, padding=padding, groups=groups)
        gy = rng.standard_normal(tuple(tout.shape)).astype(np.float32)
        out.backward(tg.tensor(gy))
        tout.backward(torch.tensor(gy))
        np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-5,
                                   atol=1e-4)
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(wt_.grad.numpy(), tw.grad.numpy(), rtol=1e-5, atol=1e-4)
