"""Deferred write-back and the device cache (NOTE: [Deferred write-back] and NOTE:
[Device cache] in tracegrad/_storage.py), attacked with whole programs.

Each program is run twice from the same seed: once with its steps compiled, once
eagerly (``tracegrad.compile`` replaced by the identity). Every value the program
observes must be the same: a deferred parameter, optimizer buffer or ``.grad`` is
only an implementation detail, never a stale or missing write.
"""
from __future__ import annotations

import copy
import gc
import pickle
import weakref

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import _storage


def _eager(fn=None, **_):
    return fn if fn is not None else (lambda f: f)


def _host(t):
    return np.array(t.detach().numpy(), copy=True)


def _same(program):
    """Run ``program(compile)`` compiled and eagerly; the observations must match."""
    tg.manual_seed(0)
    got = program(tg.compile)
    tg.manual_seed(0)
    want = program(_eager)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        g = g if isinstance(g, (tuple, list)) else [g]
        w = w if isinstance(w, (tuple, list)) else [w]
        for a, b in zip(g, w, strict=True):
            a = _host(a) if isinstance(a, tg.Tensor) else np.asarray(a)
            b = _host(b) if isinstance(b, tg.Tensor) else np.asarray(b)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6,
                                       err_msg=f"observation {i} differs")
    return got


def _is_deferred(t):
    return "_lazy" in t.__dict__


def _model_and_step(comp, opt="sgd"):
    model = tg.nn.Sequential(tg.nn.Linear(4, 6), tg.nn.Tanh(), tg.nn.Linear(6, 2))
    if opt == "sgd":
        o = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        o = tg.optim.Adam(model.parameters(), lr=0.05)

    @comp
    def step(x, y):
        o.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        o.step()
        return loss

    return model, o, step


def _data(n=5):
    return tg.randn(n, 4), tg.randn(n, 2)


# ---- the mechanism works at all ----------------------------------------------------

def _run_until_deferred(model, step, x, y, opt=None):
    # deferral is an optimisation that backs off while anything else holds an array
    # (the tracing call's garbage, jax still releasing a host input): give it steps
    for _ in range(20):
        step(x, y)
        gc.collect()
        state = list(model.parameters())
        state += [opt.state[p]["momentum_buffer"] for p in state] if opt else []
        if all(_is_deferred(t) for t in state):
            return


def test_a_compiled_training_loop_defers_its_state():
    model, opt, step = _model_and_step(tg.compile)
    x, y = _data()
    _run_until_deferred(model, step, x, y, opt)
    assert [_is_deferred(p) for p in model.parameters()] == [True] * 4
    assert [_is_deferred(opt.state[p]["momentum_buffer"]) for p in model.parameters()] == [True] * 4


# ---- host reads of deferred state, held before, between and after steps ----------------

def test_aliases_held_across_steps_see_every_update():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        w = model[0].weight
        obs = []
        for _ in range(3):
            step(x, y)
        data, det, arr = w.data, w.detach(), w.detach().numpy()
        row, flat = w[0], w.view(-1)
        npview = arr[1:3]
        for _ in range(3):
            obs.append(step(x, y))
            obs += [data, det, row.detach(), flat.detach(), arr.copy(), npview.copy()]
        return obs
    _same(program)


def test_array_identity_survives_deferral():
    model, _, step = _model_and_step(tg.compile)
    x, y = _data()
    w = model[0].weight
    arr_id = id(w._data)
    for _ in range(4):
        step(x, y)
        assert id(w._data) == arr_id
    assert isinstance(w, tg.nn.Parameter) and type(w) is tg.nn.Parameter


def test_printing_and_pickling_a_model_with_deferred_parameters():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        for _ in range(3):
            step(x, y)
        text = repr(model[0].bias)
        clone = pickle.loads(pickle.dumps(model))
        deep = copy.deepcopy(model)
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        step(x, y)
        return ([p for p in model.parameters()] + [p for p in clone.parameters()]
                + [p for p in deep.parameters()] + list(sd.values()) + [len(text)])
    _same(program)


def test_state_dict_held_across_steps_shares_storage_as_in_eager():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        for _ in range(3):
            step(x, y)
        sd = model.state_dict()
        obs = []
        for _ in range(3):
            step(x, y)
            obs += list(sd.values())
        return obs
    _same(program)


