"""Adversarial programs for the compile contract (review round 2).

A compiled call leaves exactly what an eager call leaves, whatever the user's Python
does between calls; where that cannot be guaranteed it runs eagerly with a warning,
never with a stale or silently wrong value. Each row here is a program not already in
tests/test_compile_state.py, run by that file's harness (same seeds, compiled vs eager,
every step's results and the final parameters, grads, buffers and optimizer state).

A row that fails today carries ``xfail=`` naming what differs (strict: a fix flips it).
``TRACEGRAD_STATE_UNMARKED=1`` runs the table without the marks.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import functools
import io
import itertools
import os
import sys
import tempfile
import types

import numpy as np
import pytest
from test_compile_state import NS, Row, _compare, _eager, _globals, _init, _mlp, _run, _x

import tracegrad as tg

ROWS: list[Row] = []


def row(name, **kw):
    def deco(build):
        ROWS.append(Row(name, build, **kw))
        return build
    return deco


def _user_module(name, **attrs):
    """A user's Python module (``import config``), as if from a file of their project."""
    mod = types.ModuleType(name)
    mod.__file__ = os.path.join(tempfile.gettempdir(), "tg_attack_user", name + ".py")
    vars(mod).update(attrs)
    return mod


def _at(k, change):
    """step(s, i): ``change(s)`` before call ``k``, then ``s._f(s.x)``."""
    def step(s, i):
        if i == k:
            change(s)
        return s._f(s.x)
    return step


# names the 'global' programs read; each run rebinds them in its own globals dict
L = BIG = ARR = CFGMOD = SCALE = HELPER = FNS = MAXN = MODEL = OPT = W = None


# ---- containers and arrays past the walk's limits -------------------------------------

def _f_big_list(x):
    return (x * BIG[299]).sum()


@row("tensor in a global list of 300 items replaced", step=_at(2, lambda s: s._g["BIG"]
     .__setitem__(299, s.L.full((3,), 5.0))),
     xfail="compiled 3.0 vs eager 15.0: items of a list over 256 are not guarded")
def _b(L, comp):
    g = _globals(_f_big_list, L=L, BIG=[L.ones(3) for _ in range(300)])
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_big_list"]))


def _f_big_dict(x):
    return (x / BIG["temp"]).sum()


def _big_cfg():
    d = {f"k{i}": i for i in range(300)}
    d["temp"] = 2.0
    return d


@row("float in a global dict of 301 keys changed",
     step=_at(2, lambda s: s._g["BIG"].__setitem__("temp", 4.0)),
     xfail="compiled 1.5 vs eager 0.75: values of a dict over 256 keys are not guarded")
def _b(L, comp):
    g = _globals(_f_big_dict, L=L, BIG=_big_cfg())
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_big_dict"]))


def _f_big_array(x):
    return (x * L.tensor(ARR[:3])).sum()


def _f_big_from_numpy(x):
    return (x * L.from_numpy(ARR)[:3]).sum()


def _arr_edit(s):
    s._g["ARR"][:3] = 5.0


@row("global NumPy array of 5000 elements edited in place, used via tg.tensor",
     step=_at(2, _arr_edit),
     xfail="compiled 3.0 vs eager 15.0: an array over 4096 elements is guarded by identity "
           "only, tensor(ARR[:3]) is baked in")
def _b(L, comp):
    g = _globals(_f_big_array, L=L, ARR=np.ones(5000, np.float32))
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_big_array"]))


@row("global NumPy array of 5000 elements edited in place, used via from_numpy",
     step=_at(2, _arr_edit))
def _b(L, comp):
    g = _globals(_f_big_from_numpy, L=L, ARR=np.ones(5000, np.float32))
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_big_from_numpy"]))


@row("global NumPy array of 100 elements edited in place, used via from_numpy",
     step=_at(2, _arr_edit))
def _b(L, comp):
    g = _globals(_f_big_from_numpy, L=L, ARR=np.ones(100, np.float32))
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_big_from_numpy"]))


def _deep_build(L, comp):
    cfg = {"a": {"b": {"c": {"d": {"e": {"f": 2.0}}}}}}
    return NS(L=L, cfg=cfg, x=L.ones(3),
              _f=comp(lambda x: (x / cfg["a"]["b"]["c"]["d"]["e"]["f"]).sum()))


row("float 6 dicts deep in a closure's config changed",
    step=_at(2, lambda s: s.cfg["a"]["b"]["c"]["d"]["e"].__setitem__("f", 4.0))
    )(_deep_build)


# ---- classes, properties, odd objects ------------------------------------------------

class _ClsCfg:
    temp = 2.0


def _cls_attr_build(L, comp):
    cfg = _ClsCfg()
    return NS(L=L, x=L.ones(3), _cfg=cfg, _f=comp(lambda x: (x / cfg.temp).sum()))


def _cls_attr_change(s):
    type(s._cfg).temp = 4.0


def _cls_attr_fresh(make):
    def build(L, comp):
        _ClsCfg.temp = 2.0
        return make(L, comp)
    return build


row("class attribute (not instance) changed", step=_at(2, _cls_attr_change))(
    _cls_attr_fresh(_cls_attr_build))


def _module_cls_attr_build(L, comp):
    class Net(L.nn.Module):
        scale = 2.0

        def __init__(self):
            super().__init__()
            self.fc = L.nn.Linear(3, 1)

        def forward(self, x):
            return self.fc(x) * self.scale
    m = _init(L, Net())
    return NS(L=L, model=m, x=_x(L, 0, 2, 3), _f=comp(m))


def _net_cls_scale(s):
    type(s.model).scale = 5.0


row("Module class attribute changed (Net.scale = 5.0)", step=_at(2, _net_cls_scale))(
    _module_cls_attr_build)


def _prop_build(L, comp):
    state = {"t": 2.0}

    class Cfg:
        @property
        def temp(self):
            return state["t"]
    cfg = Cfg()
    return NS(L=L, x=L.ones(3), _state=state, _f=comp(lambda x: (x / cfg.temp).sum()))


row("property of a config object reading a closure dict",
    step=_at(2, lambda s: s._state.__setitem__("t", 4.0)))(_prop_build)


def _prop_self_build(L, comp):
    class Cfg:
        def __init__(self):
            self._t = 2.0

        @property
        def temp(self):
            return self._t
    cfg = Cfg()
    return NS(L=L, x=L.ones(3), cfg=cfg, _f=comp(lambda x: (x / cfg.temp).sum()))


row("property of a config object reading self._t",
    step=_at(2, lambda s: setattr(s.cfg, "_t", 4.0)))(_prop_self_build)


def _getattr_build(L, comp):
    class Cfg:
        def __init__(self):
            self._d = {"temp": 2.0}

        def __getattr__(self, k):
            return self.__dict__["_d"][k]
    cfg = Cfg()
    return NS(L=L, x=L.ones(3), _cfg=cfg, _f=comp(lambda x: (x / cfg.temp).sum()))


row("__getattr__-based config value changed",
    step=_at(2, lambda s: s._cfg._d.__setitem__("temp", 4.0)))(_getattr_build)


def _slots_build(L, comp):
    class Cfg:
        __slots__ = ("temp",)

        def __init__(self):
            self.temp = 2.0
    cfg = Cfg()
    return NS(L=L, x=L.ones(3), _cfg=cfg, _f=comp(lambda x: (x / cfg.temp).sum()))


row("__slots__ config attribute changed", step=_at(2, lambda s: setattr(s._cfg, "temp", 4.0))
    )(_slots_build)


def _chainmap_build(L, comp):
    cfg = collections.ChainMap({}, {"temp": 2.0})
    return NS(L=L, x=L.ones(3), _cfg=cfg, _f=comp(lambda x: (x / cfg["temp"]).sum()))


row("collections.ChainMap config value changed",
    step=_at(2, lambda s: s._cfg.__setitem__("temp", 4.0))
    )(_chainmap_build)


@dataclasses.dataclass(frozen=True)
class _Frozen:
    temp: float = 2.0


def _frozen_build(L, comp):
    cfg = _Frozen()

    def f(x):
        return (x / cfg.temp).sum()

    def replace():
        nonlocal cfg
        cfg = dataclasses.replace(cfg, temp=4.0)
    return NS(L=L, x=L.ones(3), _f=comp(f), _replace=replace)


