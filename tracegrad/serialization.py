"""``tracegrad.save`` / ``tracegrad.load``: checkpoints in PyTorch's own file format.

A file is a zip archive, as ``torch.save`` writes it: ``<name>/data.pkl`` pickles the
object, each tensor as a call of ``torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, requires_grad, hooks)`` whose storage is a persistent id
``('storage', torch.FloatStorage, key, 'cpu', numel)``; ``<name>/data/<key>`` holds
that storage's raw bytes (aligned to 64 bytes in the file, as torch aligns them);
``version``, ``byteorder``, ``.format_version``, ``.storage_alignment`` and
``.data/serialization_id`` complete it. So torch reads what tracegrad writes and the
other way round, and torch is never imported: the pickle names torch's functions and
classes, and tracegrad maps those names onto its own (NOTE: [Torch names]).

>>> import io, tracegrad as tg
>>> buf = io.BytesIO()
>>> tg.save({"w": tg.ones(2, 3)}, buf)
>>> _ = buf.seek(0)
>>> tg.load(buf)["w"].shape
torch.Size([2, 3])
"""
from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
import struct
import sys
import warnings
import weakref
import zipfile
import zlib
from collections import Counter, OrderedDict
from typing import Any

import numpy as np

from . import dtypes
from .dtypes import DType
from .functions import device
from .tensor import Size, Tensor

__all__ = ["save", "load", "add_safe_globals", "clear_safe_globals", "get_safe_globals",
           "safe_globals", "get_unsafe_globals_in_checkpoint", "DEFAULT_PROTOCOL"]

DEFAULT_PROTOCOL = 2
_STORAGE_ALIGNMENT = 64
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

UNSAFE_MESSAGE = (
    "In PyTorch 2.6, we changed the default value of the `weights_only` argument in `torch.load` "
    "from `False` to `True`. Re-running `torch.load` with `weights_only` set to `False` will "
    "likely succeed, but it can result in arbitrary code execution. Do it only if you got the "
    "file from a trusted source."
)
_DOCS_MESSAGE = (
    "\n\nCheck the documentation of torch.load to learn more about types accepted by default "
    "with weights_only https://pytorch.org/docs/stable/generated/torch.load.html."
)


# ---- storages ------------------------------------------------------------------------

# torch's legacy storage classes, as checkpoints name them, and their element dtypes
_STORAGE_DTYPE_NAMES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}
_STORAGE_NAME_OF = {d: n for n, d in _STORAGE_DTYPE_NAMES.items() if n != "UntypedStorage"}


class _StorageType:
    """``torch.FloatStorage`` and its kin as a checkpoint names them: only the element
    dtype matters (torch's ``serialization.StorageType`` plays the same part)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    @property
    def dtype(self) -> DType:
        dname = _STORAGE_DTYPE_NAMES[self.name]
        d = dtypes._BY_NAME.get(dname)
        if d is None:
            raise RuntimeError(f"tracegrad has no {dname} dtype, so it cannot load a tensor "
                               f"stored as torch.{self.name} (dtype torch.{dname}); convert it "
                               "in PyTorch first, e.g. tensor.float()")
        return d

    def __repr__(self) -> str:
        return f"StorageType(dtype=torch.{_STORAGE_DTYPE_NAMES[self.name]})"


class _Storage:
    """The memory a tensor views: one flat, contiguous NumPy array (torch's storage).

    Tensors that view one NumPy buffer are saved with one storage, so they share
    memory again once loaded. A ``map_location`` callable receives these."""

    __slots__ = ("flat", "_root", "__weakref__")

    def __init__(self, flat: np.ndarray, root: np.ndarray | None = None):
        self.flat = flat
        self._root = root  # the array whose memory ``flat`` is (keeps its id unique)

    @property
    def dtype(self) -> DType:
        return dtypes.from_numpy_dtype(self.flat.dtype)

    @property
    def device(self) -> device:
        return device("cpu")

    @property
    def is_cuda(self) -> bool:
        return False

    def size(self) -> int:
        return self.flat.size

    def __len__(self) -> int:
        return self.flat.size

    def nbytes(self) -> int:
        return self.flat.nbytes

    def element_size(self) -> int:
        return self.flat.itemsize

    def cpu(self) -> _Storage:
        return self

    def cuda(self, device=None, non_blocking: bool = False, **kwargs):
        raise RuntimeError(_cuda_message())

    def to(self, device=None, **kwargs) -> _Storage:
        _restore_location(self, str(device) if device is not None else "cpu")
        return self

    def tolist(self) -> list:
        return self.flat.tolist()

    def __repr__(self) -> str:
        return f"<tracegrad storage of {self.flat.size} {self.dtype} elements>"

    def __reduce__(self):  # plain pickle / copy: the bytes go into the pickle
        return (_Storage, (np.array(self.flat),))


_LIVE: dict[tuple[int, str], weakref.ref] = {}  # (id(root array), dtype) -> its _Storage


def _storage_for(root: np.ndarray, flat: np.ndarray) -> _Storage:
    """The one live ``_Storage`` of ``root``'s memory viewed as ``flat.dtype``: tensors that
    view one buffer pickle one storage object (a pickle memoizes it; save keys it)."""
    key = (id(root), flat.dtype.str)
    ref = _LIVE.get(key)
    s = ref() if ref is not None else None
    if s is not None and s._root is root:
        return s
    s = _Storage(flat, root)

    def drop(r, key=key):
        if _LIVE.get(key) is r:
            del _LIVE[key]
    _LIVE[key] = weakref.ref(s, drop)
    return s


def _contiguous_strides(shape) -> tuple:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


def _tensor_layout(arr: np.ndarray):
    """(storage, offset, size, stride) of host array ``arr``, in elements, as torch sees a
    tensor: a view of a NumPy buffer is a view of that buffer's storage. A layout torch
    cannot express (negative strides: NumPy's flip) is saved as a contiguous copy."""
    size = tuple(arr.shape)
    item = arr.itemsize
    if arr.size == 0:
        return _Storage(np.empty(0, arr.dtype)), 0, size, _contiguous_strides(size)
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    flat = None
    if root.flags.c_contiguous or root.flags.f_contiguous:
        flat = root.ravel(order="K")  # the buffer in memory order (a view)
        if flat.dtype != arr.dtype:
            flat = flat.view(np.uint8)
            flat = flat.view(arr.dtype) if flat.size % item == 0 else None
    if flat is not None:
        start = arr.__array_interface__["data"][0] - flat.__array_interface__["data"][0]
        ok = (start >= 0 and start % item == 0 and np.may_share_memory(flat, root)
              and all(s >= 0 and s % item == 0 for s in arr.strides))
        if ok:
            offset, stride = start // item, tuple(s // item for s in arr.strides)
            last = offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True))
            if last < flat.size:
                return _storage_for(root, flat), offset, size, stride
    copy = np.ascontiguousarray(arr)
    return _Storage(copy.reshape(-1), copy), 0, size, _contiguous_strides(size)


