"""Recurrent layers (nn.RNN/LSTM/GRU and the cells) against torch: init under manual_seed,
state_dict keys, outputs, final states and the gradients of inputs, initial states and every
parameter, in float32 and float64; reprs, argument errors; an LSTM language model trained
with Adam identically under torch, tracegrad eager and tracegrad.compile."""
import warnings

import numpy as np
import pytest
from _torch_oracle import weighted_sums

import tracegrad as tg

torch = pytest.importorskip("torch")

DT = {"float32": (np.float32, 2e-5), "float64": (np.float64, 1e-11)}


def _pair(name, dtype, *args, **kwargs):
    """The same layer under tracegrad and torch, built after the same manual_seed."""
    tg.manual_seed(7)
    torch.manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = getattr(tg.nn, name)(*args, **kwargs, dtype=getattr(tg, dtype))
        theirs = getattr(torch.nn, name)(*args, **kwargs, dtype=getattr(torch, dtype))
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert list(sd_ours) == list(sd_theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for k in sd_theirs:
        assert sd_ours[k].shape == tuple(sd_theirs[k].shape)
        np.testing.assert_array_equal(sd_ours[k].numpy(), sd_theirs[k].numpy(), err_msg=k)
    assert repr(ours) == repr(theirs)
    return ours, theirs


def _leaves(arrays):
    return ([tg.tensor(a, requires_grad=True) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def _check(ours, theirs, call, arrays, dtype, seed=None):
    """call(module, *leaves) on both; compare every result, then the gradients of a random
    weighted sum of the results w.r.t. the leaves and every parameter."""
    np_dtype, tol = DT[dtype]
    ta, pa = _leaves([a.astype(np_dtype) for a in arrays])
    if seed is not None:
        tg.manual_seed(seed)
        torch.manual_seed(seed)
    outs_t, outs_p = _flat(call(ours, *ta)), _flat(call(theirs, *pa))
    loss_t, loss_p = weighted_sums(outs_t, outs_p, np_dtype, tol)
    loss_t.backward()
    loss_p.backward()
    for a_t, a_p in zip(ta, pa, strict=True):
        np.testing.assert_allclose(a_t.grad.numpy(), a_p.grad.numpy(), rtol=tol, atol=tol)
    for (n, p_t), (_, p_p) in zip(ours.named_parameters(), theirs.named_parameters(),
                                   strict=True):
        np.testing.assert_allclose(p_t.grad.numpy(), p_p.grad.numpy(), rtol=tol, atol=tol,
                                   err_msg=n)


LAYERS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {})]
OPTIONS = {
    "plain": {},
    "layers2": {"num_layers": 2},
    "nobias": {"bias": False, "num_layers": 2},
    "batch_first": {"batch_first": True},
    "bidir": {"bidirectional": True, "num_layers": 2},
    "bidir_bf_nobias": {"bidirectional": True, "batch_first": True, "bias": False},
}
T_, B, IN, H = 5, 3, 4, 6


def _state_shapes(name, kw, batched=True, proj=0):
    d = 2 if kw.get("bidirectional") else 1
    n = kw.get("num_layers", 1) * d
    lead = (n, B) if batched else (n,)
    if name == "LSTM":
        return [lead + (proj or H,), lead + (H,)]
    return [lead + (H,)]


def _layer_call(name, with_state):
    def call(m, x, *states):
        if not with_state:
            return m(x)
        return m(x, tuple(states) if name == "LSTM" else states[0])
    return call


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", list(OPTIONS))
@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=lambda i: str(LAYERS[i]))
@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "h0"])
def test_layer_matches_torch(layer, opt, dtype, with_state):
    name, base = LAYERS[layer]
    kw = {**base, **OPTIONS[opt]}
    ours, theirs = _pair(name, dtype, IN, H, **kw)
    rng = np.random.default_rng(0)
    xshape = (B, T_, IN) if kw.get("batch_first") else (T_, B, IN)
    arrays = [rng.standard_normal(xshape)]
    if with_state:
        arrays += [rng.standard_normal(s) for s in _state_shapes(name, kw)]
    _check(ours, theirs, _layer_call(name, with_state), arrays, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "h0"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input(name, dtype, with_state, batch_first):
    kw = {"num_layers": 2, "bidirectional": True, "batch_first": batch_first}
    ours, theirs = _pair(name, dtype, IN, H, **kw)
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((T_, IN))]
    if with_state:
        arrays += [rng.standard_normal(s) for s in _state_shapes(name, kw, batched=False)]
    _check(ours, theirs, _layer_call(name, with_state), arrays, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True},
                                {"batch_first": True, "bias": False, "num_layers": 2}],
                         ids=["plain", "bidir2", "bf_nobias2"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "h0"])