row("frozen dataclass config replaced (dataclasses.replace)",
    step=_at(2, lambda s: s._replace()))(_frozen_build)


def _f_user_module(x):
    return (x / CFGMOD.temp).sum()


def _f_user_module_getattr(x):
    return (x / getattr(CFGMOD, "te" + "mp")).sum()


def _f_import_inside(x):
    import tg_attack_cfg
    return (x / tg_attack_cfg.temp).sum()


@row("`import config`: config.temp changed",
     step=_at(2, lambda s: setattr(s._g["CFGMOD"], "temp", 4.0)))
def _b(L, comp):
    g = _globals(_f_user_module, L=L, CFGMOD=_user_module("tg_attack_cfg_a", temp=2.0))
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_user_module"]))


@row("`import config`: getattr(config, name) changed",
     step=_at(2, lambda s: setattr(s._g["CFGMOD"], "temp", 4.0)),
     xfail="compiled 1.5 vs eager 0.75: a user module's attribute read by getattr() with a "
           "computed name is not guarded (only names in co_names are)")
def _b(L, comp):
    g = _globals(_f_user_module_getattr, L=L, CFGMOD=_user_module("tg_attack_cfg_b", temp=2.0))
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_user_module_getattr"]))


def _import_inside_build(L, comp):
    sys.modules["tg_attack_cfg"] = _user_module("tg_attack_cfg", temp=2.0)
    return NS(L=L, x=L.ones(3), _f=comp(_f_import_inside))


row("`import config` inside the function: config.temp changed",
    step=_at(2, lambda s: setattr(sys.modules["tg_attack_cfg"], "temp", 4.0)),
    xfail="compiled 1.5 vs eager 0.75: a module imported inside the function body "
          "(IMPORT_NAME, not a global) is not walked")(_import_inside_build)


# ---- functions: partial, bound methods, defaults, nested closures --------------------

def _scaled(x, cfg):
    return (x * cfg["s"]).sum()


def _f_partial_global(x):
    return HELPER(x)


@row("global functools.partial with a keyword dict config",
     step=_at(2, lambda s: s._cfg.__setitem__("s", 5.0)))
def _b(L, comp):
    cfg = {"s": 1.0}
    g = _globals(_f_partial_global, L=L, HELPER=functools.partial(_scaled, cfg=cfg))
    return NS(L=L, _g=g, _cfg=cfg, x=L.ones(3), _f=comp(g["_f_partial_global"]))


@row("compiled functools.partial with a keyword dict config",
     step=_at(2, lambda s: s._cfg.__setitem__("s", 5.0)))
def _b(L, comp):
    cfg = {"s": 1.0}
    return NS(L=L, _cfg=cfg, x=L.ones(3), _f=comp(functools.partial(_scaled, cfg=cfg)))


def _f_bound_in_dict(x):
    return FNS["act"](x).sum()


class _Act:
    def __init__(self):
        self.k = 1.0

    def act(self, x):
        return x * self.k


@row("bound method stored in a dict, its object's attribute changed",
     step=_at(2, lambda s: setattr(s._g["FNS"]["act"].__self__, "k", 5.0)))
def _b(L, comp):
    g = _globals(_f_bound_in_dict, L=L, FNS={"act": _Act().act})
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_bound_in_dict"]))


def _lambda_default_build(L, comp):
    cfg = {"s": 1.0}
    f = lambda x, c=cfg: (x * c["s"]).sum()  # noqa: E731
    return NS(L=L, _cfg=cfg, x=L.ones(3), _f=comp(f))


row("lambda default argument (a dict) changed",
    step=_at(2, lambda s: s._cfg.__setitem__("s", 5.0)))(_lambda_default_build)


def _kwdefault_build(L, comp):
    cfg = {"s": 1.0}

    def f(x, *, c=cfg):
        return (x * c["s"]).sum()
    return NS(L=L, _cfg=cfg, x=L.ones(3), _f=comp(f))


row("keyword-only default (a dict) changed",
    step=_at(2, lambda s: s._cfg.__setitem__("s", 5.0)))(_kwdefault_build)


def _kwdefault_rebound_build(L, comp):
    def f(x, *, s=1.0):
        return (x * s).sum()
    return NS(L=L, x=L.ones(3), _fn=f, _f=comp(f))


row("keyword-only default float rebound (f.__kwdefaults__['s'] = 5.0)",
    step=_at(2, lambda s: s._fn.__kwdefaults__.__setitem__("s", 5.0)),
    xfail="compiled 3.0 vs eager 15.0: __kwdefaults__ are not guarded")(
    _kwdefault_rebound_build)


def _default_rebound_build(L, comp):
    def f(x, s=1.0):
        return (x * s).sum()
    return NS(L=L, x=L.ones(3), _fn=f, _f=comp(f))


def _set_defaults(s):
    s._fn.__defaults__ = (5.0,)


row("positional default float rebound (f.__defaults__ = (5.0,))",
    step=_at(2, _set_defaults))(_default_rebound_build)


def _closure2_build(L, comp):
    w = L.ones(3)

    def outer():
        def inner(x):
            return x * w
        return inner
    inner = outer()

    def f(x):
        return inner(x).sum()

    def rebind():
        nonlocal w
        w = L.full((3,), 5.0)
    return NS(L=L, x=L.ones(3), _f=comp(f), _rebind=rebind)


row("closure of a closure rebound", step=_at(2, lambda s: s._rebind()))(_closure2_build)


# ---- Python iterators and other hidden state -----------------------------------------

def _iter_build(L, comp):
    batches = iter([L.full((3,), float(k)) for k in range(1, 10)])
    return NS(L=L, x=L.ones(3), _f=comp(lambda x: (x * next(batches)).sum()))


row("next(iterator) of batches inside the function", step=_at(0, lambda s: None))(_iter_build)


def _count_build(L, comp):
    counter = itertools.count(1)
    return NS(L=L, x=L.ones(3), _f=comp(lambda x: (x * next(counter)).sum()))


row("next(itertools.count()) inside the function", step=_at(0, lambda s: None))(_count_build)


class _ClsCounter:
    n = 0


def _cls_counter_build(L, comp):
    _ClsCounter.n = 0

    def f(x):
        _ClsCounter.n += 1
        return (x * 2.0).sum()
    return NS(L=L, x=L.ones(3), _f=comp(f))


def _cls_counter_step(s, i):
    s._f(s.x)
    return _ClsCounter.n


row("class attribute counter incremented inside the function", step=_cls_counter_step,
    xfail="compiled counter 1 vs eager 4: a class attribute written while tracing is not a "
          "side effect the snapshot sees")(_cls_counter_build)


def _env_build(L, comp):
    os.environ["TG_ATTACK_SCALE"] = "1.0"
    return NS(L=L, x=L.ones(3),
              _f=comp(lambda x: (x * float(os.environ["TG_ATTACK_SCALE"])).sum()))


row("os.environ value read inside the function changed",
    step=_at(2, lambda s: os.environ.__setitem__("TG_ATTACK_SCALE", "5.0")),
    xfail="compiled 3.0 vs eager 15.0: os.environ is not guarded")(_env_build)


def _big_np_side_build(L, comp):
    hist = np.zeros(5000)

    def f(x):
        hist[0] += 1
        return (x * 2.0).sum()
    return NS(L=L, x=L.ones(3), _hist=hist, _f=comp(f))


def _big_np_side_step(s, i):
    s._f(s.x)
    return float(s._hist[0])


row("NumPy array of 5000 elements written inside the function", step=_big_np_side_step)(
    _big_np_side_build)


# ---- modules ------------------------------------------------------------------------

def _net_build(L, comp):
    m = _init(L, L.nn.Sequential(L.nn.Linear(3, 4), L.nn.BatchNorm1d(4), L.nn.Linear(4, 1)))
    m.train()
    return NS(L=L, model=m, x=_x(L, 0, 5, 3), _f=comp(m))


def _buffers_direct(s):
    s.model[1]._buffers["running_mean"] = s.L.full((4,), 3.0)


def _params_direct(s):
    s.model[2]._parameters["bias"] = s.L.nn.Parameter(s.L.full((1,), 7.0))


