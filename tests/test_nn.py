"""tracegrad.nn: the Module API, layers, init, and every functional/loss vs torch."""
import copy
import math
import pickle

import numpy as np
import pytest

import tracegrad as tg
import tracegrad.nn as nn
import tracegrad.nn.functional as F
from tracegrad.nn import init


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(8, 3))
        self.register_buffer("scale", tg.ones(3))
        self.register_buffer("scratch", tg.zeros(2), persistent=False)

    def forward(self, x):
        return self.body(self.fc1(x)) * self.scale


# ----------------------------------------------------------------------------
# Module API

def test_import_styles():
    import tracegrad.nn as nn_b
    from tracegrad import nn as nn_a
    assert nn_a is nn_b is tg.nn
    assert tg.optim.SGD is not None


def test_named_parameters_buffers_and_modules():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "fc1.weight", "fc1.bias", "body.1.weight", "body.1.bias"]
    assert [n for n, _ in net.named_buffers()] == ["scale", "scratch"]
    assert [n for n, _ in net.named_children()] == ["fc1", "body"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "body", "body.0", "body.1"]
    assert len(list(net.modules())) == 5
    assert len(list(net.parameters(recurse=False))) == 0
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())


def test_shared_parameter_listed_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.named_modules())) == 2


def test_forward_backward_through_module():
    tg.manual_seed(0)
    net = Net()
    out = net(tg.randn(5, 4))
    assert out.shape == (5, 3)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())


def test_zero_grad_sets_to_none_by_default():
    net = Net()
    net(tg.randn(2, 4)).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all(float(p.grad.abs().sum()) == 0.0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_train_eval_flag_reaches_children():
    net = Net()
    assert net.training and net.body[0].training
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_apply_visits_children_first():
    seen = []
    Net().apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Linear", "Sequential", "Net"]


def test_submodule_replacement_by_assignment():
    net = Net()
    old = [id(p) for p in net.parameters()]
    net.fc1 = nn.Linear(4, 8, bias=False)
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc1.weight", "body.1.weight", "body.1.bias"]
    assert id(net.fc1.weight) not in old
    net.body[1] = nn.Identity()
    assert [n for n, _ in net.named_parameters()] == ["fc1.weight"]


def test_attribute_rules():
    net = Net()
    with pytest.raises(TypeError, match="parameter 'weight'"):
        net.fc1.weight = tg.ones(8, 4)
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'missing'"):
        _ = net.missing
    net.scale = tg.full((3,), 2.0)  # buffers may be reassigned with tensors
    assert float(net.scale.sum()) == 6.0
    del net.scale
    assert "scale" not in dict(net.named_buffers())

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tg.ones(1))
    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()


def test_register_parameter_and_buffer_errors():
    m = nn.Module()
    with pytest.raises(TypeError):
        m.register_parameter("w", tg.ones(2))
    with pytest.raises(KeyError):
        m.register_buffer("a.b", tg.ones(2))
    m.register_parameter("w", None)
    assert list(m.parameters()) == [] and m.w is None
    with pytest.raises(NotImplementedError, match="forward"):
        m(tg.ones(1))


def test_state_dict_round_trip():
    tg.manual_seed(1)
    a, b = Net(), Net()
    sd = a.state_dict()
    # own parameters and buffers first, then each child's (PyTorch's order)
    assert list(sd) == ["scale", "fc1.weight", "fc1.bias", "body.1.weight", "body.1.bias"]
    assert all(t.grad_fn is None and not t.requires_grad for t in sd.values())
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = tg.randn(3, 4)
    assert np.array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    # the state_dict shares memory with the module
    with tg.no_grad():
        a.fc1.bias.fill_(7.0)
    assert float(sd["fc1.bias"][0]) == 7.0


