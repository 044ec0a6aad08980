"""tracegrad.save / tracegrad.load against torch.save / torch.load (torch's file format).

A table of objects, each built once with tracegrad and once with torch, goes round in
every direction (tracegrad -> torch, torch -> tracegrad, tracegrad -> tracegrad) and must
come back with the same values, dtypes, shapes, strides, storage offsets and flags.
"""
from __future__ import annotations

import collections
import copy
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import serialization

torch = pytest.importorskip("torch")


class _Config:  # a user class: weights_only refuses it unless allowed
    def __init__(self, lr=0.1):
        self.lr = lr


# ---- comparing a tracegrad object with a torch one --------------------------------------

def _layout(t):
    """(offset, stride) in elements of a tensor, read from the library's own memory."""
    if isinstance(t, torch.Tensor):
        return t.storage_offset(), t.stride()
    arr = t._data
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    start = arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return start // arr.itemsize, tuple(s // arr.itemsize for s in arr.strides)


def _same(a, b, path="obj"):
    """a, b: objects from either library; equal structure, tensors equal in every way."""
    if isinstance(a, (tg.Tensor, torch.Tensor)):
        assert isinstance(b, (tg.Tensor, torch.Tensor)), path
        assert str(a.dtype) == str(b.dtype), path
        assert list(a.shape) == list(b.shape), path
        assert a.requires_grad == b.requires_grad, path
        assert (type(a).__name__ == "Parameter") == (type(b).__name__ == "Parameter"), path
        if a.numel():
            assert _layout(a) == _layout(b), path
        np.testing.assert_array_equal(np.asarray(a.detach().numpy()),
                                      np.asarray(b.detach().numpy()), err_msg=path)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        assert isinstance(a, collections.OrderedDict) == isinstance(b, collections.OrderedDict)
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)) and type(a).__name__ != "Size":
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    else:
        if isinstance(a, float) and np.isnan(a):
            assert np.isnan(b), path
        else:
            assert str(a) == str(b) and type(a).__name__.lower() == type(b).__name__.lower(), path


# ---- the table: one builder per object, run with lib = tracegrad or torch ----------------

def _model_and_opt(lib, opt="sgd", steps=2):
    lib.manual_seed(0)
    model = lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.Tanh(), lib.nn.Linear(4, 2))
    if opt == "sgd":
        o = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        o = lib.optim.Adam(model.parameters(), lr=0.01)
    x = lib.tensor(np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3))
    y = lib.tensor(np.linspace(0, 1, 10, dtype=np.float32).reshape(5, 2))
    losses = []
    for _ in range(steps):
        o.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        o.step()
        losses.append(loss.item())
    return model, o, (x, y), losses


def _base(lib):
    return lib.arange(24, dtype=lib.float32).reshape(4, 6)


TABLE = {
    "float32": lambda lib: lib.tensor([[1.5, -2.0], [3.25, 0.0]]),
    "float64": lambda lib: lib.tensor([1.0, 2.0, 1e-300], dtype=lib.float64),
    "float16": lambda lib: lib.tensor([0.5, 65504.0], dtype=lib.float16),
    "int64": lambda lib: lib.tensor([-(2 ** 62), 7]),
    "int32": lambda lib: lib.tensor([[1, -2, 3]], dtype=lib.int32),
    "int16": lambda lib: lib.tensor([-300, 300], dtype=lib.int16),
    "int8": lambda lib: lib.tensor([-128, 127], dtype=lib.int8),
    "uint8": lambda lib: lib.tensor([0, 255], dtype=lib.uint8),
    "bool": lambda lib: lib.tensor([True, False, True]),
    "scalar": lambda lib: lib.tensor(3.5),
    "empty": lambda lib: lib.zeros(0, 3),
    "transposed": lambda lib: _base(lib).t(),
    "view_with_offset": lambda lib: _base(lib)[1:3, 2:5],
    "row": lambda lib: _base(lib)[2],
    "column": lambda lib: _base(lib)[:, 1],
    "expanded": lambda lib: lib.tensor([[1.0], [2.0]]).expand(2, 3),
    "requires_grad": lambda lib: lib.ones(2, 2, requires_grad=True),
    "parameter": lambda lib: lib.nn.Parameter(lib.full((2,), 0.25)),
    "frozen_parameter": lambda lib: lib.nn.Parameter(lib.ones(3), requires_grad=False),
    "containers": lambda lib: {"list": [1, 2.5, "s", None, True], "tuple": (lib.ones(1), 3),
                               "nested": {"a": {"b": [lib.zeros(2, dtype=lib.int64)]}},
                               "dtype": lib.float64, "device": lib.device("cpu"),
                               "size": lib.ones(2, 3).shape, "inf": float("inf"),
                               "bytes": b"\x00\xff", "set": {1, 2}, "big": 2 ** 70},
    "state_dict": lambda lib: _model_and_opt(lib)[0].state_dict(),
    "sgd_state": lambda lib: _model_and_opt(lib, "sgd")[1].state_dict(),
    "adam_state": lambda lib: _model_and_opt(lib, "adam")[1].state_dict(),
    "checkpoint": lambda lib: _checkpoint(lib),
}


