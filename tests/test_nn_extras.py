"""nn extras (issue 11): containers, the Module API, nn.utils, more losses, against torch.

Most tests run one scenario twice, with ``lib`` = torch and ``lib`` = tracegrad, and
compare what it returns: reprs, key lists, error types and messages, numbers.
"""
from __future__ import annotations

import copy
import math
import pickle
import re
import warnings

import numpy as np
import pytest
from test_nn import EXTRA_LOSS_CASES

import tracegrad as tg
import tracegrad.nn.functional as F


def _both(scenario):
    """scenario(lib) under torch and tracegrad; their results must be equal."""
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, ours = scenario(torch), scenario(tg)
    assert ours == theirs
    return ours


def _err(fn) -> str:
    try:
        fn()
    except Exception as e:  # the error's type and text are what is compared
        # a class prints with its module path, which differs: keep only its name
        return re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"<class \1>", f"{type(e).__name__}: {e}")
    return "no error"


def _shapes(ts) -> list:
    return [tuple(t.shape) for t in ts]


# ---- containers ---------------------------------------------------------------

def _model(lib):
    nn = lib.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleDict({"enc": nn.Linear(2, 3), "act": nn.ReLU()})
            self.pl = nn.ParameterList([lib.ones(2, 3), nn.Parameter(lib.zeros(4))])
            self.pd = nn.ParameterDict({"b": lib.ones(1), "a": lib.zeros(2, 2, dtype=lib.float64)})
            self.one = nn.ParameterList([lib.ones(3)])
            self.emptyd = nn.ParameterDict()
            self.seq = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
            self.ml = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3), nn.Tanh()])
            self.register_buffer("rb", lib.zeros(2))
            self.register_buffer("tmp", lib.zeros(2), persistent=False)

    return M()


def test_container_model_repr_keys_and_order_match_torch():
    def scenario(lib):
        m = _model(lib)
        return (repr(m), list(m.state_dict()), [n for n, _ in m.named_parameters()],
                [n for n, _ in m.named_buffers()], [n for n, _ in m.named_modules()],
                _shapes(m.parameters()), [p.dtype is lib.float64 for p in m.parameters()])
    text = _both(scenario)[0]
    assert "(0): Parameter containing: [torch.float32 of size 2x3]" in text


def test_parameter_list_api_matches_torch():
    def scenario(lib):
        pl = lib.nn.ParameterList([lib.ones(2)])
        pl.append(lib.zeros(3))
        pl.extend([lib.ones(1), lib.nn.Parameter(lib.ones(4))])
        pl += [lib.ones(5)]
        pl[0] = lib.full((6,), 2.0)
        pl[-1] = lib.zeros(7)
        out = [len(pl), _shapes(pl), type(pl[0]).__name__, pl[0].requires_grad,
               _shapes(pl[1:3]), _shapes(pl[::-2]), type(pl[1:]).__name__, repr(pl[-2:]),
               [n for n, _ in pl.named_parameters()], list(pl.state_dict()),
               "0" in dir(pl)]
        pl.append("not a tensor")
        out.append(repr(pl).splitlines()[-2])
        for bad in (lambda: pl[9], lambda: pl[-9], lambda: pl.extend(lib.ones(2)),
                    lambda: pl.extend(3), lambda: pl(1)):
            out.append(_err(bad))
        return out
    _both(scenario)


def test_parameter_dict_api_matches_torch():
    def scenario(lib):
        P = lib.nn.ParameterDict
        pd = P({"b": lib.ones(1), "a": lib.zeros(2)})  # a plain dict: sorted keys
        out = [list(pd), list(pd.keys()), _shapes(pd.values()), [k for k, _ in pd.items()]]
        pd["c"] = lib.ones(3)
        pd.update([("z", lib.ones(1)), ("y", lib.ones(2))])  # pairs: their order
        from collections import OrderedDict
        pd.update(OrderedDict([("q", lib.ones(1)), ("p", lib.ones(1))]))
        out += [list(pd), "c" in pd, "nope" in pd, len(pd), tuple(pd.pop("a").shape),
                pd.get("nope", 5), tuple(pd.setdefault("s", lib.ones(4)).shape),
                pd.popitem()[0], list(reversed(pd)), list(pd.copy()),
                list(pd | P({"x": lib.ones(1)})), list(P({"x": lib.ones(1)}).__ror__(pd)),
                repr(pd.fromkeys(["u", "v"])), list(pd.state_dict()),
                [n for n, _ in pd.named_parameters()], repr(pd)]
        pd |= P({"w": lib.ones(1)})
        out.append(list(pd))
        del pd["w"]
        out.append(list(pd))
        for bad in (lambda: pd[3], lambda: pd.update(3), lambda: pd.update([1]),
                    lambda: pd.update([(1, 2, 3)]), lambda: pd(1), lambda: pd["missing"]):
            out.append(_err(bad))
        pd.clear()
        out.append((len(pd), list(pd.parameters())))
        out.append(_err(lambda: pd.update({"a.b": lib.ones(1)})))
        return out
    _both(scenario)


def test_module_dict_api_matches_torch():
    def scenario(lib):
        nn = lib.nn
        md = nn.ModuleDict({"enc": nn.Linear(2, 2), "act": nn.ReLU()})
        md["new"] = nn.Tanh()
        out = [list(md), list(md.keys()), repr(md.pop("act")), len(md), "enc" in md,
               [repr(v) for v in md.values()], [k for k, _ in md.items()]]
        md.update([("z", nn.ReLU())])
        md.update(nn.ModuleDict({"y": nn.Sigmoid()}))
        out += [list(md), repr(md), list(md.state_dict()),
                [n for n, _ in md.named_modules()]]
        del md["z"]
        out.append(list(md))
        for bad in (lambda: md.update(3), lambda: md.update([1]), lambda: md.update([(1, 2, 3)]),
                    lambda: md["nokey"], lambda: md.update({"a.b": nn.ReLU()}),
                    lambda: md.update({"keys": nn.ReLU()}), lambda: md.update({"x": 3})):
            out.append(_err(bad))
        md.clear()
        out.append(len(md))
        return out
    _both(scenario)