def test_load_state_dict_errors():
    net = Net()
    sd = net.state_dict()
    del sd["fc1.bias"]
    sd["extra"] = tg.ones(1)
    with pytest.raises(RuntimeError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert "Error(s) in loading state_dict for Net" in msg
    assert 'Missing key(s) in state_dict: "fc1.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra"' in msg
    keys = net.load_state_dict(sd, strict=False)
    assert keys.missing_keys == ["fc1.bias"] and keys.unexpected_keys == ["extra"]
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        nn.Linear(2, 3).load_state_dict(nn.Linear(3, 3).state_dict())


def test_load_state_dict_keeps_parameter_objects():
    net = Net()
    before = list(net.parameters())
    net.load_state_dict(Net().state_dict())
    assert all(p is q for p, q in zip(before, net.parameters(), strict=True))


def test_to_double_and_float_keep_parameters():
    net = Net()
    params = list(net.parameters())
    net.double()
    assert all(p.dtype is tg.float64 for p in net.parameters()) and net.scale.dtype is tg.float64
    assert all(p is q for p, q in zip(params, net.parameters(), strict=True))
    assert net(tg.randn(2, 4, dtype=tg.float64)).dtype is tg.float64
    net.to(tg.float32)
    assert all(p.dtype is tg.float32 for p in net.parameters())
    assert net.to("cpu") is net


def test_forward_hooks():
    lin = nn.Linear(2, 2)
    calls = []
    h = lin.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    lin(tg.ones(3, 2))
    h.remove()
    lin(tg.ones(3, 2))
    assert calls == [(3, 2)]


def test_deepcopy_and_pickle_keep_parameters():
    net = Net()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert all(isinstance(p, nn.Parameter) for p in clone.parameters())
        for p, q in zip(net.parameters(), clone.parameters(), strict=True):
            assert p is not q and np.array_equal(p.detach().numpy(), q.detach().numpy())


REPRS = [
    (lambda: nn.Linear(3, 4), "Linear(in_features=3, out_features=4, bias=True)"),
    (lambda: nn.Linear(3, 4, bias=False), "Linear(in_features=3, out_features=4, bias=False)"),
    (lambda: nn.ReLU(), "ReLU()"),
    (lambda: nn.GELU(approximate="tanh"), "GELU(approximate='tanh')"),
    (lambda: nn.Dropout(), "Dropout(p=0.5, inplace=False)"),
    (lambda: nn.Softmax(dim=1), "Softmax(dim=1)"),
    (lambda: nn.Flatten(0, 2), "Flatten(start_dim=0, end_dim=2)"),
    (lambda: nn.Embedding(3, 4, padding_idx=0), "Embedding(3, 4, padding_idx=0)"),
    (lambda: nn.LayerNorm(4), "LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True)"),
    (lambda: nn.CrossEntropyLoss(), "CrossEntropyLoss()"),
    (lambda: nn.Sequential(), "Sequential()"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Tanh()),
     "Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n  (1): Tanh()\n)"),
    (lambda: nn.ModuleList([nn.Linear(1, 1), nn.Linear(1, 1), nn.Sigmoid()]),
     "ModuleList(\n  (0-1): 2 x Linear(in_features=1, out_features=1, bias=True)\n"
     "  (2): Sigmoid()\n)"),
    (lambda: Net(), "Net(\n  (fc1): Linear(in_features=4, out_features=8, bias=True)\n"
     "  (body): Sequential(\n    (0): ReLU()\n"
     "    (1): Linear(in_features=8, out_features=3, bias=True)\n  )\n)"),
]


@pytest.mark.parametrize("make, text", REPRS)
def test_repr(make, text):
    assert repr(make()) == text


def test_parameter_basics():
    p = nn.Parameter(tg.ones(2))
    assert repr(p) == "Parameter containing:\ntensor([1., 1.], requires_grad=True)"
    assert isinstance(p, tg.Tensor) and p.is_leaf and p.requires_grad
    assert type(p * 2) is tg.Tensor
    assert not nn.Parameter(tg.ones(1), requires_grad=False).requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(tg.ones(2, dtype=tg.int64))
    base = tg.zeros(2)
    q = nn.Parameter(base)
    with tg.no_grad():
        q.add_(1.0)
    assert base.tolist() == [1.0, 1.0]  # shares memory with the wrapped tensor


def test_sequential_and_modulelist_containers():
    layers = [nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and seq[-1] is layers[2] and list(seq) == layers
    assert isinstance(seq[:2], nn.Sequential) and len(seq[:2]) == 2
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and [n for n, _ in seq.named_children()] == ["0", "1", "2", "3"]
    del seq[1]
    assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Sigmoid"]
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2"]
    with pytest.raises(IndexError):
        seq[5]
    ml = nn.ModuleList([nn.Linear(2, 2)])
    ml.append(nn.Linear(2, 3))
    ml += [nn.Tanh()]
    assert len(ml) == 3 and len(list(ml.parameters())) == 4
    assert isinstance(ml[1:], nn.ModuleList)


# ----------------------------------------------------------------------------
# init

def test_linear_init_bounds():
    tg.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # a U(-bound, bound) sample of 120000 values fills the interval
    assert np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound


def test_linear_init_is_seeded():
    tg.manual_seed(3)
    a = nn.Linear(5, 5).weight.detach().numpy()
    tg.manual_seed(3)
    b = nn.Linear(5, 5).weight.detach().numpy()
    assert np.array_equal(a, b)


@pytest.mark.parametrize("fn, kwargs, check", [
    (init.zeros_, {}, lambda w: (w == 0).all()),
    (init.ones_, {}, lambda w: (w == 1).all()),
    (init.constant_, {"val": 0.25}, lambda w: (w == 0.25).all()),
    (init.uniform_, {"a": -2.0, "b": -1.0}, lambda w: (w >= -2).all() and (w < -1).all()),
    (init.normal_, {"mean": 5.0, "std": 0.1}, lambda w: abs(w.mean() - 5) < 0.05),
    (init.xavier_uniform_, {}, lambda w: np.abs(w).max() <= math.sqrt(6 / 300)),
    (init.xavier_normal_, {"gain": 2.0}, lambda w: abs(w.std() - 2 * math.sqrt(2 / 300)) < 0.01),
    (init.kaiming_uniform_, {"nonlinearity": "relu"},
     lambda w: np.abs(w).max() <= math.sqrt(2) * math.sqrt(3 / 100)),
    (init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "relu"},
     lambda w: abs(w.std() - math.sqrt(2 / 200)) < 0.01),
])
def test_init_functions(fn, kwargs, check):
    tg.manual_seed(0)
    w = nn.Parameter(tg.empty(200, 100))
    assert fn(w, **kwargs) is w
    assert w.grad_fn is None and w.requires_grad
    assert check(w.detach().numpy())


