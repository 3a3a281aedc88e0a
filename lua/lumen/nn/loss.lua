-- lumen.nn.loss: the loss modules of torch.nn (CrossEntropyLoss, NLLLoss, MSELoss, L1Loss,
-- SmoothL1Loss, BCELoss, BCEWithLogitsLoss), for code written the PyTorch way:
--   local criterion = nn.CrossEntropyLoss{label_smoothing = 0.1}
--   local loss = criterion(model(x), y)
-- Each forward(input, target) is the binding's functional op with the options given at
-- construction, positionally in PyTorch's order or as a table. A class weight (weight,
-- pos_weight) is a buffer, as in PyTorch, so it appears in state_dict.
local lm = require "lumen.core"
local class = require "lumen.class"
local Module = require("lumen.nn.module").Module
local util = require "lumen.nn.util"

local M = {}

local REDUCTIONS = {mean = true, sum = true, none = true}

-- Makes a loss class. names: constructor options in PyTorch's order, which are also the
-- options forward passes to op(input, target, opts); buffers: those of them that are tensors,
-- kept as buffers. The options table is built once (util.forward_options), not at every call.
local function loss_class(name, names, defaults, buffers, op)
  local C = class(name, Module)
  M[name] = C

  function C:__init(...)
    Module.__init(self)
    local o = util.options(name, 3, names, defaults, ...)
    if not REDUCTIONS[o.reduction] then
      error(string.format('%s: reduction must be "mean", "sum" or "none", got %s', name,
        util.show(o.reduction)), 3)
    end
    for _, k in ipairs(names) do
      if buffers[k] then
        if o[k] ~= nil then util.check_tensor(name, k, o[k], 3) end
        self:register_buffer(k, o[k])
      else
        self[k] = o[k]
      end
    end
  end

  function C:forward(input, target)
    util.check_tensor(name, "input", input, 3)
    util.check_tensor(name, "target", target, 3)
    return op(input, target, util.forward_options(self, names))
  end

  function C:extra_repr()
    return self.reduction ~= "mean" and ("reduction=" .. util.py(self.reduction)) or ""
  end
  return C
end

loss_class("CrossEntropyLoss", {"weight", "ignore_index", "reduction", "label_smoothing"},
  {ignore_index = -100, reduction = "mean", label_smoothing = 0.0}, {weight = true},
  lm.cross_entropy)

loss_class("NLLLoss", {"weight", "ignore_index", "reduction"},
  {ignore_index = -100, reduction = "mean"}, {weight = true}, lm.nll_loss)

loss_class("MSELoss", {"reduction"}, {reduction = "mean"}, {}, lm.mse_loss)

loss_class("L1Loss", {"reduction"}, {reduction = "mean"}, {}, lm.l1_loss)

loss_class("SmoothL1Loss", {"reduction", "beta"}, {reduction = "mean", beta = 1.0}, {},
  lm.smooth_l1_loss)

loss_class("BCELoss", {"weight", "reduction"}, {reduction = "mean"}, {weight = true},
  lm.binary_cross_entropy)

loss_class("BCEWithLogitsLoss", {"weight", "reduction", "pos_weight"}, {reduction = "mean"},
  {weight = true, pos_weight = true}, lm.binary_cross_entropy_with_logits)

return M