def test_parameter_containers_train_with_an_optimizer():
    pl = tg.nn.ParameterList([tg.ones(3)])
    pd = tg.nn.ParameterDict({"w": tg.full((3,), 2.0)})
    opt = tg.optim.SGD(list(pl.parameters()) + list(pd.parameters()), lr=0.5)
    (pl[0] * pd["w"]).sum().backward()
    opt.step()
    assert pl[0].tolist() == [0.0, 0.0, 0.0] and pd["w"].tolist() == [1.5, 1.5, 1.5]


# ---- the Module API -------------------------------------------------------------

def _net(lib):
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            return self.bn(self.fc(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()
            self.shared = self.block.fc  # the same module under two names
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
            self.scale = nn.Parameter(lib.ones(1))
            self.register_buffer("steps", lib.zeros((), dtype=lib.int64))
            self.register_buffer("cache", lib.zeros(2), persistent=False)
            self.register_parameter("unused", None)

        def forward(self, x):
            return self.head(self.block(x)) * self.scale

    return Net()


def test_module_walks_match_torch():
    def scenario(lib):
        m = _net(lib)
        seen = []
        m.apply(lambda mod: seen.append(type(mod).__name__))
        memo = set()
        first = [n for n, _ in m.named_modules(memo=memo, prefix="root")]
        return [
            [n for n, _ in m.named_modules()], first, len(memo),
            [n for n, _ in m.named_modules(remove_duplicate=False)],
            [n for n, _ in m.named_modules(memo=memo)],  # all seen already
            [n for n, _ in m.named_children()], [type(c).__name__ for c in m.children()],
            [type(c).__name__ for c in m.modules()], seen,
            [n for n, _ in m.named_parameters()],
            [n for n, _ in m.named_parameters(prefix="p", recurse=False)],
            [n for n, _ in m.named_parameters(remove_duplicate=False)],
            [n for n, _ in m.named_buffers()], [n for n, _ in m.named_buffers(recurse=False)],
            [n for n, _ in m.named_buffers(prefix="x", remove_duplicate=False)],
            _shapes(m.buffers()), list(m.state_dict()), list(m.state_dict(prefix="model.")),
            [type(v).__name__ for v in m.state_dict(keep_vars=True).values()],
            [v.requires_grad for v in m.state_dict().values()],
            [v.requires_grad for v in m.state_dict(keep_vars=True).values()],
            repr(m), m.train() is m, m.eval() is m, m.block.bn.training,
            m.train(False).training, _err(lambda: m.train("yes")),
            [k in dir(m) for k in ("block", "scale", "steps", "cache", "forward", "unused")],
        ]
    _both(scenario)


def test_get_submodule_parameter_buffer_match_torch():
    def scenario(lib):
        m = _net(lib)
        return [
            type(m.get_submodule("block.fc")).__name__, m.get_submodule("") is m,
            tuple(m.get_parameter("block.fc.weight").shape), tuple(m.get_parameter("scale").shape),
            tuple(m.get_buffer("block.bn.running_mean").shape), m.get_buffer("cache").shape[0],
            _err(lambda: m.get_submodule("block.nope")), _err(lambda: m.get_submodule("scale")),
            _err(lambda: m.get_submodule("head.5")), _err(lambda: m.get_parameter("block.bn")),
            _err(lambda: m.get_parameter("block.nope")), _err(lambda: m.get_parameter("steps")),
            _err(lambda: m.get_buffer("scale")), _err(lambda: m.get_buffer("block.fc.nope")),
            _err(lambda: m.get_buffer("nope.x")),
        ]
    _both(scenario)


def test_registration_errors_match_torch():
    def scenario(lib):
        nn = lib.nn
        m = nn.Linear(2, 2)
        m.register_module("child", nn.ReLU())
        m.add_module("other", None)
        return [
            [n for n, _ in m.named_children()], list(m._modules),
            _err(lambda: m.register_buffer("a.b", lib.ones(1))),
            _err(lambda: m.register_buffer("", lib.ones(1))),
            _err(lambda: m.register_buffer(3, lib.ones(1))),
            _err(lambda: m.register_buffer("weight", lib.ones(1))),
            _err(lambda: m.register_buffer("b", [1.0])),
            _err(lambda: m.register_parameter("a.b", None)),
            _err(lambda: m.register_parameter("", None)),
            _err(lambda: m.register_parameter("child", None)),
            _err(lambda: m.register_parameter("p", lib.ones(1))),
            _err(lambda: m.add_module("a.b", nn.ReLU())),
            _err(lambda: m.add_module("", nn.ReLU())),
            _err(lambda: m.add_module("weight", nn.ReLU())),
            _err(lambda: m.add_module("x", 3)),
            _err(lambda: m.add_module(1, nn.ReLU())),
        ]
    _both(scenario)


def test_zero_grad_requires_grad_and_dtype_conversions_match_torch():
    def scenario(lib):
        m = _net(lib)
        m(lib.ones(4, 3)).sum().backward()
        out = [[p.grad is None for p in m.parameters()]]
        m.zero_grad(set_to_none=False)
        out.append([float(p.grad.abs().sum()) for p in m.parameters()])
        m.zero_grad()
        out.append([p.grad is None for p in m.parameters()])
        out.append([p.requires_grad for p in m.requires_grad_(False).parameters()])
        m.requires_grad_()
        ids = [id(p) for p in m.parameters()]
        out.append([str(t.dtype) for t in m.double().state_dict().values()])
        out.append([str(t.dtype) for t in m.half().state_dict().values()])
        out.append([str(t.dtype) for t in m.float().state_dict().values()])
        out.append([str(t.dtype) for t in m.to(lib.float64).state_dict().values()])
        out.append([str(t.dtype) for t in m.to(dtype=lib.float32).state_dict().values()])
        out.append([str(t.dtype) for t in m.type(lib.float64).state_dict().values()])
        out.append([id(p) for p in m.parameters()] == ids)
        out.append(_err(lambda: m.to(lib.int32)))
        return out
    _both(scenario)


def test_load_state_dict_results_and_messages_match_torch():
    def scenario(lib):
        m = _net(lib)
        sd = m.state_dict()
        out = [repr(m.load_state_dict(sd)), str(m.load_state_dict(sd, strict=False))]
        extra = dict(sd)
        extra["block.fc.extra"] = lib.ones(1)
        extra["nope"] = lib.ones(1)
        del extra["scale"]
        r = m.load_state_dict(extra, strict=False)
        out += [type(r).__name__, r.missing_keys, r.unexpected_keys, repr(r), tuple(r)]
        out.append(_err(lambda: m.load_state_dict(extra)))
        bad = dict(sd)
        bad["block.fc.weight"] = lib.ones(2, 3)
        bad["head.1.bias"] = lib.ones(5)
        out.append(_err(lambda: m.load_state_dict(bad, strict=False)))
        out.append(_err(lambda: m.load_state_dict([1, 2])))
        other = _net(lib)
        other.load_state_dict(sd)
        out.append(all(bool((a == b).all()) for a, b in
                       zip(other.state_dict().values(), sd.values(), strict=True)))
        return out
    _both(scenario)


def test_forward_hooks_match_torch():
    def scenario(lib):
        nn = lib.nn
        log = []

        class Two(nn.Module):
            def forward(self, x, scale=1.0):
                return x * scale

        m = Two()
        h1 = m.register_forward_pre_hook(lambda mod, a, k: (a, {"scale": 2.0}),
                                         with_kwargs=True)
        m.register_forward_pre_hook(lambda mod, a: log.append(("pre", len(a))), prepend=True)
        m.register_forward_hook(lambda mod, a, k, out: log.append(("kw", sorted(k))),
                                with_kwargs=True)
        m.register_forward_hook(lambda mod, a, out: log.append(("first", out.tolist())),
                                prepend=True)
        m.register_forward_hook(lambda mod, a, out: out + 1)
        log.append(m(lib.ones(2)).tolist())
        h1.remove()
        log.append(m(lib.ones(2)).tolist())
        bad = m.register_forward_pre_hook(lambda mod, a, k: 3, with_kwargs=True)
        log.append(_err(lambda: m(lib.ones(1))))
        bad.remove()

        class Boom(nn.Module):
            def forward(self, x):
                raise ValueError("boom")

        b = Boom()
        b.register_forward_hook(lambda mod, a, out: log.append(("always", out)), always_call=True)
        b.register_forward_hook(lambda mod, a, out: log.append("not called"))
        log.append(_err(lambda: b(1)))
        return log
    _both(scenario)


def test_full_backward_hooks_match_torch():
    def scenario(lib):
        lib.manual_seed(0)
        nn = lib.nn
        log = []

        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(3, 2).double()
                with lib.no_grad():
                    self.a.weight.copy_(lib.arange(6.0, dtype=lib.float64).reshape(2, 3))

            def forward(self, x, y, k=1):
                return self.a(x), y * 2

        def rows(gs):
            return [None if g is None else g.tolist() for g in gs]

        m = Two()
        m.register_full_backward_pre_hook(lambda mod, go: log.append(("pre", rows(go))))

        def bw(mod, gi, go):
            log.append(("bw", rows(gi), rows(go)))
            return tuple(None if g is None else g * 3 for g in gi)

        h = m.register_full_backward_hook(bw)
        m.register_full_backward_hook(lambda mod, gi, go: log.append("first"), prepend=True)
        x = lib.ones(2, 3, dtype=lib.float64, requires_grad=True)
        y = lib.ones(1, dtype=lib.float64)
        o1, o2 = m(x, y)
        log.append(o1.grad_fn.name())
        o1.sum().backward()
        log.append(x.grad.tolist())
        h.remove()
        lin = nn.Linear(3, 1).double()
        lin.register_full_backward_hook(lambda mod, gi, go: log.append((gi, rows(go))))
        lin(lib.ones(2, 3, dtype=lib.float64)).sum().backward()
        lin2 = nn.Linear(3, 1)
        lin2.register_full_backward_hook(lambda mod, gi, go: (lib.ones(1),))
        log.append(_err(lambda: lin2(lib.ones(2, 3)).sum().backward()))
        return log
    log = _both(scenario)
    assert log[0] == "BackwardHookFunctionBackward"


# ---- more losses: float32 rows, errors, modules, compiled ---------------------------

def _lib_args(lib, args, grad_args, dtype):
    out = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            t = lib.tensor(a.astype(dtype))
            out.append(t.requires_grad_() if i in grad_args else t)
        elif isinstance(a, np.ndarray):
            out.append(lib.tensor(a))
        else:
            out.append(a)
    return out


def _run_loss(lib, fmod, case, dtype):
    _, name, args, grad_args, kwargs, _ = case
    targs = _lib_args(lib, args, grad_args, dtype)
    tkw = {k: (lib.tensor(v.astype(dtype)) if isinstance(v, np.ndarray) else v)
           for k, v in kwargs.items()}
    out = getattr(fmod, name)(*targs, **tkw)
    seed = np.random.default_rng(1).standard_normal(tuple(out.shape)).astype(dtype)
    (out * lib.tensor(seed)).sum().backward()
    return out, [targs[i].grad.numpy() for i in grad_args]


@pytest.mark.parametrize("case", EXTRA_LOSS_CASES, ids=[c[0] for c in EXTRA_LOSS_CASES])
def test_extra_losses_float32_match_torch(case):
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_out, t_grads = _run_loss(torch, torch.nn.functional, case, np.float32)
        g_out, g_grads = _run_loss(tg, F, case, np.float32)
    assert str(g_out.dtype) == str(t_out.dtype) == "torch.float32"
    np.testing.assert_allclose(g_out.detach().numpy(), t_out.detach().numpy(), rtol=2e-5,
                               atol=2e-6)
    for g, t in zip(g_grads, t_grads, strict=True):
        np.testing.assert_allclose(g, t, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("case", EXTRA_LOSS_CASES, ids=[c[0] for c in EXTRA_LOSS_CASES])
def test_extra_losses_compiled_equal_eager(case):
    _, name, args, grad_args, kwargs, _ = case
    fn = getattr(F, name)
    kw = {k: (tg.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}

    def run(*xs):
        out = fn(*xs, **kw)
        out.sum().backward()
        return out

    compiled = tg.compile(run)
    results = []
    for f in (run, compiled, compiled):  # eager, then the trace, then the compiled call
        xs = _lib_args(tg, args, grad_args, np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = f(*xs)
        results.append((out.detach().numpy(), [xs[i].grad.numpy() for i in grad_args]))
    (e_out, e_grads), _, (c_out, c_grads) = results
    np.testing.assert_allclose(c_out, e_out, rtol=1e-9, atol=1e-12)
    for c, e in zip(c_grads, e_grads, strict=True):
        np.testing.assert_allclose(c, e, rtol=1e-9, atol=1e-12)


def test_extra_loss_errors_match_torch():
    def scenario(lib):
        Fl = lib.nn.functional
        o = lib.ones

        def bad(lo=-1.0):
            return lib.tensor([[0.5, lo], [1.0, 2.0]])

        calls = [
            lambda: Fl.smooth_l1_loss(o(2), o(2), beta=-1),
            lambda: Fl.smooth_l1_loss(o(2), o(2), reduction="avg"),
            lambda: Fl.huber_loss(o(2), o(2), delta=0),
            lambda: Fl.huber_loss(o(2), o(2), weight=o(3)),
            lambda: Fl.kl_div(o(2, 3), o(2, 3), reduction="x"),
            lambda: Fl.poisson_nll_loss(o(2), o(2), reduction="x"),
            lambda: Fl.gaussian_nll_loss(o(2, 2), o(2, 2), o(3, 3)),
            lambda: Fl.gaussian_nll_loss(o(2, 2), o(2, 2), bad()),
            lambda: Fl.gaussian_nll_loss(o(2, 2), o(2, 2), -1.0),
            lambda: Fl.gaussian_nll_loss(o(2, 2), o(2, 2), o(2, 2), reduction="x"),
            lambda: Fl.margin_ranking_loss(o(2, 3), o(2, 3), o(3)),
            lambda: Fl.hinge_embedding_loss(o(2), o(2), reduction="x"),
            lambda: Fl.soft_margin_loss(o(2), o(2), reduction="x"),
            lambda: Fl.multilabel_soft_margin_loss(o(2, 3), o(2, 3), reduction="x"),
            lambda: Fl.cosine_embedding_loss(o(2, 3), o(2, 3), o(2, 2)),
            lambda: Fl.cosine_embedding_loss(o(3), o(2, 3), o(2)),
            lambda: Fl.cosine_embedding_loss(o(2, 3), o(2, 3), lib.tensor(1.0)),
            lambda: Fl.triplet_margin_loss(o(2, 3), o(2, 3), o(3)),
            lambda: Fl.triplet_margin_loss(o(2, 3), o(2, 3), o(2, 3), margin=0),
            lambda: Fl.multi_margin_loss(o(2, 4), lib.tensor([1, 1]), p=3),
            lambda: Fl.multi_margin_loss(o(2, 4), lib.tensor([1, 1, 1])),
            lambda: Fl.multi_margin_loss(o(2, 4, 3), lib.tensor([1, 1])),
            lambda: Fl.multi_margin_loss(o(2, 4), lib.tensor([1, 7])),
            lambda: Fl.multilabel_margin_loss(o(2, 4), lib.tensor([[3, 0, -1]])),
            lambda: Fl.multilabel_margin_loss(o(2, 4), lib.tensor([[3, 0, -1, 5], [0, 0, 0, 0]])),
            lambda: Fl.multilabel_margin_loss(o(2, 3, 4), lib.zeros(2, 3, 4, dtype=lib.int64)),
            lambda: Fl.multilabel_margin_loss(o(2, 2), o(2, 2)),
            lambda: Fl.cosine_similarity(lib.ones(2, 3, dtype=lib.int64),
                                         lib.ones(2, 3, dtype=lib.int64)),
            lambda: lib.nn.TripletMarginLoss(margin=-1.0),
            lambda: lib.nn.MultiMarginLoss(p=3),
            lambda: lib.nn.MultiMarginLoss(weight=o(2, 2)),
            lambda: lib.nn.MSELoss(reduction="x")(o(1), o(1)),
        ]
        return [_err(c) for c in calls]
    _both(scenario)


def test_pairwise_distance_p0_counts_nonzeros_as_torch():
    def scenario(lib):
        x = lib.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, 1.0]])
        y = lib.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
        return lib.nn.functional.pairwise_distance(x, y, p=0, eps=0.0).tolist()
    assert _both(scenario) == [1.0, 2.0]


def test_extra_loss_warnings_match_torch():
    torch = pytest.importorskip("torch")
    for lib in (torch, tg):
        Fl = lib.nn.functional
        with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
            Fl.kl_div(lib.zeros(2, 3), lib.ones(2, 3))
        with pytest.warns(UserWarning, match="different to the input size"):
            Fl.smooth_l1_loss(lib.ones(2), lib.ones(3, 2))
        with pytest.warns(UserWarning, match="please use reduction='sum' instead"):
            assert Fl.soft_margin_loss(lib.zeros(2), lib.ones(2), size_average=False).item() \
                == pytest.approx(2 * math.log(2))


_RNG = np.random.default_rng(7)
_X, _Y, _Z = (_RNG.standard_normal((4, 5)) for _ in range(3))
_LABELS = np.array([1.0, -1.0, -1.0, 1.0])
LOSS_MODULE_CASES = [
    ("SmoothL1Loss", {"beta": 0.5}, [_X, _Y]),
    ("SmoothL1Loss", {"size_average": False}, [_X, _Y]),
    ("HuberLoss", {"delta": 0.3, "reduction": "sum"}, [_X, _Y]),
    ("KLDivLoss", {"reduction": "batchmean", "log_target": True}, [_X, _Y]),
    ("PoissonNLLLoss", {"log_input": False, "full": True}, [np.abs(_X), np.abs(_Y) * 3]),
    ("GaussianNLLLoss", {"full": True}, [_X, _Y, np.abs(_Z)]),
    ("MarginRankingLoss", {"margin": 0.1}, [_X[:, 0], _Y[:, 0], _LABELS]),
    ("HingeEmbeddingLoss", {"margin": 2.0}, [_X, np.sign(_Y)]),
    ("CosineEmbeddingLoss", {"margin": 0.1}, [_X, _Y, _LABELS]),
    ("SoftMarginLoss", {"reduction": "sum"}, [_X, np.sign(_Y)]),
    ("MultiLabelSoftMarginLoss", {"weight": np.abs(_Z[0])}, [_X, (_Y > 0) * 1.0]),
    ("MultiMarginLoss", {"p": 2, "weight": np.abs(_Z[0]), "margin": 0.7},
     [_X, np.array([4, 0, 1, 1])]),
    ("MSELoss", {"size_average": False}, [_X, _Y]),
    ("L1Loss", {"reduce": False}, [_X, _Y]),
    ("BCEWithLogitsLoss", {"size_average": False, "pos_weight": np.abs(_Z[0])},
     [_X, (_Y > 0) * 1.0]),
    ("BCELoss", {"weight": np.abs(_Z[0]), "reduce": False}, [np.abs(np.tanh(_X)) * 0.9 + 0.05,
                                                            (_Y > 0) * 1.0]),
    ("MultiLabelMarginLoss", {"reduction": "none"}, [_X, np.array([[4, 0, -1, 1, 1]] * 4)]),
    ("TripletMarginLoss", {"swap": True, "p": 1.0}, [_X, _Y, _Z]),
    ("CosineSimilarity", {"dim": 0}, [_X, _Y]),
    ("PairwiseDistance", {"p": 1.0, "keepdim": True}, [_X, _Y]),
]


@pytest.mark.parametrize("name, kwargs, inputs", LOSS_MODULE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(LOSS_MODULE_CASES)])
def test_extra_loss_modules_match_torch(name, kwargs, inputs):
    torch = pytest.importorskip("torch")
    results = []
    for lib in (torch, tg):
        kw = {k: (lib.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = getattr(lib.nn, name)(**kw)
        xs = [lib.tensor(a) for a in inputs]
        xs[0].requires_grad_()
        out = module(*xs)
        out.sum().backward()
        results.append((repr(module), module.reduction if hasattr(module, "reduction") else None,
                        list(module.state_dict()), out.detach().numpy(), xs[0].grad.numpy()))
    (t_repr, t_red, t_keys, t_out, t_grad), (g_repr, g_red, g_keys, g_out, g_grad) = results
    assert (g_repr, g_red, g_keys) == (t_repr, t_red, t_keys)
    np.testing.assert_allclose(g_out, t_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_grad, t_grad, rtol=1e-9, atol=1e-12)


# ---- nn.utils: clipping and flattening -------------------------------------------

def _grads_model(lib, scale=1.0, dtype=None):
    """Three parameters with fixed grads (one without a grad)."""
    dtype = dtype or lib.float32
    rng = np.random.default_rng(3)
    ps = []
    for shape in ((3, 4), (4,), (2,)):
        ps.append(lib.nn.Parameter(lib.tensor(rng.standard_normal(shape), dtype=dtype)))
    for p in ps[:2]:
        p.grad = lib.tensor(rng.standard_normal(tuple(p.shape)) * scale, dtype=dtype)
    return ps


@pytest.mark.parametrize("norm_type", [2.0, 1, float("inf"), "inf", 3.5, 0, -math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, dtype):
    def scenario(lib):
        ps = _grads_model(lib, dtype=getattr(lib, dtype))
        total = lib.nn.utils.clip_grad_norm_(ps, max_norm, norm_type=norm_type,
                                             foreach=norm_type == 2.0)
        return ([np.round(p.grad.numpy(), 6).tolist() for p in ps[:2]], ps[2].grad is None,
                round(total.item(), 5), str(total.dtype), tuple(total.shape),
                total.requires_grad)
    _both(scenario)


def test_clip_grad_norm_edge_cases_match_torch():
    def scenario(lib):
        u = lib.nn.utils
        out = []
        p = lib.nn.Parameter(lib.zeros(2))
        p.grad = lib.tensor([3.0, 4.0])
        out.append((u.clip_grad_norm_(p, 1.0).item(), np.round(p.grad.numpy(), 6).tolist()))
        out.append(repr(u.clip_grad_norm_([], 1.0)))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            out.append(repr(u.clip_grad_norm_((q for q in []), 1.0)))
            out.append([str(x.message) for x in w])
        nan = lib.nn.Parameter(lib.zeros(2))
        nan.grad = lib.tensor([float("nan"), 1.0])
        out.append(_err(lambda: u.clip_grad_norm_([nan], 1.0, error_if_nonfinite=True)))
        out.append(math.isnan(u.clip_grad_norm_([nan], 1.0).item()))
        out.append(math.isnan(nan.grad[1].item()))
        ps = _grads_model(lib)
        total = u.get_total_norm([p.grad for p in ps[:2]], 2.0)
        u.clip_grads_with_norm_(ps, 0.1, total)
        out.append((round(total.item(), 5), round(u.get_total_norm([p.grad for p in ps[:2]])
                                                 .item(), 5)))
        out.append(repr(u.get_total_norm([])))
        ps = _grads_model(lib, scale=3.0)
        out.append(u.clip_grad_value_(ps, 0.5, foreach=False))
        out.append([np.round(p.grad.numpy(), 6).tolist() for p in ps[:2]])
        q = lib.nn.Parameter(lib.ones(3))
        q.grad = lib.tensor([-2.0, 0.1, 2.0])
        u.clip_grad_value_(q, 1)
        out.append(q.grad.tolist())
        return out
    _both(scenario)


def test_parameters_to_vector_and_back_match_torch():
    def scenario(lib):
        u = lib.nn.utils
        m = lib.nn.Linear(3, 2)
        vec = u.parameters_to_vector(m.parameters())
        out = [tuple(vec.shape), vec.grad_fn.name()]
        ids = [id(p) for p in m.parameters()]
        u.vector_to_parameters(lib.arange(8.0), m.parameters())
        out += [m.weight.tolist(), m.bias.tolist(), [id(p) for p in m.parameters()] == ids,
                m.weight.requires_grad]
        out.append(_err(lambda: u.vector_to_parameters([1.0], m.parameters())))
        return out
    _both(scenario)


def _clip_step(model, opt, how):
    def step(x, y):
        opt.zero_grad()
        loss = tg.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if how == "norm":
            norm = tg.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        elif how == "inf":
            norm = tg.nn.utils.clip_grad_norm_(model.parameters(), 0.05, norm_type="inf")
        else:
            tg.nn.utils.clip_grad_value_(model.parameters(), 0.02)
            norm = loss * 0
        opt.step()
        return loss, norm
    return step


@pytest.mark.parametrize("how", ["norm", "inf", "value"])
def test_clipping_in_a_compiled_training_step_equals_eager(how):
    tg.manual_seed(1)
    model_c = tg.nn.Sequential(tg.nn.Linear(8, 16), tg.nn.ReLU(), tg.nn.Linear(16, 3))
    model_e = copy.deepcopy(model_c)
    opt_c = tg.optim.SGD(model_c.parameters(), lr=0.5, momentum=0.9)
    opt_e = tg.optim.SGD(model_e.parameters(), lr=0.5, momentum=0.9)
    x, y = tg.randn(32, 8) * 5, tg.randint(0, 3, (32,))
    step_c, step_e = tg.compile(_clip_step(model_c, opt_c, how)), _clip_step(model_e, opt_e, how)
    clipped = 0
    for _ in range(6):
        (lc, nc), (le, ne) = step_c(x, y), step_e(x, y)
        np.testing.assert_allclose(lc.item(), le.item(), rtol=1e-5)
        np.testing.assert_allclose(nc.item(), ne.item(), rtol=1e-5)
        clipped += ne.item() > (0.5 if how == "norm" else 0.05)
        for pc, pe in zip(model_c.parameters(), model_e.parameters(), strict=True):
            np.testing.assert_allclose(pc.grad.numpy(), pe.grad.numpy(), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(pc.detach().numpy(), pe.detach().numpy(), rtol=1e-4,
                                       atol=1e-6)
    if how != "value":
        assert clipped >= 3  # the clip was active on most steps, not a no-op
    else:
        assert max(p.grad.abs().max().item() for p in model_e.parameters()) <= 0.02
    assert step_c.cache_info().hits >= 4


def test_sequential_and_module_list_operators_match_torch():
    def scenario(lib):
        nn = lib.nn
        a, b = nn.Sequential(nn.ReLU(), nn.Tanh()), nn.Sequential(nn.Sigmoid())
        out = [repr(a + b), repr(2 * b), repr(b * 3), len(a)]
        c = nn.Sequential(nn.ReLU())
        c += a
        c *= 2
        out += [repr(c), repr(c.pop(1)), repr(c), repr(c.pop(-1))]
        for bad in (lambda: a + nn.ReLU(), lambda: a * 0, lambda: a * 1.5):
            out.append(_err(bad))
        from collections import OrderedDict
        named = nn.Sequential(OrderedDict([("a", nn.ReLU()), ("b", nn.Tanh()), ("c", nn.GELU())]))
        del named[0]
        out += [list(named._modules), repr(named[1:])]
        ml = nn.ModuleList([nn.ReLU(), nn.Tanh()])
        both = ml + [nn.Sigmoid()]
        out += [repr(both), type(both).__name__, repr(ml.pop(0)), repr(ml), len(both)]
        net = _net(lib)
        net.set_submodule("head.0", nn.GELU())
        net.set_submodule("extra", nn.Tanh())
        out += [repr(net.head), [n for n, _ in net.named_children()]]
        for bad in (lambda: net.set_submodule("", nn.ReLU()),
                    lambda: net.set_submodule("head.0", 3),
                    lambda: net.set_submodule("head.nope", nn.ReLU(), strict=True),
                    lambda: net.set_submodule("scale", nn.ReLU()),
                    lambda: net.set_submodule("nope.x", nn.ReLU())):
            out.append(_err(bad))
        return out
    _both(scenario)


@pytest.mark.parametrize("dim", [0, 1, 3, -2, None, -1])
def test_weight_norm_matches_torch(dim):
    def scenario(lib):
        lib.manual_seed(0)
        conv = lib.nn.Conv2d(2, 3, 3).double()
        with lib.no_grad():
            conv.weight.copy_(lib.tensor(np.random.default_rng(0).standard_normal((3, 2, 3, 3))))
        lib.nn.utils.weight_norm(conv, dim=dim)
        out = [list(conv.state_dict()), [n for n, _ in conv.named_parameters()],
               tuple(conv.weight_g.shape), np.round(conv.weight_g.detach().numpy(), 10).tolist(),
               type(conv.weight).__name__, repr(conv)]
        x = lib.tensor(np.random.default_rng(1).standard_normal((1, 2, 4, 4)))
        y = conv(x)
        out.append(conv.weight.grad_fn.name())
        (y * y).sum().backward()
        out += [np.round(y.detach().numpy(), 10).tolist(),
                np.round(conv.weight_g.grad.numpy(), 8).tolist(),
                np.round(conv.weight_v.grad.numpy(), 8).tolist()]
        out.append(_err(lambda: lib.nn.utils.weight_norm(conv, dim=dim)))
        lib.nn.utils.remove_weight_norm(conv)
        out += [list(conv.state_dict()), type(conv.weight).__name__,
                np.round(conv.weight.detach().numpy(), 10).tolist(), len(conv._forward_pre_hooks)]
        out.append(_err(lambda: lib.nn.utils.remove_weight_norm(conv)))
        return out
    _both(scenario)


def test_weight_norm_in_a_compiled_training_step_equals_eager():
    tg.manual_seed(0)
    base = tg.nn.Linear(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        models = [tg.nn.utils.weight_norm(copy.deepcopy(base)) for _ in range(2)]
    opts = [tg.optim.SGD(m.parameters(), lr=0.1) for m in models]
    x = tg.randn(8, 4)

    def make(m, o):
        def step(x):
            o.zero_grad()
            loss = m(x).pow(2).sum()
            loss.backward()
            o.step()
            return loss
        return step

    step_c, step_e = tg.compile(make(models[0], opts[0])), make(models[1], opts[1])
    for _ in range(4):
        np.testing.assert_allclose(step_c(x).item(), step_e(x).item(), rtol=1e-5)
    for name in ("weight_g", "weight_v", "bias"):
        np.testing.assert_allclose(getattr(models[0], name).detach().numpy(),
                                   getattr(models[1], name).detach().numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_normalize_matches_torch():
    def scenario(lib):
        x = lib.tensor(np.random.default_rng(2).standard_normal((3, 4)), requires_grad=True)
        y = lib.nn.functional.normalize(x, p=3.0, dim=0)
        z = lib.nn.functional.normalize(x, dim=1, eps=10.0)
        (y.sum() + (z * z).sum()).backward()
        out_buf = lib.zeros(3, 4, dtype=lib.float64)
        r = lib.nn.functional.normalize(x.detach(), out=out_buf)
        return [np.round(y.detach().numpy(), 10).tolist(), y.grad_fn.name(),
                np.round(z.detach().numpy(), 10).tolist(), np.round(x.grad.numpy(), 9).tolist(),
                r is out_buf, np.round(out_buf.numpy(), 10).tolist(),
                lib.nn.functional.normalize(lib.zeros(2, 2)).tolist()]
    _both(scenario)


@pytest.mark.parametrize("dim, n_iter", [(None, 1), (1, 3)])
def test_spectral_norm_matches_torch(dim, n_iter):
    def scenario(lib):
        lib.manual_seed(0)
        conv = lib.nn.Conv2d(2, 3, 3).double()
        lib.nn.utils.spectral_norm(conv, n_power_iterations=n_iter, dim=dim)
        out = [list(conv.state_dict()), [n for n, _ in conv.named_parameters()],
               [n for n, _ in conv.named_buffers()], repr(conv),
               np.round(conv.weight_u.numpy(), 10).tolist()]
        x = lib.tensor(np.random.default_rng(1).standard_normal((1, 2, 4, 4)))
        for _ in range(2):
            y = conv(x)
            (y * y).sum().backward()
        out += [conv.weight.grad_fn.name(), np.round(y.detach().numpy(), 8).tolist(),
                np.round(conv.weight_orig.grad.numpy(), 7).tolist(),
                np.round(conv.weight_u.numpy(), 8).tolist(),
                np.round(conv.weight_v.numpy(), 8).tolist()]
        conv.eval()
        u_before = conv.weight_u.clone()
        out.append(np.round(conv(x).detach().numpy(), 8).tolist())
        out.append(bool((conv.weight_u == u_before).all()))  # eval: no power iteration
        out.append(_err(lambda: lib.nn.utils.spectral_norm(conv)))
        lib.nn.utils.remove_spectral_norm(conv)
        out += [list(conv.state_dict()), type(conv.weight).__name__,
                _err(lambda: lib.nn.utils.remove_spectral_norm(conv)),
                _err(lambda: lib.nn.utils.spectral_norm(lib.nn.Linear(2, 2),
                                                        n_power_iterations=0))]
        return out
    _both(scenario)


def test_class_losses_take_torch_positional_and_legacy_arguments():
    def scenario(lib):
        w = lib.tensor([1.0, 2.0, 0.5], dtype=lib.float64)
        x = lib.tensor(np.random.default_rng(4).standard_normal((4, 3)))
        y = lib.tensor([0, 2, 1, 2])
        out = []
        for make in (lambda: lib.nn.CrossEntropyLoss(w, None, 2),
                     lambda: lib.nn.CrossEntropyLoss(w, size_average=False, label_smoothing=0.1),
                     lambda: lib.nn.NLLLoss(None, None, 1, False),
                     lambda: lib.nn.NLLLoss(w, reduction="sum")):
            loss = make()
            out.append((loss.reduction, round(loss(x.log_softmax(1), y).sum().item(), 10)))
        return out
    _both(scenario)


def test_module_hooks_in_a_compiled_step_equal_eager():
    tg.manual_seed(0)
    model_c = tg.nn.Sequential(tg.nn.Linear(4, 3), tg.nn.Tanh(), tg.nn.Linear(3, 2))
    model_e = copy.deepcopy(model_c)
    for m in (model_c, model_e):
        m[0].register_forward_hook(lambda mod, args, out: out * 2)
        m[2].register_full_backward_hook(lambda mod, gi, go: (gi[0] * 0.5,))
    x = tg.randn(8, 4)

    def make(m):
        def step(x):
            m.zero_grad()
            loss = m(x).pow(2).sum()
            loss.backward()
            return loss
        return step

    step_c, step_e = tg.compile(make(model_c)), make(model_e)
    for _ in range(3):
        np.testing.assert_allclose(step_c(x).item(), step_e(x).item(), rtol=1e-6)
    for pc, pe in zip(model_c.parameters(), model_e.parameters(), strict=True):
        np.testing.assert_allclose(pc.grad.numpy(), pe.grad.numpy(), rtol=1e-5, atol=1e-6)
    plain = copy.deepcopy(model_e)
    plain[2]._backward_hooks.clear()
    make(plain)(x)
    # the backward hook halved the gradient reaching the first layer
    np.testing.assert_allclose(model_e[0].weight.grad.numpy(), plain[0].weight.grad.numpy() / 2,
                               rtol=1e-5, atol=1e-7)


def test_a_training_script_runs_unchanged_and_prints_torch_numbers():
    def script(torch):  # written against torch's API; run with tracegrad as torch too
        nn, F = torch.nn, torch.nn.functional
        torch.manual_seed(0)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = nn.ModuleDict({"inp": nn.Linear(6, 8), "out": nn.Linear(8, 3)})
                self.extra = nn.ParameterDict({"scale": nn.Parameter(torch.ones(3))})
                self.gates = nn.ParameterList([torch.zeros(8)])

            def forward(self, x):
                h = torch.tanh(self.layers["inp"](x)) * torch.sigmoid(self.gates[0])
                return self.layers["out"](h) * self.extra["scale"]

        net = Net()
        net.apply(lambda m: nn.init.zeros_(m.bias) if isinstance(m, nn.Linear) else None)
        acts = []
        net.layers["inp"].register_forward_hook(lambda m, a, out: acts.append(out.abs().mean()))
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        x, y = torch.randn(16, 6), torch.randn(16, 3)
        target = torch.softmax(torch.randn(16, 3), dim=1)
        losses, norms = [], []
        for _ in range(5):
            opt.zero_grad()
            out = net(x)
            loss = nn.HuberLoss(delta=0.5)(out, y) + F.kl_div(
                F.log_softmax(out, dim=1), target, reduction="batchmean")
            loss = loss + 0.1 * F.cosine_embedding_loss(out, y, torch.ones(16))
            loss.backward()
            norms.append(nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.05).item())
            opt.step()
            losses.append(loss.item())
        state = net.state_dict()
        fresh = Net()
        result = fresh.load_state_dict(state)
        same = torch.allclose(fresh(x), net(x))
        return losses, norms, [a.item() for a in acts[:5]], list(state), repr(result), same

    torch = pytest.importorskip("torch")
    theirs, ours = script(torch), script(tg)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-5)
    assert ours[3:] == theirs[3:]
    assert min(theirs[1]) > 0.05  # the clip was active on every step


class _ContainerNet(tg.nn.Module):
    def __init__(self):
        super().__init__()
        nn = tg.nn
        self.layers = nn.ModuleDict({"inp": nn.Linear(6, 8), "out": nn.Linear(8, 3)})
        self.extra = nn.ParameterDict({"scale": nn.Parameter(tg.ones(3))})
        self.gates = nn.ParameterList([tg.zeros(8)])

    def forward(self, x):
        h = tg.tanh(self.layers["inp"](x)) * tg.sigmoid(self.gates[0])
        return self.layers["out"](h) * self.extra["scale"]


def test_containers_losses_and_clipping_in_a_compiled_step_equal_eager():
    nn, Fn = tg.nn, tg.nn.functional
    tg.manual_seed(0)
    net_c = _ContainerNet()
    net_e = copy.deepcopy(net_c)
    restored = pickle.loads(pickle.dumps(net_c))
    assert repr(restored) == repr(net_c) and list(restored.state_dict()) == list(net_c.state_dict())
    opt_c, opt_e = (tg.optim.Adam(n.parameters(), lr=0.05) for n in (net_c, net_e))
    x, y = tg.randn(16, 6), tg.randn(16, 3)

    def make(net, opt):
        def step(x, y):
            opt.zero_grad()
            out = net(x)
            loss = Fn.smooth_l1_loss(out, y, beta=0.5) + 0.1 * Fn.triplet_margin_loss(out, y, -y)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(net.parameters(), 0.05)
            opt.step()
            return loss, norm
        return step

    step_c, step_e = tg.compile(make(net_c, opt_c)), make(net_e, opt_e)
    for _ in range(5):
        (lc, nc), (le, ne) = step_c(x, y), step_e(x, y)
        np.testing.assert_allclose([lc.item(), nc.item()], [le.item(), ne.item()], rtol=1e-5)
    for pc, pe in zip(net_c.parameters(), net_e.parameters(), strict=True):
        np.testing.assert_allclose(pc.detach().numpy(), pe.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert step_c.cache_info().hits >= 3
