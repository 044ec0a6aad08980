"""The IR: Var, Const, Eqn, Graph; a printer that emits runnable Python; a verifier.

A Graph is a list of equations in topological order, each binding one new Var:

    def f(x, w):
        v0 = matmul(x, w)        # f32[64,100]  model.py:12
        v1 = relu(v0)            # f32[64,100]  model.py:13
        return (v1,)

``str(graph)`` is that text. Every call in it names a function in
``tracegrad.ir.ops`` (one per primitive), so the text can be exec'd and run on
tracegrad tensors (``graph.to_callable()``).
"""
from __future__ import annotations

import itertools
import keyword

import numpy as np

from .. import dtypes

_ids = itertools.count()


class Var:
    """An SSA value: a shape and a dtype (a tracegrad DType)."""

    __slots__ = ("shape", "dtype", "id", "__weakref__")

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.id = next(_ids)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"Var({type_str(self)}#{self.id})"


class Const(Var):
    """A constant known at trace time (a literal in the printed graph)."""

    __slots__ = ("value",)

    def __init__(self, value: np.ndarray):
        value = np.asarray(value)
        super().__init__(value.shape, dtypes.from_numpy_dtype(value.dtype))
        self.value = value

    def __repr__(self):
        return f"Const({self.value!r})"


class Eqn:
    """``out = prim(*inputs, **params)``.

    src:       "file.py:12", where the user's code made it
    grad_name: the grad_fn name eager mode shows for it
    grad_mask: which inputs carried gradient when it ran (None: none did); the
               autodiff pass differentiates only along those edges
    module:    the module call stack it was recorded in ("model.blocks.2.attn"; "" at
               top level), torch's nn_module_stack idea; a backward equation carries
               its forward equation's
    phase:     "forward", "backward", "optimizer" or "other" (NOTE: [Phases])
    outs:      every result, in order: ``(out,)`` for a primitive; a structured
               control-flow op (cond, scan, while_loop) binds several
               (``a, b = scan(...)``), and then ``out`` is ``outs[0]``

    Passes that make an equation standing for another copy ``src``, ``module`` and
    ``phase`` with ``like(new, old)``.
    """

    __slots__ = ("prim", "inputs", "params", "out", "src", "grad_name", "grad_mask",
                 "module", "phase", "outs")

    def __init__(self, prim, inputs, params, out, src="", grad_name=None, grad_mask=None,
                 module="", phase="forward", outs=None):
        self.prim = prim
        self.inputs = tuple(inputs)
        self.params = params
        if outs is not None:
            outs = tuple(outs)
            out = outs[0] if outs else None
        self.out = out
        self.outs = (out,) if outs is None else outs
        self.src = src
        self.grad_name = grad_name
        self.grad_mask = grad_mask
        self.module = module
        self.phase = phase

    def replace(self, **kw):
        e = Eqn(self.prim, self.inputs, self.params, self.out, self.src, self.grad_name,
                self.grad_mask, self.module, self.phase,
                outs=self.outs if len(self.outs) != 1 else None)
        for k, v in kw.items():
            setattr(e, k, v)
        if "outs" in kw:
            e.out = e.outs[0] if e.outs else None
        return e

    def __repr__(self):
        return f"Eqn({self.prim.name}, {len(self.inputs)} inputs)"


def like(new: Eqn, old: Eqn) -> Eqn:
    """``new`` with ``old``'s metadata (source line, module path, phase): what a pass
    keeps when one equation stands for another (a fused region for its root, a
    rewritten reshape for the one it replaces)."""
    new.src, new.module, new.phase = old.src, old.module, old.phase
    return new


# NOTE: [Phases]. Every equation says which part of a training step made it:
# "forward" (before any backward), "backward" (recorded while an eager .backward() ran
# inside the trace, or emitted by the autodiff pass), "optimizer" (recorded inside
# Optimizer.step or zero_grad) and "other" (after a backward, outside the optimizer:
# gradient clipping, metrics). The printer marks where the phase changes; explain and
# the viewer count and lay out equations by phase.
PHASES = ("forward", "backward", "optimizer", "other")


