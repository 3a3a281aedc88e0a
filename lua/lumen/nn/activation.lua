-- lumen.nn.activation: the activation modules ReLU, LeakyReLU, GELU, SiLU, Sigmoid, Tanh,
-- Softmax and LogSoftmax, with PyTorch's arguments and repr. They have no parameters; each
-- forward is the binding's op. `inplace` is accepted where PyTorch has it: ReLU then works in
-- place (relu_); the others compute out of place (same result, the input is left alone).
local lm = require "lumen.core"
local class = require "lumen.class"
local mod = require "lumen.nn.module"

local Module = mod.Module
local util = require "lumen.nn.util"
local py = util.py

local M = {}

local function input_tensor(who, x)
  if not util.is_tensor(x) then
    error(string.format("%s: expected a tensor as input, got %s", who, util.show(x)), 4)
  end
end

-- A parameterless activation whose only option is inplace.
local function simple(name, fn, inplace_fn)
  local C = class(name, Module)
  M[name] = C

  function C:__init(...)
    Module.__init(self)
    local o = util.options(name, 3, {"inplace"}, {inplace = false}, ...)
    self.inplace = util.boolean(name, "inplace", o.inplace, 3)
  end

  function C:forward(x)
    input_tensor(name, x)
    if self.inplace and inplace_fn then return inplace_fn(x) end
    return fn(x)
  end

  function C:extra_repr() return self.inplace and "inplace=True" or "" end
  return C
end

simple("ReLU", lm.relu, lm.relu_)
simple("SiLU", lm.silu)

-- Sigmoid() and Tanh() take no arguments.
local function plain(name, fn)
  local C = class(name, Module)
  M[name] = C
  function C:__init() Module.__init(self) end
  function C:forward(x)
    input_tensor(name, x)
    return fn(x)
  end
  return C
end

plain("Sigmoid", lm.sigmoid)
plain("Tanh", lm.tanh)

-- LeakyReLU(negative_slope = 0.01, inplace = false)
local LeakyReLU = class("LeakyReLU", Module)
M.LeakyReLU = LeakyReLU

function LeakyReLU:__init(...)
  Module.__init(self)
  local o = util.options("LeakyReLU", 3, {"negative_slope", "inplace"},
    {negative_slope = 0.01, inplace = false}, ...)
  self.negative_slope = util.number("LeakyReLU", "negative_slope", o.negative_slope, 3)
  self.inplace = util.boolean("LeakyReLU", "inplace", o.inplace, 3)
end

function LeakyReLU:forward(x)
  input_tensor("LeakyReLU", x)
  return lm.leaky_relu(x, self.negative_slope)
end

function LeakyReLU:extra_repr()
  return "negative_slope=" .. py(self.negative_slope) .. (self.inplace and ", inplace=True" or "")
end

-- GELU(approximate = "none" | "tanh")
local GELU = class("GELU", Module)
M.GELU = GELU

function GELU:__init(...)
  Module.__init(self)
  local o = util.options("GELU", 3, {"approximate"}, {approximate = "none"}, ...)
  if o.approximate ~= "none" and o.approximate ~= "tanh" then
    error("GELU: approximate must be \"none\" or \"tanh\", got " .. util.show(o.approximate), 3)
  end
  self.approximate = o.approximate
end

function GELU:forward(x)
  input_tensor("GELU", x)
  return lm.gelu(x, self.approximate)
end

function GELU:extra_repr() return "approximate=" .. py(self.approximate) end

-- Softmax(dim) and LogSoftmax(dim): dim is required (0-based, negative from the end).
local function softmax_class(name, fn)
  local C = class(name, Module)
  M[name] = C

  function C:__init(...)
    Module.__init(self)
    local o = util.options(name, 3, {"dim"}, {}, ...)
    if o.dim == nil then
      error(name .. ": dim is required (" .. name .. "(1) normalises over dim 1)", 3)
    end
    self.dim = util.int(name, "dim", o.dim, nil, 3)
  end

  function C:forward(x)
    input_tensor(name, x)
    return fn(x, self.dim)
  end

  function C:extra_repr() return "dim=" .. self.dim end
  return C
end

softmax_class("Softmax", lm.softmax)
softmax_class("LogSoftmax", lm.log_softmax)

return M