def _modules_direct(s):
    s.model._modules["2"] = _init(s.L, s.L.nn.Linear(4, 1)) if False else \
        s.L.nn.Linear(4, 1)
    with s.L.no_grad():
        s.model[2].weight.fill_(0.5)
        s.model[2].bias.fill_(-1.0)


row("buffer replaced via m._buffers[...] = tensor", step=_at(2, _buffers_direct))(_net_build)
row("parameter replaced via m._parameters[...] = Parameter", step=_at(2, _params_direct))(
    _net_build)
row("submodule replaced via m._modules[...] = Linear", step=_at(2, _modules_direct))(_net_build)


def _bn_momentum(s):
    s.model[1].momentum = 0.5


row("BatchNorm momentum changed", step=_at(2, _bn_momentum))(_net_build)


def _dropout_p_build(L, comp):
    m = L.nn.Dropout(0.0)
    return NS(L=L, model=m, x=L.ones(4, 4), _f=comp(m))


def _dropout_p(s):
    s.model.p = 1.0


row("Dropout p changed 0.0 -> 1.0", step=_at(2, _dropout_p))(_dropout_p_build)


def _apply_init(s):
    def init(m):
        if isinstance(m, s.L.nn.Linear):
            with s.L.no_grad():
                m.weight.fill_(0.25)
                m.bias.zero_()
    s.model.apply(init)


def _train_build(L, comp, opt="SGD", **kw):
    m = _mlp(L)
    o = getattr(L.optim, opt)(m.parameters(), **kw)

    def train(x):
        o.zero_grad()
        loss = ((m(x) - 1.0) ** 2).mean()
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(train))


def _sgd(L, comp):
    return _train_build(L, comp, lr=0.1)


def _sgd_mom(L, comp):
    return _train_build(L, comp, lr=0.1, momentum=0.9)


def _adam(L, comp):
    return _train_build(L, comp, "Adam", lr=0.01)


row("model.apply(init_fn) between steps", step=_at(2, _apply_init))(_sgd)


def _half(s):
    s.model.half()
    s.x = s.x.half()


def _to64(s):
    s.model.to(s.L.float64)
    s.x = s.x.double()


row("model.to(float64) between steps", step=_at(2, _to64))(_sgd)


def _eval_half(L, comp):
    m = _mlp(L)
    return NS(L=L, model=m, x=_x(L, 1, 5, 3), _f=comp(lambda x: m(x).sum()))


row("model.half() between calls", step=_at(2, _half))(_eval_half)


def _sub_requires_grad(s):
    s.model[0].requires_grad_(False)


row("requires_grad_(False) on a submodule between steps (momentum)",
    step=_at(2, _sub_requires_grad))(_sgd_mom)


def _deepcopy_build(L, comp):
    m0 = _mlp(L)
    m = copy.deepcopy(m0)
    o = L.optim.SGD(m.parameters(), lr=0.1)

    def train(x):
        o.zero_grad()
        loss = ((m(x) - 1.0) ** 2).mean()
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=m, original=m0, opt=o, x=_x(L, 1, 5, 3), _f=comp(train))


row("deepcopy of a model trained compiled (the original stays)",
    step=_at(0, lambda s: None))(_deepcopy_build)


def _save_load(s):
    buf = io.BytesIO()
    s.L.save({"m": s.model.state_dict(), "o": s.opt.state_dict()}, buf)
    buf.seek(0)
    ck = s.L.load(buf)
    with s.L.no_grad():
        for p in s.model.parameters():
            p.add_(1.0)
    s.model.load_state_dict(ck["m"])
    s.opt.load_state_dict(ck["o"])


row("tracegrad.save then load_state_dict between Adam steps", step=_at(2, _save_load))(_adam)


def _f_clip(x):
    OPT.zero_grad()
    loss = ((MODEL(x) - 1.0) ** 2).mean()
    loss.backward()
    L.nn.utils.clip_grad_norm_(MODEL.parameters(), MAXN)
    OPT.step()
    return loss.detach()


@row("clip_grad_norm_ with max_norm from a global changed",
     step=_at(2, lambda s: s._g.__setitem__("MAXN", 0.01)))
def _b(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.1)
    g = _globals(_f_clip, L=L, MODEL=m, OPT=o, MAXN=10.0)
    return NS(L=L, _g=g, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(g["_f_clip"]))


# ---- optimizers and schedulers ------------------------------------------------------

def _group_update(s):
    s.opt.param_groups[0].update(lr=0.5, momentum=0.0)


def _group_setdefault(s):
    del s.opt.param_groups[0]["momentum"]
    s.opt.param_groups[0].setdefault("momentum", 0.0)


def _params_append(s):
    extra = s.L.nn.Parameter(s.L.ones(4, 3))
    s.model[0].weight = extra
    s.opt.param_groups[0]["params"].append(extra)


def _params_list_replace(s):
    g = s.opt.param_groups[0]
    g["params"] = g["params"][:2]


def _state_step(s):
    for p in s.model.parameters():
        s.opt.state[p]["step"] = s.L.tensor(100.0)


def _state_exp_avg(s):
    for p in s.model.parameters():
        s.opt.state[p]["exp_avg"] = s.L.zeros_like(p)


def _state_exp_avg_inplace(s):
    for p in s.model.parameters():
        s.opt.state[p]["exp_avg"].mul_(0.0)


def _momentum_buffer(s):
    for p in s.model.parameters():
        s.opt.state[p]["momentum_buffer"] = s.L.ones_like(p)


row("param group .update(lr=..., momentum=0)", step=_at(2, _group_update))(_sgd_mom)
row("param group momentum removed then setdefault", step=_at(2, _group_setdefault))(_sgd_mom)
row("param_groups[0]['params'].append(p) (new weight)", step=_at(2, _params_append))(_sgd_mom)
row("param_groups[0]['params'] = a shorter list", step=_at(2, _params_list_replace))(_sgd_mom)
row("Adam opt.state[p]['step'] = tensor(100.)", step=_at(2, _state_step))(_adam)
row("Adam opt.state[p]['exp_avg'] = zeros", step=_at(2, _state_exp_avg))(_adam)
row("Adam opt.state[p]['exp_avg'].mul_(0)", step=_at(2, _state_exp_avg_inplace))(_adam)
row("SGD opt.state[p]['momentum_buffer'] = ones", step=_at(2, _momentum_buffer))(_sgd_mom)


def _sched_build(make, metric=False):
    def build(L, comp):
        s = _train_build(L, comp, lr=0.1, momentum=0.9)
        s.sched = make(L, s.opt)
        s._metric = metric
        return s
    return build


def _sched_step(s, i):
    out = s._f(s.x)
    if s._metric:
        s.sched.step(float(out))
    elif not getattr(s, "_inside", False):
        s.sched.step()
    return (out, s.opt.param_groups[0]["lr"])


def _lambda_closure(L, opt):
    k = {"f": 1.0}
    return L.optim.lr_scheduler.LambdaLR(opt, lambda e: k["f"] / (1 + e))


_SCHEDS = {
    "StepLR": lambda L, o: L.optim.lr_scheduler.StepLR(o, 2, gamma=0.5),
    "OneCycleLR": lambda L, o: L.optim.lr_scheduler.OneCycleLR(o, 1.0, total_steps=10),
    "CosineAnnealingWarmRestarts":
        lambda L, o: L.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 2),
    "CyclicLR": lambda L, o: L.optim.lr_scheduler.CyclicLR(o, 0.01, 0.1, step_size_up=2),
    "LambdaLR (closure)": _lambda_closure,
    "MultiplicativeLR": lambda L, o: L.optim.lr_scheduler.MultiplicativeLR(o, lambda e: 0.9),
}
for _n, _mk in _SCHEDS.items():
    row(f"{_n} stepped outside", step=_sched_step, steps=5)(_sched_build(_mk))

row("ReduceLROnPlateau stepped on the loss", step=_sched_step, steps=6)(
    _sched_build(lambda L, o: L.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0,
                                                                    threshold=10.0),
                 metric=True))


def _sched_inside_build(L, comp):
    s = _train_build(L, comp, lr=0.1, momentum=0.9)
    sched = L.optim.lr_scheduler.StepLR(s.opt, 1, gamma=0.5)
    f = s._f  # (a compiled step called from a compiled step: nested)

    def stepped(x):
        loss = f(x)
        sched.step()
        return loss
    s._inside = True
    s.sched = sched
    s._metric = False
    s._f = comp(stepped)
    return s


