-- lumen: `local lm = require "lumen"`. The C module lumen.core holds the tensor type and every
-- engine function; the Lua libraries load on first use, so a script that only uses tensors
-- starts fast:
--   lm.nn (modules, functional, init; also adds model:fit/evaluate/predict from lumen.train)
--   lm.train (callbacks: EarlyStopping, ModelCheckpoint...)   lm.metrics (accuracy, top-k, AUC)
--   lm.optim (optimizers, schedulers, clipping)      lm.data (datasets, loaders)
--   lm.save / lm.load / lm.checkpoint (safetensors files, lumen.serialize)
-- Tensor addressing is 0-based (dims, t[i], class labels); Lua sequences stay 1-based.
local lm = require "lumen.core"

local loaders = {
  nn = function()
    local nn = require "lumen.nn"
    require "lumen.train"
    return nn
  end,
  train = function()
    local _ = require "lumen.nn"
    return require "lumen.train"
  end,
  metrics = function() return require "lumen.metrics" end,
  optim = function() return require "lumen.optim" end,
  data = function() return require "lumen.data" end,
  save = function() return require("lumen.serialize").save end,
  load = function() return require("lumen.serialize").load end,
  checkpoint = function() return require("lumen.serialize").checkpoint end,
}

return setmetatable(lm, {
  __index = function(t, key)
    local load = loaders[key]
    if not load then return nil end
    local value = load()
    rawset(t, key, value)
    return value
  end,
})
