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

-- Makes a loss class. names: constructor options in PyTorch's order; buffers: those of them
-- that are tensors kept as buffers; fn(self, input, target) computes the loss.
local function loss_class(name, names, defaults, buffers, fn)
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
    return fn(self, input, target)
  end

  function C:extra_repr()
    return self.reduction ~= "mean" and ("reduction=" .. util.py(self.reduction)) or ""
  end
  return C
end

loss_class("CrossEntropyLoss", {"weight", "ignore_index", "reduction", "label_smoothing"},
  {ignore_index = -100, reduction = "mean", label_smoothing = 0.0}, {weight = true},
  function(self, input, target)
    return lm.cross_entropy(input, target, {weight = self.weight, ignore_index = self.ignore_index,
      reduction = self.reduction, label_smoothing = self.label_smoothing})
  end)

loss_class("NLLLoss", {"weight", "ignore_index", "reduction"},
  {ignore_index = -100, reduction = "mean"}, {weight = true},
  function(self, input, target)
    return lm.nll_loss(input, target, {weight = self.weight, ignore_index = self.ignore_index,
      reduction = self.reduction})
  end)

loss_class("MSELoss", {"reduction"}, {reduction = "mean"}, {},
  function(self, input, target) return lm.mse_loss(input, target, {reduction = self.reduction}) end)

loss_class("L1Loss", {"reduction"}, {reduction = "mean"}, {},
  function(self, input, target) return lm.l1_loss(input, target, {reduction = self.reduction}) end)

loss_class("SmoothL1Loss", {"reduction", "beta"}, {reduction = "mean", beta = 1.0}, {},
  function(self, input, target)
    return lm.smooth_l1_loss(input, target, {beta = self.beta, reduction = self.reduction})
  end)

loss_class("BCELoss", {"weight", "reduction"}, {reduction = "mean"}, {weight = true},
  function(self, input, target)
    return lm.binary_cross_entropy(input, target, {weight = self.weight,
      reduction = self.reduction})
  end)

loss_class("BCEWithLogitsLoss", {"weight", "reduction", "pos_weight"}, {reduction = "mean"},
  {weight = true, pos_weight = true},
  function(self, input, target)
    return lm.binary_cross_entropy_with_logits(input, target, {weight = self.weight,
      pos_weight = self.pos_weight, reduction = self.reduction})
  end)

return M