def test_init_helpers():
    assert init._calculate_fan_in_and_fan_out(tg.empty(3, 4, 5)) == (20, 15)
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == math.sqrt(2 / 6)
    assert init.calculate_gain("tanh") == 5 / 3
    with pytest.raises(ValueError, match="fewer than 2"):
        init.xavier_uniform_(tg.empty(3))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("cosine")


# ----------------------------------------------------------------------------
# layers and functionals

def test_dropout_train_and_eval():
    tg.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = tg.ones(100, 100, requires_grad=True)
    y = drop(x)
    vals = set(np.unique(y.detach().numpy()).tolist())
    assert vals <= {0.0, float(np.float32(1 / 0.75))} and 0.2 < float((y == 0).float().mean()) < 0.3
    assert y.grad_fn.name() == "MulBackward0"
    y.sum().backward()
    assert np.array_equal(x.grad.numpy(), y.detach().numpy())
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


def test_embedding_padding_row_gets_no_grad():
    emb = nn.Embedding(5, 3, padding_idx=1)
    assert emb.weight[1].tolist() == [0.0, 0.0, 0.0]
    out = emb(tg.tensor([[1, 2], [2, 4]]))
    assert out.shape == (2, 2, 3) and out.grad_fn.name() == "EmbeddingBackward0"
    out.sum().backward()
    assert emb.weight.grad[:, 0].tolist() == [0.0, 0.0, 2.0, 0.0, 1.0]
    with pytest.raises(IndexError, match="index out of range"):
        emb(tg.tensor([5]))


def test_flatten_identity_and_activations_shapes():
    x = tg.randn(2, 3, 4)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Identity(7, foo=1)(x) is x
    assert nn.Softmax(dim=-1)(x).sum(-1).allclose(tg.ones(2, 3))


# every entry: name, tracegrad fn, torch fn, input makers (numpy -> float64 arrays),
# which inputs are differentiable, extra non-tensor args
RNG = np.random.default_rng(0)


def _arr(*shape, lo=None, hi=None):
    if lo is not None:
        return RNG.uniform(lo, hi, shape)
    return RNG.standard_normal(shape)


TARGET = np.array([0, 2, 1, 4, 2, 3])
TARGET_IGNORED = np.array([0, -100, 1, 4, -100, 3])
TARGET_3D = RNG.integers(0, 5, (6, 2))
CLASS_W = RNG.uniform(0.5, 2.0, 5)

