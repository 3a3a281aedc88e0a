-- lumen.nn.layers: the layers with PyTorch's names, parameters, defaults and initialisation:
-- Linear, Conv1d, Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
-- BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm, Dropout, Embedding, Flatten, Identity.
--
-- Constructors take PyTorch's positional arguments and/or a trailing options table, plus
-- `dtype` ("f32" default, or "f64") for the parameters:
--   nn.Linear(784, 128)   nn.Linear(784, 128, {bias = false})   nn.Linear(4, 3, {dtype = "f64"})
--   nn.Conv2d(3, 16, 3, {stride = 2, padding = 1})   nn.BatchNorm2d(16, {momentum = 0.01})
-- A BatchNorm momentum of None (cumulative moving average) is written BatchNorm2d(16, 1e-5, nil)
-- or {momentum = false}, since a table cannot hold nil.
-- Each forward runs the binding's op with the module's tensors (lm.linear, lm.conv2d, ...);
-- a bad input raises an error naming the module and both shapes.
local lm = require "lumen.core"
local class = require "lumen.class"
local mod = require "lumen.nn.module"
local init = require "lumen.nn.initializers"

local Module = mod.Module
local util = require "lumen.nn.util"
local is_tensor, show, shape_str, py = util.is_tensor, util.show, util.shape_str, util.py

local M = {}

-- A new parameter: an uninitialised leaf that requires grad (reset_parameters fills it).
local function param(shape, dtype)
  return lm.empty(shape, {dtype = dtype}):requires_grad_()
end

-- Raises unless x is a tensor; lvl as in util (3 from a forward called through __call).
local function input_tensor(who, x, lvl)
  if not is_tensor(x) then
    error(string.format("%s: expected a tensor as input, got %s", who, show(x)), (lvl or 3) + 1)
  end
end

-- U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for a bias, as PyTorch's Linear and conv layers.
local function bias_uniform_(b, fan_in)
  local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
  init.uniform_(b, -bound, bound)
end

-- ---- Linear -----------------------------------------------------------------------------------

-- Linear(in_features, out_features, bias = true): y = x · weightᵀ + bias; weight [out, in].
local Linear = class("Linear", Module)
M.Linear = Linear

function Linear:__init(in_features, out_features, ...)
  Module.__init(self)
  local o = util.options("Linear", 3, {"bias", "dtype"}, {bias = true, dtype = "f32"}, ...)
  self.in_features = util.int("Linear", "in_features", in_features, 1, 3)
  self.out_features = util.int("Linear", "out_features", out_features, 1, 3)
  local dt = util.float_dtype("Linear", o.dtype, 3)
  self.weight = param({self.out_features, self.in_features}, dt)
  if util.boolean("Linear", "bias", o.bias, 3) then
    self.bias = param({self.out_features}, dt)
  else
    self:register_parameter("bias", nil)
  end
  self:reset_parameters()
end

-- PyTorch's default: kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), and the
-- same bound for the bias.
function Linear:reset_parameters()
  init.kaiming_uniform_(self.weight, {a = math.sqrt(5)})
  if self.bias then bias_uniform_(self.bias, self.in_features) end
end

function Linear:forward(x)
  input_tensor("Linear", x)
  if x.ndim == 0 or x:size(-1) ~= self.in_features then
    error(string.format("Linear: input of shape %s does not fit in_features=%d (weight of " ..
      "shape %s)", shape_str(x), self.in_features, shape_str(self.weight)), 3)
  end
  return lm.linear(x, self.weight, self.bias)
end

function Linear:extra_repr()
  return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features,
    self.out_features, py(self.bias ~= nil))
end

-- ---- convolutions -----------------------------------------------------------------------------

local function all_equal(t, v)
  for _, x in ipairs(t) do
    if x ~= v then return false end
  end
  return true
end

