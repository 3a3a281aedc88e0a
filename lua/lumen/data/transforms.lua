-- lumen.data.transforms: batch transforms for DataLoader's transform option (each is called on
-- a whole batch, whose dim 0 is the sample and dim 1 the channel or feature).
--
--   local T = data.transforms
--   local norm = T.Normalize({0.1307}, {0.3081})        -- per channel, as torchvision
--   local norm = T.standardize(train)                    -- mean/std measured on a dataset
--   local loader = data.DataLoader(train, {batch_size = 64, transform = T.Compose{norm, flat}})
--
-- Normalize(mean, std): (x - mean[c]) / std[c] for channel c = x's dim 1; mean and std are
-- numbers (every channel), Lua sequences or 1-D tensors. Integer batches (u8 images) become f32.
-- Compose{t1, t2, ...} applies them in order; Lambda(fn) wraps a function.
-- standardize(ds, {field = 1, batch_size = 4096}) -> Normalize with the per-channel mean and
-- standard deviation (population, correction 0) of the field over the whole dataset; channels
-- whose deviation is 0 get 1, so constant inputs map to 0 instead of NaN.
local lm = require "lumen.core"
local class = require "lumen.class"

local M = {}

local util = require "lumen.util"
local is_tensor, raise, shape_str, is_callable = util.is_tensor, util.raise, util.shape_str,
  util.is_callable

-- A 1-D f64 tensor from a number, a sequence or a tensor.
local function to_vector(name, what, v)
  if type(v) == "number" then return lm.tensor({v}, {dtype = "f64"}) end
  if is_tensor(v) then
    if v.ndim > 1 then
      raise(string.format("%s: %s must be 1-D, got shape %s", name, what, shape_str(v)))
    end
    return v:reshape(-1):to("f64")
  end
  if type(v) == "table" and #v > 0 then
    for k, x in ipairs(v) do
      if type(x) ~= "number" then
        raise(string.format("%s: %s[%d] must be a number, got %s", name, what, k, type(x)))
      end
    end
    return lm.tensor(v, {dtype = "f64"})
  end
  raise(string.format("%s: %s must be a number, a sequence of numbers or a tensor, got %s",
    name, what, type(v)))
end

-- ---- Normalize ----------------------------------------------------------------------------

local Normalize = class("Normalize")
M.Normalize = Normalize

function Normalize:__init(mean, std)
  self.mean = to_vector("Normalize", "mean", mean)
  self.std = to_vector("Normalize", "std", std)
  local nm, ns = self.mean:numel(), self.std:numel()
  if nm ~= ns and nm ~= 1 and ns ~= 1 then
    raise(string.format("Normalize: %d means but %d standard deviations", nm, ns))
  end
  if self.std:le(0):sum():item() ~= 0 then
    raise("Normalize: every std must be positive")
  end
  self.channels = math.max(nm, ns)
  -- Broadcastable copies, made for the first batch of each rank and dtype.
  self.cache = {}
end

-- mean and std shaped [1, C, 1, ...] for a batch of ndim dims and float dtype.
function Normalize:broadcast(x)
  local key = x.ndim .. x.dtype
  local entry = self.cache[key]
  if entry then return entry[1], entry[2] end
  local shape = {}
  for d = 1, x.ndim do shape[d] = 1 end
  if x.ndim >= 2 then shape[2] = -1 end
  local function shaped(v)
    if x.ndim == 0 then return v:to(x.dtype):reshape({}) end
    if x.ndim == 1 then return v:to(x.dtype) end
    return v:to(x.dtype):reshape(shape)
  end
  entry = {shaped(self.mean), shaped(self.std)}
  self.cache[key] = entry
  return entry[1], entry[2]
end

function Normalize:__call(x)
  if not is_tensor(x) then
    raise("Normalize: expected a tensor batch, got " .. type(x))
  end
  local c = x.ndim >= 2 and x.shape[2] or 1
  if self.channels ~= 1 and self.channels ~= c then
    raise(string.format("Normalize: %d channels of mean/std for a batch of shape %s " ..
      "(channels are dim 1)", self.channels, shape_str(x)))
  end
  if x.dtype ~= "f32" and x.dtype ~= "f64" then x = x:to("f32") end
  local mean, std = self:broadcast(x)
  return (x - mean) / std
end

function Normalize:__tostring()
  local function list(v)
    local parts = {}
    for k, n in ipairs(v:totable()) do parts[k] = string.format("%.4g", n) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return "Normalize(mean=" .. list(self.mean) .. ", std=" .. list(self.std) .. ")"
end

-- ---- Compose, Lambda ----------------------------------------------------------------------

local Compose = class("Compose")
M.Compose = Compose

function Compose:__init(list)
  if type(list) ~= "table" then
    raise("Compose: expected a sequence of transforms, got " .. type(list))
  end
  for k, t in ipairs(list) do
    if not is_callable(t) then
      raise(string.format("Compose: transform %d is a %s, not callable", k, type(t)))
    end
  end
  self.transforms = list
end

function Compose:__call(x)
  for _, t in ipairs(self.transforms) do x = t(x) end
  return x
end

local Lambda = class("Lambda")
M.Lambda = Lambda

function Lambda:__init(fn)
  if not is_callable(fn) then
    raise("Lambda: expected a function, got " .. type(fn))
  end
  self.fn = fn
end

function Lambda:__call(x)
  return self.fn(x)
end

-- ---- standardize --------------------------------------------------------------------------

-- Per-channel mean and M2 (sum of squared deviations) of a batch, merged into acc with Chan et
-- al.'s pairwise update, in f64: stable where sum-of-squares would cancel.
local function accumulate(acc, x)
  x = x:to("f64")
  local dims = {0}
  for d = 2, x.ndim - 1 do dims[#dims + 1] = d end
  local channels = x.ndim >= 2 and x.shape[2] or 1
  local count = x:numel() // channels
  if count == 0 then return end
  local mean = x:mean(dims, true)
  local m2 = ((x - mean) ^ 2):sum(dims, true)
  if not acc.n then
    acc.n, acc.mean, acc.m2, acc.ndim, acc.channels = count, mean, m2, x.ndim, channels
    return
  end
  if x.ndim ~= acc.ndim or channels ~= acc.channels then
    raise(string.format("standardize: a batch of shape %s does not match the earlier batches' " ..
      "%d dims and %d channels", shape_str(x), acc.ndim, acc.channels))
  end
  local n = acc.n + count
  local delta = mean - acc.mean
  acc.mean = acc.mean + delta * (count / n)
  acc.m2 = acc.m2 + m2 + (delta ^ 2) * (acc.n * count / n)
  acc.n = n
end

function M.standardize(ds, opts)
  opts = opts or {}
  local DataLoader = require "lumen.data.loader"
  local field = opts.field or 1
  local loader = DataLoader(ds, {batch_size = opts.batch_size or 4096})
  local acc = {}
  local next_batch = loader:batches()
  while true do
    local batch = table.pack(next_batch())
    if batch[1] == nil then break end
    local x = batch[field + 1]
    if not is_tensor(x) then
      raise(string.format("standardize: field %d of the dataset's samples is not a tensor",
        field))
    end
    accumulate(acc, x)
  end
  if not acc.n then raise("standardize: the dataset is empty") end
  local mean = acc.mean:reshape(-1)
  local std = (acc.m2 / acc.n):sqrt():reshape(-1)
  std = std + std:le(0):to("f64")
  return Normalize(mean, std)
end
M.fit_normalize = M.standardize

return M
