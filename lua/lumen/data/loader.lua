-- lumen.data.loader: DataLoader, which cuts a dataset into mini-batches, one epoch per call of
-- loader:batches():
--
--   local loader = data.DataLoader(ds, {batch_size = 64, shuffle = true, seed = 1})
--   for i, xb, yb in loader:batches() do ... end     -- i = 1..#loader, the batch number
--
-- ds is a dataset or a tensor (a TensorDataset of its rows: batches are then one-field).
-- Options: batch_size (1), shuffle (false), seed (nil), drop_last (false), transform (called on
-- each whole batch's first field: xb = transform(xb)), target_transform (same, second field).
--
-- Order: without shuffle, samples come in dataset order. With shuffle, each call of batches()
-- starts a new epoch (loader.epoch counts the epochs begun, settable to resume) with a new
-- permutation: with a seed, epoch e's permutation depends on (seed, e) only, so a run is
-- reproducible and can resume at any epoch; without a seed it is drawn from the engine's global
-- generator (lm.randperm), whose state checkpoints save.
--
-- Batches: a tensor-backed dataset (one with gather, see lumen.data.dataset) gives each batch by
-- one index_select per tensor, with the epoch's index tensor narrowed per batch: no per-sample
-- Lua. Other datasets are read sample by sample (ds[i]) and each field is stacked (lm.stack);
-- number fields become a tensor (i64 when all are integers, f32 otherwise). Every batch is a
-- fresh tensor, never a view the next batch overwrites.
local lm = require "lumen.core"
local class = require "lumen.class"
local dataset = require "lumen.data.dataset"

local DataLoader = class("DataLoader")

local util = require "lumen.util"
local is_tensor, raise = util.is_tensor, util.raise

-- A 64-bit mixer (splitmix64's finaliser; Lua integers wrap on overflow), so nearby seeds and
-- epochs give unrelated permutation seeds.
local function mix(x)
  x = x + 0x9E3779B97F4A7C15
  x = (x ~ (x >> 30)) * 0xBF58476D1CE4E5B9
  x = (x ~ (x >> 27)) * 0x94D049BB133111EB
  return x ~ (x >> 31)
end

-- The permutation seed of epoch e of a loader seeded with seed (non-negative, 63 bits).
local function epoch_seed(seed, e)
  return mix(seed ~ mix(e)) & 0x7FFFFFFFFFFFFFFF
end

local function check_function(name, v)
  if v ~= nil and not util.is_callable(v) then
    raise(string.format("DataLoader: %s must be a function or callable, got %s", name, type(v)))
  end
  return v
end

function DataLoader:__init(ds, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    raise("DataLoader: options must be a table, got " .. type(opts))
  end
  -- A bare tensor is a dataset of its rows.
  if is_tensor(ds) then ds = dataset.TensorDataset(ds) end
  local n = dataset.length(ds)
  local bs = opts.batch_size or 1
  if math.type(bs) ~= "integer" or bs < 1 then
    raise("DataLoader: batch_size must be a positive integer, got " .. tostring(bs))
  end
  if opts.seed ~= nil and math.type(opts.seed) ~= "integer" then
    raise("DataLoader: seed must be an integer, got " .. tostring(opts.seed))
  end
  self.dataset = ds
  self.n = n
  self.batch_size = bs
  self.shuffle = opts.shuffle and true or false
  self.seed = opts.seed
  self.drop_last = opts.drop_last and true or false
  self.transform = check_function("transform", opts.transform)
  self.target_transform = check_function("target_transform", opts.target_transform)
  self.tensor_backed = dataset.is_tensor_backed(ds)
  self.epoch = 0
end

-- The number of batches in an epoch.
function DataLoader:__len()
  if self.drop_last then return self.n // self.batch_size end
  return (self.n + self.batch_size - 1) // self.batch_size
end

function DataLoader:__tostring()
  return string.format("DataLoader(%d samples, batch_size=%d, %d batches, shuffle=%s%s)",
    self.n, self.batch_size, #self, tostring(self.shuffle),
    self.seed and (", seed=" .. self.seed) or "")
end

-- The sample order of epoch e (1-based epoch number) as an i64 tensor of 0-based positions.
-- Draws from the global generator when shuffling without a seed.
function DataLoader:order(e)
  if not self.shuffle then
    return lm.arange(0, self.n, {dtype = "i64"})
  end
  if self.seed ~= nil then
    return lm.randperm(self.n, {seed = epoch_seed(self.seed, e)})
  end
  return lm.randperm(self.n)
end

-- One batch of a dataset without gather: ds[i] for each sample, then each field stacked.
local function collate(ds, order, start, len)
  local columns, nfields = {}, nil
  for k = 1, len do
    local i = order[start + k] + 1
    local s = ds[i]
    if s == nil then
      raise(string.format("DataLoader: the dataset returned nil for sample %d", i))
    end
    local fields = (type(s) == "table") and s or {s}
    if nfields == nil then
      nfields = #fields
      for f = 1, nfields do columns[f] = {} end
    elseif #fields ~= nfields then
      raise(string.format("DataLoader: sample %d has %d fields, earlier samples have %d",
        i, #fields, nfields))
    end
    for f = 1, nfields do columns[f][k] = fields[f] end
  end
  local out = {}
  for f = 1, nfields do
    local col = columns[f]
    local first = col[1]
    if is_tensor(first) then
      local ok, res = pcall(lm.stack, col, 0)
      if not ok then
        raise(string.format("DataLoader: cannot stack field %d of a batch: %s", f, res))
      end
      out[f] = res
    elseif type(first) == "number" then
      local all_int = true
      for k = 1, #col do
        if type(col[k]) ~= "number" then
          raise(string.format("DataLoader: field %d is a number in one sample and a %s in " ..
            "another", f, type(col[k])))
        end
        if math.type(col[k]) ~= "integer" then all_int = false end
      end
      out[f] = lm.tensor(col, {dtype = all_int and "i64" or "f32"})
    else
      raise(string.format("DataLoader: cannot batch field %d of type %s (samples are tensors, " ..
        "numbers, or sequences of them)", f, type(first)))
    end
  end
  return out
end

-- An iterator over one new epoch: yields i, field1, field2, ... for i = 1..#loader.
function DataLoader:batches()
  self.epoch = self.epoch + 1
  local order = self:order(self.epoch)
  local nb, bs, n = #self, self.batch_size, self.n
  local ds, backed = self.dataset, self.tensor_backed
  local list = (not backed) and nb > 0 and order:totable() or nil
  local transform, target_transform = self.transform, self.target_transform
  local i = 0
  return function()
    i = i + 1
    if i > nb then return nil end
    local start = (i - 1) * bs
    local len = math.min(bs, n - start)
    local fields
    if backed then
      fields = ds:gather(order:narrow(0, start, len))
    else
      fields = collate(ds, list, start, len)
    end
    if transform then fields[1] = transform(fields[1]) end
    if target_transform and fields[2] ~= nil then fields[2] = target_transform(fields[2]) end
    return i, table.unpack(fields)
  end
end

return DataLoader
