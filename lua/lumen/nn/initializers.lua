-- lumen.nn.initializers: nn.init, PyTorch's torch.nn.init. Each function fills its tensor in
-- place without recording gradients and returns it; arguments are positional in PyTorch's
-- order or a trailing options table:
--   nn.init.kaiming_uniform_(w, {a = math.sqrt(5)})   nn.init.xavier_normal_(w, 0.5)
-- Fans follow PyTorch: fan_in = size(1) * receptive field, fan_out = size(0) * receptive field,
-- the receptive field being the product of the sizes after the first two dims.
local lm = require "lumen.core"
local util = require "lumen.nn.util"

local init = {}

local function tensor_arg(who, t)
  return util.check_tensor(who, "the tensor", t, 3)
end

-- The gain PyTorch recommends for a nonlinearity (param: leaky_relu's negative slope).
function init.calculate_gain(nonlinearity, param)
  local linear = {linear = true, conv1d = true, conv2d = true, conv3d = true,
    conv_transpose1d = true, conv_transpose2d = true, conv_transpose3d = true, sigmoid = true}
  if linear[nonlinearity] then return 1 end
  if nonlinearity == "tanh" then return 5 / 3 end
  if nonlinearity == "relu" then return math.sqrt(2) end
  if nonlinearity == "selu" then return 3 / 4 end
  if nonlinearity == "leaky_relu" then
    local slope = param
    if slope == nil then slope = 0.01 end
    if type(slope) ~= "number" then
      error("calculate_gain: negative_slope must be a number, got " .. util.show(slope), 2)
    end
    return math.sqrt(2 / (1 + slope * slope))
  end
  error("calculate_gain: unsupported nonlinearity " .. util.show(nonlinearity) ..
    " (linear, conv1d, conv2d, conv3d, conv_transpose1d/2d/3d, sigmoid, tanh, relu, " ..
    "leaky_relu, selu)", 2)
end

-- fan_in, fan_out of a tensor with at least 2 dims.
function init.calculate_fan_in_and_fan_out(t)
  tensor_arg("calculate_fan_in_and_fan_out", t)
  local shape = t.shape
  if #shape < 2 then
    error("calculate_fan_in_and_fan_out: fan in and fan out cannot be computed for a tensor " ..
      "with fewer than 2 dims (shape " .. util.shape_str(t) .. ")", 2)
  end
  local receptive = 1
  for i = 3, #shape do receptive = receptive * shape[i] end
  return shape[2] * receptive, shape[1] * receptive
end

local function fan(who, t, mode, lvl)
  if mode ~= "fan_in" and mode ~= "fan_out" then
    error(who .. ": mode must be \"fan_in\" or \"fan_out\", got " .. util.show(mode), lvl + 1)
  end
  if #t.shape < 2 then
    error(who .. ": fan in and fan out cannot be computed for a tensor with fewer than 2 dims " ..
      "(shape " .. util.shape_str(t) .. ")", lvl + 1)
  end
  local fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
  return mode == "fan_in" and fan_in or fan_out
end

function init.uniform_(t, ...)
  tensor_arg("uniform_", t)
  local o = util.options("uniform_", 2, {"a", "b"}, {a = 0, b = 1}, ...)
  local _ <close> = lm.no_grad()
  return t:uniform_(util.number("uniform_", "a", o.a, 2), util.number("uniform_", "b", o.b, 2))
end

function init.normal_(t, ...)
  tensor_arg("normal_", t)
  local o = util.options("normal_", 2, {"mean", "std"}, {mean = 0, std = 1}, ...)
  local _ <close> = lm.no_grad()
  return t:normal_(util.number("normal_", "mean", o.mean, 2),
    util.number("normal_", "std", o.std, 2))
end

function init.constant_(t, val)
  tensor_arg("constant_", t)
  util.number("constant_", "val", val, 2)
  local _ <close> = lm.no_grad()
  return t:fill_(val)
end

function init.zeros_(t)
  tensor_arg("zeros_", t)
  local _ <close> = lm.no_grad()
  return t:zero_()
end

function init.ones_(t)
  tensor_arg("ones_", t)
  local _ <close> = lm.no_grad()
  return t:fill_(1)
end

-- U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
function init.xavier_uniform_(t, ...)
  tensor_arg("xavier_uniform_", t)
  local o = util.options("xavier_uniform_", 2, {"gain"}, {gain = 1}, ...)
  local fan_in, fan_out = fan("xavier_uniform_", t, "fan_in", 2),
    fan("xavier_uniform_", t, "fan_out", 2)
  local std = util.number("xavier_uniform_", "gain", o.gain, 2) * math.sqrt(2 / (fan_in + fan_out))
  local a = math.sqrt(3) * std
  local _ <close> = lm.no_grad()
  return t:uniform_(-a, a)
end

-- N(0, std²) with std = gain * sqrt(2 / (fan_in + fan_out)).
function init.xavier_normal_(t, ...)
  tensor_arg("xavier_normal_", t)
  local o = util.options("xavier_normal_", 2, {"gain"}, {gain = 1}, ...)
  local fan_in, fan_out = fan("xavier_normal_", t, "fan_in", 2),
    fan("xavier_normal_", t, "fan_out", 2)
  local std = util.number("xavier_normal_", "gain", o.gain, 2) * math.sqrt(2 / (fan_in + fan_out))
  local _ <close> = lm.no_grad()
  return t:normal_(0, std)
end

local function kaiming_std(who, t, ...)
  local o = util.options(who, 3, {"a", "mode", "nonlinearity"},
    {a = 0, mode = "fan_in", nonlinearity = "leaky_relu"}, ...)
  local n = fan(who, t, o.mode, 3)
  local ok, gain = pcall(init.calculate_gain, o.nonlinearity, util.number(who, "a", o.a, 3))
  if not ok then error(who .. ": " .. tostring(gain):gsub("^.-calculate_gain: ", ""), 3) end
  return gain / math.sqrt(n)
end

-- U(-bound, bound) with bound = gain * sqrt(3 / fan); a is leaky_relu's negative slope.
function init.kaiming_uniform_(t, ...)
  tensor_arg("kaiming_uniform_", t)
  local bound = math.sqrt(3) * kaiming_std("kaiming_uniform_", t, ...)
  local _ <close> = lm.no_grad()
  return t:uniform_(-bound, bound)
end

-- N(0, std²) with std = gain / sqrt(fan).
function init.kaiming_normal_(t, ...)
  tensor_arg("kaiming_normal_", t)
  local std = kaiming_std("kaiming_normal_", t, ...)
  local _ <close> = lm.no_grad()
  return t:normal_(0, std)
end

-- erfc(x) for a Lua number (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
local function erfc(x)
  local z = math.abs(x)
  local t = 1 / (1 + 0.5 * z)
  local r = t * math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t *
    (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))))
  return x >= 0 and r or 2 - r