# (id, fn name, args, grad args, kwargs, torch grad_fn name or None)
FUNCTIONAL_CASES = [
    ("relu", "relu", [_arr(4, 5)], [0], {}, "ReluBackward0"),
    ("leaky_relu", "leaky_relu", [_arr(4, 5)], [0], {"negative_slope": 0.2},
     "LeakyReluBackward0"),
    ("gelu", "gelu", [_arr(4, 5)], [0], {}, "GeluBackward0"),
    ("gelu_tanh", "gelu", [_arr(4, 5)], [0], {"approximate": "tanh"}, "GeluBackward0"),
    ("sigmoid", "sigmoid", [_arr(4, 5)], [0], {}, "SigmoidBackward0"),
    ("tanh", "tanh", [_arr(4, 5)], [0], {}, "TanhBackward0"),
    ("softmax", "softmax", [_arr(4, 5)], [0], {"dim": 1}, "SoftmaxBackward0"),
    ("log_softmax", "log_softmax", [_arr(4, 5)], [0], {"dim": 0}, "LogSoftmaxBackward0"),
    ("linear", "linear", [_arr(6, 4), _arr(3, 4), _arr(3)], [0, 1, 2], {}, "AddmmBackward0"),
    ("linear_nobias", "linear", [_arr(6, 4), _arr(3, 4)], [0, 1], {}, "MmBackward0"),
    ("linear_3d", "linear", [_arr(2, 6, 4), _arr(3, 4), _arr(3)], [0, 1, 2], {},
     "ViewBackward0"),
    ("linear_1d", "linear", [_arr(4), _arr(3, 4), _arr(3)], [0, 1, 2], {}, "ViewBackward0"),
    ("layer_norm", "layer_norm", [_arr(3, 4, 5), (5,), _arr(5), _arr(5)], [0, 2, 3], {},
     "NativeLayerNormBackward0"),
    ("layer_norm_2d_noaffine", "layer_norm", [_arr(3, 4, 5), (4, 5)], [0], {"eps": 1e-3},
     "NativeLayerNormBackward0"),
    ("mse", "mse_loss", [_arr(4, 5), _arr(4, 5)], [0, 1], {}, "MseLossBackward0"),
    ("mse_sum", "mse_loss", [_arr(4, 5), _arr(4, 5)], [0], {"reduction": "sum"},
     "MseLossBackward0"),
    ("mse_none", "mse_loss", [_arr(4, 5), _arr(4, 5)], [0], {"reduction": "none"},
     "MseLossBackward0"),
    ("l1", "l1_loss", [_arr(4, 5), _arr(4, 5)], [0, 1], {}, "MeanBackward0"),
    ("l1_none", "l1_loss", [_arr(4, 5), _arr(4, 5)], [0], {"reduction": "none"}, "AbsBackward0"),
    ("nll", "nll_loss", [_arr(6, 5), TARGET], [0], {}, "NllLossBackward0"),
    ("nll_weight_ignore", "nll_loss", [_arr(6, 5), TARGET_IGNORED], [0],
     {"weight": CLASS_W}, "NllLossBackward0"),
    ("nll_sum", "nll_loss", [_arr(6, 5), TARGET_IGNORED], [0], {"reduction": "sum"},
     "NllLossBackward0"),
    ("nll_none", "nll_loss", [_arr(6, 5), TARGET_IGNORED], [0],
     {"reduction": "none", "ignore_index": -100}, "NllLossBackward0"),
    ("nll_1d", "nll_loss", [_arr(5), np.array(3)], [0], {}, "NllLossBackward0"),
    ("ce", "cross_entropy", [_arr(6, 5), TARGET], [0], {}, "NllLossBackward0"),
    ("ce_weight", "cross_entropy", [_arr(6, 5), TARGET], [0], {"weight": CLASS_W},
     "NllLossBackward0"),
    ("ce_ignore_custom", "cross_entropy", [_arr(6, 5), np.where(TARGET == 2, 7, TARGET)], [0],
     {"ignore_index": 7}, "NllLossBackward0"),
    ("ce_sum", "cross_entropy", [_arr(6, 5), TARGET], [0], {"reduction": "sum"},
     "NllLossBackward0"),
    ("ce_none", "cross_entropy", [_arr(6, 5), TARGET], [0], {"reduction": "none"},
     "NllLossBackward0"),
    ("ce_smooth", "cross_entropy", [_arr(6, 5), TARGET], [0], {"label_smoothing": 0.1},
     "AddBackward0"),
    ("ce_smooth_weight_ignore", "cross_entropy", [_arr(6, 5), TARGET_IGNORED], [0],
     {"label_smoothing": 0.2, "weight": CLASS_W}, "AddBackward0"),
    ("ce_smooth_sum_ignore", "cross_entropy", [_arr(6, 5), TARGET_IGNORED], [0],
     {"label_smoothing": 0.3, "reduction": "sum"}, "AddBackward0"),
    ("ce_smooth_none_weight", "cross_entropy", [_arr(6, 5), TARGET_IGNORED], [0],
     {"label_smoothing": 0.3, "reduction": "none", "weight": CLASS_W}, "AddBackward0"),
    ("ce_3d", "cross_entropy", [_arr(6, 5, 2), TARGET_3D], [0], {}, "NllLoss2DBackward0"),
    ("ce_3d_smooth", "cross_entropy", [_arr(6, 5, 2), TARGET_3D], [0],
     {"label_smoothing": 0.1, "reduction": "none"}, "AddBackward0"),
    ("ce_1d", "cross_entropy", [_arr(5), np.array(1)], [0], {}, "NllLossBackward0"),
    ("ce_probs", "cross_entropy", [_arr(6, 5), _arr(6, 5, lo=0, hi=1)], [0, 1], {},
     "DivBackward1"),
    ("ce_probs_smooth_weight", "cross_entropy", [_arr(6, 5), _arr(6, 5, lo=0, hi=1)], [0],
     {"label_smoothing": 0.2, "weight": CLASS_W, "reduction": "sum"}, None),
    ("bce", "binary_cross_entropy", [_arr(4, 5, lo=0.01, hi=0.99), _arr(4, 5, lo=0, hi=1)],
     [0, 1], {}, "BinaryCrossEntropyBackward0"),
    ("bce_weight_none", "binary_cross_entropy",
     [_arr(4, 5, lo=0.01, hi=0.99), _arr(4, 5, lo=0, hi=1)], [0],
     {"weight": _arr(5, lo=0, hi=2), "reduction": "none"}, "BinaryCrossEntropyBackward0"),
    ("bce_sum", "binary_cross_entropy", [_arr(4, 5, lo=0.01, hi=0.99), _arr(4, 5, lo=0, hi=1)],
     [0], {"reduction": "sum"}, "BinaryCrossEntropyBackward0"),
    ("bce_logits", "binary_cross_entropy_with_logits", [_arr(4, 5) * 3, _arr(4, 5, lo=0, hi=1)],
     [0, 1], {}, "BinaryCrossEntropyWithLogitsBackward0"),
    ("bce_logits_none", "binary_cross_entropy_with_logits",
     [_arr(4, 5) * 3, _arr(4, 5, lo=0, hi=1)], [0], {"reduction": "none"},
     "BinaryCrossEntropyWithLogitsBackward0"),
    ("bce_logits_pos_weight", "binary_cross_entropy_with_logits",
     [_arr(4, 5) * 3, _arr(4, 5, lo=0, hi=1)], [0, 1],
     {"pos_weight": _arr(5, lo=0.5, hi=3)}, "BinaryCrossEntropyWithLogitsBackward0"),
    ("bce_logits_both_weights_none", "binary_cross_entropy_with_logits",
     [_arr(4, 5) * 3, _arr(4, 5, lo=0, hi=1)], [0],
     {"pos_weight": _arr(5, lo=0.5, hi=3), "weight": _arr(4, 1, lo=0, hi=2),
      "reduction": "none"}, "BinaryCrossEntropyWithLogitsBackward0"),
    ("bce_logits_huge", "binary_cross_entropy_with_logits",
     [np.array([[1000.0, -1000.0, 800.0], [-1000.0, 1000.0, 0.0]]),
      np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 1.0]])], [0], {"reduction": "sum"},
     "BinaryCrossEntropyWithLogitsBackward0"),
    ("bce_logits_huge_pos_weight", "binary_cross_entropy_with_logits",
     [np.array([1000.0, -1000.0, 30.0]), np.array([0.0, 1.0, 0.25])], [0],
     {"pos_weight": np.array([2.0, 3.0, 0.5])}, "BinaryCrossEntropyWithLogitsBackward0"),
]

