#!/usr/bin/python3
"""optim_reference.py — the PyTorch numbers pasted into tests/engine/test_optim.c.

Runs torch.optim's SGD, Adam, AdamW and RMSprop (PyTorch 1.13, single-tensor path:
foreach=False) on the tiny case of test_optim.c — one f32 parameter of shape [2, 3], three steps
with fixed gradients — and prints, for every configuration, the parameter after step 1, the
parameter after step 3 and the optimizer's state after step 3, as C initializers.

    /usr/bin/python3 tests/engine/optim_reference.py > /tmp/ref.c

The configurations (CASES below) must match the table `cases` in test_optim.c, entry by entry.
"""
import torch

P0 = [0.5, -1.25, 2.0, -0.75, 0.1, 3.0]
GRADS = [
    [0.1, -0.2, 0.3, -0.4, 0.5, -0.6],
    [0.25, 0.05, -0.35, 0.6, -0.1, 0.2],
    [-0.3, 0.45, 0.15, -0.05, 0.7, -0.55],
]

# name, optimizer class, keyword arguments, state keys in the order test_optim.c lists them
SGD_STATE = ["momentum_buffer"]
ADAM_STATE = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
RMS_STATE = ["square_avg", "momentum_buffer", "grad_avg"]
CASES = [
    ("sgd", torch.optim.SGD, dict(lr=0.1), SGD_STATE),
    ("sgd momentum", torch.optim.SGD, dict(lr=0.1, momentum=0.9), SGD_STATE),
    ("sgd dampening", torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3), SGD_STATE),
    ("sgd nesterov", torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True), SGD_STATE),
    ("sgd weight_decay", torch.optim.SGD, dict(lr=0.1, momentum=0.5, weight_decay=0.01),
     SGD_STATE),
    ("sgd maximize", torch.optim.SGD,
     dict(lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True), SGD_STATE),
    ("sgd weight_decay no momentum", torch.optim.SGD, dict(lr=0.2, weight_decay=0.3), SGD_STATE),
    ("adam", torch.optim.Adam, dict(lr=0.01), ADAM_STATE),
    ("adam betas eps", torch.optim.Adam, dict(lr=0.05, betas=(0.5, 0.8), eps=1e-3), ADAM_STATE),
    ("adam weight_decay", torch.optim.Adam, dict(lr=0.01, weight_decay=0.1), ADAM_STATE),
    ("adamw", torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1), ADAM_STATE),
    ("adam amsgrad", torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.5), amsgrad=True),
     ADAM_STATE),
    ("adam maximize", torch.optim.Adam, dict(lr=0.01, weight_decay=0.05, maximize=True),
     ADAM_STATE),
    ("adamw amsgrad maximize", torch.optim.AdamW,
     dict(lr=0.02, betas=(0.8, 0.5), weight_decay=0.1, amsgrad=True, maximize=True), ADAM_STATE),
    ("rmsprop", torch.optim.RMSprop, dict(lr=0.01), RMS_STATE),
    ("rmsprop momentum", torch.optim.RMSprop, dict(lr=0.01, momentum=0.9), RMS_STATE),
    ("rmsprop centered", torch.optim.RMSprop, dict(lr=0.01, centered=True), RMS_STATE),
    ("rmsprop centered momentum weight_decay", torch.optim.RMSprop,
     dict(lr=0.01, alpha=0.9, momentum=0.5, weight_decay=0.1, centered=True), RMS_STATE),
    ("rmsprop maximize", torch.optim.RMSprop,
     dict(lr=0.01, alpha=0.8, eps=1e-4, weight_decay=0.05, maximize=True), RMS_STATE),
]


def c_float(v):
    s = "%.9g" % v  # 9 significant digits give back the same f32 value
    return s + ("f" if "." in s or "e" in s else ".0f")


def c_floats(values):
    return "{" + ", ".join(c_float(v) for v in values) + "}"


def run(cls, kwargs, state_keys):
    p = torch.tensor(P0, dtype=torch.float32).reshape(2, 3).requires_grad_()
    opt = cls([p], foreach=False, **kwargs)
    after = []
    for g in GRADS:
        p.grad = torch.tensor(g, dtype=torch.float32).reshape(2, 3)
        opt.step()
        after.append(p.detach().flatten().tolist())
    st = opt.state[p]
    state = [st[k].flatten().tolist() if k in st and st[k] is not None else [0.0] * 6
             for k in state_keys]
    return after[0], after[2], state


def main():
    print("/* Made by tests/engine/optim_reference.py with PyTorch %s. */" % torch.__version__)
    for name, cls, kwargs, keys in CASES:
        p1, p3, state = run(cls, kwargs, keys)
        print('    {"%s",' % name)
        print("     %s," % c_floats(p1))
        print("     %s," % c_floats(p3))
        print("     {%s}}," % ",\n      ".join(c_floats(s) for s in state))


if __name__ == "__main__":
    main()