def _checkpoint(lib):
    model, opt, _, losses = _model_and_opt(lib, "adam")
    return {"epoch": 2, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "loss": losses[-1]}


def _roundtrip(obj, save, load, tmp_path, how):
    if how == "path":
        p = tmp_path / "obj.pt"
        save(obj, str(p))
        return load(str(p))
    if how == "pathlib":
        p = tmp_path / "obj.pt"
        save(obj, p)
        return load(p)
    buf = io.BytesIO()
    save(obj, buf)
    buf.seek(0)
    return load(buf)


@pytest.mark.parametrize("name", list(TABLE))
def test_tracegrad_to_torch(name, tmp_path):
    got = _roundtrip(TABLE[name](tg), tg.save, torch.load, tmp_path, "path")
    _same(got, TABLE[name](tg), name)  # tracegrad's values, bit for bit, now torch tensors


@pytest.mark.parametrize("name", list(TABLE))
def test_torch_to_tracegrad(name, tmp_path):
    got = _roundtrip(TABLE[name](torch), torch.save, tg.load, tmp_path, "buffer")
    _same(got, TABLE[name](torch), name)


@pytest.mark.parametrize("name", list(TABLE))
def test_tracegrad_to_tracegrad(name, tmp_path):
    got = _roundtrip(TABLE[name](tg), tg.save, tg.load, tmp_path, "pathlib")
    _same(got, TABLE[name](tg), name)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_protocols(protocol):
    obj = {"w": _base(tg).t(), "d": tg.float16, "i": [1, 2]}
    buf = io.BytesIO()
    tg.save(obj, buf, pickle_protocol=protocol)
    buf.seek(0)
    # (torch's own weights-only unpickler reads protocol 2 only)
    _same(torch.load(buf, weights_only=protocol == 2),
          {"w": _base(torch).t(), "d": torch.float16, "i": [1, 2]})
    buf.seek(0)
    _same(tg.load(buf), obj)


@pytest.mark.parametrize("direction", ["tg->torch", "torch->tg"])
def test_legacy_format(direction):
    src, dst = (tg, torch) if direction == "tg->torch" else (torch, tg)
    buf = io.BytesIO()
    src.save({"v": _base(src)[1:, 2:], "b": _base(src), "i": src.tensor([1, 2])}, buf,
             _use_new_zipfile_serialization=False)
    assert buf.getvalue()[:2] != b"PK"
    buf.seek(0)
    got = dst.load(buf)
    _same(got, {"v": _base(torch)[1:, 2:], "b": _base(torch), "i": torch.tensor([1, 2])})


# ---- shared storage ----------------------------------------------------------------------

def test_views_of_one_base_load_as_views_of_one_array():
    buf = io.BytesIO()
    b = torch.arange(12.0).reshape(3, 4)
    torch.save({"base": b, "t": b.t(), "tail": b[1:, 1:], "other": torch.ones(2)}, buf)
    buf.seek(0)
    r = tg.load(buf)
    assert np.shares_memory(r["base"]._data, r["t"]._data)
    assert np.shares_memory(r["base"]._data, r["tail"]._data)
    assert not np.shares_memory(r["base"]._data, r["other"]._data)
    r["base"].add_(100.0)  # one memory, as in torch
    assert r["tail"][0, 0].item() == 105.0 and r["t"][1, 0].item() == 101.0