def test_load_state_dict_into_a_deferred_model():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        for _ in range(3):
            step(x, y)
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        for _ in range(3):
            step(x, y)
        model.load_state_dict(saved)
        obs = [p for p in model.parameters()]
        for _ in range(2):
            obs.append(step(x, y))
        return obs + [p for p in model.parameters()]
    _same(program)


# ---- eager writes to deferred state, then compiled steps again ----------------------

@pytest.mark.parametrize("edit", [
    lambda w: w.mul_(2),
    lambda w: w.copy_(tg.ones_like(w)),
    lambda w: w.data.fill_(0.5),
    lambda w: w.__setitem__(0, 1.0),
    lambda w: w[1].fill_(-1.0),
    lambda w: w.view(-1)[:3].add_(3.0),
    lambda w: w.detach().zero_(),
], ids=["mul_", "copy_", "data.fill_", "setitem", "view_fill_", "view_view_add_",
        "detach_zero_"])
def test_eager_in_place_edits_of_deferred_parameters(edit):
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        for _ in range(3):
            step(x, y)
        with tg.no_grad():
            edit(model[0].weight)
        obs = [model[0].weight.detach().clone()]
        for _ in range(3):
            obs.append(step(x, y))
        return obs + [p for p in model.parameters()]
    _same(program)


def test_a_view_held_across_steps_then_written_through():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        for _ in range(3):
            step(x, y)
        row = model[0].weight[0]   # made while the parameter is deferred
        step(x, y)
        with tg.no_grad():
            row.fill_(0.25)
        obs = [step(x, y), step(x, y)]
        return obs + [p for p in model.parameters()]
    _same(program)


def test_assigning_data_of_a_deferred_parameter():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        for _ in range(3):
            step(x, y)
        model[0].weight.data = tg.zeros(6, 4)
        obs = [step(x, y), step(x, y)]
        return obs + [p for p in model.parameters()]
    _same(program)


def test_deferred_parameter_in_eager_ops_and_autograd():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        for _ in range(3):
            step(x, y)
        w = model[0].weight
        (w * 2).sum().backward()
        g = w.grad.clone()
        obs = [g, step(x, y), model(x)]
        return obs + [p for p in model.parameters()]
    _same(program)


def test_deferred_grads_read_and_zeroed_eagerly():
    def program(comp):
        w = tg.nn.Parameter(tg.randn(3, 3))
        x = tg.randn(3)

        @comp
        def accumulate(x):
            (w @ x).pow(2).sum().backward()

        obs = []
        for _ in range(4):
            accumulate(x)
        obs.append(w.grad.clone())
        w.grad.zero_()
        for _ in range(3):
            accumulate(x)
        obs.append(w.grad)
        w.grad.mul_(0.5)
        accumulate(x)
        obs.append(w.grad)
        return obs
    _same(program)


# ---- optimizer buffers, recompiles, several compiled functions --------------------------

@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_optimizer_buffers_deferred_across_a_recompile(opt):
    def program(comp):
        model, o, step = _model_and_step(comp, opt)
        obs = []
        for n in (5, 5, 5, 7, 7, 7, 5, 5):   # a new batch size traces again
            x, y = _data(n)
            obs.append(step(x, y))
        obs += [p for p in model.parameters()]
        obs += [t for p in model.parameters() for t in o.state[p].values()
                if isinstance(t, tg.Tensor)]
        return obs
    _same(program)


def test_train_and_eval_steps_share_a_model():
    def program(comp):
        model, _, step = _model_and_step(comp)

        @comp
        def evaluate(x):
            with tg.no_grad():
                return model(x).sum()

        x, y = _data()
        obs = []
        for _ in range(4):
            obs += [step(x, y), evaluate(x)]
        model.eval()
        obs += [evaluate(x), step(x, y), evaluate(x)]
        return obs
    _same(program)


def test_an_exception_in_a_later_compiled_call_leaves_state_intact():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        for _ in range(3):
            step(x, y)
        with pytest.raises(RuntimeError):
            step(tg.randn(5, 3), y)              # wrong feature size: a new trace fails
        obs = [p for p in model.parameters()]
        for _ in range(2):
            obs.append(step(x, y))
        return obs + [p for p in model.parameters()]
    _same(program)


