#!/bin/sh
# mnist_epoch.sh — one epoch of MNIST (batch 64, shuffled) in Lumen from Lua with data.mnist and
# the DataLoader (bench/mnist_epoch.lua) next to PyTorch (bench/mnist_epoch.py) with its
# DataLoader and hand-sliced, for the MLP with Adam and the seed model (Sigmoid, SGD); same
# invocation, same OPENBLAS_CORETYPE, each side at its default threads (PyTorch: 1 here; Lumen:
# all cores, and also 1 thread). Prints s/epoch and the ratios Lumen / PyTorch.
#
#   ninja -C build && bench/mnist_epoch.sh     (BUILD=dir, ROUNDS=n rounds, EPOCHS=n per round)
#
# The programs alternate ROUNDS times (default 3); each reports the median of EPOCHS timed
# epochs after a warm-up epoch; the table shows the median over rounds. ~1 minute per round.
set -eu
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-3}
EPOCHS=${EPOCHS:-3}
DATA=${DATA:-../shared/data/mnist}
PY=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
lumen=$BUILD/lua/lumen
[ -x "$lumen" ] || { echo "mnist_epoch.sh: $lumen not found; build first (ninja -C $BUILD)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "mnist_epoch: batch 64, shuffled; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    "$lumen" "$here/mnist_epoch.lua" --epochs "$EPOCHS" --data "$DATA" >>"$tmp/lumen"
    OMP_NUM_THREADS=1 "$lumen" "$here/mnist_epoch.lua" --epochs "$EPOCHS" --data "$DATA" >>"$tmp/lumen1"
    "$PY" "$here/mnist_epoch.py" --epochs "$EPOCHS" --data "$DATA" >>"$tmp/torch"
    r=$((r + 1))
done

"$PY" - "$tmp" <<'PYEOF'
import statistics, sys
tmp = sys.argv[1]
def figures(name):
    out = {}
    for line in open(f"{tmp}/{name}"):
        w = line.split()
        if len(w) >= 3 and w[2] == "s/epoch":
            out.setdefault(w[0], []).append(float(w[1]))
    return {k: statistics.median(v) for k, v in out.items()}
lum, lum1, tor = figures("lumen"), figures("lumen1"), figures("torch")
print()
print("%-34s %10s %10s" % ("s/epoch (median over rounds)", "mlp", "seed"))
def row(label, f, key):
    print("%-34s %10s %10s" % (label, *("%.3f" % f[key(m)] if key(m) in f else "n/a" for m in ("mlp", "seed"))))
row("lumen, DataLoader, all threads", lum, lambda m: m)
row("lumen, DataLoader, 1 thread", lum1, lambda m: m)
row("pytorch, DataLoader", tor, lambda m: m + "-loader")
row("pytorch, hand-sliced", tor, lambda m: m + "-sliced")
for label, feed, target in (("lumen / pytorch DataLoader", "loader", "<= 0.5"),
                            ("lumen / pytorch hand-sliced", "sliced", "aim <= 0.5")):
    cells = []
    for m in ("mlp", "seed"):
        best = min(v for v in (lum.get(m), lum1.get(m)) if v is not None)
        cells.append("%.2f" % (best / tor[m + "-" + feed]))
    print("%-34s %10s %10s   (%s)" % (label, *cells, target))
PYEOF