def test_tracegrad_views_are_saved_with_one_storage():
    b = _base(tg)
    obj = {"base": b, "t": b.t(), "tail": b[1:, 1:]}
    buf = io.BytesIO()
    tg.save(obj, buf)
    names = zipfile.ZipFile(io.BytesIO(buf.getvalue())).namelist()
    assert [n for n in names if "/data/" in n] == ["archive/data/0"]
    buf.seek(0)
    r = torch.load(buf)
    ptrs = {r[k].untyped_storage().data_ptr() for k in obj}
    assert len(ptrs) == 1
    assert r["tail"].storage_offset() == 7 and r["t"].stride() == (1, 6)
    buf.seek(0)
    again = tg.load(buf)
    assert np.shares_memory(again["base"]._data, again["t"]._data)


@pytest.mark.parametrize("src", ["tg", "torch"])
def test_tied_weights_load_as_one_tensor(src):
    lib = tg if src == "tg" else torch
    w = lib.nn.Parameter(lib.ones(2, 2))
    buf = io.BytesIO()
    lib.save({"enc": w, "dec": w, "list": [w, w]}, buf)
    for load in (tg.load, torch.load):
        buf.seek(0)
        r = load(buf)
        assert r["enc"] is r["dec"] is r["list"][0] is r["list"][1]


def test_flipped_tensor_is_saved_as_a_copy():
    t = tg.arange(4.0).flip(0)
    buf = io.BytesIO()
    tg.save(t, buf)
    buf.seek(0)
    assert torch.load(buf).tolist() == [3.0, 2.0, 1.0, 0.0]


def test_plain_pickle_and_copy_keep_views_shared():
    b = _base(tg)
    x, y = pickle.loads(pickle.dumps([b, b[1:]]))
    assert np.shares_memory(x._data, y._data) and y.tolist() == b[1:].tolist()
    p = tg.nn.Parameter(tg.ones(3))
    q = pickle.loads(pickle.dumps(p))
    assert type(q) is tg.nn.Parameter and q.requires_grad and q.tolist() == [1.0] * 3
    d = copy.deepcopy({"a": p})
    assert type(d["a"]) is tg.nn.Parameter and not np.shares_memory(d["a"]._data, p._data)


def test_tensor_attributes_round_trip():
    t = tg.ones(2)
    t.tag = "mine"
    buf = io.BytesIO()
    tg.save(t, buf)
    buf.seek(0)
    assert torch.load(buf).tag == "mine"
    buf.seek(0)
    assert tg.load(buf).tag == "mine"


# ---- weights_only -------------------------------------------------------------------------

def _error(fn):
    with pytest.raises(pickle.UnpicklingError) as info:
        fn()
    return str(info.value)


@pytest.mark.parametrize("obj", [lambda lib: {"cfg": _Config()},
                                 lambda lib: [os.getcwd],
                                 lambda lib: np.float64(1.5)],
                         ids=["user_class", "blocked_module", "numpy_scalar"])
def test_weights_only_refusal_is_torchs_message(obj):
    a, b = io.BytesIO(), io.BytesIO()
    tg.save(obj(tg), a)
    torch.save(obj(torch), b)
    a.seek(0)
    b.seek(0)
    ours = _error(lambda: tg.load(a))
    theirs = _error(lambda: torch.load(b))
    assert ours == theirs
    assert "weights_only" in ours


def test_weights_only_false_and_allowlists():
    buf = io.BytesIO()
    tg.save({"cfg": _Config(0.5), "w": tg.ones(1)}, buf)
    buf.seek(0)
    assert tg.load(buf, weights_only=False)["cfg"].lr == 0.5
    with serialization.safe_globals([_Config]):
        assert _Config in serialization.get_safe_globals()
        buf.seek(0)
        assert tg.load(buf)["cfg"].lr == 0.5
    assert _Config not in serialization.get_safe_globals()
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL test_serialization._Config"):
        tg.load(buf)
    serialization.add_safe_globals([(_Config, "test_serialization._Config")])
    try:
        buf.seek(0)
        assert tg.load(buf)["cfg"].lr == 0.5
    finally:
        serialization.clear_safe_globals()
    with pytest.raises(RuntimeError, match="explicit pickle_module"):
        tg.load(buf, pickle_module=pickle, weights_only=True)
    buf.seek(0)
    assert tg.load(buf, pickle_module=pickle)["cfg"].lr == 0.5  # then weights_only=False


