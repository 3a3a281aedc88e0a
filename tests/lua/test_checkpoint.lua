-- test_checkpoint.lua: lm.save / lm.load and lm.checkpoint (lumen.serialize): resuming from a
-- checkpoint trains bit for bit as training straight through; the files read by the independent
-- Python reader (tests/engine/safetensors_reader.py) and loaded into PyTorch give the same
-- outputs; the metadata JSON round-trips; bad calls fail naming the path or key.
local T = require "tap"
local lm = require "lumen"
local nn, optim = lm.nn, lm.optim
local serialize = require "lumen.serialize"
T.plan_auto()

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local READER_DIR = here .. "/../engine"
local PYTHON = "/usr/bin/python3"

local tmp_files = {}
local function tmp(suffix)
  local name = os.tmpname()
  os.remove(name)
  name = name .. suffix
  tmp_files[#tmp_files + 1] = name
  return name
end

local function max_diff(a, b) return (a:double() - b:double()):abs():max():item() end

-- Every parameter and buffer of two models identical, bit for bit (the first difference is
-- reported unless quiet).
local function same_weights(m1, m2, quiet)
  local sd1, names = m1:state_dict()
  local sd2 = m2:state_dict()
  for _, name in ipairs(names) do
    if not sd1[name]:eq(sd2[name]):all() then
      if not quiet then
        T.diag(string.format("%s differs by %g", name, max_diff(sd1[name], sd2[name])))
      end
      return false
    end
  end
  return true
end

-- ---- a small MLP on a fixed synthetic dataset -------------------------------------------------

local N, D, H, C, B = 64, 6, 16, 3, 16
lm.manual_seed(1234)
local X = lm.randn(N, D)
local Y = X:narrow(1, 0, C):argmax(1)   -- the class is the largest of the first C features

local function make_model()
  return nn.Sequential {nn.Linear(D, H), nn.ReLU(), nn.Dropout(0.25), nn.Linear(H, C)}
end

-- Two set-ups: Adam with a per-batch OneCycleLR (cycles beta1 through the param groups), and
-- SGD with momentum and two param groups under a per-epoch StepLR.
local SETUPS = {
  {
    name = "Adam + OneCycleLR",
    make = function()
      local model = make_model()
      local opt = optim.Adam(model:parameters(), {lr = 0.01, amsgrad = true})
      local sched = optim.OneCycleLR(opt, 0.05, {epochs = 2, steps_per_epoch = N // B})
      return model, opt, sched
    end,
    per_batch = true,
  },
  {
    name = "SGD momentum, two groups + StepLR",
    make = function()
      local model = make_model()
      local first = model[1]
      local rest = {}
      for _, p in ipairs(model[4]:parameters()) do rest[#rest + 1] = p end
      local opt = optim.SGD({{params = first:parameters()}, {params = rest, lr = 0.02}},
        {lr = 0.05, momentum = 0.9, nesterov = true})
      return model, opt, optim.StepLR(opt, 1, {gamma = 0.5})
    end,
    per_batch = false,
  },
}

-- One epoch: shuffled with lm.randperm (the engine's RNG), dropout active (the RNG again).
local function train_epoch(setup, model, opt, sched)
  model:train()
  local perm = lm.randperm(N)
  for b = 0, N // B - 1 do
    local idx = perm:narrow(0, b * B, B)
    local loss = lm.cross_entropy(model(X:index_select(0, idx)), Y:index_select(0, idx))
    opt:zero_grad()
    loss:backward()
    opt:step()
    if setup.per_batch then sched:step() end
  end
  if not setup.per_batch then sched:step() end
end

for _, setup in ipairs(SETUPS) do
  lm.manual_seed(7)
  local m1, o1, s1 = setup.make()
  train_epoch(setup, m1, o1, s1)
  train_epoch(setup, m1, o1, s1)

  lm.manual_seed(7)
  local m2, o2, s2 = setup.make()
  train_epoch(setup, m2, o2, s2)
  local path = tmp(".ckpt.safetensors")
  lm.checkpoint.save(path, {model = m2, optimizer = o2, scheduler = s2, epoch = 1,
    step = N // B, best = 1 / 3, note = "epoch 1", history = {0.5, 0.25}})

  -- A fresh start: other seed, other initial weights, fresh optimizer and scheduler state.
  lm.manual_seed(99)
  local m3, o3, s3 = setup.make()
  T.ok(not same_weights(m1, m3, true), setup.name .. ": the fresh model starts elsewhere")
  local info = lm.checkpoint.load(path, {model = m3, optimizer = o3, scheduler = s3})
  T.ok(info.epoch == 1 and info.step == N // B and math.type(info.step) == "integer",
    setup.name .. ": info gives back epoch and step")
  T.ok(info.best == 1 / 3 and info.note == "epoch 1" and info.history[2] == 0.25,
    setup.name .. ": info gives back other fields exactly")
  T.is(s3.last_epoch, s2.last_epoch, setup.name .. ": scheduler position restored")
  T.is(o3.param_groups[#o3.param_groups].lr, o2.param_groups[#o2.param_groups].lr,
    setup.name .. ": group lr restored exactly")
  train_epoch(setup, m3, o3, s3)
  T.ok(same_weights(m1, m3), setup.name .. ": 2 epochs straight == 1 + checkpoint + 1, bit for bit")
  T.is(o3.param_groups[1].lr, o1.param_groups[1].lr, setup.name .. ": same lr afterwards")
end

-- ---- the checkpoint file, read by the independent reader --------------------------------------

local function python_ok()
  local f = io.popen(PYTHON .. " -c 'import numpy, torch' 2>/dev/null; echo $?")
  local status = f and f:read("a") or ""
  if f then f:close() end
  return status:match("^0") ~= nil
end
local have_python = python_ok()
local NO_PYTHON = PYTHON .. " with numpy and torch is not available"

-- Runs the reader's command line on path and returns its JSON as Lua data.
local function read_with_python(path)
  local f = io.popen(string.format("%s %s/safetensors_reader.py '%s' 2>&1", PYTHON, READER_DIR,
    path))
  local out = f:read("a")
  f:close()
  local ok, v = pcall(serialize.decode, out)
  if not ok then T.diag("reader said: " .. out) end
  return ok and v or nil
end

lm.manual_seed(5)
local model = make_model()
local opt = optim.Adam(model:parameters(), {lr = 0.01})
train_epoch(SETUPS[1], model, opt, optim.OneCycleLR(opt, 0.05, {total_steps = N // B}))
local ckpt = tmp(".ckpt.safetensors")
lm.checkpoint.save(ckpt, {model = model, optimizer = opt, epoch = 1})

if have_python then
  local r = read_with_python(ckpt)
  T.ok(r ~= nil, "the reader accepts the checkpoint")
  r = r or {tensors = {}, metadata = {}}
  local w = r.tensors["model.0.weight"] or {}
  T.ok(w.dtype == "F32" and table.concat(w.shape or {}, ",") == H .. "," .. D,
    "reader: model.0.weight is F32 [16,6]")
  T.ok(w.first and math.abs(w.first[2] - model[1].weight[{0, 1}]:item()) == 0,
    "reader: a weight value matches")
  local st = r.tensors["optimizer.state.0.step"] or {}
  T.ok(st.dtype == "I64" and #(st.shape or {1}) == 0 and st.first and st.first[1] == N // B,
    "reader: optimizer step is a 0-dim I64 tensor")
  local ea = r.tensors["optimizer.state.3.exp_avg_sq"] or {}
  T.ok(ea.dtype == "F32" and table.concat(ea.shape or {}, ",") == tostring(C),
    "reader: optimizer state of the last parameter (3) has its shape")
  T.is(r.metadata.format, "lumen.checkpoint", "reader: metadata format")
  local groups = serialize.decode(r.metadata.optimizer or "{}").param_groups or {{}}
  T.is(groups[1].lr, opt.param_groups[1].lr, "reader: param group lr in the metadata JSON")
else
  for _ = 1, 7 do T.skip(NO_PYTHON, "the checkpoint through the Python reader") end
end

-- ---- lm.save / lm.load, and the model in PyTorch ----------------------------------------------

model:eval()
local mpath = tmp(".safetensors")
lm.save(model, mpath)
local xin = X:narrow(0, 0, 5)
local want = model(xin)

local loaded, meta = lm.load(nil, mpath)
T.ok(loaded["0.weight"] and loaded["3.bias"] and loaded["1.weight"] == nil,
  "lm.load(nil) gives name -> tensor with PyTorch's names")
T.is(max_diff(loaded["3.weight"], model[4].weight), 0, "lm.load(nil): values")
T.is(meta.format, "pt", "lm.load(nil): the metadata as second result")

lm.manual_seed(42)
local other = make_model()
other:eval()
T.ok(max_diff(other(xin), want) > 0, "a fresh model computes something else")
T.ok(lm.load(other, mpath) == other, "lm.load(model) returns the model")
T.is(max_diff(other(xin), want), 0, "after lm.load the outputs are identical")

if have_python then
  local xpath = tmp(".npy")
  lm.save_npy(xin, xpath)
  local script = tmp(".py")
  local f = assert(io.open(script, "w"))
  f:write(string.format([[
import json, sys
sys.path.insert(0, %q)
import numpy as np, torch
import safetensors_reader as reader
_, order, arrays, meta = reader.read(%q)
model = torch.nn.Sequential(torch.nn.Linear(%d, %d), torch.nn.ReLU(), torch.nn.Dropout(0.25),
                            torch.nn.Linear(%d, %d))
model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=True)
model.eval()
with torch.no_grad():
    out = model(torch.from_numpy(np.load(%q)))
print(json.dumps({"order": order, "out": out.double().flatten().tolist()}))
]], READER_DIR, mpath, D, H, H, C, xpath))
  f:close()
  local p = io.popen(PYTHON .. " " .. script .. " 2>&1")
  local out = p:read("a")
  p:close()
  local ok, r = pcall(serialize.decode, out)
  if not ok then T.diag("python said: " .. out) end
  T.ok(ok and r.order and table.concat(r.order, " ") == "0.weight 0.bias 3.weight 3.bias",
    "PyTorch: load_state_dict(strict=True) of our file, names in module order")
  local worst = ok and 0 or math.huge
  local flat = want:flatten():totable()
  for i, v in ipairs(flat) do
    worst = math.max(worst, math.abs(v - ((ok and r.out[i]) or 0 / 0)))
  end
  if ok and #r.out ~= #flat then worst = math.huge end
  T.ok(worst <= 1e-5, string.format("PyTorch's outputs match ours (max diff %g)", worst))
else
  T.skip(NO_PYTHON, "PyTorch loads our file")
  T.skip(NO_PYTHON, "PyTorch's outputs match ours")
end

-- One tensor, and tables of tensors.
do
  local path = tmp(".safetensors")
  local t = lm.tensor({{1.5, -2}, {3, 4}}, {dtype = "f64"})
  lm.save(t, path)
  local back = lm.load(nil, path)
  T.ok(back.dtype == "f64" and back:eq(t):all(), "lm.save(tensor) / lm.load(nil) gives the tensor")
  local into = lm.zeros({2, 2}, {dtype = "f64"})
  lm.load(into, path)
  T.ok(into:eq(t):all(), "lm.load(tensor) copies into it")
  local tbl = {a = lm.arange(0, 4, 1, {dtype = "i64"}), b = lm.ones(3, {dtype = "u8"})}
  lm.save(tbl, path, {metadata = {author = "test"}})
  local got, m = lm.load(nil, path)
  T.ok(got.a:eq(tbl.a):all() and got.b.dtype == "u8" and m.author == "test",
    "lm.save(table) with metadata: i64 and u8 round trip")
  local target = {a = lm.zeros(4, {dtype = "i64"}), b = lm.zeros(3, {dtype = "u8"})}
  lm.load(target, path)
  T.ok(target.a:eq(tbl.a):all(), "lm.load(table) copies into its tensors")
  T.errors(function() lm.load({a = lm.zeros(4, {dtype = "i64"})}, path) end,
    "has a tensor 'b' that the table lacks", "lm.load(table) is strict")
end

-- ---- errors -----------------------------------------------------------------------------------

do
  local missing = "/nonexistent/dir/model.safetensors"
  T.errors(function() lm.load(nil, missing) end, missing, "missing file: the error names the path")
  T.errors(function() lm.checkpoint.load(missing, {}) end, missing,
    "missing checkpoint names the path")
  local bigger = nn.Sequential {nn.Linear(D, H), nn.ReLU(), nn.Dropout(0.25), nn.Linear(H, C),
    nn.Linear(C, 2)}
  T.errors(function() lm.load(bigger, mpath) end, "4.weight", "a missing key is named")
  T.errors(function() lm.load(bigger, mpath) end, mpath, "and so is the path")
  local wrong = nn.Sequential {nn.Linear(D, H + 1), nn.ReLU(), nn.Dropout(0.25),
    nn.Linear(H + 1, C)}
  T.errors(function() lm.load(wrong, mpath) end, "size mismatch for 0.weight", "a shape mismatch")
  T.errors(function() lm.checkpoint.load(mpath, {model = other}) end, "is not a lumen checkpoint",
    "a plain file is not a checkpoint")
  T.errors(function() lm.checkpoint.load(ckpt, {optimizer = optim.SGD(other:parameters(),
    {lr = 0.1})}) end, "holds the state of a Adam, not of a SGD", "optimizer class mismatch")
  T.errors(function() lm.checkpoint.load(ckpt, {scheduler = optim.StepLR(opt, 2)}) end,
    "holds no scheduler", "no scheduler saved")
  T.errors(function() lm.save(model, 42) end, "lm.save: path must be a non-empty string",
    "bad path type")
  T.errors(function() lm.save(42, mpath) end,
    "expected a model, a table of name -> tensor or a tensor",
    "bad object")
  T.errors(function() lm.checkpoint.save(ckpt, {model = model, extra = {f = print}}) end,
    "cannot store info.extra.f", "a function in the info")
  T.errors(function() lm.checkpoint.save(ckpt, {model = model, extra = {[true] = 1}}) end,
    "cannot store info.extra: keys must be strings or integers, got true", "a boolean key in the info")
  T.errors(function() lm.save(model, mpath, {metdata = {}}) end,
    "lm.save: unknown option 'metdata' (known: metadata)", "lm.save: a misspelt option")
  T.errors(function() lm.save(model, "/nonexistent/dir/out.safetensors") end,
    "/nonexistent/dir/out.safetensors", "unwritable path named")
end

-- ---- the metadata JSON --------------------------------------------------------------------------

do
  local v = {i = 3, neg = -7, big = math.maxinteger, f = 0.1, third = 1 / 3, tiny = 5e-324,
    huge = 1.7976931348623157e308, whole = 2.0, negzero = -0.0, inf = math.huge, ninf = -math.huge,
    s = "quote \" backslash \\ newline \n tab \t ctl \1 utf8 é", yes = true, no = false,
    list = {1, 2.5, "x", {true}}, sparse = {[0] = "zero", [2] = "two"}, empty = {}}
  local back = serialize.decode(serialize.encode(v))
  local exact = true
  for _, k in ipairs({"i", "neg", "big", "f", "third", "tiny", "huge", "whole", "inf", "ninf", "s",
                      "yes", "no"}) do
    if back[k] ~= v[k] or math.type(back[k]) ~= math.type(v[k]) then
      T.diag("differs: " .. k)
      exact = false
    end
  end
  T.ok(exact, "JSON: numbers (integer/float kept apart), strings, booleans round-trip exactly")
  T.ok(1 / back.negzero == -math.huge, "JSON: -0.0 keeps its sign")
  T.ok(back.list[3] == "x" and back.list[4][1] == true and back.list[2] == 2.5, "JSON: arrays")
  T.ok(back.sparse[0] == "zero" and back.sparse[2] == "two",
    "JSON: integer keys come back as integers")
  T.ok(next(back.empty) == nil, "JSON: empty table")
  local nan = serialize.decode(serialize.encode({x = 0 / 0})).x
  T.ok(nan ~= nan, "JSON: NaN")
  T.errors(function() serialize.decode('{"a": [1, 2') end, "bad JSON at byte",
    "JSON: truncated input")
end

-- A tied (shared) weight is stored once and restored under both names.
do
  local function tied()
    local m = nn.Sequential {nn.Linear(4, 4, {bias = false}), nn.Linear(4, 4, {bias = false})}
    m[2].weight = nil
    m[2]:register_parameter("weight", m[1].weight)
    return m
  end
  lm.manual_seed(11)
  local a = tied()
  local path = tmp(".safetensors")
  lm.save(a, path)
  local names = lm.safetensors_load(path)
  T.is(#names, 1, "save: a shared weight is stored once")
  lm.manual_seed(12)
  local b = tied()
  lm.load(b, path)
  T.ok(max_diff(b[1].weight, a[1].weight) == 0 and rawequal(b[1].weight, b[2].weight),
    "load: the shared weight comes back under both names")
  local sd = lm.load(nil, path)
  T.ok(sd["0.weight"] ~= nil and sd["1.weight"] ~= nil, "load(nil): both names present")
end

for _, name in ipairs(tmp_files) do os.remove(name) end
T.done()