# ---- rebuilding tensors (the functions a checkpoint names as torch._utils.*) ------------

def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None) -> Tensor:
    """A tensor viewing ``storage`` (torch._utils._rebuild_tensor_v2)."""
    t = Tensor._make(_view_of(storage, storage_offset, size, stride))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _rebuild_tensor(storage, storage_offset, size, stride) -> Tensor:
    return Tensor._make(_view_of(storage, storage_offset, size, stride))


def _view_of(storage, offset, size, stride) -> np.ndarray:
    if not isinstance(storage, _Storage):
        raise TypeError(f"expected a storage to rebuild a tensor from, got "
                        f"{type(storage).__name__}")
    flat = storage.flat
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError(f"mismatch in length of strides and shape: sizes {list(size)}, "
                           f"strides {list(stride)}")
    if any(n == 0 for n in size):
        return np.empty(size, flat.dtype)
    item = flat.itemsize
    need = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if offset < 0 or any(s < 0 for s in stride) or need > flat.size:
        raise RuntimeError(f"setStorage: sizes {list(size)}, strides {list(stride)}, storage "
                           f"offset {offset}, and itemsize {item} requiring a storage size of "
                           f"{need * item} are out of bounds for storage of size {flat.nbytes}")
    if offset == 0 and need == flat.size and stride == _contiguous_strides(size):
        return flat.reshape(size)
    return np.ndarray(size, flat.dtype, buffer=flat, offset=offset * item,
                      strides=tuple(s * item for s in stride))


def _parameter_cls():
    from .nn.parameter import Parameter
    return Parameter


def _rebuild_parameter(data, requires_grad, backward_hooks=None):
    """torch._utils._rebuild_parameter."""
    return _parameter_cls()(data, requires_grad)


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _set_obj_state(_parameter_cls()(data, requires_grad), state)


def _rebuild_from_type_v2(func, new_type, args, state):
    """torch._tensor._rebuild_from_type_v2: a tensor (or subclass) with Python attributes."""
    ret = func(*args)
    if type(ret) is not new_type and isinstance(new_type, type) and \
            issubclass(new_type, Tensor) and new_type is not Tensor:
        ret.__class__ = new_type
    return _set_obj_state(ret, state)


def _set_obj_state(obj, state):
    if isinstance(state, tuple):
        if len(state) != 2:
            raise RuntimeError(f"Invalid serialized state: {state}")
        dict_state, slots_state = state
    else:
        dict_state, slots_state = state, None
    for k, v in (dict_state or {}).items():
        setattr(obj, k, v)
    for k, v in (slots_state or {}).items():
        setattr(obj, k, v)
    return obj


# attributes tracegrad keeps in a tensor's __dict__: not the user's, so never pickled
_INTERNAL_ATTRS = frozenset({"grad_fn"})


def _user_state(t: Tensor) -> dict:
    return {k: v for k, v in t.__dict__.items()
            if not k.startswith("_") and k not in _INTERNAL_ATTRS}


def _host_array(t: Tensor) -> np.ndarray:
    # a compiled step's deferred value is copied to the host here (NOTE: [Deferred write-back])
    return t._concrete("pickling a tensor")


def reduce_tensor(t: Tensor):
    """``Tensor.__reduce_ex__``: torch's rebuild call, so ``pickle``, ``copy`` and ``save``
    agree with torch's (and views of one buffer keep sharing it)."""
    storage, offset, size, stride = _tensor_layout(_host_array(t))
    args = (storage, offset, size, stride, t.requires_grad, OrderedDict())
    state = _user_state(t)
    if state:
        return (_rebuild_from_type_v2, (_rebuild_tensor_v2, Tensor, args, state))
    return (_rebuild_tensor_v2, args)


