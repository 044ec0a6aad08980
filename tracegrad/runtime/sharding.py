"""Where a compiled call's values live on a mesh: ``compile(fn, mesh=..., shard_state=...)``.

NOTE: [Global-batch semantics]. The traced program is the one-device program of the
whole (global) batch; only its inputs' placement changes. Tensor arguments with
ndim >= 1 are split along dim 0 over the data axis, state (parameters, ``.grad`` slots,
optimizer state, buffers) is replicated, or with ``shard_state`` split along dim 0
where that dim divides by the axis size (ZeRO-3 / FSDP style). XLA's SPMD partitioner
then inserts the collectives (an all-reduce of the gradients, the all-gathers of
sharded parameters), so means, BatchNorm statistics and every other reduction over
the batch are the global batch's, and the results equal the one-device call's. The
program's written state comes back with the sharding it came in with, so it stays
on the devices between calls (NOTE: [Deferred write-back]); reading it eagerly
gathers (NOTE: [Reading sharded state] in distributed/spmd.py).

With several processes (``tracegrad.distributed.initialize``), each passes its own
slice of the batch: the global argument is assembled as
``jax.make_array_from_process_local_data`` does, and the tracing call, which runs the
step eagerly, runs it on the global batch gathered from every process
(``global_arguments``), so every process traces the same program and leaves the same
state.
"""
from __future__ import annotations

import numpy as np

from ..codegen.jax_lower import x64
from ..ir.sources import Arg, Grad, State
from ..tensor import Tensor

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute",
               "all-to-all")

# set once any call ran on a mesh: from then on, one-device calls move values that a mesh
# call left sharded back to one device (never checked before: the common case costs nothing)
USED = [False]


