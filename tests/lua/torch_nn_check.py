#!/usr/bin/env python3
"""torch_nn_check.py DIR: runs PyTorch's nn modules on cases written by tests/lua/test_nn.lua.

Each case is a folder DIR/<case>/ holding
  spec.txt    one "key value" line each, values as Python literals:
                kind     the torch.nn class name ('Linear', 'MultiheadAttention', ...)
                args     positional constructor arguments (a tuple)
                kwargs   keyword constructor arguments (a dict)
                train    True for training mode, False for eval
                inputs   names of the positional forward inputs (a tuple of .npy stems)
                call_kwargs         plain keyword arguments of forward (a dict)
                tensor_kwargs       keyword arguments of forward read from <name>.npy (a tuple)
                save_state          True: also write the state after forward (state_<key>.npy)
  keys.txt    Lumen's state_dict keys, in order
  sd/<key>.npy  Lumen's state_dict tensors
  <input>.npy   forward inputs (u8 arrays become bool tensors: masks)
The module is built, its state_dict key order compared with keys.txt, Lumen's tensors loaded
with load_state_dict(strict=True) (so the names are checked), forward run, and the results
written as out<i>.npy (i from 0 for each returned tensor). Prints "ok <case>" or
"fail <case>: <reason>" per case; the exit status is 0 when every case ran.

Gradient mode stays on (and the parameters require grad) so PyTorch takes its reference path
for MultiheadAttention and TransformerEncoderLayer rather than the fused inference fast path.
"""
import ast
import os
import sys
import traceback

import numpy as np
import torch
import torch.nn as nn


def read_spec(path):
    spec = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            key, _, value = line.partition(" ")
            spec[key] = ast.literal_eval(value)
    return spec


def load_tensor(path):
    a = np.load(path)
    if a.dtype == np.uint8:
        return torch.from_numpy(a.astype(bool))
    return torch.from_numpy(np.ascontiguousarray(a))


def run_case(case_dir):
    spec = read_spec(os.path.join(case_dir, "spec.txt"))
    module = getattr(nn, spec["kind"])(*spec.get("args", ()), **spec.get("kwargs", {}))
    with open(os.path.join(case_dir, "keys.txt")) as f:
        keys = [line.rstrip("\n") for line in f if line.strip()]
    torch_keys = list(module.state_dict().keys())
    if keys != torch_keys:
        raise AssertionError("state_dict keys differ: lumen %s, torch %s" % (keys, torch_keys))
    sd = {k: load_tensor(os.path.join(case_dir, "sd", k + ".npy")) for k in keys}
    module.load_state_dict(sd, strict=True)
    module.train(spec.get("train", False))
    inputs = [load_tensor(os.path.join(case_dir, name + ".npy")) for name in spec.get("inputs", ())]
    kwargs = dict(spec.get("call_kwargs", {}))
    for name in spec.get("tensor_kwargs", ()):
        kwargs[name] = load_tensor(os.path.join(case_dir, name + ".npy"))
    result = module(*inputs, **kwargs)
    outs = result if isinstance(result, tuple) else (result,)
    for i, t in enumerate(outs):
        if t is not None:
            np.save(os.path.join(case_dir, "out%d.npy" % i), t.detach().numpy())
    if spec.get("save_state", False):
        for k, t in module.state_dict().items():
            np.save(os.path.join(case_dir, "state_" + k + ".npy"), t.detach().numpy())


def main():
    if len(sys.argv) != 2:
        print("usage: torch_nn_check.py DIR", file=sys.stderr)
        return 2
    root = sys.argv[1]
    torch.manual_seed(0)
    failed = 0
    for case in sorted(os.listdir(root)):
        case_dir = os.path.join(root, case)
        if not os.path.isfile(os.path.join(case_dir, "spec.txt")):
            continue
        try:
            run_case(case_dir)
            print("ok " + case)
        except Exception as e:  # reported to the Lua test, which fails the case
            failed += 1
            last = traceback.format_exc().strip().splitlines()[-1]
            print("fail %s: %s" % (case, str(e).replace("\n", " ") or last))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