def reduce_parameter(p):
    """``Parameter.__reduce_ex__``: ``_rebuild_parameter(data, requires_grad, hooks)``."""
    data = Tensor._make(_host_array(p))
    state = _user_state(p)
    if state:
        return (_rebuild_parameter_with_state, (data, p.requires_grad, OrderedDict(), state))
    return (_rebuild_parameter, (data, p.requires_grad, OrderedDict()))


# ---- NOTE: [Torch names] ---------------------------------------------------------------
# A checkpoint names torch's rebuild functions, storage classes, dtypes and devices. save
# writes those names for tracegrad's own objects (``_TorchPickler.save_global``), and load
# maps them back (``_load_globals``); neither imports torch.

def _load_globals() -> dict[tuple[str, str], Any]:
    g: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Size"): Size,
        ("torch", "Tensor"): Tensor,
        ("torch._tensor", "Tensor"): Tensor,
        ("torch", "device"): device,
        ("torch.nn.parameter", "Parameter"): _parameter_cls(),
    }
    for name in _STORAGE_DTYPE_NAMES:
        g[("torch", name)] = _StorageType(name)
    for d in dtypes._BY_NAME.values():
        g[("torch", d.name)] = d
    return g


def _save_names() -> dict[int, tuple[str, str]]:
    """id(tracegrad object) -> the torch (module, name) a checkpoint calls it."""
    names = {id(_rebuild_tensor_v2): ("torch._utils", "_rebuild_tensor_v2"),
             id(_rebuild_parameter): ("torch._utils", "_rebuild_parameter"),
             id(_rebuild_parameter_with_state): ("torch._utils",
                                                 "_rebuild_parameter_with_state"),
             id(_rebuild_from_type_v2): ("torch._tensor", "_rebuild_from_type_v2"),
             id(Tensor): ("torch", "Tensor"),
             id(Size): ("torch", "Size"),
             id(device): ("torch", "device"),
             id(_parameter_cls()): ("torch.nn.parameter", "Parameter")}
    return names


_SAFE_BUILTINS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "Counter"): Counter,
    ("_codecs", "encode"): __import__("_codecs").encode,  # bytes, at protocol 2
    ("builtins", "bytearray"): bytearray,
    ("builtins", "set"): set,
    ("builtins", "complex"): complex,
}
_BLOCKLISTED_MODULES = ("sys", "os", "posix", "nt")


# ---- the allowlist (torch.serialization.add_safe_globals & co) ---------------------------

_marked_safe_globals: set = set()


def add_safe_globals(safe_globals: list) -> None:
    """Allow these functions/classes (or ``(obj, "module.name")`` pairs) in
    ``load(weights_only=True)``.

    >>> import tracegrad as tg
    >>> class Config: pass
    >>> tg.serialization.add_safe_globals([Config])
    >>> Config in tg.serialization.get_safe_globals()
    True
    >>> tg.serialization.clear_safe_globals()
    """
    global _marked_safe_globals
    _marked_safe_globals = _marked_safe_globals.union(set(safe_globals))


def get_safe_globals() -> list:
    """The globals ``add_safe_globals`` allowed."""
    return list(_marked_safe_globals)


def clear_safe_globals() -> None:
    global _marked_safe_globals
    _marked_safe_globals = set()


class safe_globals:
    """Context manager: the given globals are allowed by ``load(weights_only=True)`` inside.

    >>> import tracegrad as tg
    >>> class Config: pass
    >>> with tg.serialization.safe_globals([Config]):
    ...     pass
    """

    def __init__(self, safe_globals: list):
        self.safe_globals = safe_globals

    def __enter__(self):
        add_safe_globals(self.safe_globals)

    def __exit__(self, type, value, tb):
        global _marked_safe_globals
        _marked_safe_globals = _marked_safe_globals - set(self.safe_globals)


def _user_allowed_globals() -> dict[str, Any]:
    rc: dict[str, Any] = {}
    for f in _marked_safe_globals:
        if isinstance(f, tuple):
            if len(f) != 2:
                raise ValueError(f"Expected tuple of length 2 (global, str of callable full "
                                 f"path), but got tuple of length: {len(f)}")
            if type(f[1]) is not str:
                raise TypeError(f"Expected second item in tuple to be str of callable full "
                                f"path, but got: {type(f[1])}")
            f, name = f
            rc[name] = f
        else:
            rc[f"{f.__module__}.{f.__qualname__}"] = f
    return rc


# ---- save --------------------------------------------------------------------------------

