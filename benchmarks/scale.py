"""The MLP and CNN training steps of benchmarks/models.py over 1, 2, 4 and 8 host devices.

    python benchmarks/scale.py [--rounds N] [--min-batch S] [--devices 1,2,4,8]

Each device count runs in its own subprocess (``XLA_FLAGS=
--xla_force_host_platform_device_count=N`` must be set before jax starts), pinned to one
CPU. Candidates per row: ``tracegrad.compile(step)`` (one device), ``tracegrad.compile(step,
mesh=dist.mesh())`` (data parallel, state replicated), the same with ``shard_state=True``,
and a hand-written ``jax.jit`` step whose state is replicated and whose batch is split
over the same mesh (XLA's partitioner makes both); torch eager on the 1-device row. All
start from the same weights and data; "loss agree" is the largest relative difference of
the first 3 losses of every candidate to tracegrad's one-device compiled step. "state/dev"
is the bytes of parameters and optimizer state held per device, replicated and sharded.

On CPU the host devices share the one pinned core, so more devices cost more (each device
runs its share plus the collectives' copies): the table shows the overhead of the
partitioned program, not a speedup, which needs real devices.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = "@@SCALE "


def worker(n, rounds, min_batch):
    from _util import pin_threads
    pin_threads([])  # (before numpy and jax)
    import jax
    from _util import compare, optional_torch, set_torch_threads
    from models import cnn_jax, cnn_lib, mlp_jax, mlp_lib

    import tracegrad as tg
    import tracegrad.distributed as dist
    from tracegrad import _storage

    assert jax.device_count() == n, jax.devices()
    m = dist.mesh()
    from jax.sharding import NamedSharding, PartitionSpec
    torch = optional_torch() if n == 1 else None
    set_torch_threads(torch, 1)

    def per_device_bytes(tensors):
        total = 0
        for t in tensors:
            pair = _storage.lazy(t)
            v = pair[1] if pair is not None else (_storage.lookup(t._data) or (None,))[0]
            total += v.addressable_shards[0].data.nbytes if v is not None else t.numel() * \
                t.element_size()
        return total

    def jax_peer(build):
        step, state, data = build()
        rep = NamedSharding(m, PartitionSpec())
        split = NamedSharding(m, PartitionSpec("data"))
        state = jax.device_put(state, rep)
        data = tuple(jax.device_put(d, split) for d in data)
        jitted = jax.jit(step, donate_argnums=0)
        box = [state]

        def run():
            box[0], loss = jitted(box[0], *data)
            return float(loss)
        return run

    out = {}
    for label, lib_build, jax_build in (("MLP", mlp_lib, mlp_jax), ("CNN", cnn_lib, cnn_jax)):
        cands, states = {}, {}
        for name, kw in (("one device", None), ("mesh", {}), ("mesh+shard", {"shard_state":
                                                                                True})):
            step, args = lib_build(tg)
            opt = next(c.cell_contents for c in step.__closure__  # (the step's optimizer)
                       if isinstance(c.cell_contents, tg.optim.Optimizer))
            cstep = tg.compile(step) if kw is None else tg.compile(step, mesh=m, **kw)
            cands[name] = (lambda f=cstep, a=args: float(f(*a)))
            states[name] = opt
        cands["jax.jit (mesh)"] = jax_peer(jax_build)
        if torch is not None:
            tstep, targs = lib_build(torch)
            cands["torch eager"] = lambda f=tstep, a=targs: f(*a).item()
        losses = {k: [f() for _ in range(3)] for k, f in cands.items()}
        ref = losses["one device"]
        agree = max(abs(a - b) / max(abs(b), 1e-12) for ls in losses.values()
                    for a, b in zip(ls, ref, strict=True))
        mem = {}
        for name in ("mesh", "mesh+shard"):
            opt = states[name]
            tensors = [p for g in opt.param_groups for p in g["params"]]
            tensors += [v for st in opt.state.values() for v in st.values()
                        if isinstance(v, tg.Tensor) and v.ndim]
            mem[name] = per_device_bytes(tensors)
        t = compare(cands, rounds=rounds, warmup=2, min_batch_s=min_batch)
        out[label] = {"ms": {k: v.median * 1e3 for k, v in t.items()},
                      "agree": agree, "mem": mem, "first": ref}
    print(MARK + json.dumps(out), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--min-batch", type=float, default=0.1,
                    help="seconds of calls per candidate per round")
    ap.add_argument("--devices", default="1,2,4,8")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.rounds, args.min_batch)
    root = os.path.dirname(HERE)
    results = {}
    for n in map(int, args.devices.split(",")):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, HERE]),
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        r = subprocess.run([sys.executable, __file__, "--worker", str(n), "--rounds",
                            str(args.rounds), "--min-batch", str(args.min_batch)],
                           capture_output=True, text=True, env=env)
        lines = [ln[len(MARK):] for ln in r.stdout.splitlines() if ln.startswith(MARK)]
        if r.returncode or not lines:
            sys.exit(f"{n} devices failed:\n{r.stderr[-4000:]}")
        results[n] = json.loads(lines[-1])
    from _util import fmt_time, print_table
    headers = ["model", "devices", "compile 1 dev", "mesh", "mesh+shard_state",
               "jax.jit mesh", "mesh/jax", "torch eager", "state/dev repl", "state/dev shard",
               "loss agree"]
    rows, worst = [], 0.0
    for label in ("MLP", "CNN"):
        first = results[min(results)][label]["first"]
        for n, res in results.items():
            r = res[label]
            ms = r["ms"]
            across = max(abs(a - b) / max(abs(b), 1e-12)
                         for a, b in zip(r["first"], first, strict=True))
            agree = max(r["agree"], across)
            worst = max(worst, agree)
            rows.append([label, str(n), fmt_time(ms["one device"] / 1e3, "ms"),
                         fmt_time(ms["mesh"] / 1e3, "ms"),
                         fmt_time(ms["mesh+shard"] / 1e3, "ms"),
                         fmt_time(ms["jax.jit (mesh)"] / 1e3, "ms"),
                         f"{ms['mesh'] / ms['jax.jit (mesh)']:.2f}x",
                         fmt_time(ms["torch eager"] / 1e3, "ms") if "torch eager" in ms
                         else "",
                         f"{r['mem']['mesh'] / 2**20:.2f} MB",
                         f"{r['mem']['mesh+shard'] / 2**20:.2f} MB", f"{agree:.1e}"])
    footer = [f"ms per step, median of {args.rounds} interleaved rounds per device count, "
              "one pinned CPU shared by all host devices: more devices show the overhead of "
              "the partitioned program and its collectives on CPU, not a speedup",
              "loss agree: first 3 losses of every candidate (and every device count) vs "
              "tracegrad.compile on one device"]
    print_table("tracegrad.compile(step, mesh=...) over host devices", headers, rows, footer)
    if worst > 1e-4:
        sys.exit(f"losses disagree: {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
