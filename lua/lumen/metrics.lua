-- lumen.metrics: classification and regression metrics, as functions of one batch and as
-- accumulating objects that fit/evaluate update per batch and read per epoch.
--
--   metrics.accuracy(out, y)            -- fraction correct (argmax over dim 1, or out > 0 for one
--                                       -- output of logits; {from_logits = false}: out > 0.5)
--   metrics.top_k_accuracy(out, y, 5)   -- true class among the 5 highest scores
--   metrics.auc(scores, labels)         -- binary ROC AUC, ties by average ranks
--   metrics.mse(out, y), metrics.mae(out, y)
--
-- A metric object has a name (the history key: "accuracy", "top5", "auc", "mse", "mae"),
-- reset(), update(out, y) with one batch's outputs and targets, and result() -> number over
-- everything since reset. metrics.get(spec) makes one from "accuracy", "top5" (any k),
-- {"top_k", k = 5}, "auc", "mse", "mae", an object (anything with update and result), or
-- {name = "f", fn = function(out, y) return number end} (averaged over samples).
--
-- Targets: class labels are i64 (0-based, as PyTorch); a multi-class accuracy also takes one-hot
-- or probability targets of the outputs' shape. Binary outputs are [N] or [N, 1] (or [N, 2]
-- logits for AUC), with targets 0/1 of any dtype.
local lm = require "lumen.core"
local class = require "lumen.class"

local M = {}

local util = require "lumen.util"
local is_tensor, raise, shape_str = util.is_tensor, util.raise, util.shape_str

local function check_pair(name, out, y)
  if not is_tensor(out) then raise(name .. ": outputs must be a tensor, got " .. type(out)) end
  if not is_tensor(y) then raise(name .. ": targets must be a tensor, got " .. type(y)) end
end

-- Multi-class outputs put the classes along dim 1 with more than one of them.
local function is_multiclass(out)
  return out.ndim >= 2 and out.shape[2] > 1
end

-- correct, total for accuracy.
local function accuracy_counts(out, y, from_logits)
  check_pair("accuracy", out, y)
  if is_multiclass(out) then
    if shape_str(y) == shape_str(out) then
      -- One-hot or probability targets: the class is their argmax.
      y = y:argmax(1)
    end
    local pred = out:argmax(1)
    if pred:numel() ~= y:numel() then
      raise(string.format("accuracy: outputs %s and targets %s do not match (targets are class " ..
        "indices, one per output row)", shape_str(out), shape_str(y)))
    end
    return pred:eq(y:reshape(pred.shape)):sum():item(), y:numel()
  end
  if out:numel() ~= y:numel() then
    raise(string.format("accuracy: outputs %s and targets %s do not match", shape_str(out),
      shape_str(y)))
  end
  local pred = from_logits and out:gt(0) or out:gt(0.5)
  local target = y:gt(0.5)
  return pred:reshape(-1):eq(target:reshape(-1)):sum():item(), y:numel()
end

-- correct, total for top-k accuracy: the true class counts as found when fewer than k classes
-- score strictly higher (so ties are resolved in its favour).
local function top_k_counts(out, y, k)
  check_pair("top_k_accuracy", out, y)
  if out.ndim ~= 2 then
    raise("top_k_accuracy: outputs must be [N, C], got " .. shape_str(out))
  end
  if y:numel() ~= out.shape[1] then
    raise(string.format("top_k_accuracy: outputs %s and targets %s do not match", shape_str(out),
      shape_str(y)))
  end
  local truth = out:gather(1, y:to("i64"):reshape(-1, 1))
  local higher = out:gt(truth):sum(1)
  return higher:lt(k):sum():item(), out.shape[1]
end

-- One score per sample for a binary problem: the output itself, or logit1 - logit0 for two.
local function binary_scores(out)
  if out.ndim == 2 and out.shape[2] == 2 then
    return (out:select(1, 1) - out:select(1, 0)):to("f64")
  end
  if out.ndim <= 1 or (out.ndim == 2 and out.shape[2] == 1) then
    return out:reshape(-1):to("f64")
  end
  raise("auc: binary outputs are [N], [N,1] or [N,2], got " .. shape_str(out))
end

-- ROC AUC from Lua sequences of scores and 0/1 labels: the Mann-Whitney statistic with tied
-- scores given their average rank. NaN when a class is absent or a score is NaN.
local function auc_from_lists(scores, labels)
  local n = #scores
  local order = {}
  for i = 1, n do
    if scores[i] ~= scores[i] then return 0 / 0 end
    order[i] = i
  end
  table.sort(order, function(a, b) return scores[a] < scores[b] end)
  local pos_rank_sum, npos = 0, 0
  local i = 1
  while i <= n do
    local j = i
    while j < n and scores[order[j + 1]] == scores[order[i]] do j = j + 1 end
    local rank = (i + j) / 2
    for k = i, j do
      if labels[order[k]] > 0.5 then
        pos_rank_sum = pos_rank_sum + rank
        npos = npos + 1
      end
    end
    i = j + 1
  end
  local nneg = n - npos
  if npos == 0 or nneg == 0 then return 0 / 0 end
  return (pos_rank_sum - npos * (npos + 1) / 2) / (npos * nneg)
end

-- Sum of squared (or absolute) errors and the element count.
local function error_sums(name, out, y, squared)
  check_pair(name, out, y)
  if out:numel() ~= y:numel() then
    raise(string.format("%s: outputs %s and targets %s have different sizes", name,
      shape_str(out), shape_str(y)))
  end
  local diff = out:to("f64") - y:to("f64"):reshape(out.shape)
  local e = squared and (diff * diff) or diff:abs()
  return e:sum():item(), out:numel()