class Placement:
    """A mesh, the axis (or axes) dim 0 of the data splits over, and whether state is
    sharded too; hashable, so a compiled function keeps one cache per placement."""

    def __init__(self, mesh, axis=None, shard_state=False):
        from jax.sharding import Mesh
        if not isinstance(mesh, Mesh):
            raise TypeError(f"tracegrad.compile: mesh must be a jax.sharding.Mesh (e.g. "
                            f"tracegrad.distributed.mesh()), got {type(mesh).__name__}")
        names = tuple(mesh.axis_names)
        if axis is None:
            axis = names[0]
        axes = (axis,) if isinstance(axis, str) else tuple(axis)
        for a in axes:
            if a not in names:
                raise ValueError(f"tracegrad.compile: axis {a!r} is not an axis of the mesh, "
                                 f"whose axes are {names}; pass axis= one of them (or a "
                                 "tuple of them)")
        self.mesh = mesh
        self.axes = axes
        self.size = int(np.prod([mesh.shape[a] for a in axes]))
        self.chosen = None  # shard_state=[tensors]: id -> tensor sharded (with its state)
        if isinstance(shard_state, (list, tuple, set, frozenset)):
            self.chosen = self._check_chosen(shard_state)
            shard_state = True
        elif not isinstance(shard_state, bool):
            raise TypeError(f"tracegrad.compile: shard_state must be True, False or a list "
                            f"of the parameters to shard, got {shard_state!r}")
        self.shard_state = shard_state
        import jax
        self.processes = len({d.process_index for d in mesh.devices.flat})
        self.multi = self.processes > 1
        # devices of the data axes this process holds: its slice of the batch splits so
        self.local_size = self.size // self.processes if self.multi else self.size
        self._me = jax.process_index()

    def _check_chosen(self, tensors):
        """``shard_state=[p, ...]``: each must split along dim 0 over the axis, now."""
        chosen = {}
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"tracegrad.compile: shard_state[{i}] is a "
                                f"{type(t).__name__}; list the parameters (tensors) to shard")
            shape = tuple(t.shape)
            if not shape or shape[0] % self.size:
                why = ("is 0-d: it has no dim 0 to split" if not shape else
                       f"has {shape[0]} rows in dim 0, which do not split evenly")
                raise ValueError(f"tracegrad.compile: shard_state[{i}] (a tensor of shape "
                                 f"{shape}) {why} over the {self.size} devices of mesh axis "
                                 f"{self._axis_text()}; leave it out (it is then replicated), "
                                 "or pass shard_state=True, which splits only what divides")
            chosen[id(t)] = t
        return chosen

    def _axis_text(self):
        return self.axes[0] if len(self.axes) == 1 else self.axes

    def _identity(self):
        chosen = None if self.chosen is None else frozenset(self.chosen)
        return self.mesh, self.axes, self.shard_state, chosen

    def __eq__(self, other):
        return isinstance(other, Placement) and self._identity() == other._identity()

    def __hash__(self):
        return hash(self._identity())

    def __repr__(self):
        shape = ", ".join(f"{a}={n}" for a, n in self.mesh.shape.items())
        state = "" if not self.shard_state else ", shard_state" if self.chosen is None \
            else f", shard_state=[{len(self.chosen)} tensors]"
        return f"mesh({shape}) over {self._axis_text()}{state}"

    # ---- shardings ------------------------------------------------------------------
    def _spec(self, split):
        from jax.sharding import NamedSharding, PartitionSpec
        if not split:
            return NamedSharding(self.mesh, PartitionSpec())
        return NamedSharding(self.mesh, PartitionSpec(
            self.axes[0] if len(self.axes) == 1 else self.axes))

    def data(self, shape):
        return self._spec(len(shape) >= 1)

    def state(self, shape, tensor=None, sharded=None):
        if sharded is not None and id(tensor) not in sharded:
            return self._spec(False)  # (shard_state=[...] did not name it)
        return self._spec(self.shard_state and len(shape) >= 1 and shape[0] % self.size == 0)

    def replicated(self):
        return self._spec(False)

    def sharded_ids(self, python_state):
        """shard_state=[p, ...]: the ids of the tensors to split: each ``p``, and the
        optimizer state of ``p``'s shape kept for it (momentum, Adam's moments); their
        ``.grad`` slots follow their owners. None: decided by shape alone."""
        if self.chosen is None:
            return None
        from ..optim.optimizer import Optimizer
        ids = set(self.chosen)
        for opt in python_state:
            if isinstance(opt, Optimizer):
                for p in self.chosen.values():
                    for v in opt.state.get(p, {}).values():
                        if isinstance(v, Tensor) and tuple(v.shape) == tuple(p.shape):
                            ids.add(id(v))
        return ids

    def for_source(self, src, shape, sharded=None):
        if isinstance(src, Arg):
            return self.data(shape)
        if isinstance(src, State):
            return self.state(shape, src.tensor, sharded)
        if isinstance(src, Grad):
            return self.state(shape, src.owner, sharded)
        return self.replicated()  # a float, a hyperparameter, a key, eager draws

    # ---- checks ---------------------------------------------------------------------
    def check_batch(self, flat, fn=None):
        """Before anything runs: every tensor argument's dim 0 divides over the axis."""
        n = self.local_size
        for path, v in flat:
            if isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] % n:
                path = _argument_name(fn, path)
                where = (f"the {n} devices of this process on mesh axis {self.axes}"
                         if self.multi else f"the {n} devices of mesh axis "
                         f"{self.axes[0] if len(self.axes) == 1 else self.axes}")
                raise ValueError(f"tracegrad.compile: argument {path!r} has size "
                                 f"{v.shape[0]} in dim 0, which does not split evenly over "
                                 f"{where}; pass a batch whose size is a multiple of {n} "
                                 "(e.g. drop_last=True in the DataLoader)")

    # ---- placing values ---------------------------------------------------------------
    def put(self, value, sharding, local=False):
        """``value`` (host array or device value) on ``sharding``. ``local``: the value is
        this process's slice of a global argument."""
        import jax
        with x64():
            if self.multi:
                host = np.asarray(value) if not isinstance(value, jax.Array) else None
                if local:
                    return jax.make_array_from_process_local_data(sharding, np.asarray(value))
                if host is not None:  # the same full value in every process
                    return jax.make_array_from_callback(host.shape, sharding,
                                                        lambda idx: host[idx])
            elif isinstance(value, np.ndarray):
                value = value.copy()  # (jax on CPU would wrap the array's memory)
            return jax.device_put(value, sharding)

    def put_all(self, values, shardings, local):
        """Every input on its sharding, in one batched transfer where possible."""
        import jax
        if self.multi:
            return [v if isinstance(v, jax.Array) and v.sharding == s
                    else self.put(v, s, loc) for v, s, loc in zip(values, shardings, local,
                                                                    strict=True)]
        with x64():
            return jax.device_put(list(values), list(shardings))

    def global_arguments(self, flat):
        """(multi-process) The global batch, gathered from every process, as tensors in
        place of the process-local arguments: the tracing call runs on it."""
        from jax.experimental import multihost_utils
        out = []
        for path, v in flat:
            if isinstance(v, Tensor) and v.ndim >= 1:
                g = self.put(v.detach().numpy(), self.data(v.shape), local=True)
                full = np.asarray(multihost_utils.process_allgather(g, tiled=True))
                t = Tensor._make(full.astype(v.numpy().dtype, copy=False))
                if v.requires_grad:
                    t.requires_grad_(True)
                out.append((path, t))
            else:
                out.append((path, v))
        return out

    def global_shape(self, shape):
        return (shape[0] * self.processes, *shape[1:]) if self.multi and shape else shape