row("StepLR.step() inside the compiled function", step=_sched_step, steps=4)(
    _sched_inside_build)


def _lambda_k_change(s):
    fn = s.sched.lr_lambdas[0]
    idx = fn.__code__.co_freevars.index("k")
    fn.__closure__[idx].cell_contents["f"] = 0.1


row("LambdaLR whose closure dict changes", step=lambda s, i: (
    _lambda_k_change(s) if i == 2 else None, _sched_step(s, i))[1], steps=5)(
    _sched_build(_lambda_closure))


# ---- hooks ------------------------------------------------------------------------

def _hook_net(L, comp):
    m = _init(L, L.nn.Sequential(L.nn.Linear(3, 4), L.nn.Tanh(), L.nn.Linear(4, 1)))
    return NS(L=L, model=m, x=_x(L, 0, 2, 3, rg=True), _f=comp(lambda x: m(x).sum()))


def _pre_kwargs_hook(s):
    def hook(mod, args, kwargs):
        return (args[0] * 3.0,), kwargs
    s.model[0].register_forward_pre_hook(hook, with_kwargs=True)


def _fwd_kwargs_hook(s):
    def hook(mod, args, kwargs, out):
        return out * 2.0
    s.model[2].register_forward_hook(hook, with_kwargs=True)


def _prepend_hooks(s):
    s.model[2].register_forward_hook(lambda m, a, o: o + 1.0)
    s.model[2].register_forward_hook(lambda m, a, o: o * 10.0, prepend=True)


def _full_bwd_hook(s):
    s.model[0].register_full_backward_hook(lambda m, gi, go: (gi[0] * 4.0,))


def _full_bwd_pre_hook(s):
    s.model[2].register_full_backward_pre_hook(lambda m, go: (go[0] * 3.0,))


def _hook_step(change, at=2):
    def step(s, i):
        if i == at:
            change(s)
        s.x.grad = None
        out = s._f(s.x)
        out.backward()
        return (out, s.x.grad)
    return step


row("forward pre-hook with_kwargs=True added", step=_hook_step(_pre_kwargs_hook))(_hook_net)
row("forward hook with_kwargs=True added", step=_hook_step(_fwd_kwargs_hook))(_hook_net)
row("forward hooks with prepend=True added", step=_hook_step(_prepend_hooks))(_hook_net)
row("full backward hook scaling grad_input added", step=_hook_step(_full_bwd_hook))(
    _hook_net)
row("full backward pre-hook added", step=_hook_step(_full_bwd_pre_hook))(_hook_net)


def _f_interm_hook(x):
    h = MODEL(x)
    h.register_hook(lambda g: g * SCALE)
    return h.sum()


@row("tensor hook on an intermediate reading a global that changes",
     step=_hook_step(lambda s: s._g.__setitem__("SCALE", 5.0)),
     xfail="x.grad 0.04 vs eager 0.20 on call 4: the SCALE change retraces (call 3 right), "
           "but the next cache hit's compiled backward still applies SCALE=1.0")
def _b(L, comp):
    m = _init(L, L.nn.Linear(3, 2))
    g = _globals(_f_interm_hook, L=L, MODEL=m, SCALE=1.0)
    return NS(L=L, _g=g, model=m, x=_x(L, 0, 2, 3, rg=True), _f=comp(g["_f_interm_hook"]))


# ---- arguments ---------------------------------------------------------------------

def _arg_build(fn):
    def build(L, comp):
        return NS(L=L, _f=comp(fn))
    return build


def _arg_step(make_args):
    def step(s, i):
        args, kw = make_args(s.L, i)
        return s._f(*args, **kw)
    return step


class _Mode(enum.Enum):
    A = 1
    B = 2


_ARG_ROWS = [
    ("kwargs with tensors changing", lambda x, *, w: (x * w).sum(),
     lambda L, i: ((L.ones(3),), {"w": L.full((3,), float(i))})),
    ("*args of varying length", lambda *xs: sum(x.sum() for x in xs),
     lambda L, i: (tuple(L.full((2,), float(k)) for k in range(i + 1)), {})),
    ("float argument that becomes an int (and a bool)", lambda x, s: x * s,
     lambda L, i: ((L.ones(2), [1.5, 2, True, 3.0][i]), {})),
    ("int argument used as a shape", lambda x, n: x.repeat(n),
     lambda L, i: ((L.ones(2), [1, 2, 2, 3][i]), {})),
    ("NumPy array argument", lambda x, a: x * L_tensor(a),
     lambda L, i: ((L.ones(3), np.full(3, float(i), np.float32)), {})),
    ("list of tensors whose length changes", lambda xs: L_stack(xs).sum(0),
     lambda L, i: (([L.full((2,), float(k)) for k in range(i + 1)],), {})),
    ("string argument choosing a branch", lambda x, m: x.sum() if m == "sum" else x.mean(),
     lambda L, i: ((L.arange(4.0), ["sum", "mean", "sum", "mean"][i]), {})),
    ("enum argument choosing a branch",
     lambda x, m: x * 2 if m is _Mode.A else x * 3,
     lambda L, i: ((L.ones(2), [_Mode.A, _Mode.B, _Mode.A, _Mode.B][i]), {})),
    ("numpy float64 scalar argument changing", lambda x, s: x * s,
     lambda L, i: ((L.ones(2), np.float64(i + 0.5)), {})),
    ("None vs tensor optional argument", lambda x, b=None: x if b is None else x + b,
     lambda L, i: ((L.ones(2),), {} if i % 2 else {"b": L.full((2,), float(i))})),
]


def L_tensor(a):
    return tg.tensor(a)


def L_stack(xs):
    return tg.stack(xs)


for _n, _fn, _args in _ARG_ROWS:
    row(_n, step=_arg_step(_args))(_arg_build(_fn))


def _module_arg_build(L, comp):
    ms = [_init(L, L.nn.Linear(3, 1)), L.nn.Linear(3, 1)]
    with L.no_grad():
        ms[1].weight.fill_(2.0)
        ms[1].bias.fill_(-1.0)
    return NS(L=L, ms=ms, x=_x(L, 0, 2, 3), _f=comp(lambda m, x: m(x).sum()))


row("module passed as an argument (different objects)",
    step=lambda s, i: s._f(s.ms[i % 2], s.x))(_module_arg_build)


def _opt_arg_build(L, comp):
    m = _mlp(L)
    opts = [L.optim.SGD(m.parameters(), lr=0.1), L.optim.SGD(m.parameters(), lr=0.01,
                                                             momentum=0.9)]

    def train(model, opt, x):
        opt.zero_grad()
        loss = ((model(x) - 1.0) ** 2).mean()
        loss.backward()
        opt.step()
        return loss.detach()
    return NS(L=L, model=m, opts=opts, x=_x(L, 1, 5, 3), _f=comp(train))


row("optimizer passed as an argument (alternating objects)",
    step=lambda s, i: s._f(s.model, s.opts[i % 2], s.x))(_opt_arg_build)


def _two_fns_build(L, comp):
    s = _train_build(L, comp, lr=0.1, momentum=0.9)
    m = s.model

    def evaluate(x):
        return m(x).sum()
    s._ev = comp(evaluate)
    return s


def _two_fns_step(s, i):
    a = s._ev(s.x)
    b = s._f(s.x)
    return (a, b, s._ev(s.x))


row("two compiled functions sharing one model (train + evaluate)", step=_two_fns_step)(
    _two_fns_build)


def _grad_mode_step(s, i):
    if i % 2:
        with s.L.no_grad():
            out = s._f(s.x)
    else:
        with s.L.set_grad_enabled(True):
            out = s._f(s.x)
    return (out, out.requires_grad)


def _grad_mode_build(L, comp):
    m = _mlp(L)
    return NS(L=L, model=m, x=_x(L, 1, 5, 3), _f=comp(lambda x: m(x).sum()))


row("no_grad() / set_grad_enabled(True) toggled around calls", step=_grad_mode_step)(
    _grad_mode_build)


# ---- randomness --------------------------------------------------------------------

