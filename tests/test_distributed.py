"""``compile(step, mesh=...)``: the same training step data parallel (and with sharded state)
over jax's host devices, against the one-device compiled step and eager.

The cases need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before jax is
imported, so they run in subprocesses (this file run as a script): one runs the whole
table of single-process cases and prints JSON; two more are a 2-process x 4-device run
over gloo on 127.0.0.1 (``tracegrad.distributed.initialize``). As in torch's own DDP test,
the reference is the one-device run on the full batch, compared after every step;
state tensors are compared by relative norm (reduction order differs across devices).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "@@RESULT "
STEPS = 4  # trace (optimizer state appears), trace again, then two compiled calls

# model-dtype-mesh-state: meshes from dist.mesh() over the first 2, 4 or all 8 devices, a
# user's own Mesh (devices reversed, axis "batch"), a 4x2 mesh split over "data" only or
# over both axes; state replicated, or sharded where dim 0 divides
CASES = ["mlp-float32-default8-replicate", "mlp-float32-default8-shard",
         "mlp-float32-first2-shard", "mlp-float32-user8_reversed-replicate",
         "mlp-float32-2d_both-shard", "mlp-float64-first4-shard",
         "cnn-float32-first2-replicate", "cnn-float32-2d_data-shard",
         "cnn-float64-first4-shard", "lm-float32-default8-shard"]


def _env(devices):
    env = dict(os.environ, PYTHONPATH=ROOT,
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env.pop("TRACEGRAD_LOGS", None)
    return env


def _result(out: str):
    lines = [ln[len(MARK):] for ln in out.splitlines() if ln.startswith(MARK)]
    assert lines, out[-3000:]
    return json.loads(lines[-1])


# ---- the worker (this file run as a script, in a subprocess) ----------------------------

def _models(tg):
    """name -> build(dtype) -> (step, model, optimizer, data(batch) -> (x, y))."""
    nn, F = tg.nn, tg.nn.functional

    def mlp(dtype):
        tg.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(dtype)
        opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def data(rng, b):
            return (tg.tensor(rng.standard_normal((b, 8))).to(dtype),
                    tg.tensor(rng.integers(0, 4, b)))
        return model, opt, data, lambda out, y: F.cross_entropy(out, y)

    def cnn(dtype):
        tg.manual_seed(1)
        # (no conv bias: BatchNorm takes the mean out, so its gradient would be rounding
        # noise, which Adam scales up to a full step of either sign)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 5)).to(dtype)
        opt = tg.optim.Adam(model.parameters(), lr=1e-2)

        def data(rng, b):
            return (tg.tensor(rng.standard_normal((b, 1, 8, 8))).to(dtype),
                    tg.tensor(rng.integers(0, 5, b)))
        return model, opt, data, lambda out, y: F.cross_entropy(out, y)

    def lm(dtype):
        tg.manual_seed(2)
        d, seq, vocab = 8, 4, 16

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.tok = nn.Embedding(vocab, d)
                self.ln = nn.LayerNorm(d)
                self.qkv = nn.Linear(d, 3 * d, bias=False)  # (a key bias: no gradient)
                self.proj = nn.Linear(d, d)
                self.head = nn.Linear(d, vocab)
                self.register_buffer("mask", tg.triu(tg.ones(seq, seq, dtype=tg.bool), 1))

            def forward(self, idx):
                x = self.tok(idx)
                q, k, v = self.qkv(self.ln(x)).split(d, dim=-1)
                att = (q @ k.transpose(-2, -1)) * (d ** -0.5)
                att = F.softmax(att.masked_fill(self.mask, float("-inf")), dim=-1)
                return self.head(x + self.proj(att @ v))

        model = Block().to(dtype)
        opt = tg.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)

        def data(rng, b):
            t = rng.integers(0, vocab, (b, seq + 1))
            return tg.tensor(t[:, :-1]), tg.tensor(t[:, 1:])
        return model, opt, data, lambda out, y: F.cross_entropy(out.reshape(-1, vocab),
                                                                y.reshape(-1))

    return {"mlp": mlp, "cnn": cnn, "lm": lm}


def _make_step(model, opt, loss_fn):
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def _state(tg, model, opt):
    """Every state tensor's value, by name: parameters, buffers, optimizer state."""
    out = {f"p.{k}": v.detach().numpy().astype(np.float64) for k, v in
           model.state_dict().items() if v.dtype.is_floating_point}
    params = list(model.parameters())
    for i, p in enumerate(params):
        for k, v in opt.state.get(p, {}).items():
            if isinstance(v, tg.Tensor):
                out[f"opt.{i}.{k}"] = v.numpy().astype(np.float64)
    return out