def test_whole_module_saves_and_loads_with_weights_only_false(tmp_path):
    model, _, (x, _), _ = _model_and_opt(tg)
    path = tmp_path / "model.pt"
    tg.save(model, path)
    back = tg.load(path, weights_only=False)
    assert type(back) is type(model) and type(back[0]) is tg.nn.Linear
    np.testing.assert_array_equal(back(x).detach().numpy(), model(x).detach().numpy())
    assert all(type(p) is tg.nn.Parameter and p.requires_grad for p in back.parameters())
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL tracegrad.nn.containers.Sequential"):
        tg.load(path)


def test_a_pickled_torch_module_is_refused_clearly():
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="torch.nn.modules.linear.Linear"):
        tg.load(buf, weights_only=False)


def test_bfloat16():
    buf = io.BytesIO()
    torch.save({"h": torch.tensor([1.5, -2.0], dtype=torch.bfloat16)}, buf)
    buf.seek(0)
    if not hasattr(tg, "bfloat16"):
        with pytest.raises(RuntimeError, match="no bfloat16 dtype.*BFloat16Storage"):
            tg.load(buf)
    else:
        got = tg.load(buf)["h"]
        assert str(got.dtype) == "torch.bfloat16" and got.float().tolist() == [1.5, -2.0]
        back = io.BytesIO()
        tg.save({"h": got}, back)
        back.seek(0)
        again = torch.load(back)["h"]
        assert again.dtype == torch.bfloat16 and again.float().tolist() == [1.5, -2.0]


# ---- map_location --------------------------------------------------------------------------

def _torch_bytes(location="cpu"):
    """A torch checkpoint whose storages claim to live at ``location``."""
    buf = io.BytesIO()
    torch.save({"w": torch.arange(3.0)}, buf)
    if location == "cpu":
        return buf.getvalue()
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                new = location.encode()
                data = data.replace(b"X\x03\x00\x00\x00cpu",
                                    b"X" + struct.pack("<I", len(new)) + new)
            dst.writestr(info.filename, data)
    return out.getvalue()


@pytest.mark.parametrize("map_location", [
    None, "cpu", b"cpu", tg.device("cpu"), torch.device("cpu"), {"cpu": "cpu"},
    lambda storage, loc: storage, lambda storage, loc: None,
    lambda storage, loc: storage.cpu()], ids=lambda m: type(m).__name__)
def test_map_location_forms(map_location):
    got = tg.load(io.BytesIO(_torch_bytes()), map_location=map_location)
    assert got["w"].tolist() == [0.0, 1.0, 2.0]


def test_map_location_callable_sees_storage_and_location():
    seen = []
    tg.load(io.BytesIO(_torch_bytes()), map_location=lambda s, loc: seen.append(
        (len(s), str(s.dtype), loc)))
    assert seen == [(3, "torch.float32", "cpu")]


def test_cuda_checkpoints_and_cuda_map_location():
    cuda_file = _torch_bytes("cuda:0")
    with pytest.raises(RuntimeError, match="Attempting to deserialize object on a CUDA device"):
        torch.load(io.BytesIO(cuda_file))  # (torch, CPU-only, says the same)
    with pytest.raises(RuntimeError, match="CUDA device.*live on the CPU"):
        tg.load(io.BytesIO(cuda_file))
    for ml in ("cpu", {"cuda:0": "cpu"}, lambda s, loc: s):
        assert tg.load(io.BytesIO(cuda_file), map_location=ml)["w"].tolist() == [0.0, 1.0, 2.0]
    for ml in ("cuda", "cuda:0", lambda s, loc: s.cuda()):
        with pytest.raises(RuntimeError, match="live on the CPU"):
            tg.load(io.BytesIO(_torch_bytes()), map_location=ml)


# ---- files --------------------------------------------------------------------------------