class _TorchPickler(pickle._Pickler):
    """The pure-Python pickler (its ``save_global`` can be overridden) writing tensors'
    storages as persistent ids and tracegrad's objects under torch's names."""

    def __init__(self, file, protocol, legacy: bool = False):
        super().__init__(file, protocol=protocol)
        self._legacy = legacy  # the legacy format's ids carry a 6th field (view metadata)
        self.storages: dict[int, tuple[str, _Storage]] = {}  # id(storage) -> (key, storage)
        self._root_dtypes: dict[int, np.dtype] = {}
        self._names = _save_names()

    def persistent_id(self, obj):
        if obj.__class__ is not _Storage:
            return None
        entry = self.storages.get(id(obj))
        if entry is None:
            root = obj._root if obj._root is not None else obj.flat
            seen = self._root_dtypes.setdefault(id(root), obj.flat.dtype)
            if seen != obj.flat.dtype:
                raise RuntimeError("Cannot save multiple tensors or storages that view the same "
                                   "data as different types")
            entry = self.storages[id(obj)] = (str(len(self.storages)), obj)
        key, storage = entry
        dname = dtypes.from_numpy_dtype(storage.flat.dtype).name
        if dname not in _STORAGE_NAME_OF:
            raise RuntimeError(f"cannot save a tensor of dtype torch.{dname}")
        pid = ("storage", _StorageType(_STORAGE_NAME_OF[dname]), key, "cpu", storage.flat.size)
        return pid + (None,) if self._legacy else pid

    def reducer_override(self, obj):
        cls = obj.__class__
        if cls is DType or cls is _StorageType:
            return obj.name  # a global: ``torch.float32``, ``torch.FloatStorage``
        if cls is device:
            return (device, (obj.type,) if obj.index is None else (obj.type, obj.index))
        if cls is Size:
            return (Size, (tuple(obj),))
        return NotImplemented

    def save_global(self, obj, name=None):
        cls = obj.__class__
        if cls is DType or cls is _StorageType:
            where = ("torch", obj.name)
        else:
            where = self._names.get(id(obj))
        if where is None:
            return super().save_global(obj, name)
        module, qualname = where
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + module.encode() + b"\n" + qualname.encode() + b"\n")
        self.memoize(obj)

    # the base class's table holds its own save_global for functions: point it at ours
    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[type(_rebuild_tensor_v2)] = save_global


def _check_save_filelike(f):
    if not isinstance(f, (str, os.PathLike)) and not hasattr(f, "write"):
        raise AttributeError("expected 'f' to be string, path, or a file-like object with a "
                             "'write' attribute")


def save(obj: object, f, pickle_module: Any = pickle, pickle_protocol: int = DEFAULT_PROTOCOL,
         _use_new_zipfile_serialization: bool = True,
         _disable_byteorder_record: bool = False) -> None:
    """Save ``obj`` (a tensor, a state_dict, a checkpoint dict, a whole module) to ``f`` (a
    path or a binary file object) in PyTorch's format: ``torch.load`` reads it.

    >>> import io, tracegrad as tg
    >>> tg.save(tg.arange(3), io.BytesIO())
    """
    _check_save_filelike(f)
    if isinstance(f, (str, os.PathLike)):
        f = os.fspath(f)
    data = _pickle_with_storages(obj, pickle_module, pickle_protocol,
                                 legacy=not _use_new_zipfile_serialization)
    if _use_new_zipfile_serialization:
        if isinstance(f, str):
            parent = os.path.dirname(f)
            if parent and not os.path.isdir(parent):
                raise RuntimeError(f"Parent directory {parent} does not exist.")
            with open(f, "wb") as fh:
                _write_zip(fh, _archive_name(f), data, _disable_byteorder_record)
        else:
            _write_zip(f, "archive", data, _disable_byteorder_record)
            if hasattr(f, "flush"):
                f.flush()
    elif isinstance(f, str):
        with open(f, "wb") as fh:
            _write_legacy(fh, data, pickle_module, pickle_protocol)
    else:
        _write_legacy(f, data, pickle_module, pickle_protocol)


def _pickle_with_storages(obj, pickle_module, protocol, legacy=False):
    """(pickle bytes, storages in key order) of ``obj``."""
    buf = io.BytesIO()
    if pickle_module is pickle or pickle_module is None:
        pickler = _TorchPickler(buf, protocol, legacy)
        pickler.dump(obj)
        storages = [s for _, s in pickler.storages.values()]
    else:  # another pickle module (dill, ...): its own Pickler, tensors' storages still ids
        storages_by_id: dict[int, tuple[str, _Storage]] = {}

        class Pickler(pickle_module.Pickler):
            def persistent_id(self, o):
                if o.__class__ is not _Storage:
                    return None
                entry = storages_by_id.setdefault(id(o), (str(len(storages_by_id)), o))
                name = _STORAGE_NAME_OF[dtypes.from_numpy_dtype(o.flat.dtype).name]
                pid = ("storage", _StorageType(name), entry[0], "cpu", o.flat.size)
                return pid + (None,) if legacy else pid
        Pickler(buf, protocol=protocol).dump(obj)
        storages = [s for _, s in storages_by_id.values()]
    return buf.getvalue(), storages


def _archive_name(path: str) -> str:
    # torch's writer names the archive's folder after the file: "model.pt" -> "model/"
    base = os.path.basename(path)
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return stem or "archive"


def _storage_bytes(s: _Storage) -> memoryview:
    flat = s.flat
    if flat.dtype.byteorder == ">" or (flat.dtype.byteorder == "=" and sys.byteorder == "big"):
        flat = flat.astype(flat.dtype.newbyteorder("<"))
    return memoryview(np.ascontiguousarray(flat).reshape(-1).view(np.uint8))


def _write_zip(fh, name: str, data, disable_byteorder: bool) -> None:
    pkl, storages = data
    zw = _ZipWriter(fh, name)
    zw.record("data.pkl", pkl)
    zw.record(".format_version", b"1")
    zw.record(".storage_alignment", str(_STORAGE_ALIGNMENT).encode())
    if not disable_byteorder:
        zw.record("byteorder", sys.byteorder.encode())
    for i, s in enumerate(storages):
        zw.record(f"data/{i}", _storage_bytes(s))
    zw.record("version", b"3\n")
    sid = f"{int.from_bytes(os.urandom(8), 'little'):020d}{zw.crc:020d}"
    zw.record(".data/serialization_id", sid.encode())
    zw.finish()