def _gen_build(L, comp):
    g = L.Generator().manual_seed(3)
    return NS(L=L, x=L.ones(3), _gen=g, _f=comp(lambda x: x + L.randn(3, generator=g),
                                                 random="eager")
              if comp is not _eager else (lambda x: x + L.randn(3, generator=g)))


row("generator= object drawn with random='eager'", step=_at(0, lambda s: None))(_gen_build)


def _seed_eager_build(L, comp):
    d = L.nn.Dropout(0.5)
    f = comp(d, random="eager") if comp is not _eager else d
    return NS(L=L, x=L.ones(8), _f=f)


def _seed_step(s, i):
    s.L.manual_seed(i % 2)
    return s._f(s.x)


row("tg.manual_seed between calls, random='eager' dropout", step=_seed_step)(
    _seed_eager_build)


@pytest.mark.xfail(strict=True, reason="random='device': tg.manual_seed(7) before each call "
                   "gives a different dropout mask each call (eager repeats the mask)")
def test_manual_seed_between_calls_repeats_device_random_draws():
    """random='device': the same seed gives the same mask (as eager does), whatever stream."""
    f = tg.compile(tg.nn.Dropout(0.5))
    x = tg.ones(64)
    outs = []
    for _ in range(3):
        tg.manual_seed(7)
        outs.append(f(x).numpy().copy())
    tg.manual_seed(8)
    other = f(x).numpy()
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    assert not np.array_equal(outs[0], other)


# ---- round 2: module attributes, user classes, custom optimizers, global settings --

class _Mode2(enum.Enum):
    A = 1
    B = 2


def _attr_net(L, comp, **attrs):
    class Net(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = L.nn.Linear(3, 2)
            for k, v in attrs.items():
                setattr(self, k, v)

        def forward(self, x):
            h = self.fc(x)
            if "act" in attrs:
                h = self.act(h)
            if "mode" in attrs:
                h = h * (2.0 if self.mode is _Mode2.A else 3.0)
            if "mask" in attrs:
                h = h * L.tensor(self.mask)
            return h
    m = _init(L, Net())
    return NS(L=L, model=m, x=_x(L, 0, 2, 3), _f=comp(m))


def _act_tanh(L, comp):
    return _attr_net(L, comp, act=L.tanh)


def _mode_a(L, comp):
    return _attr_net(L, comp, mode=_Mode2.A)


def _mask_np(L, comp):
    return _attr_net(L, comp, mask=np.ones(2, np.float32))


row("module attribute function replaced (self.act = tanh -> relu)",
    step=_at(2, lambda s: setattr(s.model, "act", s.L.relu)),
    xfail="compiled tanh(h) vs eager relu(h): a module attribute that is a function is not "
          "in the fingerprint (only plain values), so the moved EPOCH finds no change")(
    _act_tanh)
row("module enum attribute replaced (self.mode = A -> B)",
    step=_at(2, lambda s: setattr(s.model, "mode", _Mode2.B)),
    xfail="compiled h*2 vs eager h*3: a module attribute holding an enum member is not "
          "guarded")(_mode_a)
row("module NumPy array attribute edited in place",
    step=_at(2, lambda s: s.model.mask.__setitem__(0, 5.0)))(
    _mask_np)


class _Helpers:
    @staticmethod
    def scale(x):
        return x * SCALE


def _f_static_helper(x):
    return HELPER.scale(x).sum()


@row("staticmethod of a class used as a namespace reads a global",
     step=_at(2, lambda s: s._g.__setitem__("SCALE", 5.0)),
     xfail="compiled 3.0 vs eager 15.0: a class (a type) reached as a global is not walked, "
           "so its staticmethod's globals are not guarded")
def _b(L, comp):
    g = _globals(_f_static_helper, L=L, SCALE=1.0)
    helpers = type("Helpers", (), {"scale": staticmethod(types.FunctionType(
        _Helpers.scale.__code__, g, "scale"))})
    g["HELPER"] = helpers
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_static_helper"]))


class _Layers(list):
    pass


def _f_list_subclass(x):
    return (x * BIG[0]).sum()


@row("tensor in a user list subclass replaced",
     step=_at(2, lambda s: s._g["BIG"].__setitem__(0, s.L.full((3,), 5.0))),
     xfail="compiled 3.0 vs eager 15.0: a list subclass is walked as a plain object (its "
           "__dict__), not its items")
def _b(L, comp):
    g = _globals(_f_list_subclass, L=L, BIG=_Layers([L.ones(3)]))
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_list_subclass"]))


def _tensor_attr_build(L, comp):
    w = L.ones(3)
    w.temp = 2.0
    return NS(L=L, x=L.ones(3), _w=w, _f=comp(lambda x: (x * w / w.temp).sum()))


row("Python attribute on a tensor (w.temp) changed",
    step=_at(2, lambda s: setattr(s._w, "temp", 4.0)),
    xfail="compiled 1.5 vs eager 0.75: a tensor's own Python attributes are not guarded")(
    _tensor_attr_build)


def _custom_opt_build(L, comp):
    class ClippedSGD(L.optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})
            self.clip = 10.0

        def step(self):
            for g in self.param_groups:
                for p in g["params"]:
                    if p.grad is not None:
                        with L.no_grad():
                            p.sub_(g["lr"] * p.grad.clamp(-self.clip, self.clip))
    m = _mlp(L)
    o = ClippedSGD(m.parameters(), 0.1)

    def train(x):
        o.zero_grad()
        loss = ((m(x) - 1.0) ** 2).mean() * 100.0
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(train))


row("custom Optimizer subclass attribute (self.clip) changed",
    step=_at(2, lambda s: setattr(s.opt, "clip", 0.001)))(_custom_opt_build)


def _default_dtype_build(L, comp):
    return NS(L=L, x=L.ones(3, dtype=L.float64), _f=comp(lambda x: x + L.zeros(3)))


def _set_f64(s):
    s.L.set_default_dtype(s.L.float64)


def _default_dtype_step(s, i):
    if i == 2:
        s.L.set_default_dtype(s.L.float64)
    try:
        return s._f(s.x)
    finally:
        s.L.set_default_dtype(s.L.float32)


row("set_default_dtype(float64) between calls (zeros(3) inside)", step=_default_dtype_step)(
    _default_dtype_build)


def _inference_step(s, i):
    if i % 2:
        with s.L.inference_mode():
            out = s._f(s.x)
    else:
        out = s._f(s.x)
    return (out, out.requires_grad)


row("inference_mode() toggled around calls", step=_inference_step)(_grad_mode_build)


@dataclasses.dataclass
class _Batch:
    x: object
    scale: float


def _obj_arg_build(L, comp):
    return NS(L=L, _f=comp(lambda b: (b.x * b.scale).sum()))


row("dataclass argument whose float field differs per call",
    step=lambda s, i: s._f(_Batch(s.L.ones(3), float(i + 1))))(_obj_arg_build)


def _obj_arg_mut_build(L, comp):
    b = _Batch(L.ones(3), 1.0)
    return NS(L=L, b=b, _f=comp(lambda b: (b.x * b.scale).sum()))


def _obj_arg_mut_step(s, i):
    s.b.scale = float(i + 1)
    return s._f(s.b)


row("the same dataclass argument mutated between calls", step=_obj_arg_mut_step)(
    _obj_arg_mut_build)
row("SimpleNamespace argument whose float differs per call",
    step=lambda s, i: s._f(NS(x=s.L.ones(3), scale=float(i + 1))))(_obj_arg_build)
row("callback argument differing per call (tanh / relu)",
    step=lambda s, i: s._f(s.L.full((3,), -1.0), [s.L.tanh, s.L.relu][i % 2]))(
    _arg_build(lambda x, act: act(x).sum()))
row("dtype argument differing per call",
    step=lambda s, i: s._f(s.L.ones(3), [s.L.float32, s.L.float64][i % 2]))(
    _arg_build(lambda x, dt: x.to(dt) * 2))


# ---- round 3: epoch fast paths, monkeypatching, depth of helper chains ----------------

def _f_state_t(x):
    return (x @ W).sum()


def _t_inplace(s):
    s._g["W"].t_()


def _unsqueeze_inplace(s):
    s._g["W"].unsqueeze_(0)