# ---- nn extras (issue 11): more losses and distances ---------------------------
SIGNS = np.sign(RNG.standard_normal((4, 5)))
LABELS = np.array([1.0, -1.0, 1.0, -1.0])
MULTI_T = np.array([0, 2, 1, 4])
EXTRA_LOSS_CASES = [
    ("smooth_l1", "smooth_l1_loss", [_arr(4, 5), _arr(4, 5)], [0, 1], {}, "SmoothL1LossBackward0"),
    ("smooth_l1_beta_none", "smooth_l1_loss", [_arr(4, 5), _arr(4, 5)], [0, 1],
     {"beta": 0.3, "reduction": "none"}, "SmoothL1LossBackward0"),
    ("smooth_l1_beta0_sum", "smooth_l1_loss", [_arr(4, 5), _arr(4, 5)], [0],
     {"beta": 0.0, "reduction": "sum"}, "SumBackward0"),
    ("huber", "huber_loss", [_arr(4, 5) * 2, _arr(4, 5)], [0, 1], {"delta": 0.7},
     "HuberLossBackward0"),
    ("huber_none", "huber_loss", [_arr(4, 5) * 2, _arr(4, 5)], [0], {"reduction": "none"},
     "HuberLossBackward0"),
    ("huber_weight_sum", "huber_loss", [_arr(4, 5) * 2, _arr(4, 5)], [0],
     {"reduction": "sum", "weight": _arr(4, 5, lo=0, hi=2)}, "SumBackward0"),
    ("kl_div_batchmean", "kl_div", [_arr(4, 5), _arr(4, 5, lo=0.05, hi=1)], [0, 1],
     {"reduction": "batchmean"}, "DivBackward0"),
    ("kl_div_none_zero_target", "kl_div", [_arr(4, 5), np.where(SIGNS > 0, 0.5, 0.0)], [0],
     {"reduction": "none"}, "SubBackward0"),
    ("kl_div_log_target_sum", "kl_div", [_arr(4, 5), _arr(4, 5)], [0, 1],
     {"reduction": "sum", "log_target": True}, "SumBackward0"),
    ("poisson_nll", "poisson_nll_loss", [_arr(4, 5), _arr(4, 5, lo=0, hi=4)], [0, 1], {},
     "MeanBackward0"),
    ("poisson_nll_rate_full_none", "poisson_nll_loss",
     [_arr(4, 5, lo=0.1, hi=3), _arr(4, 5, lo=0, hi=4)], [0],
     {"log_input": False, "full": True, "reduction": "none"}, "AddBackward0"),
    ("poisson_nll_eps_sum", "poisson_nll_loss", [_arr(4, 5, lo=0.0, hi=3), _arr(4, 5, lo=0, hi=4)],
     [0], {"log_input": False, "eps": 0.1, "reduction": "sum"}, "SumBackward0"),
    ("gaussian_nll", "gaussian_nll_loss",
     [_arr(4, 5), _arr(4, 5), _arr(4, 5, lo=0.1, hi=2)], [0, 1, 2], {}, "MeanBackward0"),
    ("gaussian_nll_var_short_full_none", "gaussian_nll_loss",
     [_arr(4, 5), _arr(4, 5), _arr(4, lo=0.1, hi=2)], [0, 2],
     {"full": True, "reduction": "none"}, "AddBackward0"),
    ("gaussian_nll_var_bcast_clamped_sum", "gaussian_nll_loss",
     [_arr(4, 5), _arr(4, 5), np.array([[0.5], [1e-9], [2.0], [0.0]])], [0, 2],
     {"reduction": "sum", "eps": 1e-3}, "SumBackward0"),
    ("margin_ranking", "margin_ranking_loss", [_arr(4), _arr(4), LABELS], [0, 1],
     {"margin": 0.2}, "MeanBackward0"),
    ("margin_ranking_none", "margin_ranking_loss", [_arr(4), _arr(4), LABELS], [0, 1],
     {"reduction": "none"}, "ClampMinBackward0"),
    ("hinge_embedding", "hinge_embedding_loss", [_arr(4, 5), SIGNS], [0], {"margin": 0.5},
     "MeanBackward0"),
    ("hinge_embedding_none", "hinge_embedding_loss", [_arr(4, 5), SIGNS], [0],
     {"reduction": "none"}, "AddBackward0"),
    ("soft_margin", "soft_margin_loss", [_arr(4, 5), SIGNS], [0], {}, "SoftMarginLossBackward0"),
    ("soft_margin_none", "soft_margin_loss", [_arr(4, 5), SIGNS], [0], {"reduction": "none"},
     "SoftMarginLossBackward0"),
    ("multilabel_soft_margin", "multilabel_soft_margin_loss",
     [_arr(4, 5) * 3, (SIGNS > 0) * 1.0], [0, 1], {}, "MeanBackward0"),
    ("multilabel_soft_margin_weight_none", "multilabel_soft_margin_loss",
     [_arr(4, 5) * 3, (SIGNS > 0) * 1.0], [0],
     {"weight": _arr(5, lo=0.5, hi=2), "reduction": "none"}, "DivBackward0"),
    ("cosine_embedding", "cosine_embedding_loss", [_arr(4, 5), _arr(4, 5), LABELS], [0, 1],
     {"margin": -0.2}, "MeanBackward0"),
    ("cosine_embedding_none", "cosine_embedding_loss", [_arr(4, 5), _arr(4, 5), LABELS],
     [0, 1], {"reduction": "none"}, "AddBackward0"),
    ("cosine_embedding_1d_sum", "cosine_embedding_loss", [_arr(5), _arr(5), np.array(-1.0)],
     [0, 1], {"reduction": "sum", "margin": -0.5}, "SumBackward0"),
    ("triplet_margin", "triplet_margin_loss", [_arr(4, 5), _arr(4, 5), _arr(4, 5)], [0, 1, 2],
     {}, "MeanBackward0"),
    ("triplet_margin_p1_swap_none", "triplet_margin_loss",
     [_arr(4, 5), _arr(4, 5), _arr(4, 5)], [0, 1, 2],
     {"p": 1, "swap": True, "margin": 2.0, "reduction": "none"}, "ClampMinBackward0"),
    ("triplet_margin_pinf_sum", "triplet_margin_loss", [_arr(4, 5), _arr(4, 5), _arr(4, 5)],
     [0, 1, 2], {"p": float("inf"), "reduction": "sum", "margin": 3.0}, "SumBackward0"),
    ("multi_margin", "multi_margin_loss", [_arr(4, 5), MULTI_T], [0], {},
     "MultiMarginLossBackward0"),
    ("multi_margin_p2_weight_none", "multi_margin_loss", [_arr(4, 5), MULTI_T], [0],
     {"p": 2, "margin": 0.5, "weight": _arr(5, lo=0.5, hi=2), "reduction": "none"},
     "MultiMarginLossBackward0"),
    ("multi_margin_1d_sum", "multi_margin_loss", [_arr(5), np.array(3)], [0],
     {"reduction": "sum"}, "MultiMarginLossBackward0"),
    ("multilabel_margin", "multilabel_margin_loss",
     [_arr(3, 4), np.array([[3, 0, -1, 1], [1, 1, 2, -1], [0, 1, 2, 3]])], [0], {},
     "MultilabelMarginLossBackward0"),
    ("multilabel_margin_none", "multilabel_margin_loss",
     [_arr(3, 4), np.array([[3, 0, -1, 1], [-1, 1, 2, 0], [2, -1, 2, 3]])], [0],
     {"reduction": "none"}, "MultilabelMarginLossBackward0"),
    ("multilabel_margin_1d_sum", "multilabel_margin_loss", [_arr(4), np.array([2, 0, -1, 3])],
     [0], {"reduction": "sum"}, "MultilabelMarginLossBackward0"),
    ("cosine_similarity", "cosine_similarity", [_arr(4, 5), _arr(4, 5)], [0, 1], {},
     "SumBackward1"),
    ("cosine_similarity_bcast_dim", "cosine_similarity", [_arr(3, 1, 5), _arr(4, 5)], [0, 1],
     {"dim": -1, "eps": 1e-3}, "SumBackward1"),
    ("cosine_similarity_zero_row", "cosine_similarity",
     [np.vstack([np.zeros(5), _arr(5)]), _arr(2, 5)], [0, 1], {}, "SumBackward1"),
    ("pairwise_distance", "pairwise_distance", [_arr(4, 5), _arr(4, 5)], [0, 1], {},
     "NormBackward1"),
    ("pairwise_distance_p3_keepdim_bcast", "pairwise_distance", [_arr(5), _arr(4, 5)], [0, 1],
     {"p": 3.0, "keepdim": True, "eps": 0.0}, "NormBackward1"),
    ("pairwise_distance_p1", "pairwise_distance", [_arr(4, 5), _arr(4, 5)], [0, 1],
     {"p": 1.0}, "NormBackward1"),
]
FUNCTIONAL_CASES += EXTRA_LOSS_CASES