end

-- ---- functions of one batch ---------------------------------------------------------------

function M.accuracy(out, y, opts)
  local from_logits = not (opts and opts.from_logits == false)
  local c, n = accuracy_counts(out, y, from_logits)
  return c / n
end

function M.top_k_accuracy(out, y, k)
  if math.type(k) ~= "integer" or k < 1 then
    raise("top_k_accuracy: k must be a positive integer, got " .. tostring(k))
  end
  local c, n = top_k_counts(out, y, k)
  return c / n
end

function M.auc(scores, labels)
  check_pair("auc", scores, labels)
  local s = binary_scores(scores)
  if s:numel() ~= labels:numel() then
    raise(string.format("auc: scores %s and labels %s do not match", shape_str(scores),
      shape_str(labels)))
  end
  return auc_from_lists(s:totable(), labels:reshape(-1):to("f64"):totable())
end

function M.mse(out, y)
  local s, n = error_sums("mse", out, y, true)
  return s / n
end

function M.mae(out, y)
  local s, n = error_sums("mae", out, y, false)
  return s / n
end

-- ---- accumulating metric objects ----------------------------------------------------------

-- A metric that sums (value, count) pairs over batches; result() = total / count.
local Mean = class("Mean")
M.Mean = Mean

-- counts(out, y) -> sum, count for one batch.
function Mean:__init(name, counts)
  self.name = name
  self.counts = counts
  self:reset()
end

function Mean:reset()
  self.total, self.count = 0, 0
end

function Mean:update(out, y)
  local s, n = self.counts(out, y)
  self.total = self.total + s
  self.count = self.count + n
end

function Mean:result()
  if self.count == 0 then return 0 / 0 end
  return self.total / self.count
end

function M.Accuracy(opts)
  local from_logits = not (opts and opts.from_logits == false)
  return Mean("accuracy", function(out, y) return accuracy_counts(out, y, from_logits) end)
end

function M.TopKAccuracy(k, name)
  if math.type(k) ~= "integer" or k < 1 then
    raise("TopKAccuracy: k must be a positive integer, got " .. tostring(k))
  end
  return Mean(name or ("top" .. k), function(out, y) return top_k_counts(out, y, k) end)
end

function M.MSE()
  return Mean("mse", function(out, y) return error_sums("mse", out, y, true) end)
end

function M.MAE()
  return Mean("mae", function(out, y) return error_sums("mae", out, y, false) end)
end

-- AUC keeps the epoch's scores and labels: the statistic needs every score ranked together.
local AUC = class("AUC")
M.AUC = AUC

function AUC:__init()
  self.name = "auc"
  self:reset()
end

function AUC:reset()
  self.scores, self.labels = {}, {}
end

function AUC:update(out, y)
  check_pair("auc", out, y)
  local s = binary_scores(out)
  if s:numel() ~= y:numel() then
    raise(string.format("auc: outputs %s and targets %s do not match", shape_str(out),
      shape_str(y)))
  end
  self.scores[#self.scores + 1] = s
  self.labels[#self.labels + 1] = y:reshape(-1):to("f64")
end

function AUC:result()
  if #self.scores == 0 then return 0 / 0 end
  local s = lm.cat(self.scores, 0)
  local l = lm.cat(self.labels, 0)
  return auc_from_lists(s:totable(), l:totable())
end

-- A user function of one batch, averaged over samples (weighted by batch size).
local function from_function(name, fn)
  return Mean(name, function(out, y)
    local v = fn(out, y)
    if is_tensor(v) then v = v:item() end
    if type(v) ~= "number" then
      raise(string.format("metric %s: the function returned %s, not a number", name, type(v)))
    end
    local n = out.ndim > 0 and out.shape[1] or 1
    return v * n, n
  end)
end

local KNOWN = "accuracy, topK (top5...), {\"top_k\", k=K}, auc, mse, mae, an object with " ..
  "update/result, or {name=..., fn=function(out, y)}"

-- A metric object from a spec (see the banner). opts.from_logits is passed to accuracy.
function M.get(spec, opts)
  opts = opts or {}
  if type(spec) == "string" then
    if spec == "accuracy" or spec == "acc" then return M.Accuracy(opts) end
    if spec == "auc" then return AUC() end
    if spec == "mse" then return M.MSE() end
    if spec == "mae" then return M.MAE() end
    local k = spec:match("^top(%d+)$") or spec:match("^top_(%d+)$")
    if k then return M.TopKAccuracy(math.tointeger(tonumber(k)), spec) end
    raise(string.format("unknown metric %q (known: %s)", spec, KNOWN))
  end
  if type(spec) == "table" then
    if type(spec.update) == "function" and type(spec.result) == "function" then
      if type(spec.name) ~= "string" then
        raise("metric objects need a string name (the history key)")
      end
      return spec
    end
    if spec[1] == "top_k" then
      local k = spec.k or 5
      return M.TopKAccuracy(k, spec.name or ("top" .. tostring(k)))
    end
    if type(spec.fn) == "function" then
      if type(spec.name) ~= "string" then raise("a function metric needs a name") end
      return from_function(spec.name, spec.fn)
    end
    if type(spec[1]) == "string" then return M.get(spec[1], spec) end
  end
  raise(string.format("unknown metric %s (known: %s)", tostring(spec), KNOWN))
end

return M