@row("global state tensor transposed in place (W.t_())", step=_at(2, _t_inplace))
def _b(L, comp):
    w = L.tensor(np.arange(9.0, dtype=np.float32).reshape(3, 3))
    g = _globals(_f_state_t, L=L, W=w)
    return NS(L=L, _g=g, x=L.tensor([1.0, 2.0, 3.0]), _f=comp(g["_f_state_t"]))


@row("global state tensor unsqueezed in place (W.unsqueeze_(0))",
     step=_at(2, _unsqueeze_inplace))
def _b(L, comp):
    w = L.tensor(np.arange(9.0, dtype=np.float32).reshape(3, 3))
    g = _globals(_f_state_t, L=L, W=w)
    return NS(L=L, _g=g, x=L.tensor([1.0, 2.0, 3.0]), _f=comp(g["_f_state_t"]))


def _net_forward_build(L, comp):
    class Net(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = L.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x)
    m = _init(L, Net())
    return NS(L=L, model=m, x=_x(L, 0, 2, 3), _f=comp(m))


def _patch_class_forward(s):
    type(s.model).forward = lambda self, x: self.fc(x) * 10.0


def _patch_instance_forward(s):
    s.model.forward = lambda x: s.model.fc(x) * 10.0


row("class forward monkeypatched (Net.forward = ...)", step=_at(2, _patch_class_forward),
    xfail="compiled fc(x) vs eager fc(x)*10: a user class's methods are walked but the class "
          "__dict__ slot is not guarded")(_net_forward_build)
row("instance forward monkeypatched (m.forward = lambda)", step=_at(2, _patch_instance_forward),
    xfail="compiled fc(x) vs eager fc(x)*10: a function assigned as a module attribute moves "
          "EPOCH but is not in the fingerprint")(_net_forward_build)


def _h6(x):
    return x * SCALE


def _f_chain(x):
    return HELPER(x).sum()


@row("global read by a helper 7 closures deep changed",
     step=_at(2, lambda s: s._g.__setitem__("SCALE", 5.0)))
def _b(L, comp):
    g = _globals(_f_chain, _h6, L=L, SCALE=1.0)
    f = g["_h6"]
    for _ in range(6):
        f = (lambda n: lambda x: n(x))(f)
    g["HELPER"] = f
    return NS(L=L, _g=g, x=L.ones(3), _f=comp(g["_f_chain"]))


def _f_deleted_model(x):
    return MODEL(x).sum()


@row("global model deleted between calls (NameError in both)",
     step=_at(2, lambda s: s._g.pop("MODEL")))
def _b(L, comp):
    g = _globals(_f_deleted_model, L=L, MODEL=_init(L, L.nn.Linear(3, 1)))
    return NS(L=L, _g=g, x=_x(L, 0, 2, 3), _f=comp(g["_f_deleted_model"]))


def _negzero_build(L, comp):
    cfg = {"z": 0.0}
    return NS(L=L, cfg=cfg, x=L.ones(2), _f=comp(lambda x: x / cfg["z"]))


row("config float 0.0 -> -0.0 (x / z: inf vs -inf)",
    step=_at(2, lambda s: s.cfg.__setitem__("z", -0.0)))(
    _negzero_build)


def _weight_norm(s):
    s.L.nn.utils.weight_norm(s.model.fc)


row("weight_norm applied between calls", step=_at(2, _weight_norm))(_net_forward_build)


def _opt_state_reset(s):
    s.opt.state = collections.defaultdict(dict)


def _param_item_replace(s):
    new = s.L.nn.Parameter(s.model[0].weight.detach().clone() * 0.0 + 0.3)
    s.model[0].weight = new
    s.opt.param_groups[0]["params"][0] = new


def _groups_reassigned(s):
    s.opt.param_groups = [dict(s.opt.param_groups[0], lr=0.5)]


row("opt.state = defaultdict(dict) (moments reset by rebinding)",
    step=_at(2, _opt_state_reset))(_adam)
row("param_groups[0]['params'][0] = new Parameter", step=_at(2, _param_item_replace))(
    _sgd_mom)
row("opt.param_groups = [dict(group, lr=0.5)]", step=_at(2, _groups_reassigned))(_sgd_mom)


def _fc_call_build(L, comp):
    m = _mlp(L)
    return NS(L=L, model=m, x=_x(L, 1, 5, 3), _f=comp(lambda x: m(x).sum()))


def _zero_in_train(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.1)

    def train(x):
        m.zero_grad()
        loss = ((m(x) - 1.0) ** 2).mean()
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(train))


row("model.zero_grad() (not opt) inside the step", step=_at(0, lambda s: None))(
    _zero_in_train)


# ---- round 4: NumPy memory shared with state, hooks with side effects, threads -------

def _np_param_build(L, comp):
    arr = np.ones((1, 3), np.float32)
    lin = L.nn.Linear(3, 1)
    lin.weight = L.nn.Parameter(L.from_numpy(arr))
    o = L.optim.SGD(lin.parameters(), lr=0.1)

    def train(x):
        o.zero_grad()
        loss = lin(x).sum()
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=lin, opt=o, arr=arr, x=L.ones(2, 3), _f=comp(train))


def _write_detach_numpy(s):
    s.model.weight.detach().numpy()[0, 0] = 7.0


def _write_user_array(s):
    s.arr[0, 1] = 9.0


_READ_ONLY = ("compiled raises ValueError 'assignment destination is read-only' where eager "
              "writes: after 3 compiled steps the parameter's host array is made read-only "
              "(device cache)")
row("param.detach().numpy() written between compiled steps",
    xfail=_READ_ONLY,
    step=_at(3, _write_detach_numpy), steps=5)(_np_param_build)
row("the user's array behind Parameter(from_numpy(arr)) written between steps",
    xfail=_READ_ONLY + "; the user's own array too",
    step=_at(3, _write_user_array), steps=5)(
    _np_param_build)
row("Parameter(from_numpy(arr)) trained: arr follows the updates",
    step=lambda s, i: (s._f(s.x), s.arr.copy()))(_np_param_build)


def _hook_side_build(L, comp):
    s = _train_build(L, comp, lr=0.1)
    calls = []
    s.model[0].weight.register_hook(lambda g: calls.append(1))
    s.calls = calls
    return s


row("parameter tensor hook appending to a list (side effect in backward)",
    step=lambda s, i: (s._f(s.x), len(s.calls)))(_hook_side_build)


def _fwd_hook_side_build(L, comp):
    m = _mlp(L)
    seen = {"n": 0}

    def hook(mod, args, out):
        seen["n"] += 1
    m[0].register_forward_hook(hook)
    return NS(L=L, model=m, seen=seen, x=_x(L, 1, 5, 3), _f=comp(lambda x: m(x).sum()))


row("forward hook counting calls in a dict", step=lambda s, i: (s._f(s.x), s.seen["n"]))(
    _fwd_hook_side_build)


def _accum_outside_build(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

    def fwd_bwd(x):
        loss = ((m(x) - 1.0) ** 2).mean()
        loss.backward()
        return loss.detach()
    return NS(L=L, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(fwd_bwd))


def _accum_outside_step(s, i):
    out = s._f(s.x)
    if i % 2:
        s.opt.step()
        s.opt.zero_grad(set_to_none=(i % 4 == 1))
    return out


row("backward compiled, step + zero_grad outside every 2nd call", step=_accum_outside_step,
    steps=6)(_accum_outside_build)


def _zero_left_build(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.1)

    def train(x):
        loss = ((m(x) - 1.0) ** 2).mean()
        loss.backward()
        o.step()
        o.zero_grad(set_to_none=False)
        return loss.detach()
    return NS(L=L, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(train))


def _grad_fill_step(s, i):
    if i == 2:
        with s.L.no_grad():
            for p in s.model.parameters():
                p.grad.fill_(1.0)
    if i == 3:
        for p in s.model.parameters():
            p.grad = s.L.full_like(p, 2.0)
    return s._f(s.x)


row("grads left zeroed by the step, then filled by the user", step=_grad_fill_step)(
    _zero_left_build)


def _thread_build(L, comp):
    cfg = {"temp": 2.0}
    return NS(L=L, cfg=cfg, x=L.ones(3), _f=comp(lambda x: (x / cfg["temp"]).sum()))


def _thread_step(s, i):
    import threading
    out = []
    if i == 2:
        t = threading.Thread(target=lambda: s.cfg.__setitem__("temp", 4.0))
        t.start()
        t.join()
    t = threading.Thread(target=lambda: out.append(s._f(s.x)))
    t.start()
    t.join()
    return out[0]


row("called from another thread after a thread changed the config", step=_thread_step)(
    _thread_build)


# ---- round 5: data-dependent Python in the step ------------------------------------

def _item_branch_build(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.3)

    def train(x):
        o.zero_grad()
        loss = ((m(x) - 1.0) ** 2).mean()
        if loss.item() > 0.5:  # data-dependent Python branch
            loss = loss * 2.0
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(train))


