# conv_bench.py — the same measurements as conv_bench.c with PyTorch (default threads).
import os, statistics, sys, time
import torch
if len(sys.argv) > 1:
    torch.set_num_threads(int(sys.argv[1]))
print("torch", torch.__version__, "threads", torch.get_num_threads(),
      "OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "(unset)"))
layers = [("lenet conv1 64x1x28x28 -> 6, 5x5 pad 2", 64, 1, 28, 28, 6, 5, 2),
          ("lenet conv2 64x6x14x14 -> 16, 5x5", 64, 6, 14, 14, 16, 5, 0),
          ("resnet 8x64x56x56 -> 64, 3x3 pad 1", 8, 64, 56, 56, 64, 3, 1)]
torch.manual_seed(0)
def time_it(reps, x, w, b, pad, bwd):
    ts = []
    for r in range(-3, reps):
        t0 = time.perf_counter()
        y = torch.nn.functional.conv2d(x, w, b, 1, pad)
        if bwd:
            y.backward(torch.ones_like(y))
            x.grad = None; w.grad = None; b.grad = None
        del y
        if r >= 0:
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
for i, (name, n, c, h, wd, o, k, pad) in enumerate(layers):
    x = torch.randn(n, c, h, wd, requires_grad=True)
    w = torch.randn(o, c, k, k, requires_grad=True)
    b = torch.randn(o, requires_grad=True)
    oh = h + 2 * pad - k + 1; ow = wd + 2 * pad - k + 1
    flop = 2.0 * n * o * c * k * k * oh * ow
    reps = 15 if i == 2 else 41
    with torch.no_grad():
        tf = time_it(reps, x, w, b, pad, False)
    tb = time_it(reps, x, w, b, pad, True)
    print("%-42s fwd %8.3f ms %6.1f GFLOP/s | fwd+bwd %8.3f ms %6.1f GFLOP/s" %
          (name, tf * 1e3, flop / tf * 1e-9, tb * 1e3, 3 * flop / tb * 1e-9))