class _ZipWriter:
    """The zip archive torch's writer (miniz) makes: stored records, each one's data on a
    64-byte boundary (the local header's extra field pads, id ``FB``), then a data
    descriptor (torch computes record offsets from these sizes when it mmaps a file),
    the central directory, and zip64 records only where sizes or offsets need them."""

    limit = 0xFFFFFFFF  # sizes and offsets from here on need zip64 fields
    _MAX = 0xFFFFFFFF  # what a 32-bit field then holds ("see the zip64 extra field")

    def __init__(self, fh, name: str):
        self.fh, self.name, self.pos, self.crc = fh, name, 0, 0
        self.entries: list[tuple[bytes, int, int, int]] = []  # (name, crc, size, offset)

    def _write(self, b) -> None:
        self.fh.write(b)
        self.pos += b.nbytes if isinstance(b, memoryview) else len(b)

    def _u32(self, v: int) -> int:
        return self._MAX if v >= self.limit else v

    def record(self, rec: str, payload) -> None:
        fname = f"{self.name}/{rec}".encode()
        n = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        crc = zlib.crc32(payload)
        self.crc = zlib.crc32(payload, self.crc)
        offset = self.pos
        big = n >= self.limit or offset >= self.limit
        z64 = struct.pack("<HHQQ", 1, 16, n, n) if big else b""
        pad = (-(offset + 30 + len(fname) + len(z64) + 4)) % _STORAGE_ALIGNMENT
        extra = z64 + b"FB" + struct.pack("<H", pad) + b"Z" * pad
        size32 = self._MAX if big else 0  # sizes follow in the descriptor (flag bit 3)
        self._write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if big else 0, 0x0808, 0, 0, 0,
                                0, size32, size32, len(fname), len(extra)) + fname + extra)
        self._write(payload)
        self._write(struct.pack("<IIQQ", 0x08074B50, crc, n, n) if big
                    else struct.pack("<IIII", 0x08074B50, crc, n, n))
        self.entries.append((fname, crc, n, offset))

    def finish(self) -> None:
        start = self.pos
        for fname, crc, n, offset in self.entries:
            vals = [v for v in (n, n, offset) if v >= self.limit]
            extra = struct.pack("<HH", 1, 8 * len(vals)) + b"".join(
                struct.pack("<Q", v) for v in vals) if vals else b""
            version = 45 if vals else 0
            self._write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, version, version, 0x0808,
                                    0, 0, 0, crc, self._u32(n), self._u32(n), len(fname),
                                    len(extra), 0, 0, 0, 0, self._u32(offset)) + fname + extra)
        count, size = len(self.entries), self.pos - start
        z64 = count >= 0xFFFF or size >= self.limit or start >= self.limit
        if z64:
            z64_at = self.pos
            self._write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count,
                                    size, start))
            self._write(struct.pack("<IIQI", 0x07064B50, 0, z64_at, 1))
        count16 = 0xFFFF if z64 else count
        self._write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count16, count16,
                                self._MAX if z64 else size, self._MAX if z64 else start, 0))


def _write_legacy(fh, data, pickle_module, protocol) -> None:
    """``torch.save(..., _use_new_zipfile_serialization=False)``'s format: three header
    pickles, the object's pickle, the storage keys, then each storage's numel and bytes."""
    pkl, storages = data
    pm = pickle if pickle_module is None else pickle_module
    pm.dump(_LEGACY_MAGIC_NUMBER, fh, protocol=protocol)
    pm.dump(_LEGACY_PROTOCOL_VERSION, fh, protocol=protocol)
    pm.dump({"protocol_version": _LEGACY_PROTOCOL_VERSION,
             "little_endian": sys.byteorder == "little",
             "type_sizes": {"short": struct.calcsize("=h"), "int": struct.calcsize("=i"),
                            "long": struct.calcsize("=l")}}, fh, protocol=protocol)
    fh.write(pkl)
    keys = sorted(str(i) for i in range(len(storages)))
    pm.dump(keys, fh, protocol=protocol)
    for key in keys:
        s = storages[int(key)]
        fh.write(struct.pack("<q", s.flat.size))
        fh.write(_storage_bytes(s))


# ---- load ---------------------------------------------------------------------------------

def _cuda_message() -> str:
    return ("Attempting to deserialize object on a CUDA device but torch.cuda.is_available() "
            "is False. If you are running on a CPU-only machine, please use torch.load with "
            "map_location=torch.device('cpu') to map your storages to the CPU. (tracegrad's "
            "eager tensors live on the CPU; compiled functions run wherever jax runs.)")


def _restore_location(storage: _Storage, location: str) -> _Storage:
    loc = str(location)
    if loc == "cpu" or loc.startswith("cpu:"):
        return storage
    if loc.startswith("cuda"):
        raise RuntimeError(_cuda_message())
    raise RuntimeError(f"don't know how to restore data location of a storage saved on "
                       f"{loc!r}: tracegrad's eager tensors live on the CPU; pass "
                       "map_location='cpu'")