row("branch on loss.item() inside the step", step=_at(0, lambda s: None), steps=6)(
    _item_branch_build)


def _best_build(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.3)
    rec = NS(best=float("inf"), hist=[])

    def train(x):
        o.zero_grad()
        loss = ((m(x) - 1.0) ** 2).mean()
        loss.backward()
        o.step()
        rec.best = min(rec.best, float(loss))
        return loss.detach()
    return NS(L=L, model=m, opt=o, rec=rec, x=_x(L, 1, 5, 3), _f=comp(train))


row("self.best = min(best, float(loss)) recorded inside the step",
    step=lambda s, i: (s._f(s.x), s.rec.best), steps=5)(_best_build)


def _finite_build(L, comp):
    w = L.ones(3)

    def f(x):
        y = x / w
        if not bool(L.isfinite(y).all()):  # skip the bad batch
            return L.zeros(())
        return y.sum()
    return NS(L=L, x=L.ones(3), _w=w, _f=comp(f))


def _finite_step(s, i):
    x = s.L.ones(3) if i % 2 == 0 else s.L.tensor([1.0, float("inf"), 1.0])
    return s._f(x)


row("skip a non-finite batch (bool(isfinite(y).all()))", step=_finite_step)(_finite_build)


def _batch_size_build(L, comp):
    m = _mlp(L)
    return NS(L=L, model=m, _f=comp(lambda x: m(x).sum() / x.size(0)))


row("last batch smaller (x.size(0) in the loss)",
    step=lambda s, i: s._f(_x(s.L, i, [5, 5, 3, 5][i], 3)))(_batch_size_build)


# ---- round 6: library objects the step reads (schedulers, scalers), group copies --------

def _last_lr_build(L, comp):
    s = _train_build(L, comp, lr=0.1)
    sched = L.optim.lr_scheduler.StepLR(s.opt, 1, gamma=0.5)
    f = s._f
    s._f = comp(lambda x: (f(x), sched.get_last_lr()[0]))
    s.sched = sched
    return s


def _outer_sched_step(s, i):
    out = s._f(s.x)
    s.sched.step()
    return out


row("step returns sched.get_last_lr()[0] (scheduler stepped outside)",
    step=_outer_sched_step,
    xfail="call 3: compiled lr 0.05 (the traced value) vs eager 0.025: a scheduler (a "
          "library object) is not walked, get_last_lr() is baked in")(_last_lr_build)


def _warmup_build(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.1)
    sched = L.optim.lr_scheduler.LambdaLR(o, lambda e: 1.0)

    def train(x):
        o.zero_grad()
        warm = min(1.0, (sched.last_epoch + 1) / 3)
        loss = ((m(x) - 1.0) ** 2).mean() * warm
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=m, opt=o, sched=sched, x=_x(L, 1, 5, 3), _f=comp(train))


row("loss scaled by a warmup from sched.last_epoch",
    xfail="call 3: compiled warm=2/3 (the traced value) vs eager 1.0: a scheduler's "
          "last_epoch read in the step is not guarded (library object not walked)",
    step=_outer_sched_step)(_warmup_build)


def _group_copy_build(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.1)

    def train(x):
        o.zero_grad()
        hp = dict(o.param_groups[0])
        loss = ((m(x) - 1.0) ** 2).mean() * hp["lr"]
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(train))


def _lr_set(s):
    s.opt.param_groups[0]["lr"] = 0.5


row("loss * dict(param_group)['lr'] (a copy of the group), lr changed",
    xfail="compiled loss*0.1 vs eager loss*0.5: a read through dict(group) (not "
          "__getitem__/get) is not noted, so a float->float lr change does not move the "
          "epoch",
    step=_at(2, _lr_set))(_group_copy_build)


def _group_items_build(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.1)

    def train(x):
        o.zero_grad()
        lr = [v for k, v in o.param_groups[0].items() if k == "lr"][0]
        loss = ((m(x) - 1.0) ** 2).mean() * lr
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(train))


row("lr read through param_group.items(), lr changed",
    xfail="compiled loss*0.1 vs eager loss*0.5: a read through group.items() is not noted, "
          "so a float->float lr change does not move the epoch",
    step=_at(2, _lr_set))(_group_items_build)


def _scaler_build(L, comp):
    m = _mlp(L)
    o = L.optim.SGD(m.parameters(), lr=0.1)
    scaler = L.amp.GradScaler("cpu", init_scale=4.0, growth_interval=1)

    def train(x):
        o.zero_grad()
        loss = ((m(x) - 1.0) ** 2).mean()
        scaler.scale(loss).backward()
        scaler.step(o)
        scaler.update()
        return loss.detach()
    return NS(L=L, model=m, opt=o, scaler=scaler, x=_x(L, 1, 5, 3), _f=comp(train))


def _scaler_step(s, i):
    x = s.x if i != 2 else s.x * float("inf")
    return (s._f(x), float(s.scaler.get_scale()))


row("GradScaler step/update inside the step (an inf batch on call 3)", step=_scaler_step,
    steps=5)(_scaler_build)


# ---- round 7: stdlib containers, warnings and stdout, side effects the snapshot misses --

def _userdict_build(L, comp):
    cfg = collections.UserDict({"temp": 2.0})
    return NS(L=L, x=L.ones(3), _cfg=cfg, _f=comp(lambda x: (x / cfg["temp"]).sum()))


row("collections.UserDict config value changed",
    step=_at(2, lambda s: s._cfg.__setitem__("temp", 4.0))
    )(_userdict_build)


def _warn_build(L, comp):
    import warnings

    def f(x):
        warnings.warn("tg-attack: user warning", stacklevel=2)
        return (x * 2.0).sum()
    return NS(L=L, x=L.ones(3), _f=comp(f))


def _warn_step(s, i):
    import warnings
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = s._f(s.x)
    return (out, sum("tg-attack" in str(w.message) for w in rec))


row("warnings.warn inside the function (each call warns)", step=_warn_step,
    xfail="compiled calls after the trace emit no warning (0 vs eager 1): warnings.warn while "
          "tracing is not a side effect the snapshot sees")(_warn_build)


def _stdout_build(L, comp):
    def f(x):
        sys.stdout.write("tg-attack step\n")
        return (x * 2.0).sum()
    return NS(L=L, x=L.ones(3), _f=comp(f))


def _stdout_step(s, i):
    import contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = s._f(s.x)
    return (out, buf.getvalue().count("tg-attack"))


row("sys.stdout.write inside the function", step=_stdout_step,
    xfail="compiled calls after the trace write nothing (0 vs eager 1): sys.stdout.write "
          "(not print) while tracing is not a side effect the snapshot sees")(_stdout_build)


def _big_dict_side_build(L, comp):
    stats = {f"k{i}": 0.0 for i in range(300)}

    def f(x):
        stats["k0"] += 1.0
        return (x * 2.0).sum()
    return NS(L=L, x=L.ones(3), _stats=stats, _f=comp(f))


row("a float in a dict of 300 keys incremented inside the function",
    step=lambda s, i: (s._f(s.x), s._stats["k0"]))(_big_dict_side_build)


def _opt_counter_build(L, comp):
    class CountingSGD(L.optim.SGD):
        def __init__(self, params, lr):
            super().__init__(params, lr=lr)
            self.n_steps = 0

        def step(self, closure=None):
            self.n_steps += 1
            return super().step(closure)
    m = _mlp(L)
    o = CountingSGD(m.parameters(), 0.1)

    def train(x):
        o.zero_grad()
        loss = ((m(x) - 1.0) ** 2).mean()
        loss.backward()
        o.step()
        return loss.detach()
    return NS(L=L, model=m, opt=o, x=_x(L, 1, 5, 3), _f=comp(train))