def _rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _run(tg, build, dtype, compile_kw, batch=16, steps=STEPS, seed=0):
    """Losses after each step and states after each step for one way of running."""
    model, opt, data, loss_fn = build(dtype)
    step = _make_step(model, opt, loss_fn)
    if callable(compile_kw):
        compile_kw = compile_kw(model)
    if compile_kw is not None:
        step = tg.compile(step, **compile_kw)
    rng = np.random.default_rng(seed)
    batches = [data(rng, batch) for _ in range(steps)]
    losses, states = [], []
    for x, y in batches:
        losses.append(float(step(x, y)))
        states.append(_state(tg, model, opt))
    return losses, states, (model, opt, step, batches)


def _compare(ref, got):
    (l0, s0, _), (l1, s1, _) = ref, got
    loss = max(abs(a - b) / max(abs(a), 1e-30) for a, b in zip(l0, l1, strict=True))
    state = max(_rel(s[k], r[k]) for r, s in zip(s0, s1, strict=True) for k in r)
    keys = all(set(r) == set(s) for r, s in zip(s0, s1, strict=True))
    return {"loss": loss, "state": state, "same_keys": keys}


def _device_value(t):
    from tracegrad import _storage
    pair = _storage.lazy(t)
    if pair is not None:
        return pair[1]
    cached = _storage.lookup(t._data)
    return None if cached is None else cached[0]


def _per_device(t):
    v = _device_value(t)
    return None if v is None else list(v.addressable_shards[0].data.shape)


def worker_single():
    import jax
    from jax.sharding import Mesh

    import tracegrad as tg
    import tracegrad.distributed as dist

    devs = jax.devices()
    assert len(devs) == 8, devs
    grid = np.array(devs).reshape(4, 2)
    meshes = {
        "default8": lambda: {"mesh": dist.mesh()},
        "first2": lambda: {"mesh": dist.mesh(devs[:2])},
        "first4": lambda: {"mesh": dist.mesh(devs[:4])},
        "user8_reversed": lambda: {"mesh": Mesh(np.array(devs[::-1]), ("batch",))},
        "2d_data": lambda: {"mesh": dist.mesh(grid, ("data", "model"))},
        "2d_both": lambda: {"mesh": dist.mesh(grid, ("data", "model")),
                            "axis": ("data", "model")},
    }
    models = _models(tg)
    table = [(*c.split("-")[:3], c.endswith("shard")) for c in CASES]
    refs = {}
    cases = {}
    for name, dt, mname, shard in table:
        dtype = getattr(tg, dt)
        if (name, dt) not in refs:
            eager = _run(tg, models[name], dtype, None)
            one = _run(tg, models[name], dtype, {})
            refs[name, dt] = (eager, one, _compare(eager, one))
        eager, one, _ = refs[name, dt]
        kw = dict(meshes[mname](), shard_state=shard)
        got = _run(tg, models[name], dtype, kw)
        model, opt, step, batches = got[2]
        res = {"vs_one": _compare(one, got), "vs_eager": _compare(eager, got),
               "hits": step.cache_info().hits, "misses": step.cache_info().misses,
               "recompiles": list(step.recompile_reasons)}
        if shard and mname == "default8" and name == "mlp":
            # which parameters (and their momentum) are split 1/8 per device
            step(*batches[-1])
            res["shards"] = {
                str(i): [list(p.shape), _per_device(p),
                         _per_device(opt.state[p]["momentum_buffer"])]
                for i, p in enumerate(model.parameters())}
        cases[f"{name}-{dt}-{mname}-{'shard' if shard else 'replicate'}"] = res
    # shard_state=[the first weight]: it and its momentum split, everything else whole
    got = _run(tg, models["mlp"], tg.float32,
               lambda model: {"mesh": dist.mesh(), "shard_state": [model[0].weight]})
    model, opt = got[2][:2]
    got[2][2](*got[2][3][-1])
    cases["mlp-chosen"] = {"vs_one": _compare(refs["mlp", "float32"][1], got), "shards": {
        str(i): [_per_device(p), _per_device(opt.state[p]["momentum_buffer"])]
        for i, p in enumerate(model.parameters())}}
    out = {"cases": cases,
           "refs": {f"{n}-{d}": r[2] for (n, d), r in refs.items()}}
    out.update(_cache_and_moves(tg, dist, models, devs))
    out.update(_bad_inputs(tg, dist, models, devs))
    out.update(_explain(tg, dist, models))
    print(MARK + json.dumps(out), flush=True)


