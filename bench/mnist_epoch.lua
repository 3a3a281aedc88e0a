-- mnist_epoch.lua — one epoch of MNIST training in Lumen from Lua, with data.mnist and the
-- DataLoader (shuffled, batch 64), for the two models of bench/mnist_epoch.py:
--   mlp   784-128-10, ReLU, cross_entropy, Adam (lr 1e-3)
--   seed  784-128-10, Sigmoid, cross_entropy, SGD (lr 0.1)
--   lumen bench/mnist_epoch.lua [--model mlp|seed] [--epochs N] [--data DIR]
-- Prints one line per model: the median seconds per epoch over N epochs (default 3) after one
-- warm-up epoch, and the last epoch's mean loss (a check that it trains).
local lm = require "lumen"
local nn, optim, data = lm.nn, lm.optim, lm.data

local opts = {model = nil, epochs = 3, data = "../shared/data/mnist"}
local i = 1
while i <= #arg do
  local k, v = arg[i], arg[i + 1]
  if k == "--model" then opts.model = v
  elseif k == "--epochs" then opts.epochs = tonumber(v)
  elseif k == "--data" then opts.data = v
  else error("mnist_epoch: unknown option " .. tostring(k)) end
  i = i + 2
end

local train = data.mnist(opts.data, "train")
local loader = data.DataLoader(train, {batch_size = 64, shuffle = true, seed = 1})

local function make(name)
  lm.manual_seed(0)
  if name == "mlp" then
    local model = nn.Sequential {nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)}
    return model, optim.Adam(model:parameters(), {lr = 1e-3})
  end
  local model = nn.Sequential {nn.Linear(784, 128), nn.Sigmoid(), nn.Linear(128, 10)}
  return model, optim.SGD(model:parameters(), {lr = 0.1})
end

local function epoch(model, opt)
  local total, n = 0, 0
  for _, xb, yb in loader:batches() do
    local loss = nn.functional.cross_entropy(model(xb:view(-1, 784)), yb)
    opt:zero_grad()
    loss:backward()
    opt:step()
    total, n = total + loss:item(), n + 1
  end
  return total / n
end

local wall = lm.perf_counter

for _, name in ipairs(opts.model and {opts.model} or {"mlp", "seed"}) do
  local model, opt = make(name)
  epoch(model, opt) -- warm-up
  local secs, loss = {}, 0
  for e = 1, opts.epochs do
    local t0 = wall()
    loss = epoch(model, opt)
    secs[e] = wall() - t0
  end
  table.sort(secs)
  print(string.format("%s %.4f s/epoch (min %.4f, %d epochs, loss %.4f, threads %d)", name,
                      secs[(#secs + 1) // 2], secs[1], #secs, loss, lm.get_num_threads()))
end
