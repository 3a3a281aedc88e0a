#!/usr/bin/python3
"""nn_step.py — the time of one training step in PyTorch: forward, loss, backward and the
optimizer step, for the two models of bench/nn_step.c (same shapes, random data, batch 64):

  mlp    784-128-10, ReLU, cross_entropy, Adam (lr 1e-3)
  lenet  LeNet-5: conv 1->6 5x5 pad 2, ReLU, max_pool 2, conv 6->16 5x5, ReLU, max_pool 2,
         fc 400-120-84-10 with ReLU, cross_entropy, Adam (lr 1e-3)

  /usr/bin/python3 bench/nn_step.py [--threads N] [--model mlp|lenet] [--runs R]

The data are tensors made once (no DataLoader); gradients are dropped each step with
zero_grad(set_to_none=True), as Lumen's lm_zero_grad does; Adam runs its default single-tensor
path. Threads: PyTorch's default (torch.get_num_threads(), 1 here) unless --threads. Prints one
line per model in nn_step.c's format: the median of R timed runs (default 7), each of enough
steps to last at least 0.2 s, after a warm-up of 20 steps.
"""
import argparse
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 64
WARMUP = 20
MIN_RUN_S = 0.2


def make(name):
    torch.manual_seed(0)
    if name == "mlp":
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        x = torch.randn(BATCH, 784)
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
        x = torch.randn(BATCH, 1, 28, 28)
    target = torch.randint(0, 10, (BATCH,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, x, target, opt


def step(model, x, target, opt):
    loss = F.cross_entropy(model(x), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def bench(name, runs):
    model, x, target, opt = make(name)
    first = step(model, x, target, opt)
    for _ in range(WARMUP - 1):
        loss = step(model, x, target, opt)
    t0 = time.perf_counter()
    for _ in range(5):
        loss = step(model, x, target, opt)
    once = (time.perf_counter() - t0) / 5
    steps = int(MIN_RUN_S / once) + 1 if once > 0 else 100
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step(model, x, target, opt)
        ms.append(1e3 * (time.perf_counter() - t0) / steps)
    ms.sort()
    print("%s %.4f ms/step (min %.4f, %d runs of %d steps, loss %.4f -> %.4f)"
          % (name, ms[runs // 2], ms[0], runs, steps, first, loss), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--model", choices=["mlp", "lenet"])
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    print("# pytorch %s nn_step: batch %d, Adam; threads %d; OPENBLAS_CORETYPE=%s"
          % (torch.__version__, BATCH, torch.get_num_threads(),
             os.environ.get("OPENBLAS_CORETYPE", "(unset)")), flush=True)
    for name in ["mlp", "lenet"]:
        if a.model in (None, name):
            bench(name, max(1, a.runs))


if __name__ == "__main__":
    main()