def _to(lib, value, requires_grad=False):
    if isinstance(value, np.ndarray):
        t = lib.tensor(value)
        return t.requires_grad_() if requires_grad else t
    return value


@pytest.mark.parametrize("case", FUNCTIONAL_CASES, ids=[c[0] for c in FUNCTIONAL_CASES])
def test_functional_matches_torch(case):
    torch = pytest.importorskip("torch")
    _, name, args, grad_args, kwargs, grad_fn = case
    results = {}
    for lib, fmod in ((torch, torch.nn.functional), (tg, F)):
        targs = [_to(lib, a, i in grad_args) for i, a in enumerate(args)]
        tkw = {k: _to(lib, v) for k, v in kwargs.items()}
        out = getattr(fmod, name)(*targs, **tkw)
        seed = np.random.default_rng(1).standard_normal(tuple(out.shape))
        (out * lib.tensor(seed)).sum().backward()
        grads = [targs[i].grad.numpy() for i in grad_args]
        name_ = out.grad_fn.name() if out.grad_fn is not None else None
        results[lib.__name__] = (out.detach().numpy(), grads, name_)
    (t_out, t_grads, t_name), (g_out, g_grads, g_name) = results["torch"], results["tracegrad"]
    assert np.all(np.isfinite(g_out)) and all(np.all(np.isfinite(g)) for g in g_grads)
    np.testing.assert_allclose(g_out, t_out, rtol=1e-10, atol=1e-12)
    for g, t in zip(g_grads, t_grads, strict=True):
        np.testing.assert_allclose(g, t, rtol=1e-9, atol=1e-12)
    if grad_fn is not None:
        assert t_name == grad_fn  # the table is right about torch
        assert g_name == grad_fn


