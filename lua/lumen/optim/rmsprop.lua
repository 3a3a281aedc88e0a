-- lumen.optim.rmsprop: RMSprop, as torch.optim.RMSprop (centered, momentum, weight decay,
-- maximize). Each parameter's update is one call of the engine's fused lm.rmsprop_step:
--   d = ±grad (+ weight_decay * p); sq = alpha * sq + (1 - alpha) * d²;
--   centered: ga = alpha * ga + (1 - alpha) * d, avg = sqrt(sq - ga²) + eps, else sqrt(sq) + eps;
--   momentum: buf = momentum * buf + d / avg, p = p - lr * buf; else p = p - lr * d / avg.
-- State per parameter (PyTorch's names): step, square_avg, momentum_buffer (momentum > 0),
-- grad_avg (centered).
local lm = require "lumen.core"
local class = require "lumen.class"
local Optimizer = require "lumen.optim.optimizer"

local RMSprop = class("RMSprop", Optimizer)

RMSprop.OPTIONS = {
  {"lr", 1e-2, "nonneg"},
  {"alpha", 0.99, "nonneg"},
  {"eps", 1e-8, "nonneg"},
  {"weight_decay", 0, "nonneg"},
  {"momentum", 0, "nonneg"},
  {"centered", false, "bool"},
  {"maximize", false, "bool"},
}

-- optim.RMSprop(params, {lr = 1e-2, alpha = 0.99, eps = 1e-8, momentum = 0, centered = false})
function RMSprop:__init(params, opts)
  Optimizer.__init(self, params, self:_read_defaults(opts))
end

function RMSprop:step(closure)
  local loss = self:_closure(closure)
  for _, group in ipairs(self.param_groups) do
    local opts = {
      lr = group.lr, alpha = group.alpha, eps = group.eps, weight_decay = group.weight_decay,
      momentum = group.momentum, centered = group.centered, maximize = group.maximize,
    }
    for _, p in ipairs(group.params) do
      if p.grad ~= nil then
        local state = self.state[p]
        if state == nil then
          state = {step = 0, square_avg = lm.zeros_like(p)}
          self.state[p] = state
        end
        -- Buffers appear when a group turns momentum or centering on (a scheduler such as
        -- OneCycleLR may set momentum later).
        if group.momentum > 0 and state.momentum_buffer == nil then
          state.momentum_buffer = lm.zeros_like(p)
        end
        if group.centered and state.grad_avg == nil then
          state.grad_avg = lm.zeros_like(p)
        end
        lm.rmsprop_step(p, state.square_avg, group.momentum > 0 and state.momentum_buffer or nil,
          group.centered and state.grad_avg or nil, opts)
        state.step = state.step + 1
      end
    end
  end
  return loss
end

return RMSprop