end

-- The standard normal CDF of a Lua number.
local function norm_cdf(x) return 0.5 * erfc(-x / math.sqrt(2)) end

-- erfinv of a tensor with values in (-1, 1): Giles' single-precision approximation ("Approximating
-- the erfinv function", 2010), both branches computed and the right one picked per element.
local function erfinv(x)
  local w = ((x:neg() + 1) * (x + 1)):log():neg()
  local c = w - 2.5
  local p = c * 2.81022636e-08 + 3.43273939e-07
  for _, k in ipairs({-3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
    -0.00417768164, 0.246640727, 1.50140941}) do
    p = p * c + k
  end
  local s = w:sqrt() - 3
  local q = s * -0.000200214257 + 0.000100950558
  for _, k in ipairs({0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
    0.00943887047, 1.00167406, 2.83297682}) do
    q = q * s + k
  end
  return lm.where(w:lt(5), p, q) * x
end

-- N(mean, std²) restricted to [a, b], as PyTorch: a uniform number between the normal CDF's
-- values at a and b, mapped back through the inverse CDF (computed in f64), then clamped to
-- [a, b] against rounding.
function init.trunc_normal_(t, ...)
  tensor_arg("trunc_normal_", t)
  local o = util.options("trunc_normal_", 2, {"mean", "std", "a", "b"},
    {mean = 0, std = 1, a = -2, b = 2}, ...)
  local mean, std = util.number("trunc_normal_", "mean", o.mean, 2),
    util.number("trunc_normal_", "std", o.std, 2)
  local a, b = util.number("trunc_normal_", "a", o.a, 2), util.number("trunc_normal_", "b", o.b, 2)
  if not (a < b) or not (std > 0) then
    error(string.format("trunc_normal_: needs a < b and std > 0, got a=%g b=%g std=%g", a, b,
      std), 2)
  end
  local lo, hi = norm_cdf((a - mean) / std), norm_cdf((b - mean) / std)
  local _ <close> = lm.no_grad()
  local u = lm.empty(t.shape, {dtype = "f64"}):uniform_(2 * lo - 1, 2 * hi - 1)
  local x = erfinv(u) * (std * math.sqrt(2)) + mean
  return t:copy_(x:clamp(a, b))
end

return init
