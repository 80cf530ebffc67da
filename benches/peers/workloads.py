"""The peers on kiln's comparison workloads: PyTorch eager, torch.compile and JAX jit.

    python benches/peers/workloads.py [lstm|transformer|gelu20|gelu24|sgemm|mlp128] [--threads N] [--runs N]

Run it pinned (`taskset -c 0 ... --threads 1`, `taskset -c 0,1 ... --threads 2`) beside
`kiln bench` in the same session: only ratios from one run mean something. Needs numpy, torch
and jax[cpu] (a scratch venv outside the repository; nothing here is part of the build).
Prints one JSON line per framework: the median time of one training step in microseconds.

- lstm: benches/lstm64.kir — an LSTM 64 -> 128 over 32 steps, batch 32, loss mean(h_last^2),
  one SGD step (forward, backward, update).
- transformer: the zoo's transformer_block at batch 8 — a pre-layer-norm block (d 128, 4 heads,
  FFN 512 with tanh-GELU), sequence 64, loss mean((y - labels)^2), one SGD step.
- gelu20, gelu24: benches/gelu_scalar_2p20.kir and _2p24.kir — y = gelu_tanh(x*1.5+0.25)*0.75 - 0.1
  over 2^20 or 2^24 f32 (one elementwise pass: what the runtime's kernels are worth).
- sgemm: benches/sgemm1024.kir — y = a @ b over f32[1024,1024] (what the GEMM is worth).
- mlp128: the zoo's mnist_mlp forward at batch 128 (784 -> 256 -> 128 -> 10, ReLU), inference.
"""

import argparse
import json
import math
import statistics
import time


def median_us(step, runs):
    step()
    step()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


def torch_lstm(torch, compiled):
    lstm = torch.nn.LSTM(64, 128, batch_first=True)
    x = torch.rand(32, 32, 64)
    opt = torch.optim.SGD(lstm.parameters(), lr=0.01)

    def loss_of(x):
        out, _ = lstm(x)
        return (out[:, -1, :] ** 2).mean()

    f = torch.compile(loss_of) if compiled else loss_of

    def step():
        opt.zero_grad(set_to_none=True)
        f(x).backward()
        opt.step()

    return step


class Block:
    """The zoo's transformer block, in PyTorch."""

    def __init__(self, torch, d=128, heads=4, ffn=512):
        nn = torch.nn
        self.torch, self.heads = torch, heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.f1, self.f2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.modules = [self.ln1, self.ln2, self.q, self.k, self.v, self.o, self.f1, self.f2]

    def parameters(self):
        return [p for m in self.modules for p in m.parameters()]

    def __call__(self, x):
        torch, h = self.torch, self.heads
        b, t, d = x.shape
        a = self.ln1(x)
        split = lambda z: z.view(b, t, h, d // h).transpose(1, 2)
        q, k, v = split(self.q(a)), split(self.k(a)), split(self.v(a))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        y = x + self.o((att @ v).transpose(1, 2).reshape(b, t, d))
        g = self.f1(self.ln2(y))
        g = torch.nn.functional.gelu(g, approximate="tanh")
        return y + self.f2(g)


def torch_transformer(torch, compiled):
    block = Block(torch)
    x, labels = torch.rand(8, 64, 128), torch.rand(8, 64, 128)
    opt = torch.optim.SGD(block.parameters(), lr=0.01)

    def loss_of(x, labels):
        return ((block(x) - labels) ** 2).mean()

    f = torch.compile(loss_of) if compiled else loss_of

    def step():
        opt.zero_grad(set_to_none=True)
        f(x, labels).backward()
        opt.step()

    return step


def jax_lstm(jax, jnp):
    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    s = 1 / math.sqrt(128)
    params = {
        "wx": jax.random.uniform(k1, (64, 512), minval=-s, maxval=s),
        "wh": jax.random.uniform(k2, (128, 512), minval=-s, maxval=s),
        "b": jnp.zeros(512),
    }
    x = jax.random.uniform(k3, (32, 32, 64))

    def loss(p, x):
        proj = x @ p["wx"] + p["b"]

        def cell(carry, xt):
            h, c = carry
            z = xt + h @ p["wh"]
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        zeros = jnp.zeros((32, 128))
        (h, _), _ = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(proj, 0, 1))
        return jnp.mean(h**2)

    @jax.jit
    def update(p, x):
        g = jax.grad(loss)(p, x)
        return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, g)

    state = {"p": params}

    def step():
        state["p"] = update(state["p"], x)
        jax.block_until_ready(state["p"])

    return step


def jax_transformer(jax, jnp):
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 16))
    dense = lambda i, o: {"w": jax.random.normal(next(keys), (i, o)) / math.sqrt(i), "b": jnp.zeros(o)}
    params = {n: dense(128, 128) for n in "qkvo"}
    params.update(f1=dense(128, 512), f2=dense(512, 128))
    params.update(ln1={"g": jnp.ones(128), "b": jnp.zeros(128)}, ln2={"g": jnp.ones(128), "b": jnp.zeros(128)})
    x, labels = jax.random.uniform(next(keys), (8, 64, 128)), jax.random.uniform(next(keys), (8, 64, 128))

    def ln(p, z):
        m = z.mean(-1, keepdims=True)
        v = ((z - m) ** 2).mean(-1, keepdims=True)
        return (z - m) / jnp.sqrt(v + 1e-5) * p["g"] + p["b"]

    def lin(p, z):
        return z @ p["w"] + p["b"]

    def loss(p, x, labels):
        b, t, d = x.shape
        a = ln(p["ln1"], x)
        split = lambda z: z.reshape(b, t, 4, d // 4).transpose(0, 2, 1, 3)
        q, k, v = split(lin(p["q"], a)), split(lin(p["k"], a)), split(lin(p["v"], a))
        att = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // 4), axis=-1)
        y = x + lin(p["o"], (att @ v).transpose(0, 2, 1, 3).reshape(b, t, d))
        g = jax.nn.gelu(lin(p["f1"], ln(p["ln2"], y)), approximate=True)
        return jnp.mean((y + lin(p["f2"], g) - labels) ** 2)

    @jax.jit
    def update(p, x, labels):
        g = jax.grad(loss)(p, x, labels)
        return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, g)

    state = {"p": params}

    def step():
        state["p"] = update(state["p"], x, labels)
        jax.block_until_ready(state["p"])

    return step