def _cache_and_moves(tg, dist, models, devs):
    """The same compiled step over 8 devices, then 4 (reshard: a new program, and a
    recompile reason), back to 8 (a hit), to one device, then eager; the reference
    runs eagerly throughout."""
    ref = _run(tg, models["cnn"], tg.float32, None, steps=8, seed=5)
    model, opt, data, loss_fn = models["cnn"](tg.float32)
    step = tg.compile(_make_step(model, opt, loss_fn), mesh=dist.mesh())
    batches = ref[2][3]
    plan = ["m8", "m8", "m8", "m4", "m4", "m8", "one", "eager"]
    m4 = dist.mesh(devs[:4])
    losses, states, misses, reasons = [], [], [], []
    for where, (x, y) in zip(plan, batches, strict=True):
        if where == "m4":
            step.reshard(m4)
        elif where == "m8":
            step.reshard(dist.mesh())
        elif where == "one":
            step.reshard(None)
        before = step.cache_info().misses
        loss = step(x, y) if where != "eager" else step.fn(x, y)
        losses.append(float(loss))
        states.append(_state(tg, model, opt))
        misses.append(step.cache_info().misses - before)
        reasons.append(list(step.recompile_reasons))
    got = _compare(ref, (losses, states, None))
    return {"moves": {"compare": got, "misses": misses, "reasons": reasons[-1],
                      "entries": step.cache_info().entries}}