def _restorer(map_location):
    if map_location is None:
        return _restore_location
    if isinstance(map_location, dict):
        def restore(storage, location):
            return _restore_location(storage, map_location.get(location, location))
        return restore
    if isinstance(map_location, (str, bytes)):
        where = map_location.decode() if isinstance(map_location, bytes) else map_location
        return lambda storage, location: _restore_location(storage, where)
    if isinstance(map_location, device) or (type(map_location).__name__ == "device"
                                             and hasattr(map_location, "type")):
        where = str(map_location)  # (a torch.device too: "cpu", "cuda:0")
        return lambda storage, location: _restore_location(storage, where)
    if callable(map_location):
        def restore(storage, location):
            result = map_location(storage, location)
            if result is None:
                return _restore_location(storage, location)
            if not isinstance(result, _Storage):
                raise TypeError(f"map_location should return a storage or None, got "
                                f"{type(result).__name__}")
            return result
        return restore
    raise TypeError(f"map_location should be a string, a device, a dict or a callable, got "
                    f"{type(map_location).__name__}")


def _decode(s):
    return s.decode("ascii") if isinstance(s, bytes) else s


def _unpickler_class(weights_only: bool, pickle_module):
    base = pickle.Unpickler if weights_only or pickle_module is None else pickle_module.Unpickler
    torch_globals = _load_globals()

    class Unpickler(base):
        def find_class(self, module, name):
            if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol 2 names builtins
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
            if module == "torch.tensor":  # torch's load_module_mapping
                module = "torch._tensor"
            found = torch_globals.get((module, name))
            if found is not None:
                return found
            if module == "torch._utils" and name.startswith("_rebuild"):
                raise RuntimeError(
                    f"tracegrad.load: the checkpoint rebuilds a tensor with {module}.{name}, a "
                    "kind of tensor tracegrad does not have (sparse, quantized, nested, meta or "
                    "device-specific); convert it to a dense CPU tensor in PyTorch first "
                    "(t.to_dense().cpu())")
            if weights_only:
                return _weights_only_global(module, name)
            if module == "torch" or module.startswith("torch."):
                raise pickle.UnpicklingError(
                    f"tracegrad.load cannot rebuild {module}.{name}, a PyTorch object that "
                    "is not a tensor, dtype or device; save the model's state_dict() instead "
                    "and load it with load_state_dict()")
            return super().find_class(module, name)
    return Unpickler


def _weights_only_global(module: str, name: str):
    full_path = f"{module}.{name}"
    if module in _BLOCKLISTED_MODULES:
        raise pickle.UnpicklingError(f"Trying to load unsupported GLOBAL {full_path} whose "
                                     f"module {module} is blocked.")
    if (module, name) in _SAFE_BUILTINS:
        return _SAFE_BUILTINS[(module, name)]
    user = _user_allowed_globals()
    if full_path in user:
        return user[full_path]
    if full_path.startswith("builtins"):
        rest = full_path[len("builtins"):]
        full_path = rest[1:] if rest.startswith(".") else "builtins" + rest
    raise pickle.UnpicklingError(
        f"Unsupported global: GLOBAL {full_path} was not an allowed global by default. "
        f"Please use `torch.serialization.add_safe_globals([{full_path}])` or the "
        f"`torch.serialization.safe_globals([{full_path}])` context manager to allowlist this "
        "global if you trust this class/function.")


def get_unsafe_globals_in_checkpoint(f) -> list[str]:
    """The ``module.name`` globals a checkpoint's pickle names that ``load(weights_only=True)``
    would refuse (read statically, as torch does, without unpickling)."""
    import pickletools
    opened = open(os.fspath(f), "rb") if isinstance(f, (str, os.PathLike)) else None
    fh = opened or f
    try:
        pos = fh.tell()
        is_zip = fh.read(4) == b"PK\x03\x04"
        fh.seek(pos)
        if not is_zip:
            raise ValueError("Expected input to be a checkpoint returned by torch.save")
        zf = zipfile.ZipFile(fh)
        names = zf.namelist()
        prefix = names[0].split("/", 1)[0] if names else ""
        if f"{prefix}/constants.pkl" in names:
            raise ValueError("Expected input to be a checkpoint returned by torch.save but got a "
                             "torchscript checkpoint")
        data = zf.read(f"{prefix}/data.pkl")
    finally:
        if opened is not None:
            opened.close()
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            module, name = arg.split(" ", 1)
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            module, name = strings[-2], strings[-1]
        else:
            if isinstance(arg, str) and "UNICODE" in op.name:
                strings.append(arg)
            continue
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found.add((module, name))
    safe = set(_load_globals()) | set(_SAFE_BUILTINS)
    user = _user_allowed_globals()
    return [f"{m}.{n}" for m, n in sorted(found) if (m, n) not in safe and f"{m}.{n}" not in user]


def _weights_only_message(message: str) -> str:
    """torch.load's wrapping of a weights-only refusal (``_get_wo_message``)."""
    import re
    if re.search(r"GLOBAL (\S+) was not an allowed global by default.", message):
        updated = ("Weights only load failed. This file can still be loaded, to do so you have "
                   "two options, \033[1mdo those steps only if you trust the source of the "
                   f"checkpoint\033[0m. \n\t(1) {UNSAFE_MESSAGE}\n\t(2) Alternatively, to load "
                   "with `weights_only=True` please check the recommended steps in the "
                   "following error message.\n\tWeightsUnpickler error: " + message)
    else:
        if re.search(r"(\S+) must be (\S+) to load", message):
            return f"Weights only load failed. {message}\n {UNSAFE_MESSAGE}\n"
        updated = f"Weights only load failed. {UNSAFE_MESSAGE}\n"
        if not re.search(r"whose module (\S+) is blocked", message):
            updated += ("Please file an issue with the following so that we can make "
                        "`weights_only=True` compatible with your use case: WeightsUnpickler "
                        "error: ")
        updated += "\n\n" + message
    return updated + _DOCS_MESSAGE