def test_requires_grad_toggled_on_a_deferred_parameter():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        obs = []
        for _ in range(3):
            obs.append(step(x, y))
        model[0].weight.requires_grad_(False)
        for _ in range(3):
            obs.append(step(x, y))
        model[0].weight.requires_grad_(True)
        for _ in range(2):
            obs.append(step(x, y))
        return obs + [p for p in model.parameters()]
    _same(program)


# ---- deferred tensors as arguments -------------------------------------------------

def test_deferred_tensor_passed_to_another_compiled_function():
    def program(comp):
        model, _, step = _model_and_step(comp)

        @comp
        def norm(w):
            return (w * w).sum()

        @comp
        def shrink(w):
            w.mul_(0.5)

        x, y = _data()
        obs = []
        for _ in range(3):
            step(x, y)
            with tg.no_grad():
                obs.append(norm(model[0].weight))
                shrink(model[0].weight)
            obs.append(norm(model[0].bias.detach()))
        return obs + [p for p in model.parameters()]
    _same(program)


def test_arguments_written_in_place_are_deferred_and_reused():
    def program(comp):
        @comp
        def f(a, x):
            a.mul_(0.5).add_(x)
            return a.sum()

        a, x = tg.randn(3, 3), tg.randn(3, 3)
        obs = []
        for _ in range(4):
            obs += [f(a, x)]
        obs.append(a.clone())
        for _ in range(3):
            obs += [f(a, a.detach() * 1)]
        return obs + [a]
    _same(program)


@pytest.mark.parametrize("first", ["distinct", "same"])
def test_the_same_tensor_passed_twice(first):
    def program(comp):
        @comp
        def f(a, b):
            a.add_(1)
            b.mul_(2)
            return a + b

        x, y, z = tg.ones(3), tg.ones(3), tg.ones(3)
        calls = [(x, y), (z, z)] if first == "distinct" else [(z, z), (x, y)]
        obs = []
        for a, b in calls * 3:
            obs += [f(a, b), x, y, z]
        return obs
    _same(program)


# ---- lifetimes ----------------------------------------------------------------------

def test_a_deferred_tensor_is_garbage_collected():
    model, opt, step = _model_and_step(tg.compile)
    x, y = _data()
    _run_until_deferred(model, step, x, y)
    w = model[0].weight
    assert _is_deferred(w)
    ref = weakref.ref(w)
    del model, opt, step, w
    gc.collect()
    assert ref() is None


# ---- reused small inputs kept on device (CompiledFunction._seen) ----------------------

def test_a_reused_small_input_follows_tracegrad_writes():
    def program(comp):
        f = comp(lambda a: (a * a).sum())
        a = tg.tensor([1.0, 2.0, 3.0])
        obs = []
        for k in range(3):
            obs += [f(a), f(a)]
            a.add_(1.0)
            obs.append(f(a))
            a[0] = float(k)
            obs.append(f(a))
            with tg.no_grad():
                a[1:].mul_(2.0)
            obs.append(f(a))
        return obs
    _same(program)


def test_a_reused_small_input_rejects_raw_numpy_writes_loudly():
    f = tg.compile(lambda a: (a * a).sum())
    a = tg.tensor([1.0, 2.0, 3.0])
    for _ in range(3):
        f(a)
    try:
        a.numpy()[0] = 10.0
    except ValueError:
        return                       # loud: fine
    assert f(a).item() == pytest.approx(104.0 + 9.0)   # or seen: fine too


def test_a_users_numpy_buffer_refilled_between_calls():
    def program(comp):
        f = comp(lambda a: (a * 2).sum())
        buf = np.zeros(3, np.float32)
        a = tg.from_numpy(buf)
        obs = []
        for k in range(4):
            buf[:] = k
            obs.append(f(a))
        return obs
    _same(program)


# ---- the fast cache-key path -------------------------------------------------------

def test_fast_key_path_with_views_kwargs_and_python_values():
    def program(comp):
        @comp
        def f(a, b=None, scale=1.0, flag=True):
            out = a * scale
            if flag:
                out = out + (0 if b is None else b.sum())
            return out

        base = tg.randn(4, 3)
        obs = []
        for _ in range(2):
            obs += [f(base), f(base[0]), f(base[1:3]), f(base, b=base[0]),
                    f(base, scale=2.0), f(base, flag=False), f(base.t()),
                    f(base, base, 0.5, False)]
        return obs
    _same(program)