-- Shared by Conv1d, Conv2d and ConvTranspose2d: n spatial dims, PyTorch's argument order
-- (names), weight [out, in/groups, *k] or, transposed, [in, out/groups, *k].
local function conv_setup(self, who, n, transposed, names, in_channels, out_channels,
                          kernel_size, ...)
  local lvl = 4
  local o = util.options(who, lvl, names, {stride = 1, padding = 0, output_padding = 0,
    dilation = 1, groups = 1, bias = true, padding_mode = "zeros", dtype = "f32"}, ...)
  self.in_channels = util.int(who, "in_channels", in_channels, 1, lvl)
  self.out_channels = util.int(who, "out_channels", out_channels, 1, lvl)
  self.kernel_size = util.tuple(who, "kernel_size", kernel_size, n, 1, lvl)
  self.stride = util.tuple(who, "stride", o.stride, n, 1, lvl)
  self.dilation = util.tuple(who, "dilation", o.dilation, n, 1, lvl)
  self.groups = util.int(who, "groups", o.groups, 1, lvl)
  if o.padding_mode ~= "zeros" then
    error(string.format("%s: padding_mode %s is not supported (only \"zeros\")", who,
      show(o.padding_mode)), lvl + 1)
  end
  self.padding_mode = "zeros"
  if type(o.padding) == "string" and not transposed then
    if o.padding == "same" then
      if not all_equal(self.stride, 1) then
        error(who .. ": padding=\"same\" needs stride 1, got stride=" .. py(self.stride), lvl + 1)
      end
      for i = 1, n do
        if self.dilation[i] * (self.kernel_size[i] - 1) % 2 ~= 0 then
          error(string.format("%s: padding=\"same\" with kernel_size=%s and dilation=%s needs " ..
            "uneven padding, which is not supported: pad explicitly", who, py(self.kernel_size),
            py(self.dilation)), lvl + 1)
        end
      end
    elseif o.padding ~= "valid" then
      error(who .. ": padding must be an integer, a tuple, \"same\" or \"valid\", got " ..
        show(o.padding), lvl + 1)
    end
    self.padding = o.padding
  else
    self.padding = util.tuple(who, "padding", o.padding, n, 0, lvl)
  end
  if transposed then
    self.output_padding = util.tuple(who, "output_padding", o.output_padding, n, 0, lvl)
  end
  if self.in_channels % self.groups ~= 0 then
    error(string.format("%s: in_channels=%d must be divisible by groups=%d", who,
      self.in_channels, self.groups), lvl + 1)
  end
  if self.out_channels % self.groups ~= 0 then
    error(string.format("%s: out_channels=%d must be divisible by groups=%d", who,
      self.out_channels, self.groups), lvl + 1)
  end
  local dt = util.float_dtype(who, o.dtype, lvl)
  local shape = transposed and {self.in_channels, self.out_channels // self.groups}
    or {self.out_channels, self.in_channels // self.groups}
  for i = 1, n do shape[2 + i] = self.kernel_size[i] end
  self.weight = param(shape, dt)
  if util.boolean(who, "bias", o.bias, lvl) then
    self.bias = param({self.out_channels}, dt)
  else
    self:register_parameter("bias", nil)
  end
  self:reset_parameters()
end

-- PyTorch's default for every conv: kaiming_uniform_(a = sqrt(5)) on the weight and
-- U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the bias, fan_in taken from the weight's shape.
local function conv_reset(self)
  init.kaiming_uniform_(self.weight, {a = math.sqrt(5)})
  if self.bias then
    local fan_in = init.calculate_fan_in_and_fan_out(self.weight)
    bias_uniform_(self.bias, fan_in)
  end
end

local function conv_repr(self)
  local s = string.format("%d, %d, kernel_size=%s, stride=%s", self.in_channels,
    self.out_channels, py(self.kernel_size), py(self.stride))
  if type(self.padding) == "string" then
    s = s .. ", padding=" .. self.padding
  elseif not all_equal(self.padding, 0) then
    s = s .. ", padding=" .. py(self.padding)
  end
  if not all_equal(self.dilation, 1) then s = s .. ", dilation=" .. py(self.dilation) end
  if self.output_padding and not all_equal(self.output_padding, 0) then
    s = s .. ", output_padding=" .. py(self.output_padding)
  end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if self.bias == nil then s = s .. ", bias=False" end
  return s
end

-- Checks x against the layer (n spatial dims, batched or not); returns x batched and whether
-- it was unbatched.
local function conv_input(self, who, n, x)
  input_tensor(who, x, 4)
  local nd = x.ndim
  if nd ~= n + 2 and nd ~= n + 1 then
    error(string.format("%s: expected a %dD (batched) or %dD (unbatched) input, got shape %s",
      who, n + 2, n + 1, shape_str(x)), 4)
  end
  local c = x:size(nd - n - 1)
  if c ~= self.in_channels then
    error(string.format("%s: expected %d input channels (in_channels) in dim %d, got input " ..
      "of shape %s (weight of shape %s)", who, self.in_channels, nd - n - 1, shape_str(x),
      shape_str(self.weight)), 4)
  end
  if nd == n + 1 then return x:unsqueeze(0), true end
  return x, false
end

local conv_names = {"stride", "padding", "dilation", "groups", "bias", "padding_mode", "dtype"}

-- The fields each forward passes to its op as options (util.forward_options).
local conv_op_keys = {"stride", "padding", "dilation", "groups"}
local transposed_op_keys = {"stride", "padding", "output_padding", "groups", "dilation"}

-- One convolution class: its name, spatial dims, whether it is transposed, its constructor's
-- option names in PyTorch's order, the options its op takes, and the op.
local function conv_class(name, dims, transposed, names, op_keys, op)
  local C = class(name, Module)
  M[name] = C
  function C:__init(in_channels, out_channels, kernel_size, ...)
    Module.__init(self)
    conv_setup(self, name, dims, transposed, names, in_channels, out_channels, kernel_size, ...)
  end
  C.reset_parameters = conv_reset
  C.extra_repr = conv_repr
  function C:forward(x)
    local xb, unbatched = conv_input(self, name, dims, x)
    local y = op(xb, self.weight, self.bias, util.forward_options(self, op_keys))
    if unbatched then return y:squeeze(0) end
    return y
  end
  return C
end

-- Conv1d(in_channels, out_channels, kernel_size, stride = 1, padding = 0, dilation = 1,
-- groups = 1, bias = true): x [N, C, L] or [C, L].
conv_class("Conv1d", 1, false, conv_names, conv_op_keys, lm.conv1d)

-- Conv2d(in_channels, out_channels, kernel_size, stride = 1, padding = 0, dilation = 1,
-- groups = 1, bias = true): x [N, C, H, W] or [C, H, W]; sizes are integers or {h, w};
-- padding may also be "same" or "valid".
conv_class("Conv2d", 2, false, conv_names, conv_op_keys, lm.conv2d)

-- ConvTranspose2d(in_channels, out_channels, kernel_size, stride = 1, padding = 0,
-- output_padding = 0, groups = 1, bias = true, dilation = 1): PyTorch's order, where groups
-- comes before dilation; weight [in, out/groups, kH, kW].
conv_class("ConvTranspose2d", 2, true, {"stride", "padding", "output_padding", "groups", "bias",
  "dilation", "padding_mode", "dtype"}, transposed_op_keys, lm.conv_transpose2d)

-- ---- pooling ----------------------------------------------------------------------------------

-- A pooling size as given (an integer or {h, w}), checked; kept in that form for extra_repr.
local function pool_size(who, name, v, min, lvl)
  util.tuple(who, name, v, 2, min, lvl + 1)
  if type(v) == "table" then return {v[1], v[2]} end
  return math.tointeger(v)
end

-- MaxPool2d(kernel_size, stride = kernel_size, padding = 0, dilation = 1,
-- return_indices = false, ceil_mode = false); with return_indices forward returns values,
-- indices.
local MaxPool2d = class("MaxPool2d", Module)
M.MaxPool2d = MaxPool2d

function MaxPool2d:__init(kernel_size, ...)
  Module.__init(self)
  local o = util.options("MaxPool2d", 3, {"stride", "padding", "dilation", "return_indices",
    "ceil_mode"}, {padding = 0, dilation = 1, return_indices = false, ceil_mode = false}, ...)
  self.kernel_size = pool_size("MaxPool2d", "kernel_size", kernel_size, 1, 3)
  self.stride = o.stride == nil and self.kernel_size or pool_size("MaxPool2d", "stride",
    o.stride, 1, 3)
  self.padding = pool_size("MaxPool2d", "padding", o.padding, 0, 3)
  self.dilation = pool_size("MaxPool2d", "dilation", o.dilation, 1, 3)
  self.return_indices = util.boolean("MaxPool2d", "return_indices", o.return_indices, 3)
  self.ceil_mode = util.boolean("MaxPool2d", "ceil_mode", o.ceil_mode, 3)
end

local max_pool_op_keys = {"stride", "padding", "dilation", "ceil_mode", "return_indices"}

function MaxPool2d:forward(x)
  input_tensor("MaxPool2d", x)
  return lm.max_pool2d(x, self.kernel_size, util.forward_options(self, max_pool_op_keys))
end

function MaxPool2d:extra_repr()
  return string.format("kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s",
    py(self.kernel_size), py(self.stride), py(self.padding), py(self.dilation),
    py(self.ceil_mode))
end

-- AvgPool2d(kernel_size, stride = kernel_size, padding = 0, ceil_mode = false,
-- count_include_pad = true).
local AvgPool2d = class("AvgPool2d", Module)
M.AvgPool2d = AvgPool2d

function AvgPool2d:__init(kernel_size, ...)
  Module.__init(self)
  local o = util.options("AvgPool2d", 3, {"stride", "padding", "ceil_mode", "count_include_pad"},
    {padding = 0, ceil_mode = false, count_include_pad = true}, ...)
  self.kernel_size = pool_size("AvgPool2d", "kernel_size", kernel_size, 1, 3)
  self.stride = o.stride == nil and self.kernel_size or pool_size("AvgPool2d", "stride",
    o.stride, 1, 3)
  self.padding = pool_size("AvgPool2d", "padding", o.padding, 0, 3)
  self.ceil_mode = util.boolean("AvgPool2d", "ceil_mode", o.ceil_mode, 3)
  self.count_include_pad = util.boolean("AvgPool2d", "count_include_pad", o.count_include_pad, 3)
end

local avg_pool_op_keys = {"stride", "padding", "ceil_mode", "count_include_pad"}

function AvgPool2d:forward(x)
  input_tensor("AvgPool2d", x)
  return lm.avg_pool2d(x, self.kernel_size, util.forward_options(self, avg_pool_op_keys))
end

function AvgPool2d:extra_repr()
  return string.format("kernel_size=%s, stride=%s, padding=%s", py(self.kernel_size),
    py(self.stride), py(self.padding))
end

-- AdaptiveAvgPool2d(output_size): an integer or {h, w}.
local AdaptiveAvgPool2d = class("AdaptiveAvgPool2d", Module)
M.AdaptiveAvgPool2d = AdaptiveAvgPool2d

function AdaptiveAvgPool2d:__init(output_size)
  Module.__init(self)
  self.output_size = pool_size("AdaptiveAvgPool2d", "output_size", output_size, 1, 3)
end

function AdaptiveAvgPool2d:forward(x)
  input_tensor("AdaptiveAvgPool2d", x)
  return lm.adaptive_avg_pool2d(x, self.output_size)
end

function AdaptiveAvgPool2d:extra_repr()
  return "output_size=" .. py(self.output_size)
end

-- ---- normalisation ----------------------------------------------------------------------------

-- BatchNorm1d / BatchNorm2d(num_features, eps = 1e-5, momentum = 0.1, affine = true,
-- track_running_stats = true). Parameters weight (1) and bias (0); buffers running_mean (0),
-- running_var (1) and num_batches_tracked (i64, 0-dim), as PyTorch. Training normalises with
-- the batch's statistics and updates the running ones (momentum nil: cumulative average over
-- the batches seen); eval uses the running statistics.
local function batchnorm_class(name, dims_ok, dims_text)
  local BN = class(name, Module)

  function BN:__init(num_features, ...)
    Module.__init(self)
    local cumulative = select("#", ...) >= 2 and select(2, ...) == nil
    local o = util.options(name, 3, {"eps", "momentum", "affine", "track_running_stats",
      "dtype"}, {eps = 1e-5, momentum = 0.1, affine = true, track_running_stats = true,
      dtype = "f32"}, ...)
    self.num_features = util.int(name, "num_features", num_features, 1, 3)
    self.eps = util.number(name, "eps", o.eps, 3)
    if cumulative or o.momentum == false then
      self.momentum = nil
    else
      self.momentum = util.number(name, "momentum", o.momentum, 3)
    end
    self.affine = util.boolean(name, "affine", o.affine, 3)
    self.track_running_stats = util.boolean(name, "track_running_stats",
      o.track_running_stats, 3)
    local dt = util.float_dtype(name, o.dtype, 3)
    if self.affine then
      self.weight = param({self.num_features}, dt)
      self.bias = param({self.num_features}, dt)
    else
      self:register_parameter("weight", nil)
      self:register_parameter("bias", nil)
    end
    if self.track_running_stats then
      self:register_buffer("running_mean", lm.zeros({self.num_features}, {dtype = dt}))
      self:register_buffer("running_var", lm.ones({self.num_features}, {dtype = dt}))
      self:register_buffer("num_batches_tracked", lm.tensor(0, {dtype = "i64"}))
    else
      self:register_buffer("running_mean", nil)
      self:register_buffer("running_var", nil)
      self:register_buffer("num_batches_tracked", nil)
    end
    self:reset_parameters()
  end

  function BN:reset_running_stats()
    if self.track_running_stats then
      local _ <close> = lm.no_grad()
      self.running_mean:zero_()
      self.running_var:fill_(1)
      self.num_batches_tracked:zero_()
    end
  end

  function BN:reset_parameters()
    self:reset_running_stats()
    if self.affine then
      init.ones_(self.weight)
      init.zeros_(self.bias)
    end
  end

  function BN:forward(x)
    input_tensor(name, x)
    local nd = x.ndim
    if not dims_ok[nd] then
      error(string.format("%s: expected %s input, got shape %s", name, dims_text, shape_str(x)),
        3)
    end
    if x:size(1) ~= self.num_features then
      error(string.format("%s: expected %d channels (num_features) in dim 1, got input of " ..
        "shape %s", name, self.num_features, shape_str(x)), 3)
    end
    local factor = self.momentum or 0
    if self.training and self.track_running_stats then
      do
        local _ <close> = lm.no_grad()
        self.num_batches_tracked:add_(1)
      end
      if self.momentum == nil then factor = 1 / self.num_batches_tracked:item() end
    end
    local batch_stats = self.training or (self.running_mean == nil and self.running_var == nil)
    local use_running = not self.training or self.track_running_stats
    return lm.batch_norm(x, use_running and self.running_mean or nil,
      use_running and self.running_var or nil, self.weight, self.bias,
      {training = batch_stats, momentum = factor, eps = self.eps})
  end

  function BN:extra_repr()
    return string.format("%d, eps=%s, momentum=%s, affine=%s, track_running_stats=%s",
      self.num_features, py(self.eps), py(self.momentum), py(self.affine),
      py(self.track_running_stats))
  end

  return BN
end

M.BatchNorm1d = batchnorm_class("BatchNorm1d", {[2] = true, [3] = true}, "2D or 3D")
M.BatchNorm2d = batchnorm_class("BatchNorm2d", {[4] = true}, "4D")

-- LayerNorm(normalized_shape, eps = 1e-5, elementwise_affine = true, bias = true): normalises
-- over the last dims, whose sizes are normalized_shape (an integer or a sequence).
local LayerNorm = class("LayerNorm", Module)
M.LayerNorm = LayerNorm

function LayerNorm:__init(normalized_shape, ...)
  Module.__init(self)
  local o = util.options("LayerNorm", 3, {"eps", "elementwise_affine", "bias", "dtype"},
    {eps = 1e-5, elementwise_affine = true, bias = true, dtype = "f32"}, ...)
  local shape = {}
  if type(normalized_shape) == "table" and getmetatable(normalized_shape) == nil then
    if #normalized_shape == 0 then
      error("LayerNorm: normalized_shape must not be empty", 3)
    end
    for i, v in ipairs(normalized_shape) do
      shape[i] = util.int("LayerNorm", "normalized_shape", v, 1, 3)
    end
  else
    shape[1] = util.int("LayerNorm", "normalized_shape", normalized_shape, 1, 3)
  end
  self.normalized_shape = shape
  self.eps = util.number("LayerNorm", "eps", o.eps, 3)
  self.elementwise_affine = util.boolean("LayerNorm", "elementwise_affine",
    o.elementwise_affine, 3)
  local dt = util.float_dtype("LayerNorm", o.dtype, 3)
  if self.elementwise_affine then
    self.weight = param(shape, dt)
    if util.boolean("LayerNorm", "bias", o.bias, 3) then
      self.bias = param(shape, dt)
    else
      self:register_parameter("bias", nil)
    end
  else
    self:register_parameter("weight", nil)
    self:register_parameter("bias", nil)
  end
  self:reset_parameters()
end

function LayerNorm:reset_parameters()
  if self.weight then init.ones_(self.weight) end
  if self.bias then init.zeros_(self.bias) end
end

function LayerNorm:forward(x)
  input_tensor("LayerNorm", x)
  local n, nd = #self.normalized_shape, x.ndim
  local fits = nd >= n
  for i = 1, n do
    if not fits then break end
    fits = x:size(nd - n + i - 1) == self.normalized_shape[i]
  end
  if not fits then
    error(string.format("LayerNorm: expected an input whose last dims are [%s], got shape %s",
      table.concat(self.normalized_shape, ","), shape_str(x)), 3)
  end
  return lm.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
end

function LayerNorm:extra_repr()
  return string.format("%s, eps=%s, elementwise_affine=%s", py(self.normalized_shape),
    py(self.eps), py(self.elementwise_affine))
end

-- GroupNorm(num_groups, num_channels, eps = 1e-5, affine = true).
local GroupNorm = class("GroupNorm", Module)
M.GroupNorm = GroupNorm

function GroupNorm:__init(num_groups, num_channels, ...)
  Module.__init(self)
  local o = util.options("GroupNorm", 3, {"eps", "affine", "dtype"},
    {eps = 1e-5, affine = true, dtype = "f32"}, ...)
  self.num_groups = util.int("GroupNorm", "num_groups", num_groups, 1, 3)
  self.num_channels = util.int("GroupNorm", "num_channels", num_channels, 1, 3)
  if self.num_channels % self.num_groups ~= 0 then
    error(string.format("GroupNorm: num_channels=%d must be divisible by num_groups=%d",
      self.num_channels, self.num_groups), 3)
  end
  self.eps = util.number("GroupNorm", "eps", o.eps, 3)
  self.affine = util.boolean("GroupNorm", "affine", o.affine, 3)
  local dt = util.float_dtype("GroupNorm", o.dtype, 3)
  if self.affine then
    self.weight = param({self.num_channels}, dt)
    self.bias = param({self.num_channels}, dt)
  else
    self:register_parameter("weight", nil)
    self:register_parameter("bias", nil)
  end
  self:reset_parameters()
end

function GroupNorm:reset_parameters()
  if self.affine then
    init.ones_(self.weight)
    init.zeros_(self.bias)
  end
end

function GroupNorm:forward(x)
  input_tensor("GroupNorm", x)
  if x.ndim < 2 or x:size(1) ~= self.num_channels then
    error(string.format("GroupNorm: expected %d channels (num_channels) in dim 1, got input " ..
      "of shape %s", self.num_channels, shape_str(x)), 3)
  end
  return lm.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
end

function GroupNorm:extra_repr()
  return string.format("%d, %d, eps=%s, affine=%s", self.num_groups, self.num_channels,
    py(self.eps), py(self.affine))
end

-- ---- dropout, embedding, shape --------------------------------------------------------------

-- Dropout(p = 0.5): zeroes elements with probability p in training and scales the rest by
-- 1/(1-p); identity in eval. inplace is accepted for PyTorch's signature; the result is
-- computed out of place.
local Dropout = class("Dropout", Module)
M.Dropout = Dropout

function Dropout:__init(...)
  Module.__init(self)
  local o = util.options("Dropout", 3, {"p", "inplace"}, {p = 0.5, inplace = false}, ...)
  local p = util.number("Dropout", "p", o.p, 3)
  if not (p >= 0 and p <= 1) then
    error("Dropout: p must be a probability in [0, 1], got " .. show(p), 3)
  end
  self.p = p
  self.inplace = util.boolean("Dropout", "inplace", o.inplace, 3)
end

function Dropout:forward(x)
  input_tensor("Dropout", x)
  return lm.dropout(x, self.p, self.training)
end

function Dropout:extra_repr()
  return string.format("p=%s, inplace=%s", py(self.p), py(self.inplace))
end

-- Embedding(num_embeddings, embedding_dim, padding_idx = nil): a lookup table weight [V, D],
-- N(0, 1) with the padding_idx row zero (a negative padding_idx counts from the end). Input:
-- i64 indices of any shape -> [*, D]. The padding row gets no gradient.
local Embedding = class("Embedding", Module)
M.Embedding = Embedding

function Embedding:__init(num_embeddings, embedding_dim, ...)
  Module.__init(self)
  local o = util.options("Embedding", 3, {"padding_idx", "dtype"}, {dtype = "f32"}, ...)
  self.num_embeddings = util.int("Embedding", "num_embeddings", num_embeddings, 1, 3)
  self.embedding_dim = util.int("Embedding", "embedding_dim", embedding_dim, 1, 3)
  if o.padding_idx ~= nil then
    local p = util.int("Embedding", "padding_idx", o.padding_idx, nil, 3)
    if p < -self.num_embeddings or p >= self.num_embeddings then
      error(string.format("Embedding: padding_idx must be within num_embeddings (-%d..%d), " ..
        "got %d", self.num_embeddings, self.num_embeddings - 1, p), 3)
    end
    if p < 0 then p = p + self.num_embeddings end
    self.padding_idx = p
  end
  self.weight = param({self.num_embeddings, self.embedding_dim},
    util.float_dtype("Embedding", o.dtype, 3))
  self:reset_parameters()
end

function Embedding:reset_parameters()
  init.normal_(self.weight)
  if self.padding_idx then
    local _ <close> = lm.no_grad()
    self.weight[self.padding_idx] = 0
  end
end

-- Embedding.from_pretrained(weight, {freeze = true, padding_idx}): a layer holding a copy of
-- weight [V, D] (frozen: no gradient) instead of a random one.
function Embedding.from_pretrained(weight, opts)
  util.check_tensor("Embedding.from_pretrained", "weight", weight, 2)
  local o = util.options("Embedding.from_pretrained", 2, {"freeze", "padding_idx"},
    {freeze = true}, opts)
  if weight.ndim ~= 2 then
    error("Embedding.from_pretrained: weight must be 2-D [num_embeddings, embedding_dim], " ..
      "got shape " .. shape_str(weight), 2)
  end
  local e = Embedding(weight:size(0), weight:size(1), {padding_idx = o.padding_idx,
    dtype = weight.dtype})
  do
    local _ <close> = lm.no_grad()
    e.weight:copy_(weight)
  end
  e.weight.requires_grad = not util.boolean("Embedding.from_pretrained", "freeze", o.freeze, 2)
  return e
end

function Embedding:forward(idx)
  input_tensor("Embedding", idx)
  if idx.dtype ~= "i64" then
    error("Embedding: indices must be an i64 tensor, got dtype " .. idx.dtype, 3)
  end
  return lm.embedding(self.weight, idx, self.padding_idx)
end

function Embedding:extra_repr()
  local s = string.format("%d, %d", self.num_embeddings, self.embedding_dim)
  if self.padding_idx then s = s .. ", padding_idx=" .. self.padding_idx end
  return s
end

-- Flatten(start_dim = 1, end_dim = -1).
local Flatten = class("Flatten", Module)
M.Flatten = Flatten

function Flatten:__init(...)
  Module.__init(self)
  local o = util.options("Flatten", 3, {"start_dim", "end_dim"}, {start_dim = 1, end_dim = -1},
    ...)
  self.start_dim = util.int("Flatten", "start_dim", o.start_dim, nil, 3)
  self.end_dim = util.int("Flatten", "end_dim", o.end_dim, nil, 3)
end

function Flatten:forward(x)
  input_tensor("Flatten", x)
  return x:flatten(self.start_dim, self.end_dim)
end

function Flatten:extra_repr()
  return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim)
end

-- Identity(...): returns its input; arguments are ignored, as PyTorch's.
local Identity = class("Identity", Module)
M.Identity = Identity

function Identity:__init()
  Module.__init(self)
end

function Identity:forward(x) return x end

return M
