-- lumen.optim.clip: gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_.
-- Both act in place on the .grad of the given parameters and skip parameters without one.
--
--   loss:backward()
--   local norm = optim.clip_grad_norm_(model:parameters(), 1.0)   -- the norm before clipping
--   opt:step()
local util = require "lumen.util"

local raise, is_tensor, show = util.raise, util.is_tensor, util.show

local M = {}

-- The gradients of a tensor or a sequence of tensors (those that have one).
local function grads_of(fname, params)
  if is_tensor(params) then params = {params} end
  if type(params) ~= "table" then
    raise(string.format("%s: params must be a tensor or a sequence of tensors, got %s", fname,
      show(params)))
  end
  local out = {}
  for i, p in ipairs(params) do
    if not is_tensor(p) then
      raise(string.format("%s: params[%d] is %s, expected a tensor", fname, i, show(p)))
    end
    local g = p.grad
    if g ~= nil then out[#out + 1] = g end
  end
  return out
end

-- Scales the gradients so that their joint norm (the norm of all their elements taken as one
-- vector) is at most max_norm, and returns that norm before scaling, as a number. As PyTorch, it
-- is the norm of the per-gradient norms: each g:norm(p) reads its gradient once (no copy) and
-- accumulates in double precision, and the Lua numbers combine them in double too.
-- norm_type is any positive number, or math.huge (the largest |g|); with error_if_nonfinite a
-- NaN or infinite norm raises instead of spreading into the weights. As PyTorch, the scale is
-- max_norm / (norm + 1e-6), applied only when below 1.
function M.clip_grad_norm_(params, max_norm, opts)
  local fname = "clip_grad_norm_"
  if type(max_norm) ~= "number" or not (max_norm >= 0) then
    raise(string.format("%s: max_norm must be a number >= 0, got %s", fname, show(max_norm)))
  end
  opts = util.check_options(fname, opts, {"norm_type", "error_if_nonfinite"})
  local norm_type = opts.norm_type == nil and 2 or opts.norm_type
  if type(norm_type) ~= "number" or not (norm_type > 0) then
    raise(string.format("%s: norm_type must be a positive number or math.huge, got %s", fname,
      show(norm_type)))
  end
  local grads = grads_of(fname, params)
  if #grads == 0 then return 0.0 end
  local total = 0.0
  if norm_type == math.huge then
    for _, g in ipairs(grads) do
      if g:numel() > 0 then
        local v = g:norm(norm_type):item()
        -- A NaN must win (math.max would drop it), so error_if_nonfinite sees it.
        if v ~= v or v > total then total = v end
      end
    end
  else
    for _, g in ipairs(grads) do total = total + g:norm(norm_type):item() ^ norm_type end
    total = total ^ (1 / norm_type)
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
    raise(string.format("%s: clip_value must be a number >= 0, got %s", fname, show(clip_value)))
  end
  for _, g in ipairs(grads_of(fname, params)) do g:clamp_(-clip_value, clip_value) end
end

return M