def test_lstm_proj_size(kw, dtype, with_state):
    ours, theirs = _pair("LSTM", dtype, IN, H, proj_size=3, **kw)
    assert ours.weight_hr_l0.shape == (3, H)
    rng = np.random.default_rng(3)
    xshape = (B, T_, IN) if kw.get("batch_first") else (T_, B, IN)
    arrays = [rng.standard_normal(xshape)]
    if with_state:
        arrays += [rng.standard_normal(s) for s in _state_shapes("LSTM", kw, proj=3)]
    _check(ours, theirs, _layer_call("LSTM", with_state), arrays, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_between_layers_follows_torch_stream(name, dtype, bidirectional):
    ours, theirs = _pair(name, dtype, IN, H, num_layers=3, dropout=0.4,
                         bidirectional=bidirectional, batch_first=True)
    rng = np.random.default_rng(4)
    _check(ours, theirs, lambda m, x: m(x), [rng.standard_normal((B, T_, IN))], dtype, seed=11)
    # in eval mode dropout is off: equal to the same layer without it
    ours.eval()
    theirs.eval()
    _check(ours, theirs, lambda m, x: m(x), [rng.standard_normal((B, T_, IN))], dtype)


CELLS = [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}), ("LSTMCell", {}),
         ("GRUCell", {}), ("LSTMCell", {"bias": False}), ("GRUCell", {"bias": False}),
         ("RNNCell", {"bias": False})]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", range(len(CELLS)), ids=lambda i: str(CELLS[i]))
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "hx"])
def test_cell_matches_torch(cell, dtype, batched, with_state):
    name, kw = CELLS[cell]
    ours, theirs = _pair(name, dtype, IN, H, **kw)
    rng = np.random.default_rng(5)
    lead = (B,) if batched else ()
    arrays = [rng.standard_normal(lead + (IN,))]
    n_states = 2 if name == "LSTMCell" else 1
    if with_state:
        arrays += [rng.standard_normal(lead + (H,)) for _ in range(n_states)]

    def call(m, x, *states):
        if not states:
            return m(x)
        return m(x, tuple(states) if name == "LSTMCell" else states[0])
    _check(ours, theirs, call, arrays, dtype)


def test_cell_unrolled_over_time_matches_torch():
    ours, theirs = _pair("LSTMCell", "float64", IN, H)
    rng = np.random.default_rng(6)

    def call(m, x):
        h = None
        outs = []
        for t in range(x.shape[0]):
            h = m(x[t], h)
            outs.append(h[0])
        return outs
    _check(ours, theirs, call, [rng.standard_normal((T_, B, IN))], "float64")


