-- lumen.optim.adam: Adam and AdamW, as torch.optim.Adam / torch.optim.AdamW (with amsgrad and
-- maximize). Each parameter's update is one call of the engine's fused lm.adam_step:
--   d = ±grad; Adam: d = d + weight_decay * p; AdamW: p = p * (1 - lr * weight_decay);
--   m = beta1 * m + (1 - beta1) * d; v = beta2 * v + (1 - beta2) * d²; amsgrad: v = max(vmax, v);
--   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
-- State per parameter (PyTorch's names): step (a Lua integer), exp_avg, exp_avg_sq and, with
-- amsgrad, max_exp_avg_sq.
local lm = require "lumen.core"
local class = require "lumen.class"
local Optimizer = require "lumen.optim.optimizer"

local Adam = class("Adam", Optimizer)

Adam.OPTIONS = {
  {"lr", 1e-3, "nonneg"},
  {"betas", {0.9, 0.999}, "betas"},
  {"eps", 1e-8, "nonneg"},
  {"weight_decay", 0, "nonneg"},
  {"amsgrad", false, "bool"},
  {"maximize", false, "bool"},
}
-- AdamW decouples the weight decay from the gradient (Loshchilov & Hutter).
Adam.decoupled = false

-- optim.Adam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, ...})
function Adam:__init(params, opts)
  Optimizer.__init(self, params, self:_read_defaults(opts))
end

function Adam:step(closure)
  local loss = self:_closure(closure)
  for _, group in ipairs(self.param_groups) do
    local opts = {
      lr = group.lr, beta1 = group.betas[1], beta2 = group.betas[2], eps = group.eps,
      weight_decay = group.weight_decay, decoupled_weight_decay = self.decoupled,
      amsgrad = group.amsgrad, maximize = group.maximize,
    }
    for _, p in ipairs(group.params) do
      if p.grad ~= nil then
        local state = self.state[p]
        if state == nil then
          state = {step = 0, exp_avg = lm.zeros_like(p), exp_avg_sq = lm.zeros_like(p)}
          self.state[p] = state
        end
        -- amsgrad may be switched on in a group after steps were taken without it.
        if group.amsgrad and state.max_exp_avg_sq == nil then
          state.max_exp_avg_sq = lm.zeros_like(p)
        end
        local step = state.step + 1
        lm.adam_step(p, state.exp_avg, state.exp_avg_sq,
          group.amsgrad and state.max_exp_avg_sq or nil, step, opts)
        state.step = step
      end
    end
  end
  return loss
end

local AdamW = class("AdamW", Adam)

AdamW.OPTIONS = {
  {"lr", 1e-3, "nonneg"},
  {"betas", {0.9, 0.999}, "betas"},
  {"eps", 1e-8, "nonneg"},
  {"weight_decay", 1e-2, "nonneg"},
  {"amsgrad", false, "bool"},
  {"maximize", false, "bool"},
}
-- optim.AdamW(params, {lr = 1e-3, weight_decay = 1e-2, ...}): Adam's constructor and step with
-- these defaults and the decoupled decay.
AdamW.decoupled = true

return {Adam = Adam, AdamW = AdamW}