def _bad_inputs(tg, dist, models, devs):
    out = {}

    def error(fn):
        try:
            fn()
        except Exception as e:  # the message is what is checked
            return f"{type(e).__name__}: {e}"
        return None

    model, opt, data, loss_fn = models["mlp"](tg.float32)
    step = tg.compile(_make_step(model, opt, loss_fn), mesh=dist.mesh())
    rng = np.random.default_rng(0)
    for _ in range(3):
        step(*data(rng, 16))
    before = _state(tg, model, opt)
    info = step.cache_info()
    out["odd_batch"] = error(lambda: step(*data(rng, 12)))
    after = _state(tg, model, opt)
    out["odd_batch_untouched"] = (before.keys() == after.keys() and all(
        np.array_equal(before[k], after[k]) for k in before)) and step.cache_info() == info
    # the very first call too: nothing ran, nothing was created
    model2, opt2, _, _ = models["mlp"](tg.float32)
    p0 = [p.detach().numpy().copy() for p in model2.parameters()]
    first = tg.compile(_make_step(model2, opt2, loss_fn), mesh=dist.mesh(devs[:4]))
    out["odd_first_call"] = error(lambda: first(*data(rng, 6)))
    out["odd_first_untouched"] = not opt2.state and all(
        np.array_equal(a, p.detach().numpy()) for a, p in zip(p0, model2.parameters(),
                                                              strict=True))

    def named(x, y):
        return (x * 2).sum() + y.sum()
    out["odd_named"] = error(lambda: tg.compile(named, mesh=dist.mesh())(
        tg.ones(8, 2), tg.ones(9)))
    out["unknown_axis"] = error(lambda: tg.compile(named, mesh=dist.mesh(), axis="model"))
    out["not_a_mesh"] = error(lambda: tg.compile(named, mesh=devs))
    out["shard_state_not_bool"] = error(lambda: tg.compile(named, mesh=dist.mesh(),
                                                           shard_state="yes"))
    out["shard_state_odd"] = error(lambda: tg.compile(named, mesh=dist.mesh(), shard_state=[
        model[0].weight, model[2].weight]))
    out["shard_state_0d"] = error(lambda: tg.compile(named, mesh=dist.mesh(),
                                                     shard_state=[tg.tensor(1.0)]))
    out["shard_state_not_tensor"] = error(lambda: tg.compile(named, mesh=dist.mesh(),
                                                             shard_state=["w"]))
    out["shard_state_no_mesh"] = error(lambda: tg.compile(named, shard_state=True))
    out["mesh_flat_2_names"] = error(lambda: dist.mesh(devs, ("data", "model")))
    out["mesh_repeated_names"] = error(lambda: dist.mesh(np.array(devs).reshape(4, 2),
                                                         ("data", "data")))
    # a compiled module on a mesh: its outputs' compiled backward gives eager's grads
    lin = tg.nn.Linear(8, 3)
    cm = tg.compile(lin, mesh=dist.mesh())
    xs = [tg.tensor(rng.standard_normal((16, 8)), dtype=tg.float32) for _ in range(3)]
    errs = []
    for x in xs:
        lin.zero_grad()
        (lin(x) ** 2).sum().backward()
        want = [lin(x).detach().numpy(), lin.weight.grad.numpy().copy()]
        lin.zero_grad()
        res = cm(x)
        (res ** 2).sum().backward()
        errs += [_rel(res.detach().numpy(), want[0]), _rel(lin.weight.grad.numpy(), want[1])]
    out["module"] = [max(errs), cm.cache_info().hits]
    # a 0-d argument is replicated; a scalar batch is no error
    out["scalar_arg"] = float(tg.compile(lambda x, s: (x * s).sum(), mesh=dist.mesh())(
        tg.ones(8, 2), tg.tensor(3.0)))
    return {"bad": out}


def _explain(tg, dist, models):
    model, opt, data, loss_fn = models["mlp"](tg.float32)
    step = tg.compile(_make_step(model, opt, loss_fn), mesh=dist.mesh(), shard_state=True)
    rng = np.random.default_rng(0)
    x, y = data(rng, 16)
    for _ in range(3):
        step(x, y)
    rep = step.explain(x, y)
    model1, opt1, data1, _ = models["mlp"](tg.float32)
    one = tg.compile(_make_step(model1, opt1, loss_fn))
    for _ in range(3):
        one(x, y)
    model2, opt2, _, _ = models["mlp"](tg.float32)
    repl = tg.compile(_make_step(model2, opt2, loss_fn), mesh=dist.mesh())
    for _ in range(3):
        repl(x, y)
    return {"explain": {"text": str(rep), "collectives": rep.collectives,
                        "shardings": rep.shardings,
                        "replicated": repl.explain(x, y).collectives,
                        "one_device": one.explain(x, y).collectives},
            "dump": _dump()}


