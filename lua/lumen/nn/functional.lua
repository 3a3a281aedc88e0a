-- lumen.nn.functional: nn.functional, PyTorch's torch.nn.functional. Every op is the binding's
-- lm.NAME (lua/src/nn_lua.c, ops_lua.c), which already takes PyTorch's positional order or a
-- trailing options table:
--   F.conv2d(x, w, b, 2, 1) == F.conv2d(x, w, b, {stride = 2, padding = 1})
--   F.cross_entropy(logits, target, {label_smoothing = 0.1, reduction = "sum"})
--   F.embedding(indices, weight)   (PyTorch's order; lm.embedding(weight, indices) also works)
-- relu is wrapped to take PyTorch's inplace flag.
local lm = require "lumen.core"
local util = require "lumen.nn.util"

local F = {}

local direct = {
  "gelu", "leaky_relu", "silu", "sigmoid", "tanh", "softmax", "log_softmax",
  "linear", "conv1d", "conv2d", "conv_transpose2d",
  "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
  "batch_norm", "layer_norm", "group_norm", "dropout", "embedding", "one_hot",
  "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss",
  "binary_cross_entropy", "binary_cross_entropy_with_logits",
  "scaled_dot_product_attention",
}

for _, name in ipairs(direct) do
  local fn = lm[name]
  assert(fn, "lumen.nn.functional: the binding lacks lm." .. name)
  F[name] = fn
end

-- relu(input, inplace = false)
function F.relu(x, ...)
  if select("#", ...) == 0 then return lm.relu(x) end
  local o = util.options("relu", 2, {"inplace"}, {inplace = false}, ...)
  if o.inplace then return x:relu_() end
  return lm.relu(x)
end

return F