def torch_gelu(torch, n, compiled):
    x = torch.linspace(-4.0, 4.0, n, dtype=torch.float32)

    def f(x):
        return torch.nn.functional.gelu(x * 1.5 + 0.25, approximate="tanh") * 0.75 - 0.1

    g = torch.compile(f) if compiled else f

    def step():
        with torch.no_grad():
            g(x)

    return step


def jax_gelu(jax, jnp, n):
    x = jnp.linspace(-4.0, 4.0, n, dtype=jnp.float32)
    f = jax.jit(lambda x: jax.nn.gelu(x * 1.5 + 0.25, approximate=True) * 0.75 - 0.1)

    def step():
        f(x).block_until_ready()

    return step


def torch_sgemm(torch):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1024, 1024, generator=g)
    b = torch.rand(1024, 1024, generator=g)

    def step():
        torch.mm(a, b)

    return step


def jax_sgemm(jax, jnp):
    a = jax.random.uniform(jax.random.PRNGKey(0), (1024, 1024), jnp.float32)
    b = jax.random.uniform(jax.random.PRNGKey(1), (1024, 1024), jnp.float32)
    f = jax.jit(jnp.matmul)

    def step():
        f(a, b).block_until_ready()

    return step


MLP_SIZES = [784, 256, 128, 10]


def torch_mlp128(torch, compiled):
    g = torch.Generator().manual_seed(0)
    layers = [(torch.rand(i, o, generator=g) - 0.5, torch.rand(o, generator=g) - 0.5) for i, o in zip(MLP_SIZES, MLP_SIZES[1:])]
    x = torch.rand(128, MLP_SIZES[0], generator=g)

    def f(x):
        for n, (w, b) in enumerate(layers):
            x = torch.addmm(b, x, w)
            if n + 1 < len(layers):
                x = torch.relu(x)
        return x

    h = torch.compile(f) if compiled else f

    def step():
        with torch.no_grad():
            h(x)

    return step


def jax_mlp128(jax, jnp):
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    layers = [
        (jax.random.uniform(keys[2 * n], (i, o), jnp.float32) - 0.5, jax.random.uniform(keys[2 * n + 1], (o,), jnp.float32) - 0.5)
        for n, (i, o) in enumerate(zip(MLP_SIZES, MLP_SIZES[1:]))
    ]
    x = jax.random.uniform(keys[7], (128, MLP_SIZES[0]), jnp.float32)

    @jax.jit
    def f(layers, x):
        for n, (w, b) in enumerate(layers):
            x = x @ w + b
            if n + 1 < len(layers):
                x = jax.nn.relu(x)
        return x

    def step():
        f(layers, x).block_until_ready()

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["lstm", "transformer", "gelu20", "gelu24", "sgemm", "mlp128"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    import os

    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'}")
    import torch

    torch.set_num_threads(args.threads)
    gelu_n = {"gelu20": 1 << 20, "gelu24": 1 << 24}.get(args.workload)
    makers = {
        "gelu20": [("pytorch", lambda: torch_gelu(torch, gelu_n, False)), ("torch.compile", lambda: torch_gelu(torch, gelu_n, True))],
        "gelu24": [("pytorch", lambda: torch_gelu(torch, gelu_n, False)), ("torch.compile", lambda: torch_gelu(torch, gelu_n, True))],
        "lstm": [("pytorch", lambda: torch_lstm(torch, False)), ("torch.compile", lambda: torch_lstm(torch, True))],
        "transformer": [
            ("pytorch", lambda: torch_transformer(torch, False)),
            ("torch.compile", lambda: torch_transformer(torch, True)),
        ],
        "sgemm": [("pytorch", lambda: torch_sgemm(torch))],
        "mlp128": [("pytorch", lambda: torch_mlp128(torch, False)), ("torch.compile", lambda: torch_mlp128(torch, True))],
    }[args.workload]
    import jax
    import jax.numpy as jnp

    if gelu_n:
        makers.append(("jax", lambda: jax_gelu(jax, jnp, gelu_n)))
    else:
        jax_maker = {"lstm": jax_lstm, "transformer": jax_transformer, "sgemm": jax_sgemm, "mlp128": jax_mlp128}[args.workload]
        makers.append(("jax", lambda: jax_maker(jax, jnp)))
    for name, make in makers:
        try:
            us = median_us(make(), args.runs)
            print(json.dumps({"workload": args.workload, "framework": name, "threads": args.threads, "median_us": round(us, 1)}))
        except Exception as e:  # a peer that cannot run here is reported, not fatal
            print(json.dumps({"workload": args.workload, "framework": name, "error": str(e)[:200]}))


if __name__ == "__main__":
    main()