def test_file_objects_and_paths(tmp_path):
    t = tg.tensor([1.0, 2.0])
    with open(tmp_path / "a.pt", "wb") as fh:
        tg.save(t, fh)
    with open(tmp_path / "a.pt", "rb") as fh:
        assert tg.load(fh).tolist() == [1.0, 2.0]
    buf = io.BytesIO(b"junk")  # saving after existing content, loading from that offset
    buf.seek(4)
    tg.save(t, buf)
    buf.seek(4)
    assert tg.load(buf).tolist() == [1.0, 2.0]
    with pytest.raises(AttributeError, match="file-like object with a 'write'"):
        tg.save(t, 3)
    for lib in (tg, torch):
        with pytest.raises(RuntimeError, match="Parent directory .*nope does not exist"):
            lib.save(lib.ones(1), str(tmp_path / "nope" / "x.pt"))
        with pytest.raises(FileNotFoundError):
            lib.load(tmp_path / "nope" / "x.pt")


def test_archive_layout_matches_torchs(tmp_path, monkeypatch):
    ours, theirs = tmp_path / "ours" / "model.pt", tmp_path / "theirs" / "model.pt"
    ours.parent.mkdir()
    theirs.parent.mkdir()
    tg.save({"a": tg.ones(3), "b": tg.zeros(5, dtype=tg.int64)}, ours)
    torch.save({"a": torch.ones(3), "b": torch.zeros(5, dtype=torch.int64)}, theirs)
    za, zb = zipfile.ZipFile(ours), zipfile.ZipFile(theirs)
    assert za.namelist() == zb.namelist()  # model/data.pkl, model/.format_version, ...
    assert za.testzip() is None
    raw = ours.read_bytes()
    for info in za.infolist():
        name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:
                                                       info.header_offset + 30])
        assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0
    for name in ("version", "byteorder", ".format_version", ".storage_alignment"):
        assert za.read(f"model/{name}") == zb.read(f"model/{name}")
    # torch computes record offsets from the data descriptors when it maps a file
    monkeypatch.setenv("TORCH_SERIALIZATION_DEBUG", "1")
    assert torch.load(ours, mmap=True)["b"].tolist() == [0] * 5
    assert tg.load(ours, mmap=True)["a"].tolist() == [1.0] * 3


# ---- training resumed from a checkpoint ---------------------------------------------------

def _continue(lib, model, opt, data, sched=None, steps=3, noisy=False):
    x, y = data
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        if noisy:  # the random stream is part of what resumes
            x = data[0] + lib.randn(*x.shape) * 0.01
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("direction", ["torch->tg", "tg->torch"])
def test_resumed_training_continues_with_the_same_losses(opt, direction, tmp_path):
    src, dst = (torch, tg) if direction == "torch->tg" else (tg, torch)
    model, o, data, _ = _model_and_opt(src, opt)
    sched = src.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)
    _continue(src, model, o, data, sched, noisy=True)
    path = tmp_path / "ckpt.pt"
    src.save({"epoch": 2, "model": model.state_dict(), "optimizer": o.state_dict(),
              "scheduler": sched.state_dict(), "rng": src.get_rng_state(), "loss": 0.5}, path)
    want = _continue(src, model, o, data, sched, noisy=True)  # the uninterrupted run
    fresh, fresh_opt, fresh_data, _ = _model_and_opt(dst, opt, steps=0)
    fresh_sched = dst.optim.lr_scheduler.StepLR(fresh_opt, step_size=2, gamma=0.5)
    ckpt = dst.load(path)
    assert ckpt["epoch"] == 2 and ckpt["loss"] == 0.5
    fresh.load_state_dict(ckpt["model"])
    fresh_opt.load_state_dict(ckpt["optimizer"])
    fresh_sched.load_state_dict(ckpt["scheduler"])
    dst.set_rng_state(ckpt["rng"])
    got = _continue(dst, fresh, fresh_opt, fresh_data, fresh_sched, noisy=True)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert fresh_opt.param_groups[0]["lr"] == o.param_groups[0]["lr"]