def test_a_view_made_before_the_first_step_then_written_through():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        row = model[0].weight[2]      # held all along: the weight is never deferred
        obs = []
        for k in range(4):
            obs.append(step(x, y))
            with tg.no_grad():
                row.add_(0.1 * k)
            obs.append(row.detach().clone())
        return obs + [p for p in model.parameters()]
    _same(program)


def test_an_argument_that_is_state_the_trace_read():
    def program(comp):
        w = tg.randn(3)

        @comp
        def f(a):
            a.mul_(2)
            return (w * 1).sum()

        x = tg.randn(3)
        obs = []
        for a in (x, x, x, w, x, w, w.detach(), x):
            obs += [f(a), w, x]
        return obs
    _same(program)


def test_a_deferred_argument_stays_on_the_device():
    @tg.compile
    def shrink(a):
        a.mul_(0.5)

    a = tg.randn(3, 3).clone()       # (randn's array is a view: never deferred)
    want = _host(a) * 0.5 ** 6
    for _ in range(6):
        shrink(a)
    assert _is_deferred(a)
    np.testing.assert_allclose(_host(a), want, rtol=1e-6)


def test_a_cached_device_value_does_not_alias_the_host_array():
    f = tg.compile(lambda a: (a * a).sum())
    a = tg.ones(64, 100)
    for _ in range(3):
        f(a)
    value = _storage.lookup(a._data)[0]
    a.add_(1.0)                      # drops the cached value, then writes the array
    assert float(np.asarray(value).sum()) == 6400.0


def test_sole_ownership_is_measured_not_assumed():
    t = tg.tensor([1.0, 2.0])
    assert _storage.is_private(t)
    alias = t.detach()
    assert not _storage.is_private(t)
    del alias
    view = t._data[:1]
    assert not _storage.is_private(t)
    del view
    assert _storage.is_private(t)


@pytest.mark.filterwarnings("ignore:tracegrad.compile")
def test_first_traced_with_state_as_the_argument():
    # that call runs eagerly and is not cached: the next call traces its own program
    def program(comp):
        w = tg.randn(3).clone()

        @comp
        def f(a):
            a.mul_(2)
            return (w * 1).sum()

        x = tg.randn(3).clone()
        return [f(a) for a in (w, x, x, x)]
    _same(program)


@pytest.mark.filterwarnings("ignore:tracegrad.compile")
def test_first_traced_with_a_parameter_of_its_model_as_the_argument():
    def program(comp):
        model = tg.nn.Linear(3, 2)

        @comp
        def f(a, x):
            with tg.no_grad():
                a.mul_(0.5)
                return model(x).sum()

        x, other = tg.randn(4, 3), tg.randn(2, 3)
        obs = [f(a, x) for a in (model.weight, other, other, model.weight, other)]
        return obs + [model.weight, other]
    _same(program)
    with pytest.warns(UserWarning, match=r": a is state"):  # (the lambda's argument, a)
        m = tg.nn.Linear(2, 2)
        g = tg.compile(lambda a: m(a).sum())
        g(m.weight.detach())  # .detach() shares the array: still the model's state
    assert g.cache_info().entries == 0


def test_state_written_without_being_read():
    # state written before any read (b.copy_(a)) is lifted, so the write reaches b
    def program(comp):
        a, b = tg.randn(3).clone(), tg.zeros(3)

        @comp
        def step():
            b.copy_(a)

        obs = []
        for _ in range(4):
            step()
            obs.append(b.clone())
            a.add_(1.0)
        return obs
    _same(program)


# ---- results and new .grad slots: on the device until read --------------------------

