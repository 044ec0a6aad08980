"""Lowering: a Graph becomes Python source over jax.numpy / lax, exec'd and jitted.

Each primitive's ``jax`` field (in the op table) gives its source: a format
string over the argument names and params, or a function (args, params) -> str.
The generated source is kept on the result, so users can read and save it.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Const, Graph, Namespace, _py_name, gc_paused
from ..ir.ops import fusion_p
from ..primitives import JAX_HELPERS


def x64():
    """A context in which jax keeps tracegrad's float64 and int64 64-bit. Scoped, never
    the process-wide ``jax_enable_x64``: a user's own jax code keeps its defaults."""
    from jax._src.config import enable_x64
    return enable_x64(True)


def _scatter_add(base, idx, g, axis):
    import jax.numpy as jnp
    grids = list(jnp.meshgrid(*[jnp.arange(n) for n in idx.shape], indexing="ij", sparse=True))
    grids[axis] = idx
    return base.at[tuple(grids)].add(g)


def _literal(value) -> str:
    """Python source for a scalar constant: nan and the infinities have no literal (repr
    gives ``nan``, ``inf``), -0.0 keeps its sign, ints and bools are exact."""
    if isinstance(value, float):
        if value != value:
            return "float('nan')"
        if value in (float("inf"), float("-inf")):
            return "float('inf')" if value > 0 else "float('-inf')"
    return repr(value)


class MissingLowering(NotImplementedError):
    pass


def lower_eqn(e, args: list[str]) -> str:
    jax_src = e.prim.jax
    if jax_src is None:
        raise MissingLowering(f"primitive {e.prim.name!r} has no jax lowering")
    if callable(jax_src):
        return jax_src(args, e.params)
    return jax_src.format(*args, **e.params)


class Lowered:
    """Generated source, the namespace it runs in, and the Python function."""

    def __init__(self, source: str, jitted, consts: dict):
        self.source = source
        self.jitted = jitted
        self.consts = consts

        from jax._src.config import enable_x64
        if enable_x64._update_thread_local_hook is None:
            swap, restore = enable_x64.swap_local, enable_x64.set_local

            def fn(*args):  # (x64() without a context manager's cost: the hot path)
                prev = swap(True)
                try:
                    return jitted(*args)
                finally:
                    restore(prev)
        else:
            def fn(*args):
                with x64():
                    return jitted(*args)
        self._fast = fn
        self.fn = self._first_call

    def _first_call(self, *args):
        """The call that compiles: with the persistent cache (NOTE: [Persistent compilation
        cache] in jax_cache.py); later calls go straight to the program."""
        from .jax_cache import persistent_cache
        # (jax's tracing and lowering of a large program make millions of small objects:
        # cyclic collections in between made them 15-35% slower at a few thousand eqns)
        with persistent_cache(), gc_paused():
            out = self._fast(*args)
        self.fn = self._fast
        return out

    def hlo(self, specs) -> str:
        """The HLO text of the program for these input avals."""
        with x64():
            return self.jitted.lower(*specs).as_text()


def to_jax_source(graph: Graph, fn_name: str | None = None) -> tuple[str, dict]:
    with gc_paused():  # (as the passes: many small objects, no cycles among them)
        return _to_jax_source(graph, fn_name)


def _to_jax_source(graph: Graph, fn_name: str | None) -> tuple[str, dict]:
    ns = Namespace()
    consts: dict = {}
    fn_name = _py_name(fn_name or graph.name)
    args = [ns.name(v, h) for v, h in zip(graph.inputs, graph.input_names, strict=False)]
    lines = [f"def {fn_name}({', '.join(args)}):"]

    def arg(v):
        if isinstance(v, Const):
            if v.value.ndim == 0:
                return f"jnp.asarray({_literal(v.value.item())}, jnp.{v.dtype.name})"
            name = f"_c{len(consts)}"
            consts[name] = v.value
            return name
        return ns.name(v)

    def emit(eqns, indent="    "):
        for e in eqns:
            if e.prim is fusion_p:
                sub = e.params["graph"]
                for sv, outer in zip(sub.inputs, e.inputs, strict=False):
                    inner, value = ns.name(sv), arg(outer)
                    if inner != value:  # (no ``v5 = v5`` lines)
                        lines.append(f"{indent}{inner} = {value}")
                emit(sub.eqns, indent)
                out, value = ns.name(e.out), arg(sub.outputs[0])
                if out != value:
                    lines.append(f"{indent}{out} = {value}")
                continue
            if getattr(e.prim, "multiple_results", False):
                emit_structured(e, indent)
                continue
            src = lower_eqn(e, [arg(v) for v in e.inputs])
            lines.append(f"{indent}{ns.name(e.out)} = {src}")

    def emit_structured(e, indent):
        # cond/scan/while_loop: each body a nested def, then lax.cond/scan/while_loop
        # through the op's helper (tracegrad/control_flow.py); the results unpack
        fns = {}
        for k, sub in e.params.items():
            if isinstance(sub, Graph):
                fns[k] = ns.name(sub, sub.name)
                params = ", ".join(ns.name(v) for v in sub.inputs)
                lines.append(f"{indent}def {fns[k]}({params}):")
                emit(sub.eqns, indent + "    ")
                outs = [arg(v) for v in sub.outputs]
                comma = "," if len(outs) == 1 else ""
                lines.append(f"{indent}    return ({', '.join(outs)}{comma})")
        src = e.prim.lower([arg(v) for v in e.inputs], fns, e.params)
        names = ", ".join(ns.name(v) for v in e.outs)
        lines.append(f"{indent}{names}{',' if len(e.outs) == 1 else ''} = {src}")

    emit(graph.eqns)
    outs = [arg(v) for v in graph.outputs]
    lines.append(f"    return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
    return "\n".join(lines), consts


def lower(graph: Graph, donate: tuple = (), in_shardings=None,
          out_shardings=None) -> Lowered:
    """Generate, exec and jit the graph; returns a Lowered whose fn takes arrays. On a
    mesh, ``in_shardings``/``out_shardings`` (one ``jax.sharding`` or None per input and
    output) place them, and XLA's SPMD partitioner adds the collectives."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    source, consts = to_jax_source(graph)
    namespace = {"jax": jax, "jnp": jnp, "lax": lax, "np": np, "_scatter_add": _scatter_add,
                 "inf": float("inf"), "nan": float("nan"), **JAX_HELPERS}  # params print so
    with x64():
        namespace.update({k: jnp.asarray(v) for k, v in consts.items()})
    exec(compile(source, f"<tracegrad jax: {graph.name}>", "exec"), namespace)
    fn = namespace[_py_name(graph.name)]
    shardings = {} if in_shardings is None else {"in_shardings": in_shardings,
                                                 "out_shardings": out_shardings}
    jitted = jax.jit(fn, donate_argnums=tuple(donate), **shardings)
    if donate:
        import warnings
        # on backends that cannot donate, jax says so once per program; nothing to act on
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    return Lowered(source, jitted, consts)