DUMP_SCRIPT = """
import tracegrad as tg
import tracegrad.distributed as dist
w = tg.zeros(4, requires_grad=True)
opt = tg.optim.SGD([w], lr=0.1)

def step(x):
    opt.zero_grad()
    loss = ((x - w) ** 2).mean()
    loss.backward()
    opt.step()
    return loss

f = tg.compile(step, mesh=dist.mesh(), shard_state=True)
for _ in range(3):
    f(tg.ones(8, 4))
"""


def _dump():
    """``tracegrad dump --stage shardings`` of a script whose step runs on a mesh."""
    import tempfile

    from tracegrad import cli
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.py")
        with open(path, "w") as f:
            f.write(DUMP_SCRIPT)
        out = os.path.join(tmp, "out")
        assert cli.main(["dump", path, "--stage", "shardings", "-o", out]) == 0
        files = {name: open(os.path.join(out, name)).read() for name in os.listdir(out)}
        html = os.path.join(tmp, "report.html")
        assert cli.main(["viz", path, "-o", html]) == 0
        with open(html) as f:
            text = f.read()
        return {"files": files, "viz": [s in text for s in (
            "placement: mesh(data=8) over data, shard_state", "all-reduce: 1")]}


def worker_multi(process_id, port, out_path):
    import tracegrad as tg
    import tracegrad.distributed as dist

    dist.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    import jax

    from tracegrad.utils.data import DataLoader, DistributedSampler, TensorDataset

    models = _models(tg)
    result = {"devices": jax.device_count(), "local": jax.local_device_count(),
              "process_count": dist.process_count()}
    # the sampler gives this process its half of each global batch (every 2nd sample)
    sampler = DistributedSampler(range(16), shuffle=False)
    result["sampler"] = [sampler.num_replicas, sampler.rank, list(sampler)]
    for name, shard in (("cnn", False), ("mlp", True)):
        model, opt, data, loss_fn = models[name](tg.float32)
        step = tg.compile(_make_step(model, opt, loss_fn), mesh=dist.mesh(),
                          shard_state=shard)
        losses = []
        rng = np.random.default_rng(0)
        for _ in range(STEPS):
            x, y = data(rng, 16)
            loader = DataLoader(TensorDataset(x, y), batch_size=8, sampler=sampler)
            (xl, yl), = list(loader)
            losses.append(float(step(xl, yl)))
        result[name] = {"losses": losses, "misses": step.cache_info().misses,
                        "hits": step.cache_info().hits}
        if shard:
            w = model[0].weight  # (16, 8): split over the 8 devices of both processes
            try:
                w.detach().numpy()
                result["lone_read"] = None
            except RuntimeError as e:
                result["lone_read"] = str(e)
            dist.gather([model, opt])
            result["gathered"] = {k: v.tolist() for k, v in _state(tg, model, opt).items()}
        else:
            result["cnn_state"] = {k: v.tolist() for k, v in _state(tg, model, opt).items()}
    # a step that cannot compile (``.item()`` is a graph break) runs eagerly: on the global
    # batch too, so both processes return the one-process value

    def breaks(x):
        m = (x * x).mean()
        return m * 2 if m.item() > 0 else m

    import warnings
    whole = np.random.default_rng(3).standard_normal((16, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cb = tg.compile(breaks, mesh=dist.mesh())
        got = [float(cb(tg.tensor(whole[process_id::2]))) for _ in range(2)]
    result["break"] = [got, float((whole * whole).mean() * 2), len(cb.graph_breaks)]
    with open(out_path, "w") as f:
        json.dump(result, f)


def worker_reference():
    """The one-process, one-device runs the multi-process ones must equal."""
    import tracegrad as tg

    models = _models(tg)
    out = {}
    for name in ("cnn", "mlp"):
        losses, states, _ = _run(tg, models[name], tg.float32, None, seed=0)
        out[name] = {"losses": losses, "state": {k: v.tolist() for k, v in states[-1].items()}}
    print(MARK + json.dumps(out), flush=True)


# ---- the tests ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def single():
    r = subprocess.run([sys.executable, __file__, "single"], capture_output=True, text=True,
                       env=_env(8), cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-5000:]
    return _result(r.stdout)


TOL = {"float32": 2e-5, "float64": 1e-12}


@pytest.mark.parametrize("case", CASES)
def test_mesh_step_equals_one_device_and_eager(single, case):
    res = single["cases"][case]
    tol = TOL[case.split("-")[1]]
    for against in ("vs_one", "vs_eager"):
        c = res[against]
        assert c["same_keys"], (case, against)
        assert c["loss"] < tol and c["state"] < tol, (case, against, c)
    # traced twice (the optimizer's first step makes its state), then cached: no recompile
    assert res["misses"] == 2 and res["hits"] == STEPS - 2, res
    assert res["recompiles"] == ["the previous call created 4 new tensor(s) kept in Python "
                                 "state"] or "cnn" in case or "lm" in case, res["recompiles"]


def test_references_agree(single):
    for name, c in single["refs"].items():  # one-device compiled vs eager
        assert c["loss"] < 1e-5 and c["state"] < 1e-5, (name, c)


def test_shard_state_splits_divisible_parameters_and_their_momentum(single):
    shards = single["cases"]["mlp-float32-default8-shard"]["shards"]
    # Linear(8, 16): weight (16, 8) and bias (16,) split over 8 devices; Linear(16, 4):
    # 4 rows do not split over 8, so weight (4, 16) and bias (4,) are replicated
    expect = {"0": ([16, 8], [2, 8]), "1": ([16], [2]), "2": ([4, 16], [4, 16]),
              "3": ([4], [4])}
    for i, (shape, per_device) in expect.items():
        assert shards[i] == [shape, per_device, per_device], (i, shards[i])


def test_shard_state_list_splits_only_those(single):
    res = single["cases"]["mlp-chosen"]
    assert res["vs_one"]["loss"] < 2e-5 and res["vs_one"]["state"] < 2e-5, res
    assert res["shards"] == {"0": [[2, 8], [2, 8]], "1": [[16], [16]],
                             "2": [[4, 16], [4, 16]], "3": [[4], [4]]}, res["shards"]


def test_state_moves_between_meshes_and_back_to_eager(single):
    mv = single["moves"]
    assert mv["compare"]["loss"] < 2e-5 and mv["compare"]["state"] < 2e-5, mv
    # 8 devices: traced twice (Adam's state appears), then a hit; 4 devices: another
    # program (traced), then a hit; back to 8: a hit; one device: traced; eager
    assert mv["misses"] == [1, 1, 0, 1, 0, 0, 1, 0], mv["misses"]
    assert mv["entries"] == 3
    moved = [r for r in mv["reasons"] if "placement changed" in r]
    assert moved == ["placement changed: mesh(data=8) over data -> mesh(data=4) over data",
                     "placement changed: mesh(data=8) over data -> one device"], mv["reasons"]


BAD = {
    "odd_batch": ["'x'", "size 12", "8 devices", "mesh axis data"],
    "odd_first_call": ["'x'", "size 6", "4 devices"],
    "odd_named": ["'y'", "size 9", "8 devices"],
    "unknown_axis": ["ValueError", "'model'", "('data',)"],
    "not_a_mesh": ["TypeError", "jax.sharding.Mesh", "list"],
    "shard_state_not_bool": ["TypeError", "shard_state", "'yes'"],
    "shard_state_no_mesh": ["ValueError", "shard_state", "mesh="],
    "shard_state_odd": ["ValueError", "shard_state[1]", "shape (4, 16)", "4 rows", "8 devices",
                        "shard_state=True"],
    "shard_state_0d": ["ValueError", "shard_state[0]", "0-d"],
    "shard_state_not_tensor": ["TypeError", "shard_state[0]", "str"],
    "mesh_flat_2_names": ["ValueError", "2 axis names", "reshape"],
    "mesh_repeated_names": ["ValueError", "repeat"],
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_bad_input_is_a_clear_error(single, what):
    msg = single["bad"][what]
    assert msg is not None, what
    for part in BAD[what]:
        assert part in msg, (what, part, msg)


def test_a_bad_batch_changes_nothing(single):
    assert single["bad"]["odd_batch_untouched"]
    assert single["bad"]["odd_first_untouched"]
    assert single["bad"]["scalar_arg"] == 48.0


def test_a_compiled_module_on_a_mesh_differentiates_as_eager(single):
    err, hits = single["bad"]["module"]
    assert err < 2e-6 and hits == 2, single["bad"]["module"]


def test_explain_shows_shardings_and_collectives(single):
    ex = single["explain"]
    text = ex["text"]
    assert "shardings (mesh(data=8) over data, shard_state):" in text
    assert "x: split P('data',) -> [2, 8] per device" in ex["shardings"]
    assert "y: split P('data',) -> [2] per device" in ex["shardings"]
    assert any("replicated -> [4, 16] per device" in s for s in ex["shardings"])
    assert "collectives (XLA's compiled module):" in text
    # gradients are reduced across devices, sharded parameters gathered for the forward
    c = ex["collectives"]
    assert c["all-reduce"] + c["reduce-scatter"] >= 1 and c["all-gather"] >= 1, c
    assert ex["one_device"] == {}, ex["one_device"]  # (no mesh: nothing to count)
    # replicated state: the gradients' all-reduce; sharded: gathers of the parameters too
    r = ex["replicated"]
    assert r["all-reduce"] >= 1 and c["all-gather"] > r["all-gather"], (r, c)


def test_cli_dump_and_viz_show_the_shardings(single):
    files = single["dump"]["files"]
    assert single["dump"]["viz"] == [True, True]  # the viewer's header says the same
    assert list(files) == ["step.0.shardings.txt"], files
    text = files["step.0.shardings.txt"]
    assert text.startswith("placement: mesh(data=8) over data, shard_state\n"), text
    assert "  x: split P('data',) -> [1, 4] per device" in text
    assert "split P('data',) -> [1] per device" not in text  # w is (4,): not over 8
    assert "replicated -> [4] per device" in text
    assert "collectives (XLA's compiled module):\n  all-reduce: " in text


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    port = _free_port()
    outs = [tmp_path / f"p{i}.json" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, __file__, "multi", str(i), str(port),
                               str(outs[i])], env=_env(4), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    ref = subprocess.run([sys.executable, __file__, "reference"], capture_output=True,
                         text=True, env=_env(1), cwd=ROOT, timeout=300)
    logs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        logs.append(err[-3000:])
        assert p.returncode == 0, "\n".join(logs)
    assert ref.returncode == 0, ref.stderr[-3000:]
    want = _result(ref.stdout)
    got = [json.loads(o.read_text()) for o in outs]
    for rank, g in enumerate(got):
        assert (g["devices"], g["local"], g["process_count"]) == (8, 4, 2)
        assert g["sampler"] == [2, rank, list(range(rank, 16, 2))]
        for name in ("cnn", "mlp"):
            np.testing.assert_allclose(g[name]["losses"], want[name]["losses"], rtol=2e-5)
            assert g[name]["misses"] == 2 and g[name]["hits"] == STEPS - 2
        for key, state in (("cnn_state", "cnn"), ("gathered", "mlp")):
            for k, v in want[state]["state"].items():
                assert _rel(np.array(g[key][k]), np.array(v)) < 2e-5, (rank, key, k)
        assert "tracegrad.distributed.gather" in g["lone_read"], g["lone_read"]
        got_break, want_break, n_breaks = g["break"]
        np.testing.assert_allclose(got_break, [want_break] * 2, rtol=1e-12)
        assert n_breaks == 1


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "single":
        worker_single()
    elif what == "multi":
        worker_multi(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif what == "reference":
        worker_reference()