def load(f, map_location=None, pickle_module: Any = None, *, weights_only: bool | None = None,
         mmap: bool | None = None, **pickle_load_args: Any) -> Any:
    """Load an object saved by ``tracegrad.save`` or ``torch.save`` (a path or a binary file
    object). ``weights_only=True`` (the default, as in torch 2.6+) unpickles only tensors,
    containers, primitive types and what ``add_safe_globals`` allowed.

    >>> import io, tracegrad as tg
    >>> buf = io.BytesIO(); tg.save([tg.tensor([1, 2])], buf); _ = buf.seek(0)
    >>> tg.load(buf, map_location="cpu")
    [tensor([1, 2])]
    """
    weights_only_not_set = weights_only is None
    if weights_only_not_set:
        weights_only = pickle_module is None
    truthy = ("1", "y", "yes", "true")
    force_wo = os.getenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in truthy
    force_no_wo = os.getenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in truthy
    if force_wo and force_no_wo:
        raise RuntimeError("Only one of `TORCH_FORCE_WEIGHTS_ONLY_LOAD` or "
                           "`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` should be set, but both were set.")
    if force_wo:
        weights_only = True
    elif force_no_wo and weights_only_not_set:
        warnings.warn("Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected, since the"
                      "`weights_only` argument was not explicitly passed to `torch.load`, forcing "
                      "weights_only=False.", UserWarning, stacklevel=2)
        weights_only = False
    if weights_only and pickle_module is not None:
        raise RuntimeError("Can not safely load weights when explicit pickle_module is specified")
    if pickle_load_args and weights_only:
        warnings.warn("pickle_load_args only works if `weights_only=False`.", stacklevel=2)
    pickle_load_args.setdefault("encoding", "utf-8")
    if weights_only:
        pickle_load_args = {"encoding": pickle_load_args["encoding"]}
    unpickler_cls = _unpickler_class(weights_only, pickle_module)
    restore = _restorer(map_location)
    path = os.fspath(f) if isinstance(f, (str, os.PathLike)) else None
    if path is not None:
        with open(path, "rb") as fh:
            return _load_file(fh, path, restore, unpickler_cls, weights_only, mmap,
                              pickle_load_args)
    if not hasattr(f, "read"):
        raise AttributeError(f"expected 'f' to be a path or a file-like object with a 'read' "
                             f"attribute, got {type(f).__name__}")
    return _load_file(f, None, restore, unpickler_cls, weights_only, mmap, pickle_load_args)


def _load_file(fh, path, restore, unpickler_cls, weights_only, mmap, pickle_load_args):
    pos = fh.tell()
    is_zip = fh.read(4) == b"PK\x03\x04"
    fh.seek(pos)
    try:
        if is_zip:
            return _load_zip(fh, path, restore, unpickler_cls, mmap, pickle_load_args)
        if mmap:
            name = "" if path is None else f"{path}, "
            raise RuntimeError("mmap can only be used with files saved with "
                               f"`torch.save({name}_use_new_zipfile_serialization=True), please "
                               "torch.save your checkpoint with this option in order to use mmap.")
        return _load_legacy(fh, restore, unpickler_cls, pickle_load_args)
    except pickle.UnpicklingError as e:
        if weights_only:
            raise pickle.UnpicklingError(_weights_only_message(str(e))) from None
        raise