def test_state_dict_after_compiled_steps_has_the_trained_values(tmp_path):
    def train(compiled):
        tg.manual_seed(0)
        model = tg.nn.Sequential(tg.nn.Linear(3, 4), tg.nn.Tanh(), tg.nn.Linear(4, 2))
        opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x, y = tg.randn(5, 3), tg.randn(5, 2)

        def step(x, y):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss
        step = tg.compile(step) if compiled else step
        for _ in range(4):
            step(x, y)
        return model, opt

    model, opt = train(compiled=True)
    path = tmp_path / "compiled.pt"
    # the parameters themselves (not detached copies) may hold their value on the device
    # (saved first: state_dict's detach() would read them to the host before save does)
    tg.save(list(model.parameters()), tmp_path / "params.pt")
    tg.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
    eager, eager_opt = train(compiled=False)
    got = torch.load(path)
    params = torch.load(tmp_path / "params.pt")
    for (k, v), p in zip(eager.state_dict().items(), params, strict=True):
        np.testing.assert_allclose(got["model"][k].numpy(), v.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p.detach().numpy(), v.numpy(), rtol=1e-5, atol=1e-6)
    tg.manual_seed(0)  # the compiled steps moved the weights away from their init
    init = tg.nn.Linear(3, 4)
    assert not np.allclose(got["model"]["0.weight"].numpy(), init.weight.detach().numpy())
    for i, s in eager_opt.state_dict()["state"].items():
        np.testing.assert_allclose(got["opt"]["state"][i]["momentum_buffer"].numpy(),
                                   s["momentum_buffer"].numpy(), rtol=1e-5, atol=1e-6)


# ---- odds and ends ------------------------------------------------------------------------

def test_not_a_checkpoint():
    for data, err in [(b"garbage", pickle.UnpicklingError), (b"", EOFError),
                      (b"PK\x03\x04junk", RuntimeError)]:
        with pytest.raises(err):
            torch.load(io.BytesIO(data))
        with pytest.raises(err):
            tg.load(io.BytesIO(data))
    with pytest.raises(RuntimeError, match="PytorchStreamReader failed reading zip archive"):
        tg.load(io.BytesIO(b"PK\x03\x04junk"))


@pytest.mark.parametrize("src", ["tg", "torch"])
def test_non_leaf_tensor_and_parameter_with_attributes(src):
    lib = tg if src == "tg" else torch
    x = lib.ones(2, requires_grad=True)
    p = lib.nn.Parameter(lib.zeros(2))
    p.tag = "shared"
    buf = io.BytesIO()
    lib.save({"y": x * 2, "p": p}, buf)
    for load in (tg.load, torch.load):
        buf.seek(0)
        r = load(buf)
        assert r["y"].is_leaf and r["y"].requires_grad and r["y"].tolist() == [2.0, 2.0]
        assert type(r["p"]).__name__ == "Parameter" and r["p"].tag == "shared"


def test_training_compiled_from_a_loaded_checkpoint():
    model, opt, data, _ = _model_and_opt(torch, "sgd")
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    want = _continue(torch, model, opt, data)
    buf.seek(0)
    ckpt = tg.load(buf)
    fresh, fresh_opt, (x, y), _ = _model_and_opt(tg, "sgd", steps=0)
    fresh.load_state_dict(ckpt["model"])
    fresh_opt.load_state_dict(ckpt["opt"])

    @tg.compile
    def step(x, y):
        fresh_opt.zero_grad()
        loss = ((fresh(x) - y) ** 2).mean()
        loss.backward()
        fresh_opt.step()
        return loss
    got = [step(x, y).item() for _ in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_serialization_is_a_module_and_the_api_is_torchs():
    import tracegrad.serialization as mod
    assert tg.serialization is mod and tg.save is mod.save and tg.load is mod.load
    for name in ("add_safe_globals", "safe_globals", "get_safe_globals", "clear_safe_globals"):
        assert callable(getattr(mod, name)) and hasattr(torch.serialization, name)


def test_force_weights_only_environment_variables(monkeypatch):
    buf = io.BytesIO()
    tg.save({"cfg": _Config()}, buf)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    buf.seek(0)
    with pytest.warns(UserWarning, match="forcing weights_only=False"):
        assert tg.load(buf)["cfg"].lr == 0.1
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(RuntimeError, match="but both were set"):
        tg.load(buf)
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="_Config"):
        tg.load(buf, weights_only=False)