LOSS_MODULES = [
    ("MSELoss", {}, _arr(4, 3), _arr(4, 3)),
    ("L1Loss", {"reduction": "sum"}, _arr(4, 3), _arr(4, 3)),
    ("CrossEntropyLoss", {"label_smoothing": 0.1, "ignore_index": 2}, _arr(6, 5), TARGET),
    ("NLLLoss", {"weight": CLASS_W}, _arr(6, 5), TARGET),
    ("BCELoss", {}, _arr(4, 3, lo=0.1, hi=0.9), _arr(4, 3, lo=0, hi=1)),
    ("BCEWithLogitsLoss", {"pos_weight": _arr(3, lo=1, hi=2)}, _arr(4, 3), _arr(4, 3, lo=0, hi=1)),
]


@pytest.mark.parametrize("name, kwargs, x, y", LOSS_MODULES, ids=[c[0] for c in LOSS_MODULES])
def test_loss_modules_match_torch(name, kwargs, x, y):
    torch = pytest.importorskip("torch")
    values = []
    for lib in (torch, tg):
        loss = getattr(lib.nn, name)(**{k: _to(lib, v) for k, v in kwargs.items()})
        values.append(loss(lib.tensor(x), lib.tensor(y)).item())
    assert values[1] == pytest.approx(values[0], rel=1e-12)


