#!/usr/bin/env python3
"""The GPU issue's peer numbers: PyTorch eager and torch.compile training steps on the same
device kiln runs on, for the same models, batch sizes and optimizer as `kiln bench --device
cuda --train-step` (SGD, lr 0.01; forward + backward + update, synchronized).

    python3 benches/gpu/peers.py [--runs 50] [--json]

Models are the zoo's: mnist_mlp (784-256-128-10, ReLU, cross entropy), lenet5 (conv 6@5x5 pad
2, max pool, conv 16@5x5, max pool, 400-120-84-10), transformer_block (d 128, seq 64, 4 heads,
pre-norm, GELU (tanh) MLP of 4d, MSE against a target). Prints one line per workload and
mode: median and minimum step time in microseconds.
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class MnistMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 256), nn.Linear(256, 128), nn.Linear(128, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2).flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(h)))))


class TransformerBlock(nn.Module):
    def __init__(self, d=128, heads=4):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ffn1, self.ffn2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, s, d = x.shape
        h = self.ln1(x)
        split = lambda t: t.view(b, s, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, s, d))
        return x + self.ffn2(F.gelu(self.ffn1(self.ln2(x)), approximate="tanh"))


def workloads(device):
    def classify(model, x_shape, batch):
        x = torch.rand(batch, *x_shape, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        return model, x, y, F.cross_entropy

    yield "mnist_mlp", 128, classify(MnistMlp(), (784,), 128)
    yield "mnist_mlp", 4096, classify(MnistMlp(), (784,), 4096)
    yield "lenet5", 64, classify(LeNet5(), (1, 28, 28), 64)
    yield "lenet5", 1024, classify(LeNet5(), (1, 28, 28), 1024)
    for batch in (8, 64):
        x = torch.rand(batch, 64, 128, device=device)
        yield "transformer_block", batch, (TransformerBlock(), x, torch.rand_like(x), F.mse_loss)


def time_steps(step, runs):
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    return times[len(times) // 2], times[0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    device = torch.device("cuda")
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for name, batch, (model, x, y, loss_fn) in workloads(device):
        for mode in ("eager", "compile"):
            m = model.to(device)
            opt = torch.optim.SGD(m.parameters(), lr=0.01)
            fwd = torch.compile(m) if mode == "compile" else m

            def step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(fwd(x), y)
                loss.backward()
                opt.step()

            median, low = time_steps(step, a.runs)
            if a.json:
                print(json.dumps({"model": name, "batch": batch, "mode": mode, "median_us": round(median, 1), "min_us": round(low, 1)}))
            else:
                print(f"{name:<18} batch {batch:<5} torch {mode:<8} median {median:10.1f} us  min {low:10.1f}")


if __name__ == "__main__":
    main()