class Graph:
    """inputs -> eqns -> outputs. ``input_names`` label inputs (``x``, ``model.w``)."""

    def __init__(self, inputs, eqns, outputs, input_names=None, output_names=None, name="f",
                 meta=None):
        self.inputs = list(inputs)
        self.eqns = list(eqns)
        self.outputs = list(outputs)
        self.input_names = list(input_names) if input_names else [None] * len(self.inputs)
        self.output_names = list(output_names) if output_names else [None] * len(self.outputs)
        self.name = name
        self.meta = dict(meta or {})

    def replace(self, **kw) -> Graph:
        g = Graph(self.inputs, self.eqns, self.outputs, self.input_names, self.output_names,
                  self.name, self.meta)
        for k, v in kw.items():
            setattr(g, k, v)
        return g

    def __len__(self):
        return len(self.eqns)

    def count(self, prim_name: str) -> int:
        return sum(1 for e in self.eqns if e.prim.name == prim_name)

    def __str__(self):
        return to_source(self)

    def __repr__(self):
        return f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.eqns)} eqns, " \
               f"{len(self.outputs)} outputs>"

    def to_callable(self):
        """Exec the printed text; the result maps tracegrad tensors to a tuple."""
        from . import ops
        ns = dict(ops.NAMESPACE)
        exec(compile(to_source(self), f"<graph {self.name}>", "exec"), ns)
        return ns[_py_name(self.name)]

    # visualisation helpers live with the inspection tools
    def to_networkx(self):
        from .inspect import to_networkx
        return to_networkx(self)

    def to_dot(self) -> str:
        from .inspect import to_dot
        return to_dot(self)

    def _repr_html_(self) -> str:
        # Jupyter shows a Graph as a drawing (tracegrad/ir/inspect.py)
        from .inspect import to_html
        return to_html(self)


# ----------------------------------------------------------------------------
# printing

_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "int64": "i64", "int32": "i32",
          "bool": "bool", "uint8": "u8", "int8": "i8", "int16": "i16", "uint32": "u32"}


def type_str(v) -> str:
    return f"{_SHORT.get(v.dtype.name, v.dtype.name)}[{','.join(map(str, v.shape))}]"


def _py_name(name: str) -> str:
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "f"
    if s[0].isdigit() or keyword.iskeyword(s):
        s = "_" + s
    return s


class Namespace:
    """Unique, legal Python names for Vars (NOTE: [Graph Namespaces] in torch.fx)."""

    def __init__(self):
        self._names: dict = {}
        self._used: set = set()
        self._counter = itertools.count()

    def name(self, v, hint: str | None = None) -> str:
        n = self._names.get(v)
        if n is not None:
            return n
        base = _py_name(hint) if hint else "v"
        n = base if (hint and base not in self._used) else None
        while n is None or n in self._used:
            n = f"{base}{next(self._counter)}" if not hint else f"{base}_{next(self._counter)}"
        self._used.add(n)
        self._names[v] = n
        return n


def literal_source(c: Const) -> str:
    if c.value.ndim == 0:
        val = c.value.item()
        return f"const({val!r}, {c.dtype.name!r})"
    return f"const({c.value.tolist()!r}, {c.dtype.name!r})"


def _arg_source(v, ns: Namespace) -> str:
    if isinstance(v, Const):
        return literal_source(v)
    return ns.name(v)


def _param_source(k, v) -> str:
    from ..primitives import TENSOR
    if isinstance(v, dtypes.DType):
        return f"{k}={v.name!r}"
    if isinstance(v, Graph):
        return f"{k}={_py_name(v.name)}"
    if isinstance(v, tuple) and any(e is TENSOR for e in v):
        return f"{k}={v!r}"
    return f"{k}={v!r}"


