-- lumen.data.dataset: the Dataset protocol and the datasets built on it (TensorDataset, Subset,
-- ConcatDataset, random_split).
--
-- The protocol (Lua's indexing rules: datasets are Lua collections, so they are 1-based):
--   #ds        the number of samples
--   ds[i]      sample i, i = 1..#ds. A sample is ONE value (Lua's __index returns one): either a
--              sequence table of fields, {x, y} for a supervised set, or a single tensor/number
--              for a set of inputs only. A plain Lua sequence of samples {{x1, y1}, {x2, y2}} is
--              a dataset too.
--   ds:gather(index) (optional) the fields of a whole batch at once: index is an i64 1-D tensor
--              of 0-based sample positions (tensor addressing), the result a sequence of tensors
--              whose dim 0 follows index. A dataset that has it is "tensor-backed": DataLoader
--              then gathers each batch with one index_select per tensor instead of per-sample Lua.
--              A dataset whose gather works only sometimes (a Subset of a plain dataset) also
--              defines tensor_backed(self) -> boolean.
--
-- A user dataset is a class derived from Dataset (or any table with __len and __index):
--   local Squares = class("Squares", data.Dataset)
--   function Squares:__init(n) self.n = n end
--   function Squares:__len() return self.n end
--   function Squares:__getitem(i) return {lm.tensor{i}, i * i} end
local lm = require "lumen.core"
local class = require "lumen.class"

local M = {}

local util = require "lumen.util"
local is_tensor, raise, shape_str = util.is_tensor, util.raise, util.shape_str

-- A method or field of ds found without triggering its __getitem (a user's __getitem may raise
-- for keys that are not sample numbers).
local function lookup(ds, name)
  if type(ds) ~= "table" then return nil end
  local v = rawget(ds, name)
  if v ~= nil then return v end
  local mt = getmetatable(ds)
  if type(mt) ~= "table" then return nil end
  if rawget(mt, "__name") ~= nil then
    -- A lumen.class: fields are looked up along the class chain.
    return mt[name]
  end
  local index = rawget(mt, "__index")
  if type(index) == "table" then return index[name] end
  return nil
end

-- True when DataLoader can gather whole batches of ds with ds:gather(index).
function M.is_tensor_backed(ds)
  if type(lookup(ds, "gather")) ~= "function" then return false end
  local tb = lookup(ds, "tensor_backed")
  if tb == nil then return true end
  if type(tb) == "function" then return tb(ds) and true or false end
  return tb and true or false
end

-- The number of samples of anything that follows the protocol.
function M.length(ds)
  if is_tensor(ds) then
    raise("Dataset: got a tensor; wrap it as TensorDataset(x) (tensor rows are 0-based, " ..
      "dataset samples 1-based)")
  end
  local t = type(ds)
  if t ~= "table" and t ~= "userdata" then
    raise("Dataset: expected a dataset (a table with a length), got " .. t)
  end
  local ok, n = pcall(function() return #ds end)
  if not ok or math.type(n) ~= "integer" then
    raise("Dataset: " .. class.name(ds) .. " has no integer length (#ds)")
  end
  return n
end

-- Checks that i is a sample number of a dataset of n samples; name is the class for messages.
local function check_index(name, i, n)
  if math.type(i) ~= "integer" then
    local int = math.tointeger(i)
    if not int then
      raise(string.format("%s: sample index must be an integer, got %s", name, tostring(i)))
    end
    i = int
  end
  if i < 1 or i > n then
    raise(string.format("%s: index %d out of range [1, %d] (datasets are 1-based)", name, i, n))
  end
  return i
end

-- ---- Dataset: the base class --------------------------------------------------------------

local Dataset = class("Dataset")
M.Dataset = Dataset

function Dataset:__len()
  raise(class.name(self) .. ": a Dataset subclass must define __len")
end

-- ---- TensorDataset ------------------------------------------------------------------------

local TensorDataset = class("TensorDataset", Dataset)
M.TensorDataset = TensorDataset

-- TensorDataset(x, y, ...): sample i is {x[i-1], y[i-1], ...} (tensor rows are 0-based).
function TensorDataset:__init(...)
  local n = select("#", ...)
  if n == 0 then raise("TensorDataset: at least one tensor is required") end
  local tensors = {}
  for k = 1, n do
    local t = select(k, ...)
    if not is_tensor(t) then
      raise(string.format("TensorDataset: argument %d must be a tensor, got %s", k, type(t)))
    end
    if t.ndim == 0 then
      raise(string.format("TensorDataset: tensor %d is 0-dim; samples are taken along dim 0", k))
    end
    if k > 1 and t.shape[1] ~= tensors[1].shape[1] then
      raise(string.format("TensorDataset: size mismatch along dim 0: tensor 1 has shape %s, " ..
        "tensor %d has shape %s", shape_str(tensors[1]), k, shape_str(t)))
    end
    tensors[k] = t
  end
  self.tensors = tensors
  self.n = tensors[1].shape[1]
end

function TensorDataset:__len()
  return self.n
end

function TensorDataset:__getitem(i)
  if type(i) ~= "number" then return nil end
  i = check_index("TensorDataset", i, self.n)
  local sample = {}
  for k, t in ipairs(self.tensors) do sample[k] = t[i - 1] end
  return sample
end

function TensorDataset:gather(index)
  local out = {}
  for k, t in ipairs(self.tensors) do out[k] = t:index_select(0, index) end
  return out
end

function TensorDataset:__tostring()
  local shapes = {}
  for k, t in ipairs(self.tensors) do shapes[k] = shape_str(t) .. " " .. t.dtype end
  return string.format("TensorDataset(%d samples: %s)", self.n, table.concat(shapes, ", "))
end

-- ---- Subset -------------------------------------------------------------------------------

local Subset = class("Subset", Dataset)
M.Subset = Subset

-- Subset(ds, indices): indices is a Lua sequence of sample numbers of ds (1-based, as ds[i]) or
-- an i64 1-D tensor of 0-based positions (as random_split makes). Stays tensor-backed when ds is.
function Subset:__init(ds, indices)
  local n = M.length(ds)
  local index
  if is_tensor(indices) then
    if indices.ndim ~= 1 then
      raise("Subset: an index tensor must be 1-D, got shape " .. shape_str(indices))
    end
    index = indices:to("i64")
    if index:numel() > 0 then
      local lo, hi = index:min():item(), index:max():item()
      if lo < 0 or hi >= n then
        raise(string.format("Subset: index tensor holds positions %d..%d, outside [0, %d) " ..
          "(tensor positions are 0-based)", lo, hi, n))
      end
    end
  elseif type(indices) == "table" then
    local pos = {}
    for k, i in ipairs(indices) do
      if math.type(i) ~= "integer" or i < 1 or i > n then
        raise(string.format("Subset: indices[%d] = %s is not a sample number in [1, %d]",
          k, tostring(i), n))
      end
      pos[k] = i - 1
    end
    if #pos == 0 then
      index = lm.zeros(0, {dtype = "i64"})
    else
      index = lm.tensor(pos, {dtype = "i64"})
    end
  else
    raise("Subset: indices must be a sequence of sample numbers or an i64 tensor, got " ..
      type(indices))
  end
  self.dataset = ds
  self.index = index
end

function Subset:__len()
  return self.index.shape[1]
end

function Subset:__getitem(i)
  if type(i) ~= "number" then return nil end
  i = check_index("Subset", i, self.index.shape[1])
  -- Per-sample access converts the index once; batches of tensor-backed parents never need it.
  local list = rawget(self, "list")
  if not list then
    list = self.index:totable()
    self.list = list
  end
  return self.dataset[list[i] + 1]
end

function Subset:tensor_backed()
  return M.is_tensor_backed(self.dataset)
end

function Subset:gather(index)
  return self.dataset:gather(self.index:index_select(0, index))
end

-- ---- ConcatDataset ------------------------------------------------------------------------

local ConcatDataset = class("ConcatDataset", Dataset)
M.ConcatDataset = ConcatDataset

-- ConcatDataset{ds1, ds2, ...}: the samples of ds1, then those of ds2... (per-sample access).
function ConcatDataset:__init(datasets)
  if type(datasets) ~= "table" or #datasets == 0 then
    raise("ConcatDataset: expected a non-empty sequence of datasets")
  end
  local ends, total = {}, 0
  for k, ds in ipairs(datasets) do
    total = total + M.length(ds)
    ends[k] = total
  end
  self.datasets = datasets
  self.ends = ends
end

function ConcatDataset:__len()
  return self.ends[#self.ends]
end

function ConcatDataset:__getitem(i)
  if type(i) ~= "number" then return nil end
  local ends = self.ends
  i = check_index("ConcatDataset", i, ends[#ends])
  -- Binary search for the first part whose end reaches i.
  local lo, hi = 1, #ends
  while lo < hi do
    local mid = (lo + hi) // 2
    if ends[mid] >= i then hi = mid else lo = mid + 1 end
  end
  local start = lo > 1 and ends[lo - 1] or 0
  return self.datasets[lo][i - start]
end

-- ---- random_split -------------------------------------------------------------------------

-- Sizes from lengths: integers summing to n, or fractions summing to 1 (floored, then the
-- remainder given one by one to the first parts, as PyTorch).
local function split_sizes(lengths, n)
  if type(lengths) ~= "table" or #lengths == 0 then
    raise("random_split: lengths must be a non-empty sequence")
  end
  local sizes, total, all_int = {}, 0, true
  for k, v in ipairs(lengths) do
    if type(v) ~= "number" or v < 0 then
      raise(string.format("random_split: lengths[%d] = %s must be a non-negative number",
        k, tostring(v)))
    end
    if math.type(v) ~= "integer" then all_int = false end
    total = total + v
  end
  if all_int then
    if total ~= n then
      raise(string.format("random_split: lengths sum to %d but the dataset has %d samples",
        total, n))
    end
    for k, v in ipairs(lengths) do sizes[k] = v end
    return sizes
  end
  if math.abs(total - 1) > 1e-9 then
    raise(string.format("random_split: fractions sum to %g, not 1", total))
  end
  local used = 0
  for k, f in ipairs(lengths) do
    sizes[k] = math.floor(n * f)
    used = used + sizes[k]
  end
  for k = 1, n - used do
    local j = (k - 1) % #sizes + 1
    sizes[j] = sizes[j] + 1
  end
  return sizes
end

-- random_split(ds, {n1, n2, ...} or {0.8, 0.2}, {seed=}) -> Subset, Subset, ...: disjoint
-- subsets covering ds in a random order. With a seed the split depends on (seed, sizes) only;
-- without one it draws from the engine's global generator.
function M.random_split(ds, lengths, opts)
  local n = M.length(ds)
  local sizes = split_sizes(lengths, n)
  opts = opts or {}
  if opts.seed ~= nil and math.type(opts.seed) ~= "integer" then
    raise("random_split: seed must be an integer, got " .. tostring(opts.seed))
  end
  local perm = lm.randperm(n, {seed = opts.seed})
  local parts, offset = {}, 0
  for k, size in ipairs(sizes) do
    parts[k] = Subset(ds, perm:narrow(0, offset, size))
    offset = offset + size
  end
  return table.unpack(parts)
end

return M