@pytest.mark.parametrize("name", ["a.b.pt", "noext", "x.tar.gz"])
def test_archive_folder_is_named_after_the_file(name, tmp_path):
    (tmp_path / "tg").mkdir()
    (tmp_path / "torch").mkdir()
    tg.save(tg.ones(1), tmp_path / "tg" / name)
    torch.save(torch.ones(1), tmp_path / "torch" / name)
    ours = zipfile.ZipFile(tmp_path / "tg" / name).namelist()
    assert ours == zipfile.ZipFile(tmp_path / "torch" / name).namelist()


def test_zip64_records(monkeypatch):
    # files past 4 GiB need zip64 fields: lower the threshold so small files use them
    monkeypatch.setattr(serialization._ZipWriter, "limit", 200)
    obj = {"a": tg.arange(100.0), "b": tg.ones(3, dtype=tg.int64)}
    buf = io.BytesIO()
    tg.save(obj, buf)
    assert b"PK\x06\x06" in buf.getvalue()  # the zip64 end of central directory
    assert zipfile.ZipFile(io.BytesIO(buf.getvalue())).testzip() is None
    for load in (tg.load, torch.load):
        buf.seek(0)
        _same(load(buf), obj)


@pytest.mark.parametrize("protocol", [2, 4])
def test_get_unsafe_globals_in_checkpoint(protocol):
    obj = {"cfg": _Config(), "w": tg.ones(2), "f": os.getcwd, "o": collections.OrderedDict()}
    a, b = io.BytesIO(), io.BytesIO()
    tg.save(obj, a, pickle_protocol=protocol)
    torch.save({**obj, "w": torch.ones(2)}, b, pickle_protocol=protocol)
    a.seek(0)
    b.seek(0)
    ours = serialization.get_unsafe_globals_in_checkpoint(a)
    cwd = f"{os.getcwd.__module__}.getcwd"  # posix.getcwd on Linux
    assert ours == sorted([cwd, "test_serialization._Config"])
    if protocol == 2:  # (torch's reader knows protocol 2's opcodes only)
        assert sorted(torch.serialization.get_unsafe_globals_in_checkpoint(b)) == ours
    with serialization.safe_globals([_Config]):
        a.seek(0)
        assert serialization.get_unsafe_globals_in_checkpoint(a) == [cwd]


@pytest.mark.parametrize("weights_only", [True, False])
def test_tensor_kinds_tracegrad_lacks_are_refused_clearly(weights_only):
    buf = io.BytesIO()
    torch.save({"s": torch.eye(2).to_sparse()}, buf)
    buf.seek(0)
    with pytest.raises(RuntimeError, match="_rebuild_sparse_tensor, a kind of tensor"):
        tg.load(buf, weights_only=weights_only)


_TUTORIAL = '''
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x, y = torch.randn(16, 4), torch.randn(16, 1)
for epoch in range(3):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
torch.save({"epoch": epoch, "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(), "loss": loss}, PATH)
torch.save(model, PATH + ".whole")

model2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
optimizer2 = torch.optim.SGD(model2.parameters(), lr=0.05, momentum=0.9)
checkpoint = torch.load(PATH, weights_only=True, map_location=torch.device("cpu"))
print(model2.load_state_dict(checkpoint["model_state_dict"]))
optimizer2.load_state_dict(checkpoint["optimizer_state_dict"])
print(checkpoint["epoch"], checkpoint["loss"].requires_grad, f"{checkpoint['loss'].item():.5f}")
model2.train()
for epoch in range(2):
    optimizer2.zero_grad()
    loss = torch.nn.functional.mse_loss(model2(x), y)
    loss.backward()
    optimizer2.step()
    print(f"{loss.item():.5f}")
whole = torch.load(PATH + ".whole", weights_only=False)
whole.eval()
print(type(whole).__name__, f"{whole(x).sum().item():.4f}", list(checkpoint["model_state_dict"]))
'''


def test_the_checkpoint_tutorial_prints_the_same(tmp_path, capsys):
    out = {}
    for name, lib in (("torch", torch), ("tg", tg)):
        exec(_TUTORIAL, {"torch": lib, "PATH": str(tmp_path / f"{name}.pt")})
        out[name] = capsys.readouterr().out
    assert out["tg"] == out["torch"]
    assert "<All keys matched successfully>" in out["tg"]