row("custom optimizer counting its steps (self.n_steps += 1)",
    step=lambda s, i: (s._f(s.x), s.opt.n_steps))(_opt_counter_build)


# ---- round 8: globals read in backward code (custom Function, hooks) -------------------

def _custom_fn_build(where):
    def build(L, comp):
        g = _globals(_f_custom_fn, L=L, SCALE=1.0)
        fwd = types.FunctionType(_CustomScale.forward.__code__, g, "forward")
        bwd = types.FunctionType(_CustomScale.backward.__code__, g, "backward")
        if where == "forward":
            bwd = types.FunctionType(_CustomScale.plain_backward.__code__, g, "backward")
        else:
            fwd = types.FunctionType(_CustomScale.plain_forward.__code__, g, "forward")
        fn = type("Scale", (L.autograd.Function,), {"forward": staticmethod(fwd),
                                                    "backward": staticmethod(bwd)})
        g["HELPER"] = fn
        return NS(L=L, _g=g, x=_x(L, 0, 3, rg=True), _f=comp(g["_f_custom_fn"]))
    return build


class _CustomScale:
    @staticmethod
    def forward(ctx, x):
        return x * SCALE

    @staticmethod
    def plain_forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, g):
        return g * SCALE

    @staticmethod
    def plain_backward(ctx, g):
        return g * 2.0


def _f_custom_fn(x):
    return HELPER.apply(x).sum()


def _grad_step(change, at=2):
    def step(s, i):
        if i == at:
            change(s)
        s.x.grad = None
        out = s._f(s.x)
        out.backward()
        return (out, s.x.grad)
    return step


_SET_SCALE = _grad_step(lambda s: s._g.__setitem__("SCALE", 5.0))
row("autograd.Function whose forward reads a global that changes", step=_SET_SCALE)(
    _custom_fn_build("forward"))
row("autograd.Function whose backward reads a global that changes", step=_SET_SCALE)(
    _custom_fn_build("backward"))


def _f_module_hooked(x):
    return MODEL(x).sum()


def _hooked_build(kind):
    def build(L, comp):
        m = _init(L, L.nn.Linear(3, 2))
        g = _globals(_f_module_hooked, L=L, MODEL=m, SCALE=1.0)
        hook = eval("lambda *a: " + {  # a hook function whose globals are the row's
            "full": "(a[1][0] * SCALE,)", "param": "a[0] * SCALE",
            "fwd": "a[2] * SCALE"}[kind], g)
        if kind == "full":
            m.register_full_backward_hook(hook)
        elif kind == "param":
            m.weight.register_hook(hook)
        else:
            m.register_forward_hook(hook)
        return NS(L=L, _g=g, model=m, x=_x(L, 0, 2, 3, rg=True),
                  _f=comp(g["_f_module_hooked"]))
    return build


row("full backward hook reading a global that changes", step=_SET_SCALE)(
    _hooked_build("full"))
row("parameter tensor hook reading a global that changes", step=_SET_SCALE)(
    _hooked_build("param"))
row("forward hook reading a global that changes", step=_SET_SCALE)(_hooked_build("fwd"))


# ---- round 9: the function changes its arguments' and state's metadata ----------------

def _meta_arg_build(op):
    def build(L, comp):
        def f(x):
            op(x)
            return x * 2.0
        return NS(L=L, _f=comp(f))
    return build


def _meta_arg_step(s, i):
    x = s.L.tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3))
    out = s._f(x)
    return (out, x)


row("x.unsqueeze_(0) on the argument inside the function", step=_meta_arg_step)(
    _meta_arg_build(lambda x: x.unsqueeze_(0)))
row("x.t_() on the argument inside the function", step=_meta_arg_step)(
    _meta_arg_build(lambda x: x.t_()))
row("x.requires_grad_() on the argument inside the function", step=_meta_arg_step)(
    _meta_arg_build(lambda x: x.requires_grad_()))


def _meta_state_build(op):
    def build(L, comp):
        w = L.tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3))

        def f(x):
            op(w)
            return (x * w.sum()).sum()
        return NS(L=L, w=w, x=L.ones(3), _f=comp(f))
    return build


row("w.t_() on a closure tensor inside the function (flips each call)",
    step=lambda s, i: (s._f(s.x), tuple(s.w.shape)))(
    _meta_state_build(lambda w: w.t_()))
row("w.unsqueeze_(0) on a closure tensor inside the function (grows each call)",
    step=lambda s, i: (s._f(s.x), tuple(s.w.shape)))(
    _meta_state_build(lambda w: w.unsqueeze_(0)))


def _data_assign_build(L, comp):
    def f(x):
        x.data = x.data * 3.0
        return x.sum()
    return NS(L=L, _f=comp(f), x=L.ones(3))


row("x.data = x.data * 3 on the same argument inside the function",
    step=lambda s, i: (s._f(s.x), s.x))(_data_assign_build)


def _train_eval_inside_build(L, comp):
    m = _init(L, L.nn.Sequential(L.nn.Linear(3, 4), L.nn.BatchNorm1d(4), L.nn.Dropout(0.0),
                                 L.nn.Linear(4, 1)))

    def evaluate(x):
        m.eval()
        out = m(x)
        m.train()
        return out
    return NS(L=L, model=m, x=_x(L, 0, 5, 3), _f=comp(evaluate), _t=comp(lambda x: m(x)))


row("eval(); m(x); train() inside one compiled function, training calls in another",
    step=lambda s, i: (s._f(s.x), s._t(s.x), s.model.training))(_train_eval_inside_build)


def _arg_hook_build(L, comp):
    def f(x):
        x.register_hook(lambda g: g * 2.0)
        return (x * x).sum()
    return NS(L=L, x=L.ones(3, requires_grad=True), _f=comp(f))


def _arg_hook_step(s, i):
    s.x.grad = None
    s._f(s.x).backward()
    return s.x.grad


row("x.register_hook inside the function on the same argument each call",
    step=_arg_hook_step)(_arg_hook_build)


def _param_hook_inside_build(L, comp):
    s = _train_build(L, comp, lr=0.1)
    m, o = s.model, s.opt

    def train(x):
        o.zero_grad()
        m[0].weight.register_hook(lambda g: g * 0.5)
        loss = ((m(x) - 1.0) ** 2).mean()
        loss.backward()
        o.step()
        return loss.detach()
    s._f = comp(train)
    return s


row("register_hook on a parameter inside the step (one more each call)",
    step=lambda s, i: s._f(s.x))(_param_hook_inside_build)


# ---- round 10: past the cache limit ----------------------------------------------------

def _every_call_build(L, comp):
    cfg = {"temp": 1.0}
    return NS(L=L, cfg=cfg, x=L.ones(3), _f=comp(lambda x: (x / cfg["temp"]).sum()))


def _every_call_step(s, i):
    s.cfg["temp"] = float(i + 1)
    return s._f(s.x)


row("config float changed before every call, past cache_limit (12 calls)",
    step=_every_call_step, steps=12)(_every_call_build)
row("int argument different every call, past cache_limit (12 calls)",
    step=lambda s, i: s._f(s.L.ones(2), i), steps=12)(_arg_build(lambda x, n: x * n))
row("list argument growing every call, past cache_limit (12 calls)",
    step=lambda s, i: s._f([s.L.ones(2)] * (i + 1)), steps=12)(
    _arg_build(lambda xs: L_stack(xs).sum()))


# ---- the table's tests -------------------------------------------------------------

_MARK = not os.environ.get("TRACEGRAD_STATE_UNMARKED")


def _params():
    out = []
    for r in ROWS:
        marks = [pytest.mark.xfail(strict=True, reason=r.xfail)] if r.xfail and _MARK else []
        out.append(pytest.param(r, id=r.name, marks=marks))
    return out


@pytest.mark.parametrize("r", _params())
def test_compiled_equals_eager_under_attack(r):
    want = _run(r, tg, _eager)
    got = _run(r, tg, tg.compile)
    _compare(got, want)


def test_row_names_are_unique():
    names = [r.name for r in ROWS]
    assert len(names) == len(set(names))