def _record_offset(fh, info: zipfile.ZipInfo) -> int:
    """Where a stored record's bytes begin in the file (after its local header)."""
    fh.seek(info.header_offset)
    header = fh.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _load_zip(fh, path, restore, unpickler_cls, mmap, pickle_load_args):
    try:
        zf = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as e:
        raise RuntimeError(
            "PytorchStreamReader failed reading zip archive: not a ZIP archive. This is an "
            "internal miniz error. If you are seeing this error, there is a high likelihood "
            "that your checkpoint file is corrupted. This can happen if the checkpoint was not "
            "saved properly, was transferred incorrectly, or the file was modified after "
            f"saving. ({e})") from None
    names = zf.namelist()
    if not names:
        raise RuntimeError("PytorchStreamReader failed reading zip archive: the archive is empty")
    prefix = names[0].split("/", 1)[0]
    records = {n[len(prefix) + 1:]: zf.getinfo(n) for n in names if n.startswith(prefix + "/")}
    if "constants.pkl" in records:
        raise RuntimeError("this is a TorchScript archive (torch.jit.save): tracegrad.load reads "
                           "torch.save checkpoints only")
    if "data.pkl" not in records:
        raise RuntimeError(f"PytorchStreamReader failed locating file data.pkl: file not found "
                           f"(records: {sorted(records)})")
    byteorder = "little"
    if "byteorder" in records:
        byteorder = zf.read(records["byteorder"]).decode()
        if byteorder not in ("little", "big"):
            raise ValueError("Unknown endianness type: " + byteorder)
    mapped = None
    if mmap:
        if path is None:
            raise ValueError("f must be a file path in order to use the mmap argument")
        # copy-on-write, as torch maps (MAP_PRIVATE); a plain ndarray view, not a memmap
        mapped = np.asarray(np.memmap(path, dtype=np.uint8, mode="c"))
    loaded: dict[str, _Storage] = {}

    def load_storage(dtype: DType, numel: int, key: str, location: str) -> _Storage:
        info = records.get(f"data/{key}")
        if info is None:
            raise RuntimeError(f"PytorchStreamReader failed locating file data/{key}: file not "
                               "found")
        nbytes = numel * dtype.itemsize
        if info.file_size != nbytes:
            raise RuntimeError(f"storage data/{key} holds {info.file_size} bytes, the checkpoint "
                               f"expects {nbytes} ({numel} x {dtype})")
        if mapped is not None and info.compress_type == zipfile.ZIP_STORED:
            off = _record_offset(fh, info)
            flat = mapped[off:off + nbytes].view(dtype.np)
        else:
            flat = np.empty(numel, dtype.np)
            with zf.open(info) as src:
                view = memoryview(flat.view(np.uint8))
                got = 0
                while got < nbytes:
                    n = src.readinto(view[got:])
                    if not n:
                        raise RuntimeError(f"storage data/{key} ended early")
                    got += n
        if byteorder != sys.byteorder and dtype.itemsize > 1:
            flat = flat.byteswap() if mapped is not None else flat.byteswap(inplace=True)
        return restore(_Storage(flat), location)

    def persistent_load(saved_id):
        if not isinstance(saved_id, tuple):
            raise pickle.UnpicklingError(f"persistent_load id must be tuple, but got "
                                         f"{type(saved_id)}")
        if _decode(saved_id[0]) != "storage":
            raise pickle.UnpicklingError(f"Unknown typename for persistent_load, expected "
                                         f"'storage' but got '{_decode(saved_id[0])}'")
        storage_type, key, location, numel = saved_id[1:5]
        key = _decode(key)
        s = loaded.get(key)
        if s is None:
            s = loaded[key] = load_storage(_storage_dtype(storage_type), numel, key,
                                           _decode(location))
        return s

    unpickler = unpickler_cls(io.BytesIO(zf.read(records["data.pkl"])), **pickle_load_args)
    unpickler.persistent_load = persistent_load
    return unpickler.load()


def _storage_dtype(storage_type) -> DType:
    if isinstance(storage_type, _StorageType):
        return storage_type.dtype
    raise pickle.UnpicklingError(f"expected a storage type in a storage id, got {storage_type!r}")


def _load_legacy(fh, restore, unpickler_cls, pickle_load_args):
    """Files of ``torch.save(..., _use_new_zipfile_serialization=False)``."""
    def header_load():
        return pickle.Unpickler(fh, **pickle_load_args).load()
    magic = header_load()  # not a checkpoint at all: pickle's own error, as in torch
    if magic != _LEGACY_MAGIC_NUMBER:
        raise RuntimeError("Invalid magic number; corrupt file?")
    version = header_load()
    if version != _LEGACY_PROTOCOL_VERSION:
        raise RuntimeError(f"Invalid protocol version: {version}")
    header_load()  # sys_info
    storages: dict[str, _Storage] = {}
    views: dict[str, _Storage] = {}
    pending: list[tuple[str, DType, int, str]] = []

    def persistent_load(saved_id):
        if not isinstance(saved_id, tuple):
            raise pickle.UnpicklingError(f"persistent_load id must be tuple, but got "
                                         f"{type(saved_id)}")
        typename = _decode(saved_id[0])
        if typename == "module":
            return saved_id[1]
        if typename != "storage":
            raise RuntimeError(f"Unknown saved id type: {saved_id[0]}")
        storage_type, key, location, numel = saved_id[1:5]
        view_metadata = saved_id[5] if len(saved_id) > 5 else None
        dtype = _storage_dtype(storage_type)
        key = _decode(key)
        if key not in storages:
            # the bytes come after the pickle: an empty array now, filled in place below
            storages[key] = _Storage(np.empty(numel, dtype.np))
            pending.append((key, dtype, numel, _decode(location)))
        s = storages[key]
        if view_metadata is not None:
            view_key, offset, view_size = view_metadata
            if view_key not in views:
                views[view_key] = _Storage(s.flat[offset:offset + view_size])
            return views[view_key]
        return s

    unpickler = unpickler_cls(fh, **pickle_load_args)
    unpickler.persistent_load = persistent_load
    result = unpickler.load()
    keys = header_load()
    for key in keys:
        s = storages[_decode(key)]
        (numel,) = struct.unpack("<q", fh.read(8))
        if numel != s.flat.size:
            raise RuntimeError(f"storage {key} holds {numel} elements, expected {s.flat.size}")
        raw = fh.read(s.flat.nbytes)
        if len(raw) != s.flat.nbytes:
            raise RuntimeError(f"storage {key} ended early")
        s.flat[...] = np.frombuffer(raw, s.flat.dtype.newbyteorder("<"))
    for key, _dtype, _numel, location in pending:
        if restore(storages[key], location) is not storages[key]:
            raise RuntimeError("map_location returned a new storage for a legacy-format file; "
                               "tracegrad can only keep the loaded one")
    return result
