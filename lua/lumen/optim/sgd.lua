-- lumen.optim.sgd: stochastic gradient descent with momentum, dampening, Nesterov momentum,
-- weight decay and maximize, as torch.optim.SGD. Each parameter's update is one call of the
-- engine's fused lm.sgd_step (engine/include/lumen.h, "optimizer steps"):
--   d = ±grad (+ weight_decay * p); buf = d at the first step, else momentum * buf +
--   (1 - dampening) * d; d = nesterov and d + momentum * buf or buf; p = p - lr * d.
local lm = require "lumen.core"
local class = require "lumen.class"
local Optimizer = require "lumen.optim.optimizer"

local SGD = class("SGD", Optimizer)

-- name, default, kind; lr has no default (PyTorch requires it).
SGD.OPTIONS = {
  {"lr", nil, "nonneg"},
  {"momentum", 0, "nonneg"},
  {"dampening", 0, "number"},
  {"weight_decay", 0, "nonneg"},
  {"nesterov", false, "bool"},
  {"maximize", false, "bool"},
}

-- optim.SGD(params, {lr = 0.1, momentum = 0.9, ...})
function SGD:__init(params, opts)
  Optimizer.__init(self, params, self:_read_defaults(opts))
end

function SGD:check_group(g)
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    return string.format("nesterov momentum needs momentum > 0 and dampening 0 (got momentum %s, "
      .. "dampening %s)", tostring(g.momentum), tostring(g.dampening))
  end
  return nil
end

-- One update of every parameter that has a gradient. The momentum buffer is created at a
-- parameter's first step with momentum (PyTorch's state 'momentum_buffer').
function SGD:step(closure)
  local loss = self:_closure(closure)
  for _, group in ipairs(self.param_groups) do
    local opts = {
      lr = group.lr, momentum = group.momentum, dampening = group.dampening,
      weight_decay = group.weight_decay, nesterov = group.nesterov, maximize = group.maximize,
    }
    for _, p in ipairs(group.params) do
      if p.grad ~= nil then
        local buf, first = nil, false
        if group.momentum ~= 0 then
          local state = self.state[p]
          if state == nil then
            state = {}
            self.state[p] = state
          end
          buf = state.momentum_buffer
          if buf == nil then
            buf = lm.zeros_like(p)
            state.momentum_buffer = buf
            first = true
          end
        end
        lm.sgd_step(p, buf, first, opts)
      end
    end
  end
  return loss
end

return SGD