def test_gate_order_and_formulas():
    """LSTM gates i, f, g, o and GRU r, z, n with n = tanh(W_in x + b_in + r*(W_hn h + b_hn)),
    written out by hand in NumPy."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    rng = np.random.default_rng(7)
    x, h, c = rng.standard_normal((2, IN)), rng.standard_normal((2, H)), rng.standard_normal((2, H))
    cell = tg.nn.LSTMCell(IN, H, dtype=tg.float64)
    p = {k: v.numpy() for k, v in cell.state_dict().items()}
    gates = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    i, f, g, o = np.split(gates, 4, axis=1)
    c2 = sig(f) * c + sig(i) * np.tanh(g)
    h2 = sig(o) * np.tanh(c2)
    hy, cy = cell(tg.tensor(x), (tg.tensor(h), tg.tensor(c)))
    np.testing.assert_allclose(hy.detach().numpy(), h2, rtol=1e-12)
    np.testing.assert_allclose(cy.detach().numpy(), c2, rtol=1e-12)
    gru = tg.nn.GRUCell(IN, H, dtype=tg.float64)
    p = {k: v.numpy() for k, v in gru.state_dict().items()}
    gi = np.split(x @ p["weight_ih"].T + p["bias_ih"], 3, axis=1)
    gh = np.split(h @ p["weight_hh"].T + p["bias_hh"], 3, axis=1)
    r, z = sig(gi[0] + gh[0]), sig(gi[1] + gh[1])
    n = np.tanh(gi[2] + r * gh[2])
    np.testing.assert_allclose(gru(tg.tensor(x), tg.tensor(h)).detach().numpy(),
                               (1 - z) * n + z * h, rtol=1e-12)


def test_state_dict_interchanges_with_torch():
    kw = {"num_layers": 2, "bidirectional": True, "proj_size": 2}
    theirs = torch.nn.LSTM(IN, H, **kw)
    ours = tg.nn.LSTM(IN, H, **kw)
    ours.load_state_dict({k: tg.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(8).standard_normal((T_, B, IN)).astype(np.float32)
    np.testing.assert_allclose(ours(tg.tensor(x))[0].detach().numpy(),
                               theirs(torch.tensor(x))[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    back = torch.nn.LSTM(IN, H, **kw)
    back.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    for k, v in back.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), theirs.state_dict()[k].numpy())


def test_weights_attributes_and_flatten_parameters():
    for lib in (tg, torch):
        m = lib.nn.GRU(IN, H, num_layers=2, bidirectional=True, bias=False)
        assert m._flat_weights_names == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse",
                                         "weight_hh_l0_reverse", "weight_ih_l1", "weight_hh_l1",
                                         "weight_ih_l1_reverse", "weight_hh_l1_reverse"]
        assert [len(w) for w in m.all_weights] == [2, 2, 2, 2]
        assert m.all_weights[1][0] is m.weight_ih_l0_reverse
        assert m.flatten_parameters() is None
        assert m.weight_ih_l1.shape == (3 * H, 2 * H)


@pytest.mark.parametrize("make", [
    lambda lib: lib.nn.LSTM(IN, H, num_layers=2, proj_size=3, dropout=0.5, bias=False,
                            batch_first=True, bidirectional=True),
    lambda lib: lib.nn.RNN(IN, H, 2, "relu", False),
    lambda lib: lib.nn.RNN(IN, H, nonlinearity="relu"),
    lambda lib: lib.nn.RNNCell(IN, H, bias=False, nonlinearity="relu"),
    lambda lib: lib.nn.GRUCell(IN, H, bias=False),
    lambda lib: lib.nn.LSTMCell(IN, H),
])
def test_repr(make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert repr(make(tg)) == repr(make(torch))


def _error(fn, lib):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn(lib)
        except Exception as e:
            return type(e).__name__, str(e)
    return None


ERRORS = {
    "dropout_range": lambda lib: lib.nn.LSTM(IN, H, dropout=1.5),
    "dropout_bool": lambda lib: lib.nn.GRU(IN, H, dropout=True),
    "bias_type": lambda lib: lib.nn.LSTM(IN, H, bias=1),
    "batch_first_type": lambda lib: lib.nn.RNN(IN, H, batch_first=None),
    "input_size_type": lambda lib: lib.nn.LSTM(4.0, H),
    "input_size_zero": lambda lib: lib.nn.LSTM(0, H),
    "hidden_size_type": lambda lib: lib.nn.GRU(IN, "6"),
    "hidden_size_zero": lambda lib: lib.nn.GRU(IN, 0),
    "num_layers": lambda lib: lib.nn.RNN(IN, H, num_layers=0),
    "proj_negative": lambda lib: lib.nn.LSTM(IN, H, proj_size=-1),
    "proj_too_big": lambda lib: lib.nn.LSTM(IN, H, proj_size=H),
    "proj_gru": lambda lib: lib.nn.GRU(IN, H, proj_size=2),
    "proj_rnn": lambda lib: lib.nn.RNN(IN, H, proj_size=2),
    "nonlinearity": lambda lib: lib.nn.RNN(IN, H, nonlinearity="sigmoid"),
    "input_1d_rnn": lambda lib: lib.nn.RNN(IN, H)(lib.zeros(IN)),
    "input_4d_lstm": lambda lib: lib.nn.LSTM(IN, H)(lib.zeros(1, 2, 3, IN)),
    "input_1d_gru": lambda lib: lib.nn.GRU(IN, H)(lib.zeros(IN)),
    "input_size": lambda lib: lib.nn.LSTM(IN, H)(lib.zeros(T_, B, IN + 1)),
    "input_dtype": lambda lib: lib.nn.GRU(IN, H)(lib.zeros(T_, B, IN, dtype=lib.float64)),
    "hidden_size": lambda lib: lib.nn.GRU(IN, H, 2)(lib.zeros(T_, B, IN), lib.zeros(2, B + 1, H)),
    "hidden_dims_batched": lambda lib: lib.nn.RNN(IN, H)(lib.zeros(T_, B, IN), lib.zeros(B, H)),
    "hidden_dims_unbatched": lambda lib: lib.nn.RNN(IN, H)(lib.zeros(T_, IN), lib.zeros(1, B, H)),
    "lstm_h0_size": lambda lib: lib.nn.LSTM(IN, H, proj_size=2)(
        lib.zeros(T_, B, IN), (lib.zeros(1, B, H), lib.zeros(1, B, H))),
    "lstm_c0_size": lambda lib: lib.nn.LSTM(IN, H)(
        lib.zeros(T_, B, IN), (lib.zeros(1, B, H), lib.zeros(1, B, H + 1))),
    "lstm_hx_dims": lambda lib: lib.nn.LSTM(IN, H)(
        lib.zeros(T_, B, IN), (lib.zeros(B, H), lib.zeros(1, B, H))),
    "lstm_hx_dims_unbatched": lambda lib: lib.nn.LSTM(IN, H)(
        lib.zeros(T_, IN), (lib.zeros(1, 1, H), lib.zeros(1, H))),
    "cell_input_3d": lambda lib: lib.nn.RNNCell(IN, H)(lib.zeros(1, B, IN)),
    "cell_hidden_3d": lambda lib: lib.nn.GRUCell(IN, H)(lib.zeros(B, IN), lib.zeros(1, B, H)),
    "lstmcell_hx_3d": lambda lib: lib.nn.LSTMCell(IN, H)(
        lib.zeros(B, IN), (lib.zeros(B, H), lib.zeros(1, B, H))),
    "lstmcell_input_3d": lambda lib: lib.nn.LSTMCell(IN, H)(lib.zeros(1, B, IN)),
    "cell_input_size": lambda lib: lib.nn.RNNCell(IN, H)(lib.ones(B, IN + 1)),
    "cell_hidden_size": lambda lib: lib.nn.GRUCell(IN, H)(lib.ones(B, IN), lib.ones(B, H + 1)),
    "lstmcell_h_batch": lambda lib: lib.nn.LSTMCell(IN, H)(
        lib.ones(B, IN), (lib.ones(B - 1, H), lib.ones(B, H))),
    "lstmcell_c_size": lambda lib: lib.nn.LSTMCell(IN, H)(
        lib.ones(B, IN), (lib.ones(B, H), lib.ones(B, H - 1))),
    "cell_input_dtype": lambda lib: lib.nn.GRUCell(IN, H)(lib.ones(B, IN, dtype=lib.float64)),
    "cell_hidden_dtype": lambda lib: lib.nn.RNNCell(IN, H)(
        lib.ones(B, IN), lib.ones(B, H, dtype=lib.float64)),
    "cell_nonlinearity": lambda lib: lib.nn.RNNCell(IN, H, nonlinearity="x")(lib.ones(B, IN)),
    "cell_unbatched_2d_hx": lambda lib: lib.nn.RNNCell(IN, H)(lib.ones(IN), lib.ones(2, H)),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_match_torch(case):
    theirs = _error(ERRORS[case], torch)
    assert theirs is not None
    assert _error(ERRORS[case], tg) == theirs


def test_dropout_with_one_layer_warns_as_torch():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        tg.nn.LSTM(IN, H, dropout=0.2)


# an LSTM language model: Embedding -> LSTM -> Linear, Adam

V, E, HID, SEQ, BATCH = 11, 5, 7, 6, 3


def _lm(lib):
    class LM(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = lib.nn.Embedding(V, E)
            self.rnn = lib.nn.LSTM(E, HID, num_layers=2, batch_first=True)
            self.out = lib.nn.Linear(HID, V)

        def forward(self, tokens):
            h, _ = self.rnn(self.emb(tokens))
            return self.out(h)
    lib.manual_seed(0)
    model = LM()
    return model, lib.optim.Adam(model.parameters(), lr=0.01)


def _batches():
    rng = np.random.default_rng(9)
    return [rng.integers(0, V, (BATCH, SEQ + 1)) for _ in range(5)]


def _train(lib, step_fn=None):
    model, opt = _lm(lib)
    loss_fn = lib.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x).reshape(-1, V), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss
    if step_fn is not None:
        step = step_fn(step)
    losses = []
    for b in _batches():
        x, y = lib.tensor(b[:, :-1].copy()), lib.tensor(b[:, 1:].copy())
        losses.append(step(x, y).item())
    params = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return losses, params


def test_lstm_language_model_trains_as_torch_eager_and_compiled():
    losses_p, params_p = _train(torch)
    losses_t, params_t = _train(tg)
    np.testing.assert_allclose(losses_t, losses_p, rtol=1e-5)
    assert losses_t[-1] < losses_t[0]
    for k in params_p:
        np.testing.assert_allclose(params_t[k], params_p[k], rtol=1e-4, atol=1e-5, err_msg=k)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a graph break would run the step eagerly
        losses_c, params_c = _train(tg, lambda f: tg.compile(f, fullgraph=True))
    np.testing.assert_allclose(losses_c, losses_t, rtol=1e-5)
    for k in params_t:
        np.testing.assert_allclose(params_c[k], params_t[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_compiled_lstm_step_grads_equal_eager():
    def run(compiled):
        tg.manual_seed(1)
        lstm = tg.nn.LSTM(IN, H, num_layers=2, bidirectional=True, dtype=tg.float64)
        x = tg.randn(T_, B, IN, dtype=tg.float64)

        def step(x):
            out, (h, c) = lstm(x)
            loss = (out ** 2).mean() + h.sum() + c.mean()
            loss.backward()
            return loss
        if compiled:
            step = tg.compile(step, fullgraph=True)
        got = []
        for _ in range(3):
            lstm.zero_grad()
            loss = step(x)
            got.append((float(loss), {n: p.grad.numpy().copy()
                                      for n, p in lstm.named_parameters()}))
            with tg.no_grad():
                for p in lstm.parameters():
                    p -= 0.1 * p.grad
        return got
    for (l_e, g_e), (l_c, g_c) in zip(run(False), run(True), strict=True):
        assert l_c == pytest.approx(l_e, rel=1e-12)
        for n in g_e:
            np.testing.assert_allclose(g_c[n], g_e[n], rtol=1e-10, atol=1e-12, err_msg=n)


# nn.utils.rnn: padding and packing

LENS = [3, 5, 5, 1, 3]


def _seqs(dtype="float64", trailing=(IN,), lens=LENS, seed=10):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n,) + trailing).astype(DT[dtype][0]) for n in lens]
    return _leaves(arrays)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("trailing", [(), (2, 3)])
def test_pad_sequence_matches_torch(batch_first, padding_side, trailing):
    ours, theirs = _seqs(trailing=trailing)
    kw = {"batch_first": batch_first, "padding_value": -2.5, "padding_side": padding_side}
    a = tg.nn.utils.rnn.pad_sequence(ours, **kw)
    b = torch.nn.utils.rnn.pad_sequence(theirs, **kw)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    w = np.random.default_rng(0).standard_normal(b.shape)
    (a * tg.tensor(w)).sum().backward()
    (b * torch.tensor(w)).sum().backward()
    for s_t, s_p in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(s_t.grad.numpy(), s_p.grad.numpy())
    ints = [lib.tensor([1, 2, 3]) for lib in (tg, torch)]
    assert str(tg.nn.utils.rnn.pad_sequence([ints[0], tg.ones(1)]).dtype) == str(
        torch.nn.utils.rnn.pad_sequence([ints[1], torch.ones(1)]).dtype)


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
def test_pack_and_pad_packed_match_torch(enforce_sorted, batch_first):
    lens = sorted(LENS, reverse=True) if enforce_sorted else LENS
    ours, theirs = _seqs(lens=lens)
    padded_t = tg.nn.utils.rnn.pad_sequence(ours, batch_first=batch_first)
    padded_p = torch.nn.utils.rnn.pad_sequence(theirs, batch_first=batch_first)
    lengths = [lens, tg.tensor(lens)]
    for ln_t, ln_p in zip(lengths, [lens, torch.tensor(lens)], strict=True):
        pk_t = tg.nn.utils.rnn.pack_padded_sequence(padded_t, ln_t, batch_first, enforce_sorted)
        pk_p = torch.nn.utils.rnn.pack_padded_sequence(padded_p, ln_p, batch_first,
                                                       enforce_sorted)
        for f_t, f_p in zip(pk_t, pk_p, strict=True):
            assert (f_t is None) == (f_p is None)
            if f_t is not None:
                assert str(f_t.dtype) == str(f_p.dtype)
                np.testing.assert_array_equal(f_t.detach().numpy(), f_p.detach().numpy())
    assert isinstance(pk_t, tg.nn.utils.rnn.PackedSequence)
    for total in (None, 7):
        out_t, len_t = tg.nn.utils.rnn.pad_packed_sequence(pk_t, batch_first, 1.5, total)
        out_p, len_p = torch.nn.utils.rnn.pad_packed_sequence(pk_p, batch_first, 1.5, total)
        np.testing.assert_array_equal(out_t.detach().numpy(), out_p.detach().numpy())
        np.testing.assert_array_equal(len_t.numpy(), len_p.numpy())
        assert str(len_t.dtype) == str(len_p.dtype)
    w = np.random.default_rng(0).standard_normal(out_p.shape)
    (out_t * tg.tensor(w)).sum().backward()
    (out_p * torch.tensor(w)).sum().backward()
    for s_t, s_p in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(s_t.grad.numpy(), s_p.grad.numpy())
    seq_t = tg.nn.utils.rnn.pack_sequence(ours, enforce_sorted=enforce_sorted)
    seq_p = torch.nn.utils.rnn.pack_sequence(theirs, enforce_sorted=enforce_sorted)
    np.testing.assert_array_equal(seq_t.data.detach().numpy(), seq_p.data.detach().numpy())
    back = tg.nn.utils.rnn.unpack_sequence(seq_t)
    for s_b, s_p in zip(back, torch.nn.utils.rnn.unpack_sequence(seq_p), strict=True):
        np.testing.assert_array_equal(s_b.detach().numpy(), s_p.detach().numpy())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "h0"])
@pytest.mark.parametrize("layer", [("RNN", {}), ("GRU", {"bidirectional": True}),
                                   ("LSTM", {"num_layers": 2, "bidirectional": True}),
                                   ("LSTM", {"proj_size": 2, "bidirectional": True}),
                                   ("RNN", {"nonlinearity": "relu", "num_layers": 2,
                                            "bias": False})], ids=str)
def test_packed_input_to_layers(layer, dtype, enforce_sorted, with_state):
    name, kw = layer
    ours, theirs = _pair(name, dtype, IN, H, **kw)
    lens = sorted(LENS, reverse=True) if enforce_sorted else LENS
    rng = np.random.default_rng(12)
    arrays = [rng.standard_normal((n, IN)) for n in lens]
    if with_state:
        d = 2 if kw.get("bidirectional") else 1
        n = kw.get("num_layers", 1) * d
        hs = [H] if name != "LSTM" else [kw.get("proj_size") or H, H]
        arrays += [rng.standard_normal((n, len(lens), h)) for h in hs]

    def call(m, *leaves):
        lib = tg if isinstance(m, tg.nn.Module) else torch
        seqs, states = leaves[:len(lens)], leaves[len(lens):]
        packed = lib.nn.utils.rnn.pack_sequence(list(seqs), enforce_sorted=enforce_sorted)
        if not states:
            out, hidden = m(packed)
        else:
            out, hidden = m(packed, tuple(states) if name == "LSTM" else states[0])
        assert isinstance(out, lib.nn.utils.rnn.PackedSequence)
        padded, _ = lib.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        return padded, out.data, hidden
    _check(ours, theirs, call, arrays, dtype)


def test_packed_dropout_between_layers_follows_torch_stream():
    ours, theirs = _pair("GRU", "float64", IN, H, num_layers=2, dropout=0.5)
    rng = np.random.default_rng(13)

    def call(m, *seqs):
        lib = tg if isinstance(m, tg.nn.Module) else torch
        return m(lib.nn.utils.rnn.pack_sequence(list(seqs), enforce_sorted=False))[0].data
    _check(ours, theirs, call, [rng.standard_normal((n, IN)) for n in LENS], "float64", seed=3)


def _pk(lib):
    return lib.nn.utils.rnn


PACK_ERRORS = {
    "pad_empty": lambda lib: _pk(lib).pad_sequence([]),
    "pad_side": lambda lib: _pk(lib).pad_sequence([lib.ones(2)], padding_side="mid"),
    "pad_not_iterable": lambda lib: _pk(lib).pad_sequence(3),
    "pack_unsorted": lambda lib: _pk(lib).pack_padded_sequence(lib.ones(3, 2, 1), [1, 2]),
    "pack_zero_length": lambda lib: _pk(lib).pack_padded_sequence(lib.ones(3, 2, 1), [2, 0]),
    "pack_lengths_count": lambda lib: _pk(lib).pack_padded_sequence(lib.ones(3, 2, 1), [2]),
    "pack_empty": lambda lib: _pk(lib).pack_padded_sequence(lib.ones(0, 2, 1), [2, 1]),
    "pad_packed_total": lambda lib: _pk(lib).pad_packed_sequence(
        _pk(lib).pack_sequence([lib.ones(3)]), total_length=2),
    "packed_hidden_size": lambda lib: lib.nn.GRU(1, 2)(
        _pk(lib).pack_sequence([lib.ones(3, 1), lib.ones(2, 1)]), lib.zeros(1, 3, 2)),
    "packed_input_size": lambda lib: lib.nn.GRU(2, 2)(
        _pk(lib).pack_sequence([lib.ones(3, 1), lib.ones(2, 1)])),
}


@pytest.mark.parametrize("case", list(PACK_ERRORS))
def test_packing_errors_match_torch(case):
    theirs = _error(PACK_ERRORS[case], torch)
    assert theirs is not None
    assert _error(PACK_ERRORS[case], tg) == theirs


def test_packed_lstm_checks_input_size_without_hx():
    # torch's packed LSTM path checks nothing: a wrong input size fails inside the matmul, a
    # wrong c0 runs on; tracegrad checks as for padded input
    packed = tg.nn.utils.rnn.pack_sequence([tg.ones(3, 1), tg.ones(2, 1)])
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        tg.nn.LSTM(2, 2)(packed)
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size \(1, 2, 2\), got"):
        tg.nn.LSTM(1, 2)(packed, (tg.zeros(1, 2, 2), tg.zeros(1, 1, 2)))


def test_pack_length_longer_than_padding_is_an_error():
    with pytest.raises(RuntimeError, match="larger than the padded sequence length"):
        tg.nn.utils.rnn.pack_padded_sequence(tg.ones(3, 2, 1), [4, 2])


def _grad_fn_names(lib):
    x = lib.randn(5, 3, 4, dtype=lib.float64, requires_grad=True)
    names = []
    for name, kw in [("LSTM", {}), ("LSTM", {"batch_first": True}), ("GRU", {"batch_first": True}),
                     ("RNN", {"batch_first": True, "bidirectional": True}),
                     ("GRU", {"bidirectional": True}), ("RNN", {"num_layers": 2}),
                     ("LSTM", {"proj_size": 2})]:
        out, h = getattr(lib.nn, name)(4, 6, **kw, dtype=lib.float64)(x)
        names += [out.grad_fn.name()] + [t.grad_fn.name() for t in _flat(h)]
    names.append(lib.nn.GRU(4, 6, dtype=lib.float64)(x[0])[0].grad_fn.name())
    for cell, kw in [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}), ("LSTMCell", {}),
                     ("GRUCell", {})]:
        names += [t.grad_fn.name() for t in _flat(getattr(lib.nn, cell)(
            4, 6, **kw, dtype=lib.float64)(x[0]))]
    return names


def test_grad_fn_names_as_torch():
    """(float64: torch's float32 LSTM runs oneDNN, whose output is MkldnnRnnLayerBackward0)"""
    assert _grad_fn_names(tg) == _grad_fn_names(torch)


def test_compiled_packed_step_equals_eager():
    """Packing with Python lengths inside a compiled step is one graph (the batch sizes are
    host values beside the tensors, NOTE: [Host batch sizes])."""
    tg.manual_seed(2)
    lstm = tg.nn.LSTM(IN, H, bidirectional=True, num_layers=2, dtype=tg.float64)
    x = tg.randn(T_, 3, IN, dtype=tg.float64)

    def step(x):
        packed = tg.nn.utils.rnn.pack_padded_sequence(x, [3, 5, 2], enforce_sorted=False)
        out, (h, c) = lstm(packed)
        padded, lengths = tg.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        loss = (padded ** 2).sum() + h.sum() + c.sum() + lengths.sum()
        loss.backward()
        return loss
    compiled = tg.compile(step, fullgraph=True)
    for _ in range(2):
        lstm.zero_grad()
        eager = step(x).item()
        grads = [p.grad.numpy().copy() for p in lstm.parameters()]
        lstm.zero_grad()
        assert compiled(x).item() == pytest.approx(eager, rel=1e-12)
        for g, p in zip(grads, lstm.parameters(), strict=True):
            np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-10, atol=1e-12)
