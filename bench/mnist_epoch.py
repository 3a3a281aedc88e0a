#!/usr/bin/python3
"""mnist_epoch.py — one epoch of MNIST training in PyTorch, for the two models of
bench/mnist_epoch.lua (batch 64, shuffled each epoch):

  mlp   784-128-10, ReLU, cross_entropy, Adam (lr 1e-3)
  seed  784-128-10, Sigmoid, cross_entropy, SGD (lr 0.1)

each fed two ways: `loader`, torch.utils.data.DataLoader over a TensorDataset (the usual code),
and `sliced`, a randperm and hand-sliced batches of the preloaded tensors (PyTorch at its
fastest; DESIGN.md's reference for ratios).

  /usr/bin/python3 bench/mnist_epoch.py [--model mlp|seed] [--epochs N] [--data DIR]

The data (gzipped IDX) are read with gzip + numpy and scaled to [0, 1] as data.mnist does.
Prints one line per model and feeding: the median seconds per epoch over N epochs (default 3)
after one warm-up epoch, and the last epoch's mean loss.
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir):
    def find(stem):
        for name in (stem + ".gz", stem):
            p = os.path.join(data_dir, name)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(os.path.join(data_dir, stem))
    x = read_idx(find("train-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(find("train-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(x.reshape(-1, 1, 28, 28).copy()), torch.from_numpy(y.copy())


def make(name):
    torch.manual_seed(0)
    act = nn.ReLU() if name == "mlp" else nn.Sigmoid()
    model = nn.Sequential(nn.Linear(784, 128), act, nn.Linear(128, 10))
    if name == "mlp":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt


def step(model, opt, xb, yb):
    loss = F.cross_entropy(model(xb.view(-1, 784)), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def epoch_loader(model, opt, loader, x, y):
    total, n = 0.0, 0
    for xb, yb in loader:
        total += step(model, opt, xb, yb)
        n += 1
    return total / n


def epoch_sliced(model, opt, loader, x, y):
    perm = torch.randperm(x.shape[0])
    total, n = 0.0, 0
    for i in range(0, x.shape[0], 64):
        idx = perm[i:i + 64]
        total += step(model, opt, x[idx], y[idx])
        n += 1
    return total / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mlp", "seed"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data", default="../shared/data/mnist")
    a = ap.parse_args()
    x, y = load(a.data)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=64, shuffle=True)
    for name in [a.model] if a.model else ["mlp", "seed"]:
        for feed, fn in (("loader", epoch_loader), ("sliced", epoch_sliced)):
            model, opt = make(name)
            fn(model, opt, loader, x, y)  # warm-up
            secs = []
            for _ in range(a.epochs):
                t0 = time.perf_counter()
                loss = fn(model, opt, loader, x, y)
                secs.append(time.perf_counter() - t0)
            secs.sort()
            print("%s-%s %.4f s/epoch (min %.4f, %d epochs, loss %.4f, threads %d)"
                  % (name, feed, secs[(len(secs) - 1) // 2], secs[0], len(secs), loss,
                     torch.get_num_threads()), flush=True)


if __name__ == "__main__":
    main()