def to_source(graph: Graph, indent: str = "", ns: Namespace | None = None) -> str:
    ns = ns or Namespace()
    lines = []
    args = [ns.name(v, hint) for v, hint in zip(graph.inputs, graph.input_names, strict=False)]
    header = _header(graph) + _input_header(graph, args)
    lines.extend(indent + h for h in header)
    lines.append(f"{indent}def {_py_name(graph.name)}({', '.join(args)}):")
    body = []
    mark = len({e.phase for e in graph.eqns}) > 1 and indent == ""
    phase = None
    for e in graph.eqns:
        if mark and e.phase != phase:
            phase = e.phase
            body.append(f"{indent}    # ---- {phase} ----")
        for p in e.params.values():
            if isinstance(p, Graph):
                body.append(to_source(p, indent + "    ", Namespace()))
        call_args = [_arg_source(v, ns) for v in e.inputs]
        call_args += [_param_source(k, v) for k, v in e.params.items()]
        if len(e.outs) == 1 and not getattr(e.prim, "multiple_results", False):
            out, types = ns.name(e.out), type_str(e.out)
        else:  # a structured op binds a tuple: ``a, b = scan(...)``
            out = ", ".join(ns.name(v) for v in e.outs) + ("," if len(e.outs) == 1 else "")
            types = ", ".join(type_str(v) for v in e.outs)
        text = f"{out} = {e.prim.name}({', '.join(call_args)})"
        comment = (f"# {types}" + (f"  {e.src}" if e.src else "")
                   + (f"  {e.module}" if e.module else ""))
        body.append((text, comment))
    width = max((len(t[0]) for t in body if isinstance(t, tuple)), default=0)
    for item in body:
        if isinstance(item, str):
            lines.append(item)
        else:
            text, comment = item
            lines.append(f"{indent}    {text.ljust(min(width, 60))}  {comment}")
    outs = [_arg_source(v, ns) for v in graph.outputs]
    lines.append(f"{indent}    return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
    return "\n".join(lines)


def _input_header(graph: Graph, args) -> list:
    """``#   name  source`` for each input whose legal name is not its full source name
    (``model_fc1_weight  model.fc1.weight``); ``meta["input_labels"]`` is {Var: name}."""
    labels = graph.meta.get("input_labels")
    if not labels:
        return []
    pairs = [(a, labels[v]) for a, v in zip(args, graph.inputs, strict=False)
             if labels.get(v) and labels[v] != a]
    if not pairs:
        return []
    width = max(len(a) for a, _ in pairs)
    return ["# inputs:"] + [f"#   {a.ljust(width)}  {lab}" for a, lab in pairs]


def _header(graph: Graph):
    origin = graph.meta.get("origin")  # a body of a structured op: where its Python is
    if origin:
        return [f"# {origin}"]
    stage = graph.meta.get("stage")
    if not stage:
        return []
    t = graph.meta.get("seconds")
    timing = f" in {t * 1e3:.2f} ms" if t is not None else ""
    return [f"# stage: {stage}{timing}; {len(graph.eqns)} eqns"]


# ----------------------------------------------------------------------------
# verification

class VerifyError(AssertionError):
    pass


def verify(graph: Graph) -> Graph:
    """Check: every input bound before use, each Var defined once, shape rules hold.
    The bodies of structured ops (cond, scan, while_loop) are checked too, and their
    signatures against the equation's inputs and outputs (their shape rules)."""
    defined = set()
    for v in graph.inputs:
        if v in defined:
            raise VerifyError(f"input {v} appears twice")
        defined.add(v)
    for i, e in enumerate(graph.eqns):
        for v in e.inputs:
            if not isinstance(v, Const) and v not in defined:
                raise VerifyError(f"eqn {i} ({e.prim.name}) uses {v} before it is defined")
        if getattr(e.prim, "multiple_results", False):
            _verify_structured(i, e, defined)
            continue
        if e.out in defined:
            raise VerifyError(f"eqn {i} ({e.prim.name}) redefines {e.out}")
        if e.prim.shape is not None:
            shape, dtype = e.prim.shape(*e.inputs, **e.params)
            if tuple(shape) != e.out.shape or dtype is not e.out.dtype:
                raise VerifyError(
                    f"eqn {i} ({e.prim.name}) produces {type_str(e.out)} but its shape rule "
                    f"says {_SHORT.get(dtype.name, dtype.name)}[{','.join(map(str, shape))}]")
        defined.add(e.out)
    for v in graph.outputs:
        if not isinstance(v, Const) and v not in defined:
            raise VerifyError(f"output {v} is never defined")
    return graph


def _verify_structured(i, e, defined):
    for p in e.params.values():
        if isinstance(p, Graph):
            try:
                verify(p)
            except VerifyError as err:
                raise VerifyError(f"eqn {i} ({e.prim.name}), body {p.name}: {err}") from None
    try:
        avals = e.prim.shape(*e.inputs, **e.params)
    except Exception as err:  # the signature check itself names what is wrong
        raise VerifyError(f"eqn {i} ({e.prim.name}): {err}") from None
    got = [(v.shape, v.dtype) for v in e.outs]
    want = [(tuple(s), d) for s, d in avals]
    if got != want:
        raise VerifyError(f"eqn {i} ({e.prim.name}) produces "
                          f"{', '.join(type_str(v) for v in e.outs)} but its bodies give "
                          f"{', '.join(type_str(Var(s, d)) for s, d in want)}")
    for v in e.outs:
        if v in defined:
            raise VerifyError(f"eqn {i} ({e.prim.name}) redefines {v}")
        defined.add(v)


class gc_paused:
    """Pause the cyclic garbage collector (passes and traces allocate millions of small
    acyclic objects; full collections in between made their cost grow faster than
    the graph). Reference counting still frees everything as usual."""

    def __enter__(self):
        import gc
        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc
        if self._was:
            gc.enable()
        return False
