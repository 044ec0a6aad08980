"""nn.MultiheadAttention and the Transformer layers against torch: default init under
manual_seed, state_dict keys/shapes/values (and loading each library's into the other),
reprs, outputs and the gradients of inputs and every parameter, in float32 and float64,
train (dropout 0, and dropout > 0 on torch's random stream) and eval; errors; compiled vs
eager over several Adam steps."""
import warnings

import numpy as np
import pytest
from _torch_oracle import weighted_sums

import tracegrad as tg

torch = pytest.importorskip("torch")

DT = {"float32": (np.float32, 5e-5), "float64": (np.float64, 1e-10)}
E, HEADS, L, S, N = 8, 2, 4, 5, 3


def _pair(name, dtype, *args, **kwargs):
    """The same layer under tracegrad and torch, built after the same manual_seed; kwargs
    values may be fn(module) -> value (an activation function of each library)."""
    built = []
    for T in (tg, torch):
        kw = {k: (v(T) if callable(v) else v) for k, v in kwargs.items()}
        T.manual_seed(7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built.append(getattr(T.nn, name)(*args, **kw, dtype=getattr(T, dtype)))
    ours, theirs = built
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert list(sd_ours) == list(sd_theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for k in sd_theirs:
        assert sd_ours[k].shape == tuple(sd_theirs[k].shape), k
        np.testing.assert_array_equal(sd_ours[k].numpy(), sd_theirs[k].numpy(), err_msg=k)
    assert repr(ours) == repr(theirs)
    return ours, theirs


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [] if out is None else [out]


def _check(ours, theirs, call, arrays, dtype, seed=None, train=True, grads=True):
    """call(T, module, *leaves) on both; compare every result, then the gradients of a
    random weighted sum of the results w.r.t. the float leaves and every parameter."""
    np_dtype, tol = DT[dtype]
    ours.train(train)
    theirs.train(train)
    conv = [a.astype(np_dtype) if a.dtype.kind == "f" else a for a in arrays]
    ta = [tg.tensor(a, requires_grad=grads and a.dtype.kind == "f") for a in conv]
    pa = [torch.tensor(a, requires_grad=grads and a.dtype.kind == "f") for a in conv]
    if seed is not None:
        tg.manual_seed(seed)
        torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs_t, outs_p = _flat(call(tg, ours, *ta)), _flat(call(torch, theirs, *pa))
    loss_t, loss_p = weighted_sums(outs_t, outs_p, np_dtype, tol)
    if not grads:
        return
    loss_t.backward()
    loss_p.backward()
    for a_t, a_p in zip(ta, pa, strict=True):
        if a_p.requires_grad and (a_p.grad is not None or a_t.grad is not None):
            np.testing.assert_allclose(a_t.grad.numpy(), a_p.grad.numpy(), rtol=tol, atol=tol)
    for (n, p_t), (_, p_p) in zip(ours.named_parameters(), theirs.named_parameters(),
                                   strict=True):
        if p_p.grad is None:
            assert p_t.grad is None or not p_t.grad.numpy().any(), n
            continue
        np.testing.assert_allclose(p_t.grad.numpy(), p_p.grad.numpy(), rtol=tol, atol=tol,
                                   err_msg=n)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _padding(n, s, seed=3):
    """(n, s) bool, True = padded: right-padded rows, one of them unpadded."""
    lengths = [s] + list(_rng(seed).integers(2, s, n - 1))
    return np.arange(s)[None, :] >= np.array(lengths)[:, None]


_CAUSAL = np.triu(np.ones((L, L), dtype=bool), 1)

# ---- MultiheadAttention ------------------------------------------------------------------
# (name, constructor kwargs, call(T, mha, q, k, v, *masks), inputs)


def _qkv(batch_first=False, kdim=E, vdim=E, unbatched=False, self_attn=False):
    rng = _rng()
    lead = (lambda n: (n,)) if unbatched else (
        (lambda n: (N, n)) if batch_first else (lambda n: (n, N)))
    if self_attn:
        return [rng.standard_normal(lead(L) + (E,))]
    return [rng.standard_normal(lead(L) + (E,)), rng.standard_normal(lead(S) + (kdim,)),
            rng.standard_normal(lead(S) + (vdim,))]


def _self(T, m, x, *masks, **kw):
    return m(x, x, x, *masks, **kw)


MHA_CASES = {
    "plain": ({}, lambda T, m, q, k, v: m(q, k, v), _qkv()),
    "batch_first": ({"batch_first": True}, lambda T, m, q, k, v: m(q, k, v), _qkv(True)),
    "self_attention": ({}, _self, _qkv(self_attn=True)),
    "self_batch_first_no_weights": ({"batch_first": True},
                                    lambda T, m, x: m(x, x, x, need_weights=False),
                                    [_rng().standard_normal((N, L, E))]),
    "kdim_vdim": ({"kdim": 5, "vdim": 3}, lambda T, m, q, k, v: m(q, k, v),
                  _qkv(kdim=5, vdim=3)),
    "kdim_vdim_no_weights": ({"kdim": 5, "vdim": 3, "batch_first": True},
                             lambda T, m, q, k, v: m(q, k, v, need_weights=False),
                             _qkv(True, kdim=5, vdim=3)),
    "no_bias": ({"bias": False}, lambda T, m, q, k, v: m(q, k, v), _qkv()),
    "add_bias_kv": ({"add_bias_kv": True}, lambda T, m, q, k, v: m(q, k, v), _qkv()),
    "add_zero_attn": ({"add_zero_attn": True}, lambda T, m, q, k, v: m(q, k, v), _qkv()),
    "bias_kv_zero_attn_masks": (
        {"add_bias_kv": True, "add_zero_attn": True},
        lambda T, m, q, k, v, kpm: m(q, k, v, key_padding_mask=kpm,
                                     attn_mask=T.tensor(_rng(5).random((L, S)) > 0.7)),
        _qkv() + [_padding(N, S)]),
    "key_padding_mask": ({}, lambda T, m, q, k, v, kpm: m(q, k, v, key_padding_mask=kpm),
                         _qkv() + [_padding(N, S)]),
    "key_padding_mask_no_weights": (
        {"batch_first": True},
        lambda T, m, q, k, v, kpm: m(q, k, v, key_padding_mask=kpm, need_weights=False),
        _qkv(True) + [_padding(N, S)]),
    "float_key_padding_mask": (
        {}, lambda T, m, q, k, v, kpm: m(q, k, v, key_padding_mask=kpm),
        _qkv() + [np.where(_padding(N, S), -np.inf, 0.0)]),
    "attn_mask_bool_2d": ({}, lambda T, m, x: m(x, x, x, attn_mask=T.tensor(_CAUSAL)),
                          [_rng().standard_normal((L, N, E))]),
    "attn_mask_float_3d": (
        {}, lambda T, m, q, k, v, am: m(q, k, v, attn_mask=am, need_weights=False),
        _qkv() + [_rng(4).standard_normal((N * HEADS, L, S))]),
    "attn_mask_and_padding": (
        {}, lambda T, m, q, k, v, kpm: m(q, k, v, key_padding_mask=kpm,
                                         attn_mask=T.tensor(_rng(5).random((L, S)) > 0.7)),
        _qkv() + [_padding(N, S)]),
    "per_head_weights": ({}, lambda T, m, q, k, v: m(q, k, v, average_attn_weights=False),
                         _qkv()),
    "is_causal": ({"batch_first": True}, lambda T, m, x: m(
        x, x, x, attn_mask=T.tensor(_CAUSAL), is_causal=True, need_weights=False),
        [_rng().standard_normal((N, L, E))]),
    "is_causal_with_weights": ({}, lambda T, m, x: m(
        x, x, x, attn_mask=T.tensor(_CAUSAL), is_causal=True),
        [_rng().standard_normal((L, N, E))]),
    "unbatched": ({}, lambda T, m, q, k, v: m(q, k, v), _qkv(unbatched=True)),
    "unbatched_padding_no_weights": (
        {}, lambda T, m, q, k, v, kpm: m(q, k, v, key_padding_mask=kpm, need_weights=False),
        _qkv(unbatched=True) + [_padding(N, S)[1]]),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(MHA_CASES))
def test_multihead_attention_matches_torch(case, dtype):
    kw, call, arrays = MHA_CASES[case]
    ours, theirs = _pair("MultiheadAttention", dtype, E, HEADS, **kw)
    _check(ours, theirs, call, arrays, dtype)


@pytest.mark.parametrize("case", ["plain", "self_batch_first_no_weights", "kdim_vdim",
                                  "bias_kv_zero_attn_masks", "is_causal"])
def test_multihead_attention_eval_turns_dropout_off(case):
    kw, call, arrays = MHA_CASES[case]
    ours, theirs = _pair("MultiheadAttention", "float64", E, HEADS, dropout=0.5, **kw)
    _check(ours, theirs, call, arrays, "float64", train=False)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_dropout_draws_torch_stream(need_weights):
    """dropout > 0 in training: the same mask as torch's (its CPU math path's bernoulli_)."""
    ours, theirs = _pair("MultiheadAttention", "float64", E, HEADS, dropout=0.4,
                         batch_first=True)
    _check(ours, theirs, lambda T, m, q, k, v: m(q, k, v, need_weights=need_weights),
           _qkv(True), "float64", seed=11)


def test_eval_no_grad_matches_torch_fast_path():
    """torch's inference fast path (_native_multi_head_attention) computes the same."""
    ours, theirs = _pair("MultiheadAttention", "float32", E, HEADS, batch_first=True)
    x = _rng().standard_normal((N, L, E))
    with tg.no_grad(), torch.no_grad():
        _check(ours, theirs, lambda T, m, x, kpm: m(x, x, x, key_padding_mask=kpm),
               [x, _padding(N, L)], "float32", train=False, grads=False)


# ---- Transformer layers ------------------------------------------------------------------

LAYER_OPTIONS = {
    "plain": {},
    "gelu": {"activation": "gelu"},
    "callable": {"activation": lambda T: T.nn.functional.silu},
    "module_activation": {"activation": lambda T: T.nn.GELU(approximate="tanh")},
    "norm_first": {"norm_first": True},
    "batch_first": {"batch_first": True},
    "no_bias": {"bias": False},
    "eps": {"layer_norm_eps": 1e-3, "norm_first": True, "batch_first": True},
}
D_FF = 12


def _src(batch_first, n=L, seed=0):
    return _rng(seed).standard_normal((N, n, E) if batch_first else (n, N, E))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", list(LAYER_OPTIONS))
def test_encoder_layer_matches_torch(opt, dtype):
    kw = LAYER_OPTIONS[opt]
    ours, theirs = _pair("TransformerEncoderLayer", dtype, E, HEADS, D_FF, dropout=0.0, **kw)
    bf = kw.get("batch_first", False)
    pad = _padding(N, L)
    _check(ours, theirs, lambda T, m, x: m(x), [_src(bf)], dtype)
    _check(ours, theirs, lambda T, m, x, kpm: m(
        x, src_mask=T.nn.Transformer.generate_square_subsequent_mask(L, dtype=x.dtype),
        src_key_padding_mask=kpm), [_src(bf), pad], dtype)
    _check(ours, theirs, lambda T, m, x: m(
        x, src_mask=T.nn.Transformer.generate_square_subsequent_mask(L, dtype=x.dtype),
        is_causal=True), [_src(bf)], dtype, train=False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", list(LAYER_OPTIONS))
def test_decoder_layer_matches_torch(opt, dtype):
    kw = LAYER_OPTIONS[opt]
    ours, theirs = _pair("TransformerDecoderLayer", dtype, E, HEADS, D_FF, dropout=0.0, **kw)
    bf = kw.get("batch_first", False)

    def call(T, m, tgt, mem, tpad, mpad):
        mask = T.nn.Transformer.generate_square_subsequent_mask(L, dtype=tgt.dtype)
        return m(tgt, mem, tgt_mask=mask, tgt_key_padding_mask=tpad,
                 memory_key_padding_mask=mpad)

    _check(ours, theirs, lambda T, m, t, mem: m(t, mem), [_src(bf), _src(bf, S, 1)], dtype)
    _check(ours, theirs, call, [_src(bf), _src(bf, S, 1), _padding(N, L), _padding(N, S, 4)],
           dtype)
    _check(ours, theirs, lambda T, m, t, mem: m(
        t, mem, tgt_mask=T.nn.Transformer.generate_square_subsequent_mask(L, dtype=t.dtype),
        tgt_is_causal=True, memory_mask=T.tensor(_rng(5).random((L, S)) > 0.8)),
        [_src(bf), _src(bf, S, 1)], dtype, train=False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", ["plain", "norm_first", "batch_first"])
def test_encoder_and_decoder_stacks_match_torch(opt, dtype):
    kw = LAYER_OPTIONS[opt]
    bf = kw.get("batch_first", False)
    for T in (tg, torch):
        T.manual_seed(3)
    layers = [T.nn.TransformerEncoderLayer(E, HEADS, D_FF, 0.0, dtype=getattr(T, dtype), **kw)
              for T in (tg, torch)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        norms = [T.nn.LayerNorm(E, dtype=getattr(T, dtype)) for T in (tg, torch)]
        enc = [T.nn.TransformerEncoder(lay, 2, norm) for T, lay, norm in
               zip((tg, torch), layers, norms, strict=True)]
    _same_state(*enc)
    assert repr(enc[0]) == repr(enc[1])
    _check(*enc, lambda T, m, x, kpm: m(
        x, mask=T.nn.Transformer.generate_square_subsequent_mask(L, dtype=x.dtype),
        src_key_padding_mask=kpm), [_src(bf), _padding(N, L)], dtype)
    _check(*enc, lambda T, m, x: m(
        x, mask=T.nn.Transformer.generate_square_subsequent_mask(L, dtype=x.dtype)),
        [_src(bf)], dtype, train=False)
    dec_layers = [T.nn.TransformerDecoderLayer(E, HEADS, D_FF, 0.0, dtype=getattr(T, dtype),
                                               **kw) for T in (tg, torch)]
    dec = [T.nn.TransformerDecoder(lay, 3) for T, lay in zip((tg, torch), dec_layers,
                                                              strict=True)]
    _same_state(*dec)
    _check(*dec, lambda T, m, t, mem: m(
        t, mem, tgt_mask=T.nn.Transformer.generate_square_subsequent_mask(L, dtype=t.dtype)),
        [_src(bf), _src(bf, S, 1)], dtype)


def _same_state(ours, theirs):
    sd_t, sd_p = ours.state_dict(), theirs.state_dict()
    assert list(sd_t) == list(sd_p)
    for k in sd_p:
        np.testing.assert_array_equal(sd_t[k].numpy(), sd_p[k].numpy(), err_msg=k)


def test_encoder_eval_nested_tensor_path_zeros_padding():
    """In eval with no grad, torch's encoder runs nested tensors: padded outputs are 0."""
    ours, theirs = _pair("TransformerEncoderLayer", "float32", E, HEADS, D_FF,
                         batch_first=True)
    enc = [T.nn.TransformerEncoder(lay, 2) for T, lay in ((tg, ours), (torch, theirs))]
    pad = _padding(N, L)
    with tg.no_grad(), torch.no_grad():
        _check(*enc, lambda T, m, x, kpm: m(x, src_key_padding_mask=kpm), [_src(True), pad],
               "float32", train=False, grads=False)
        out = enc[0].eval()(tg.tensor(_src(True), dtype=tg.float32),
                            src_key_padding_mask=tg.tensor(pad))
    assert not out.numpy()[pad].any() and out.numpy()[~pad].all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", ["plain", "batch_first_norm_first_gelu", "no_bias"])
def test_transformer_matches_torch(opt, dtype):
    kw = {"plain": {}, "no_bias": {"bias": False},
          "batch_first_norm_first_gelu": {"batch_first": True, "norm_first": True,
                                          "activation": "gelu"}}[opt]
    ours, theirs = _pair("Transformer", dtype, E, HEADS, 1, 1, D_FF, dropout=0.1, **kw)
    bf = kw.get("batch_first", False)

    def call(T, m, src, tgt, spad):
        mask = m.generate_square_subsequent_mask(L, dtype=tgt.dtype)
        return m(src, tgt, tgt_mask=mask, src_key_padding_mask=spad,
                 memory_key_padding_mask=spad, tgt_is_causal=True)

    arrays = [_src(bf, S, 1), _src(bf), _padding(N, S)]
    _check(ours, theirs, call, arrays, dtype, train=False)   # (dropout 0.1: off in eval)
    for m in (ours, theirs):   # dropout 0 in training
        for d in m.modules():
            if isinstance(d, (tg.nn.Dropout, torch.nn.Dropout)):
                d.p = 0.0
            elif isinstance(d, (tg.nn.MultiheadAttention, torch.nn.MultiheadAttention)):
                d.dropout = 0.0
    _check(ours, theirs, call, arrays, dtype)
    one = (lambda a: a[0]) if bf else (lambda a: a[:, 0])
    _check(ours, theirs, lambda T, m, src, tgt: m(src, tgt), [one(_src(bf, S, 1)), one(_src(bf))],
           dtype)  # unbatched


def test_transformer_dropout_in_training_draws_torch_stream():
    ours, theirs = _pair("Transformer", "float64", E, HEADS, 1, 1, D_FF, dropout=0.3,
                         batch_first=True)
    _check(ours, theirs, lambda T, m, src, tgt: m(
        src, tgt, tgt_mask=m.generate_square_subsequent_mask(L, dtype=tgt.dtype)),
        [_src(True, S, 1), _src(True)], "float64", seed=5)


def test_state_dicts_load_across_libraries():
    tg.manual_seed(1)
    torch.manual_seed(2)   # different weights, then each loads the other's
    ours = tg.nn.Transformer(E, HEADS, 1, 1, D_FF, batch_first=True, norm_first=True)
    theirs = torch.nn.Transformer(E, HEADS, 1, 1, D_FF, batch_first=True, norm_first=True)
    ours.load_state_dict({k: tg.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    _same_state(ours, theirs)
    mha = tg.nn.MultiheadAttention(E, HEADS, kdim=3, vdim=5, add_bias_kv=True)
    ref = torch.nn.MultiheadAttention(E, HEADS, kdim=3, vdim=5, add_bias_kv=True)
    ref.load_state_dict({k: torch.tensor(v.numpy()) for k, v in mha.state_dict().items()})
    _same_state(mha, ref)


def test_generate_square_subsequent_mask():
    for sz in (1, 4):
        np.testing.assert_array_equal(
            tg.nn.Transformer.generate_square_subsequent_mask(sz).numpy(),
            torch.nn.Transformer.generate_square_subsequent_mask(sz).numpy())
    m = tg.nn.Transformer.generate_square_subsequent_mask(3, dtype=tg.float64)
    assert m.dtype is tg.float64


# ---- errors ------------------------------------------------------------------------------

def _both_raise(fn, exc, match):
    for T in (tg, torch):
        with pytest.raises(exc, match=match):
            fn(T)


@pytest.mark.parametrize("fn, exc, match", [
    (lambda T: T.nn.MultiheadAttention(6, 4), AssertionError, "divisible by num_heads"),
    (lambda T: T.nn.MultiheadAttention(0, 2), ValueError, "greater than 0"),
    (lambda T: T.nn.MultiheadAttention(8, 2)(T.ones(4, 8), T.ones(5, 2, 8), T.ones(5, 2, 8)),
     AssertionError, "expected `key` and `value` to be 2-D"),
    (lambda T: T.nn.MultiheadAttention(8, 2)(T.ones(4, 2, 6), T.ones(5, 2, 6), T.ones(5, 2, 6)),
     AssertionError, "was expecting embedding dimension of 8, but got 6"),
    (lambda T: T.nn.MultiheadAttention(8, 2)(T.ones(4, 2, 8), T.ones(5, 2, 8), T.ones(5, 2, 8),
                                             attn_mask=T.ones(4, 4, dtype=T.bool)),
     RuntimeError, r"The shape of the 2D attn_mask is torch.Size\(\[4, 4\]\), but should be"),
    (lambda T: T.nn.MultiheadAttention(8, 2)(T.ones(4, 2, 8), T.ones(5, 2, 8), T.ones(5, 2, 8),
                                             key_padding_mask=T.ones(2, 5, dtype=T.long)),
     AssertionError, "only bool and floating types of key_padding_mask are supported"),
    (lambda T: T.nn.MultiheadAttention(8, 2)(T.ones(4, 2, 8), T.ones(5, 2, 8), T.ones(5, 2, 8),
                                             key_padding_mask=T.ones(2, 4, dtype=T.bool)),
     AssertionError, r"Expected key_padded_mask.shape\[1\] to be 5, but got 4"),
    (lambda T: T.nn.MultiheadAttention(8, 2)(T.ones(4, 2, 8), T.ones(4, 2, 8), T.ones(4, 2, 8),
                                             is_causal=True),
     RuntimeError, "Need attn_mask if specifying the is_causal hint"),
    (lambda T: T.nn.TransformerEncoderLayer(8, 2, activation="tanh"), RuntimeError,
     "activation should be relu/gelu, not tanh"),
    (lambda T: T.nn.Transformer(8, 2, 1, 1, 16)(T.ones(3, 2, 8), T.ones(3, 4, 8)),
     RuntimeError, "the batch number of src and tgt must be equal"),
    (lambda T: T.nn.Transformer(8, 2, 1, 1, 16)(T.ones(3, 2, 6), T.ones(3, 2, 6)),
     RuntimeError, "the feature number of src and tgt must be equal to d_model"),
], ids=range(11))
def test_errors_match_torch(fn, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _both_raise(fn, exc, match)


def _sdpa(T, q=(2, 3, 4, 8), k=(2, 3, 5, 8), v=(2, 3, 5, 8), **kw):
    return T.nn.functional.scaled_dot_product_attention(T.ones(*q), T.ones(*k), T.ones(*v), **kw)


@pytest.mark.parametrize("fn, match", [
    (lambda T: _sdpa(T, q=(8,), k=(8,), v=(8,)), "at least 2 dimensional"),
    (lambda T: T.nn.functional.scaled_dot_product_attention(
        T.ones(2, 4, 8), T.ones(2, 5, 8, dtype=T.float64), T.ones(2, 5, 8)),
     "Expected query, key, and value to have the same dtype, but got query.dtype: float "
     "key.dtype: double and value.dtype: float instead."),
    (lambda T: _sdpa(T, attn_mask=T.ones(4, 5, dtype=T.long)),
     "Expected attn_mask dtype to be bool or float or to match query dtype, but got "
     "attn_mask.dtype: long int and  query.dtype: float instead."),
    (lambda T: _sdpa(T, attn_mask=T.ones(4, 5, dtype=T.float64)), "to match query dtype"),
    (lambda T: _sdpa(T, attn_mask=T.ones(4, 6, dtype=T.bool)),
     r"The size of tensor a \(5\) must match the size of tensor b \(6\) at non-singleton "
     r"dimension 3"),
    (lambda T: _sdpa(T, k=(2, 2, 5, 8), v=(2, 2, 5, 8)),
     r"The size of tensor a \(3\) must match the size of tensor b \(2\) at non-singleton "
     r"dimension 1"),
    (lambda T: _sdpa(T, k=(2, 2, 5, 8), v=(2, 2, 5, 8), enable_gqa=True),
     "Number of heads in key and value must divide the number of heads in"),
    (lambda T: _sdpa(T, k=(3, 3, 5, 8), v=(3, 3, 5, 8)),
     r"The size of tensor a \(2\) must match the size of tensor b \(3\) at non-singleton "
     r"dimension 0"),
    (lambda T: T.nn.functional.scaled_dot_product_attention(
        T.ones(3, 4, 8), T.ones(3, 5, 8), T.ones(3, 5, 8),
        attn_mask=T.ones(4, 5, dtype=T.bool), is_causal=True),
     "Explicit attn_mask should not be set when is_causal=True"),
], ids=range(9))
def test_sdpa_errors_match_torch(fn, match):
    _both_raise(fn, RuntimeError, match)


def test_sdpa_errors_torch_leaves_vague():
    with pytest.raises(RuntimeError, match="query and key must have the same embedding size"):
        _sdpa(tg, k=(2, 3, 5, 7))
    with pytest.raises(RuntimeError, match="key and value must have the same sequence length"):
        _sdpa(tg, v=(2, 3, 6, 8))
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        _sdpa(tg, dropout_p=1.5)
    with pytest.raises(RuntimeError, match="floating point"):
        tg.nn.functional.scaled_dot_product_attention(*[tg.ones(2, 3, dtype=tg.int64)] * 3)


# ---- compiled vs eager -------------------------------------------------------------------

class _TinyLM:
    """An embedding, a causal Transformer encoder and a head, built for one library."""

    def __init__(self, T, vocab=11, bf=True, norm_first=True, dropout=0.0):
        T.manual_seed(0)
        self.emb = T.nn.Embedding(vocab, E)
        layer = T.nn.TransformerEncoderLayer(E, HEADS, D_FF, dropout, batch_first=bf,
                                             norm_first=norm_first, activation="gelu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.enc = T.nn.TransformerEncoder(layer, 2, T.nn.LayerNorm(E))
        self.head = T.nn.Linear(E, vocab)
        self.model = T.nn.ModuleList([self.emb, self.enc, self.head])
        self.opt = T.optim.Adam(self.model.parameters(), lr=1e-2)
        self.T = T

    def step(self, x, y, pad):
        T = self.T
        mask = T.ones(x.shape[1], x.shape[1], dtype=T.bool).triu(1)   # (bool, as the padding)
        h = self.enc(self.emb(x), mask=mask, is_causal=True, src_key_padding_mask=pad)
        loss = T.nn.functional.cross_entropy(self.head(h).reshape(-1, 11), y.reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss


def _without_key_bias(name, value):
    # the key projection's bias has an exactly zero gradient (softmax is shift invariant),
    # so what it gets is rounding noise, which Adam scales up to lr-sized steps
    if name.endswith("in_proj_bias"):
        return np.concatenate([value[:E], value[2 * E:]])
    return value.copy()


def test_compiled_transformer_steps_equal_eager_and_torch():
    rng = _rng(2)
    x, y = rng.integers(0, 11, (N, 6)), rng.integers(0, 11, (N, 6))
    data = [(x, y, _padding(N, 6, i % 2)) for i in range(4)]   # (the same batch: it learns)
    runs = {}
    for name, T, compiled in (("torch", torch, False), ("eager", tg, False),
                              ("compiled", tg, True)):
        lm = _TinyLM(T)
        step = tg.compile(lm.step, fullgraph=True) if compiled else lm.step
        losses = []
        with warnings.catch_warnings():
            warnings.simplefilter("error" if compiled else "ignore")  # no graph break
            for x, y, pad in data:
                losses.append(float(step(T.tensor(x), T.tensor(y), T.tensor(pad))))
        state = {k: _without_key_bias(k, v.detach().numpy()) for k, v in
                 lm.model.state_dict().items()}
        adam = [lm.opt.state[p]["exp_avg_sq"].numpy().copy() for p in lm.model.parameters()]
        runs[name] = losses, state, adam
    for other in ("eager", "compiled"):
        np.testing.assert_allclose(runs[other][0], runs["torch"][0], rtol=2e-5)
        for k in runs["torch"][1]:
            np.testing.assert_allclose(runs[other][1][k], runs["torch"][1][k], rtol=1e-4,
                                       atol=2e-5, err_msg=k)
        for a, b in zip(runs[other][2], runs["torch"][2], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-9)
    assert runs["eager"][0][-1] < runs["eager"][0][0]


def test_compiled_attention_dropout_draws_fresh_masks():
    """A compiled call's dropout mask is a fresh draw each call (no baked-in constant): with
    uniform attention over one-hot values, the output is the kept mask times 2 / S."""
    q = tg.zeros(2, 3, 6, 6)
    v = tg.eye(6).expand(2, 3, 6, 6)

    def f(q, v):
        return tg.nn.functional.scaled_dot_product_attention(q, q, v, dropout_p=0.5)

    c = tg.compile(f, fullgraph=True)
    outs = [c(q, v).numpy() * 3 for _ in range(3)]   # 0 or 1: the keep mask
    for o in outs:
        np.testing.assert_allclose(o, np.round(o), atol=1e-6)
        assert 0.3 < o.mean() < 0.7
    assert not np.array_equal(outs[1], outs[2]) and not np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("view", ["transposed", "permuted", "sliced"])
def test_dropout_of_a_permuted_tensor_draws_in_memory_order(view):
    """torch's dropout noise is empty_like(input), filled in memory order: a transposed
    input (MultiheadAttention's batch_first output) gets the mask of its layout."""
    make = {"transposed": lambda x: x.transpose(0, 1), "permuted": lambda x: x.permute(2, 0, 1),
            "sliced": lambda x: x[:, :2]}[view]
    outs = []
    for T in (tg, torch):
        T.manual_seed(4)
        outs.append(T.nn.functional.dropout(make(T.ones(4, 3, 8)), 0.5).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["4d", "3d_causal", "gqa_mask", "p1"])
def test_sdpa_dropout_matches_torch_stream(case, dtype):
    """dropout_p > 0: the keep mask is torch's CPU math path's (bernoulli_ of the scores),
    so values and gradients agree under manual_seed."""
    rng = _rng(6)
    shapes = {"4d": [(2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6)],
              "3d_causal": [(3, 5, 8), (3, 5, 8), (3, 5, 8)],
              "gqa_mask": [(2, 4, 4, 8), (2, 2, 5, 8), (2, 1, 5, 8)],
              "p1": [(2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8)]}[case]
    arrays = [rng.standard_normal(s) for s in shapes]
    kw = {"dropout_p": 1.0 if case == "p1" else 0.4, "is_causal": case == "3d_causal",
          "enable_gqa": case == "gqa_mask"}
    mask = rng.random((4, 5)) > 0.3 if case == "gqa_mask" else None

    def call(T, m, q, k, v):
        am = None if mask is None else T.tensor(mask)
        return T.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=am, **kw)

    _check(tg.nn.Identity(), torch.nn.Identity(), call, arrays, dtype, seed=9)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multi_head_attention_forward_static_kv_matches_torch(need_weights):
    """The functional form with separate projection weights and static keys/values."""
    rng = _rng(8)
    w = {"q": rng.standard_normal((E, E)), "k": rng.standard_normal((E, 5)),
         "v": rng.standard_normal((E, 3)), "b": rng.standard_normal(3 * E),
         "o": rng.standard_normal((E, E)), "ob": rng.standard_normal(E)}
    query = rng.standard_normal((L, N, E))
    sk, sv = (rng.standard_normal((N * HEADS, S, E // HEADS)) for _ in range(2))

    def call(T, m, q, wq, wk, wv, b, wo, bo, k, v):
        return T.nn.functional.multi_head_attention_forward(
            q, T.zeros(S, N, 5, dtype=q.dtype), T.zeros(S, N, 3, dtype=q.dtype), E, HEADS,
            None, b, None, None, False, 0.0, wo, bo, use_separate_proj_weight=True,
            q_proj_weight=wq, k_proj_weight=wk, v_proj_weight=wv, static_k=k, static_v=v,
            need_weights=need_weights)

    _check(tg.nn.Identity(), torch.nn.Identity(), call,
           [query, w["q"], w["k"], w["v"], w["b"], w["o"], w["ob"], sk, sv], "float64")


def test_merge_masks_matches_torch():
    rng = _rng(9)
    am, kpm = rng.standard_normal((L, L)), np.where(_padding(N, L), -np.inf, 0.0)
    am3 = rng.standard_normal((N * HEADS, L, L))
    x = rng.standard_normal((N, L, E))
    for args in ((am, kpm), (None, kpm), (am3, None), (am3, kpm), (None, None)):
        got = []
        for T in (tg, torch):
            m = T.nn.MultiheadAttention(E, HEADS, batch_first=True)
            a, k = (None if v is None else T.tensor(v) for v in args)
            merged, kind = m.merge_masks(a, k, T.tensor(x))
            got.append((None if merged is None else merged.numpy(), kind))
        assert got[0][1] == got[1][1]
        if got[1][0] is None:
            assert got[0][0] is None
        else:
            np.testing.assert_array_equal(got[0][0], got[1][0])


def test_compiled_attention_lowers_to_jax_fused_attention_where_it_applies(monkeypatch):
    jax = pytest.importorskip("jax")
    real, calls = jax.nn.dot_product_attention, []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("is_causal"))
        return real(*args, **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", counting)
    q = tg.tensor(_rng().standard_normal((2, HEADS, L, E)), dtype=tg.float32)
    sdpa = tg.nn.functional.scaled_dot_product_attention
    for kw, fused in (({"is_causal": True}, True),
                      ({"attn_mask": tg.tensor(_CAUSAL)}, False),   # masks: jnp (zero rows)
                      ({"dropout_p": 0.3}, False)):
        calls.clear()
        c = tg.compile(lambda q, kw=kw: sdpa(q, q, q, **kw), fullgraph=True)
        c(q)
        out = c(q)   # compiled
        assert bool(calls) == fused, kw
        if "dropout_p" not in kw:
            np.testing.assert_allclose(out.numpy(), sdpa(q, q, q, **kw).numpy(), rtol=1e-5,
                                       atol=1e-6)
