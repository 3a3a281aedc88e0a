-- lumen.nn: the nn table, PyTorch's torch.nn in Lua. Every module class (Module and the
-- containers from lumen.nn.module, the layers, activations, transformer blocks and losses),
-- nn.functional (lumen.nn.functional), nn.init (lumen.nn.initializers) and nn.utils
-- (clip_grad_norm_ and clip_grad_value_, also in optim).
--   local nn = require("lumen").nn
--   local model = nn.Sequential { nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10) }
--   local loss = nn.functional.cross_entropy(model(x), y)
-- See lumen.nn.module for user-defined modules, parameters and state_dict.
local mod = require "lumen.nn.module"
local util = require "lumen.nn.util"

local nn = {
  functional = require "lumen.nn.functional",
  init = require "lumen.nn.initializers",
}

for _, part in ipairs({
  {Module = mod.Module, Sequential = mod.Sequential, ModuleList = mod.ModuleList,
   ModuleDict = mod.ModuleDict},
  require "lumen.nn.layers",
  require "lumen.nn.activation",
  (require "lumen.nn.transformer"),
  (require "lumen.nn.loss"),
}) do
  for name, cls in pairs(part) do nn[name] = cls end
end

-- nn.Parameter(t, requires_grad = true): a leaf sharing t's memory that requires grad, which a
-- module registers as a parameter when it is assigned to a field.
function nn.Parameter(t, requires_grad)
  util.check_tensor("Parameter", "data", t, 2)
  if requires_grad ~= nil and type(requires_grad) ~= "boolean" then
    error("Parameter: requires_grad must be true or false, got " .. util.show(requires_grad), 2)
  end
  local p = t:detach()
  p.requires_grad = requires_grad ~= false
  return p
end

-- nn.utils, where PyTorch keeps gradient clipping (torch.nn.utils.clip_grad_norm_).
nn.utils = setmetatable({}, {__index = function(t, k)
  local clip = require "lumen.optim.clip"
  t.clip_grad_norm_, t.clip_grad_value_ = clip.clip_grad_norm_, clip.clip_grad_value_
  return rawget(t, k)
end})

-- True when v is a module (an instance of nn.Module or of a subclass).
nn.is_module = mod.is_module

return nn