def _argument_name(fn, path):
    """``arg1`` -> ``y`` (the function's own name for its second parameter), when known."""
    import inspect
    if fn is None or not path.startswith("arg") or not path[3:].isdigit():
        return path
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return path
    i = int(path[3:])
    return params[i] if i < len(params) else path


def _label(fn, src, name):
    if isinstance(src, Arg):
        return _argument_name(fn, src.name)
    return name or src.name


def to_one_device(values):
    """(After a mesh call) values a mesh left over several devices, moved to the default
    device, as a one-device program needs them."""
    import jax
    dev = None
    out = []
    for v in values:
        if isinstance(v, jax.Array) and len(v.sharding.device_set) > 1:
            if dev is None:
                dev = jax.devices()[0]
            with x64():
                v = jax.device_put(v, dev)
        out.append(v)
    return out


def describe(sharding, shape) -> str:
    """``P('data') over 8: 4 x f32[...] per device``-style text for one placed value."""
    spec = sharding.spec
    per = sharding.shard_shape(tuple(shape)) if shape else ()
    split = any(p is not None for p in spec)
    return (f"{'split ' + str(spec) if split else 'replicated'}"
            f" -> [{', '.join(map(str, per))}] per device")


def count_collectives(hlo_text: str) -> dict:
    """How many of each collective XLA's compiled (partitioned) module runs."""
    import re
    counts = dict.fromkeys(COLLECTIVES, 0)
    for name in COLLECTIVES:
        # ``= f32[..] all-reduce(`` or its async ``all-reduce-start(``; not ``-done``
        counts[name] = len(re.findall(rf"\s{name}(?:-start)?\(", hlo_text))
    return counts


def report(entry) -> tuple[list[str], dict]:
    """A mesh entry's input placements (one line per graph input) and the collectives
    XLA's compiled, partitioned module runs: they are the SPMD partitioner's, so they
    appear in neither the graph nor the generated jax source."""
    import jax
    prog = entry.program
    lines = [f"{_label(entry.fn, src, name)}: {describe(sh, v.shape)}" for src, name, v, sh
             in zip(entry.trace.sources, prog.input_names, prog.inputs, entry._in_sh,
                    strict=True)]
    specs = [jax.ShapeDtypeStruct(v.shape, v.dtype.np) for v in prog.inputs]
    with x64():
        text = entry.lowered.jitted.lower(*specs).compile().as_text()
    return lines, count_collectives(text)
