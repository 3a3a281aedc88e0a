-- lumen.optim.clip: gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_.
-- Both act in place on the .grad of the given parameters and skip parameters without one.
--
--   loss:backward()
--   local norm = optim.clip_grad_norm_(model:parameters(), 1.0)   -- the norm before clipping
--   opt:step()
local Optimizer = require "lumen.optim.optimizer"

local raise, is_tensor, describe = Optimizer.raise, Optimizer.is_tensor, Optimizer.describe

local M = {}

-- The gradients of a tensor or a sequence of tensors (those that have one).
local function grads_of(fname, params)
  if is_tensor(params) then params = {params} end
  if type(params) ~= "table" then
    raise(string.format("%s: params must be a tensor or a sequence of tensors, got %s", fname,
      describe(params)))
  end
  local out = {}
  for i, p in ipairs(params) do
    if not is_tensor(p) then
      raise(string.format("%s: params[%d] is %s, expected a tensor", fname, i, describe(p)))
    end
    local g = p.grad
    if g ~= nil then out[#out + 1] = g end
  end
  return out
end

-- Scales the gradients so that their joint norm (the norm of all their elements taken as one
-- vector) is at most max_norm, and returns that norm before scaling, as a number. The norm is
-- summed in double precision. norm_type is any positive number, or math.huge (the largest |g|);
-- with error_if_nonfinite a NaN or infinite norm raises instead of spreading into the weights.
-- As PyTorch, the scale is max_norm / (norm + 1e-6), applied only when below 1.
function M.clip_grad_norm_(params, max_norm, opts)
  local fname = "clip_grad_norm_"
  if type(max_norm) ~= "number" or not (max_norm >= 0) then
    raise(string.format("%s: max_norm must be a number >= 0, got %s", fname,
      type(max_norm) == "number" and tostring(max_norm) or describe(max_norm)))
  end
  if opts ~= nil and type(opts) ~= "table" then
    raise(string.format("%s: options must be a table like {norm_type = 2}, got %s", fname,
      describe(opts)))
  end
  opts = opts or {}
  local norm_type = opts.norm_type == nil and 2 or opts.norm_type
  if type(norm_type) ~= "number" or not (norm_type > 0) then
    raise(string.format("%s: norm_type must be a positive number or math.huge, got %s", fname,
      tostring(norm_type)))
  end
  local grads = grads_of(fname, params)
  if #grads == 0 then return 0.0 end
  local total
  if norm_type == math.huge then
    total = 0.0
    for _, g in ipairs(grads) do
      if g:numel() > 0 then total = math.max(total, g:double():abs():max():item()) end
    end
  else
    local sum = 0.0
    for _, g in ipairs(grads) do
      local a = g:double():abs()
      if norm_type == 2 then sum = sum + (a * a):sum():item()
      elseif norm_type == 1 then sum = sum + a:sum():item()
      else sum = sum + (a ^ norm_type):sum():item() end
    end
    total = sum ^ (1 / norm_type)
  end
  if opts.error_if_nonfinite and (total ~= total or total == math.huge) then
    raise(string.format("%s: the total norm of order %s of the gradients is %s; set "
      .. "error_if_nonfinite = false to clip anyway", fname, tostring(norm_type), tostring(total)))
  end
  local coef = max_norm / (total + 1e-6)
  if coef < 1 then
    for _, g in ipairs(grads) do g:mul_(coef) end
  end
  return total
end

-- Clamps every gradient element into [-clip_value, clip_value].
function M.clip_grad_value_(params, clip_value)
  local fname = "clip_grad_value_"
  if type(clip_value) ~= "number" or not (clip_value >= 0) then
    raise(string.format("%s: clip_value must be a number >= 0, got %s", fname,
      type(clip_value) == "number" and tostring(clip_value) or describe(clip_value)))
  end
  for _, g in ipairs(grads_of(fname, params)) do g:clamp_(-clip_value, clip_value) end
end

return M
