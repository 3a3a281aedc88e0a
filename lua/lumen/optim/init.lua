-- lumen.optim: optimizers (SGD, Adam, AdamW, RMSprop), learning-rate schedulers and gradient
-- clipping, with PyTorch's names and semantics.
--
--   local opt = optim.AdamW(model:parameters(), {lr = 1e-3})
--   local sched = optim.OneCycleLR(opt, 1e-2, {total_steps = epochs * #loader})
--   opt:zero_grad(); loss:backward(); optim.clip_grad_norm_(model:parameters(), 1.0)
--   opt:step(); sched:step()
--
-- The schedulers are also under optim.lr_scheduler (optim.lr_scheduler.StepLR), as in PyTorch.
local adam = require "lumen.optim.adam"
local clip = require "lumen.optim.clip"
local lr_scheduler = require "lumen.optim.lr_scheduler"

local optim = {
  Optimizer = require "lumen.optim.optimizer",
  SGD = require "lumen.optim.sgd",
  Adam = adam.Adam,
  AdamW = adam.AdamW,
  RMSprop = require "lumen.optim.rmsprop",
  lr_scheduler = lr_scheduler,
  clip_grad_norm_ = clip.clip_grad_norm_,
  clip_grad_value_ = clip.clip_grad_value_,
}

for name, scheduler in pairs(lr_scheduler) do optim[name] = scheduler end

return optim