def test_results_and_new_grads_stay_on_the_device_until_read():
    tg.manual_seed(0)
    model, opt, step = _model_and_step(tg.compile)
    x, y = _data()
    losses = [step(x, y) for _ in range(4)]
    assert _is_deferred(losses[-1])                     # nothing read it yet
    assert all(_is_deferred(p.grad) for p in model.parameters())
    got = [float(v) for v in losses]                    # reads copy each to the host
    assert not any(_is_deferred(v) for v in losses)
    tg.manual_seed(0)
    _, _, eager_step = _model_and_step(_eager)
    want = [float(eager_step(x, y)) for _ in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_results_read_later_equal_eager():
    def program(comp):
        model, _, step = _model_and_step(comp)
        x, y = _data()
        losses = [step(x, y) for _ in range(5)]        # read only after the loop
        return losses + [p.grad for p in model.parameters()] + list(model.parameters())
    _same(program)


def test_a_result_is_the_users_to_write():
    f = tg.compile(lambda x: x * 2 + 1)
    x = tg.ones(3)
    for _ in range(3):
        r = f(x)
    a = r.numpy()
    a[0] = 7.0                                          # a raw NumPy write, as in torch
    assert r.tolist() == [7.0, 3.0, 3.0]
    r.add_(1)
    assert r.tolist() == [8.0, 4.0, 4.0]


def test_results_fed_back_stay_on_the_device_and_alias_correctly():
    def program(comp):
        @comp
        def cell(h, x):
            return (h * 0.5 + x).tanh()

        @comp
        def pair(a, b):
            return a * 2 + b

        x = tg.arange(4.0)
        h = tg.zeros(4)
        obs = []
        for _ in range(4):
            h = cell(h, x)          # a lazy result passed straight back in
        obs.append(h)
        for _ in range(2):
            r = pair(x, x)
            obs += [pair(r, r), pair(r, x)]   # f(r, r) and f(r, x) are different programs
        return obs
    _same(program)
    cell = tg.compile(lambda h, x: (h * 0.5 + x).tanh())
    h, x = tg.zeros(4), tg.arange(4.0)
    for _ in range(4):
        h = cell(h, x)
    assert _is_deferred(h)


def test_a_result_that_requires_grad_reads_lazily_too():
    w = tg.ones(3, requires_grad=True)
    f = tg.compile(lambda x: (x * w).sum())
    x = tg.arange(3.0)
    for _ in range(3):
        out = f(x)
        assert out.grad_fn is not None
        out.backward()
    assert float(out) == 3.0
    assert w.grad.tolist() == [0.0, 3.0, 6.0]


def test_shape_and_dtype_of_a_deferred_tensor_leave_it_on_the_device():
    f = tg.compile(lambda x: (x * 2).reshape(2, 3).double())
    x = tg.ones(6)
    for _ in range(3):
        r = f(x)
    assert (r.shape, r.size(), r.size(1), r.dim(), r.ndim, r.numel(), len(r), r.dtype) == \
        (tg.Size([2, 3]), tg.Size([2, 3]), 3, 2, 2, 6, 2, tg.float64)
    assert _is_deferred(r)
    assert r.tolist() == [[2.0] * 3] * 2 and not _is_deferred(r)


def test_tensors_made_by_randn_are_deferred_though_their_arrays_are_views():
    # randn reshapes a flat buffer: the array is a view of a base nothing else holds
    def program(comp):
        x, y = tg.randn(8, 4), tg.randn(8, 2)
        w = tg.randn(4, 2, requires_grad=True)

        @comp
        def step(x, y, w, lr):
            loss = ((x.mm(w) - y) ** 2).sum()
            loss.backward()
            with tg.no_grad():
                w -= lr * w.grad
                w.grad.zero_()
            return loss
        losses = [step(x, y, w, 0.01) for _ in range(6)]
        return losses + [w, w.grad]
    _same(program)
    w = tg.randn(4, 2, requires_grad=True)
    assert w.__dict__["_data"].base is not None  # (pytest keeps an assert's operands alive)
    assert _storage.is_private(w)
    base = w._data.base  # someone else now reaches the memory: not private
    assert not _storage.is_private(w)
    del base
    view = w.detach().view(8)
    assert not _storage.is_private(w)
    del view
    assert _storage.is_private(w)


def test_a_numpy_view_of_the_base_sees_every_compiled_update():
    x = tg.randn(3, 2)
    raw = x._data.base  # a user's handle on the memory, as np.frombuffer would give
    f = tg.compile(lambda t: t.mul_(2))
    for _ in range(4):
        f(x)
        np.testing.assert_allclose(raw.reshape(3, 2), x.numpy())
    raw[0] = 100.0  # and a raw write is seen by the next call
    f(x)
    assert x.numpy()[0, 0] == 200.0
