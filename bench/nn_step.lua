-- nn_step.lua — bench/nn_step.c's training step written in Lua with lm.nn and lm.optim, to
-- measure what the Lua side costs over the same engine calls made from C:
--   mlp    784-128-10, ReLU, cross_entropy, Adam (lr 1e-3), batch 64, random data
--   lenet  LeNet-5 as nn_step.c
--   lumen bench/nn_step.lua [--threads N] [--model mlp|lenet] [--runs R]
-- Prints nn_step.c's line format: the median of R timed runs (default 7), each of enough steps
-- to last 0.2 s, after a warm-up of 20 steps.
local lm = require "lumen"
local nn, optim, F = lm.nn, lm.optim, lm.nn.functional

local BATCH, WARMUP, MIN_RUN_S = 64, 20, 0.2
local opts = {runs = 7}
local i = 1
while i <= #arg do
  local k, v = arg[i], arg[i + 1]
  if k == "--threads" then opts.threads = tonumber(v)
  elseif k == "--model" then opts.model = v
  elseif k == "--runs" then opts.runs = tonumber(v)
  else error("nn_step.lua: unknown option " .. tostring(k)) end
  i = i + 2
end
if opts.threads and opts.threads > 0 then lm.set_num_threads(opts.threads) end

local function make(name)
  lm.manual_seed(0)
  local model, x
  if name == "mlp" then
    model = nn.Sequential {nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)}
    x = lm.randn(BATCH, 784)
  else
    model = nn.Sequential {
      nn.Conv2d(1, 6, 5, {padding = 2}), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
      nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    }
    x = lm.randn(BATCH, 1, 28, 28)
  end
  local target = lm.randint(0, 10, {BATCH})
  return model, x, target, optim.Adam(model:parameters(), {lr = 1e-3})
end

local function step(model, x, target, opt)
  local loss = F.cross_entropy(model(x), target)
  opt:zero_grad()
  loss:backward()
  opt:step()
  return loss:item()
end

local function bench(name)
  local model, x, target, opt = make(name)
  local first, loss = step(model, x, target, opt), 0
  for _ = 2, WARMUP do loss = step(model, x, target, opt) end
  local t0 = lm.perf_counter()
  for _ = 1, 5 do loss = step(model, x, target, opt) end
  local once = (lm.perf_counter() - t0) / 5
  local steps = once > 0 and math.floor(MIN_RUN_S / once) + 1 or 100
  local ms = {}
  for r = 1, opts.runs do
    t0 = lm.perf_counter()
    for _ = 1, steps do loss = step(model, x, target, opt) end
    ms[r] = 1e3 * (lm.perf_counter() - t0) / steps
  end
  table.sort(ms)
  print(string.format("%s %.4f ms/step (min %.4f, %d runs of %d steps, loss %.4f -> %.4f)",
                      name, ms[opts.runs // 2 + 1], ms[1], opts.runs, steps, first, loss))
end

print(string.format("# lumen-lua nn_step: batch %d, Adam; threads %d; OPENBLAS_CORETYPE=%s",
                    BATCH, lm.get_num_threads(), os.getenv("OPENBLAS_CORETYPE") or "(unset)"))
for _, name in ipairs(opts.model and {opts.model} or {"mlp", "lenet"}) do bench(name) end