def test_linear_module_matches_torch_given_same_weights():
    torch = pytest.importorskip("torch")
    ours = nn.Linear(4, 3).double()
    theirs = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.detach().numpy()))
        theirs.bias.copy_(torch.tensor(ours.bias.detach().numpy()))
    x = _arr(5, 4)
    np.testing.assert_allclose(ours(tg.tensor(x)).detach().numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12)


def test_layer_norm_module_and_embedding_module_match_torch():
    torch = pytest.importorskip("torch")
    x = _arr(2, 3, 4)
    ln_t = torch.nn.LayerNorm(4).double()
    ln_g = nn.LayerNorm(4).double()
    np.testing.assert_allclose(ln_g(tg.tensor(x)).detach().numpy(),
                               ln_t(torch.tensor(x)).detach().numpy(), atol=1e-12)
    table = _arr(6, 3)
    idx = np.array([[0, 5], [2, 2]])
    e_t = torch.nn.Embedding.from_pretrained(torch.tensor(table), freeze=False, padding_idx=2)
    e_g = nn.Embedding.from_pretrained(tg.tensor(table), freeze=False, padding_idx=2)
    for emb, lib in ((e_t, torch), (e_g, tg)):
        emb(lib.tensor(idx)).pow(2).sum().backward()
    np.testing.assert_allclose(e_g.weight.grad.numpy(), e_t.weight.grad.numpy(), atol=1e-12)


def test_bce_with_logits_extreme_logits_are_finite():
    x = tg.tensor([1000.0, -1000.0, 1000.0, -1000.0], requires_grad=True)
    y = tg.tensor([1.0, 0.0, 0.0, 1.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert loss.tolist() == [0.0, 0.0, 1000.0, 1000.0]
    loss.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, -1.0]


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.mse_loss(tg.ones(2), tg.ones(2), reduction="avg"), ValueError, "reduction"),
    (lambda: F.cross_entropy(tg.ones(2, 3), tg.tensor([0, 3])), IndexError, "out of bounds"),
    (lambda: F.cross_entropy(tg.ones(2, 3), tg.tensor([0, 1, 2])), ValueError, "target"),
    (lambda: F.cross_entropy(tg.ones(2, 3), tg.tensor([0, 1]), label_smoothing=1.5), ValueError,
     "label_smoothing"),
    (lambda: F.nll_loss(tg.ones(2, 3), tg.ones(2)), RuntimeError, "class indices"),
    (lambda: F.binary_cross_entropy_with_logits(tg.ones(2), tg.ones(3)), ValueError, "size"),
    (lambda: F.layer_norm(tg.ones(2, 3), (4,)), RuntimeError, "normalized_shape"),
    (lambda: F.embedding(tg.tensor([0.5]), tg.ones(2, 2)), RuntimeError, "indices"),
    (lambda: F.dropout(tg.ones(2), p=-0.1), ValueError, "dropout probability"),
])
def test_functional_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_inplace_activations_keep_gradients():
    x = tg.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    h = x * 1
    assert F.leaky_relu(h, 0.1, inplace=True) is h
    h.sum().backward()
    assert h.tolist() == pytest.approx([-0.2, 0.0, 3.0]) and x.grad.tolist() == pytest.approx(
        [0.1, 0.1, 1.0])
    tg.manual_seed(0)
    x = tg.ones(50, requires_grad=True)
    h = x * 1
    assert F.dropout(h, 0.5, inplace=True) is h
    h.sum().backward()
    assert np.array_equal(x.grad.numpy(), h.detach().numpy())


def test_sequential_insert():
    seq = nn.Sequential(nn.ReLU())
    seq.insert(0, nn.Tanh())
    seq.insert(-1, nn.Sigmoid())
    assert [type(m).__name__ for m in seq] == ["Tanh", "Sigmoid", "ReLU"]
    with pytest.raises(IndexError):
        seq.insert(9, nn.ReLU())
