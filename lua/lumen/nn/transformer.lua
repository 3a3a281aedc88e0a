-- lumen.nn.transformer: MultiheadAttention and TransformerEncoderLayer, with PyTorch's
-- parameters (names, shapes, initialisation), options and layouts.
--
-- Glossary: N batch, L target (query) length, S source (key) length, E embed_dim, H heads,
-- D = E / H the head size. With batch_first = false (PyTorch's default) sequences are [L, N, E];
-- with batch_first = true [N, L, E]; an unbatched sequence is [L, E] either way.
--
-- Masks as PyTorch's: a u8 (boolean) attn_mask or key_padding_mask marks with 1 the positions
-- NOT allowed to attend; a float mask is added to the scores. attn_mask is [L, S] or [N*H, L, S],
-- key_padding_mask [N, S] (or [S] unbatched).
local lm = require "lumen.core"
local class = require "lumen.class"
local mod = require "lumen.nn.module"
local layers = require "lumen.nn.layers"
local init = require "lumen.nn.initializers"

local Module = mod.Module
local util = require "lumen.nn.util"
local show, shape_str, py = util.show, util.shape_str, util.py

local M = {}

-- ---- MultiheadAttention -----------------------------------------------------------------------

-- MultiheadAttention(embed_dim, num_heads, dropout = 0, bias = true, add_bias_kv = false,
-- add_zero_attn = false, kdim = nil, vdim = nil, batch_first = false). Parameters
-- in_proj_weight [3E, E] (xavier_uniform_), in_proj_bias [3E] (0), out_proj (a Linear whose
-- bias starts at 0). add_bias_kv, add_zero_attn and a kdim/vdim other than embed_dim are not
-- supported.
local MultiheadAttention = class("MultiheadAttention", Module)
M.MultiheadAttention = MultiheadAttention

function MultiheadAttention:__init(embed_dim, num_heads, ...)
  Module.__init(self)
  local who = "MultiheadAttention"
  local o = util.options(who, 3, {"dropout", "bias", "add_bias_kv", "add_zero_attn", "kdim",
    "vdim", "batch_first", "dtype"}, {dropout = 0, bias = true, add_bias_kv = false,
    add_zero_attn = false, batch_first = false, dtype = "f32"}, ...)
  local e = util.int(who, "embed_dim", embed_dim, 1, 3)
  local h = util.int(who, "num_heads", num_heads, 1, 3)
  if e % h ~= 0 then
    error(string.format("%s: embed_dim=%d must be divisible by num_heads=%d", who, e, h), 3)
  end
  for _, k in ipairs({"kdim", "vdim"}) do
    if o[k] ~= nil and o[k] ~= e then
      error(string.format("%s: %s other than embed_dim is not supported (got %s, embed_dim=%d)",
        who, k, show(o[k]), e), 3)
    end
  end
  for _, k in ipairs({"add_bias_kv", "add_zero_attn"}) do
    if util.boolean(who, k, o[k], 3) then
      error(who .. ": " .. k .. "=true is not supported", 3)
    end
  end
  local p = util.number(who, "dropout", o.dropout, 3)
  if not (p >= 0 and p <= 1) then
    error(who .. ": dropout must be a probability in [0, 1], got " .. show(p), 3)
  end
  self.embed_dim, self.num_heads, self.head_dim = e, h, e // h
  self.kdim, self.vdim = e, e
  self.dropout = p
  self.batch_first = util.boolean(who, "batch_first", o.batch_first, 3)
  local bias = util.boolean(who, "bias", o.bias, 3)
  local dt = util.float_dtype(who, o.dtype, 3)
  local w = lm.empty({3 * e, e}, {dtype = dt})
  self.in_proj_weight = w:requires_grad_()
  if bias then
    self.in_proj_bias = lm.empty({3 * e}, {dtype = dt}):requires_grad_()
  else
    self:register_parameter("in_proj_bias", nil)
  end
  self.out_proj = layers.Linear(e, e, {bias = bias, dtype = dt})
  self:reset_parameters()
end

function MultiheadAttention:reset_parameters()
  init.xavier_uniform_(self.in_proj_weight)
  if self.in_proj_bias then
    init.zeros_(self.in_proj_bias)
    init.zeros_(self.out_proj.bias)
  end
end

-- A mask as an additive float mask of dtype dt: u8 ones become -inf.
local function additive(who, name, mask, dt)
  if not util.is_tensor(mask) then
    error(string.format("%s: %s must be a tensor, got %s", who, name, show(mask)), 4)
  end
  if mask.dtype == "u8" then
    return lm.zeros(mask.shape, {dtype = dt}):masked_fill(mask, -math.huge)
  end
  if mask.dtype == "i64" then
    error(string.format("%s: %s must be u8 (boolean) or floating, got i64", who, name), 4)
  end
  return mask
end

-- query, key, value [L, N, E] / [N, L, E] (batch_first) / [L, E]; options (positional in
-- PyTorch's order or a table): key_padding_mask, need_weights = true, attn_mask,
-- average_attn_weights = true, is_causal = false (without attn_mask: mask j > i).
-- Returns the output (query's layout) and the attention weights ([N, L, S] averaged over heads,
-- [N, H, L, S] otherwise; [L, S] / [H, L, S] unbatched), or nil when need_weights is false.
function MultiheadAttention:forward(query, key, value, ...)
  local who = "MultiheadAttention"
  local o = util.options(who, 3, {"key_padding_mask", "need_weights", "attn_mask",
    "average_attn_weights", "is_causal"}, {need_weights = true, average_attn_weights = true,
    is_causal = false}, ...)
  if key == nil then key = query end
  if value == nil then value = key end
  local args = {{"query", query}, {"key", key}, {"value", value}}
  for _, a in ipairs(args) do
    if not util.is_tensor(a[2]) then
      error(string.format("%s: %s must be a tensor, got %s", who, a[1], show(a[2])), 3)
    end
  end
  local e, h, d = self.embed_dim, self.num_heads, self.head_dim
  local batched = query.ndim == 3
  if not batched and query.ndim ~= 2 then
    error(string.format("%s: query must be 3-D (batched) or 2-D (unbatched), got shape %s", who,
      shape_str(query)), 3)
  end
  for _, a in ipairs(args) do
    local t = a[2]
    if t.ndim ~= query.ndim or t:size(-1) ~= e then
      error(string.format("%s: %s of shape %s does not fit query of shape %s and embed_dim=%d",
        who, a[1], shape_str(t), shape_str(query), e), 3)
    end
  end
  -- To [N, L, E].
  local function batch_major(t)
    if not batched then return t:unsqueeze(0) end
    if self.batch_first then return t end
    return t:transpose(0, 1)
  end
  local q, k, v = batch_major(query), batch_major(key), batch_major(value)
  local n, len_q, len_k = q:size(0), q:size(1), k:size(1)
  if k:size(0) ~= n or v:size(0) ~= n or v:size(1) ~= len_k then
    error(string.format("%s: key %s and value %s do not fit query %s (batch_first=%s)", who,
      shape_str(key), shape_str(value), shape_str(query), py(self.batch_first)), 3)
  end

  -- Input projections: one matmul when query, key and value are the same tensor.
  local w, b = self.in_proj_weight, self.in_proj_bias
  if query == key and key == value then
    local qkv = lm.linear(q, w, b):chunk(3, -1)
    q, k, v = qkv[1], qkv[2], qkv[3]
  else
    local function part(i) return w:narrow(0, i * e, e), b and b:narrow(0, i * e, e) end
    local wq, bq = part(0)
    local wk, bk = part(1)
    local wv, bv = part(2)
    q, k, v = lm.linear(q, wq, bq), lm.linear(k, wk, bk), lm.linear(v, wv, bv)
  end
  -- [N, L, E] -> [N, H, L, D]
  local function heads(t, len) return t:reshape(n, len, h, d):transpose(1, 2) end
  q, k, v = heads(q, len_q), heads(k, len_k), heads(v, len_k)

  -- One additive mask broadcast to [N, H, L, S].
  local dt = q.dtype
  local mask
  if o.attn_mask ~= nil then
    local am = additive(who, "attn_mask", o.attn_mask, dt)
    if am.ndim == 3 then
      if am:size(0) ~= n * h then
        error(string.format("%s: a 3-D attn_mask must be [N*num_heads, L, S] = [%d,%d,%d], " ..
          "got %s", who, n * h, len_q, len_k, shape_str(am)), 3)
      end
      am = am:reshape(n, h, len_q, len_k)
    elseif am.ndim ~= 2 then
      error(string.format("%s: attn_mask must be [L, S] or [N*num_heads, L, S], got %s", who,
        shape_str(am)), 3)
    end
    mask = am
  elseif o.is_causal then
    local rows = lm.arange(len_q):unsqueeze(1)
    mask = additive(who, "attn_mask", lm.arange(len_k):gt(rows), dt)
  end
  if o.key_padding_mask ~= nil then
    local kpm = additive(who, "key_padding_mask", o.key_padding_mask, dt)
    local want = batched and ("[" .. n .. "," .. len_k .. "]") or ("[" .. len_k .. "]")
    if shape_str(kpm) ~= want then
      error(string.format("%s: key_padding_mask must be %s, got %s", who, want, shape_str(kpm)),
        3)
    end
    kpm = kpm:reshape(n, 1, 1, len_k)
    mask = mask and mask + kpm or kpm
  end

  local p = self.training and self.dropout or 0
  local out, weights
  if o.need_weights then
    local scores = q:matmul(k:transpose(-2, -1)) * (1 / math.sqrt(d))
    if mask then scores = scores + mask end
    local attn = lm.softmax(scores, -1)
    if p > 0 then attn = lm.dropout(attn, p, true) end
    out = attn:matmul(v)
    weights = o.average_attn_weights and attn:mean(1) or attn
    if not batched then weights = weights:squeeze(0) end
  else
    out = lm.scaled_dot_product_attention(q, k, v, {attn_mask = mask, dropout_p = p})
  end
  -- [N, H, L, D] -> [N, L, E] -> output projection -> query's layout
  out = out:transpose(1, 2):reshape(n, len_q, e)
  out = lm.linear(out, self.out_proj.weight, self.out_proj.bias)
  if not batched then
    out = out:squeeze(0)
  elseif not self.batch_first then
    out = out:transpose(0, 1)
  end
  return out, weights
end

-- ---- TransformerEncoderLayer -------------------------------------------------------------------

local activations = {relu = lm.relu, gelu = lm.gelu}

-- TransformerEncoderLayer(d_model, nhead, dim_feedforward = 2048, dropout = 0.1,
-- activation = "relu" | "gelu" | a function | a module, layer_norm_eps = 1e-5,
-- batch_first = false, norm_first = false, bias = true): PyTorch's children self_attn,
-- linear1, dropout, linear2, norm1, norm2, dropout1, dropout2.
local TransformerEncoderLayer = class("TransformerEncoderLayer", Module)
M.TransformerEncoderLayer = TransformerEncoderLayer

function TransformerEncoderLayer:__init(d_model, nhead, ...)
  Module.__init(self)
  local who = "TransformerEncoderLayer"
  local o = util.options(who, 3, {"dim_feedforward", "dropout", "activation", "layer_norm_eps",
    "batch_first", "norm_first", "bias", "dtype"}, {dim_feedforward = 2048, dropout = 0.1,
    activation = "relu", layer_norm_eps = 1e-5, batch_first = false, norm_first = false,
    bias = true, dtype = "f32"}, ...)
  d_model = util.int(who, "d_model", d_model, 1, 3)
  nhead = util.int(who, "nhead", nhead, 1, 3)
  local ff = util.int(who, "dim_feedforward", o.dim_feedforward, 1, 3)
  local p = util.number(who, "dropout", o.dropout, 3)
  local bias = util.boolean(who, "bias", o.bias, 3)
  local eps = util.number(who, "layer_norm_eps", o.layer_norm_eps, 3)
  if d_model % nhead ~= 0 then
    error(string.format("%s: d_model=%d must be divisible by nhead=%d", who, d_model, nhead), 3)
  end
  if not (p >= 0 and p <= 1) then
    error(who .. ": dropout must be a probability in [0, 1], got " .. show(p), 3)
  end
  local dt = util.float_dtype(who, o.dtype, 3)
  self.self_attn = M.MultiheadAttention(d_model, nhead, {dropout = p, bias = bias,
    batch_first = o.batch_first, dtype = dt})
  self.linear1 = layers.Linear(d_model, ff, {bias = bias, dtype = dt})
  self.dropout = layers.Dropout(p)
  self.linear2 = layers.Linear(ff, d_model, {bias = bias, dtype = dt})
  self.norm_first = util.boolean(who, "norm_first", o.norm_first, 3)
  self.norm1 = layers.LayerNorm(d_model, {eps = eps, bias = bias, dtype = dt})
  self.norm2 = layers.LayerNorm(d_model, {eps = eps, bias = bias, dtype = dt})
  self.dropout1 = layers.Dropout(p)
  self.dropout2 = layers.Dropout(p)
  local act = o.activation
  if type(act) == "string" then
    if not activations[act] then
      error(who .. ": activation must be \"relu\", \"gelu\", a function or a module, got " ..
        show(act), 3)
    end
    self.activation = activations[act]
  elseif type(act) == "function" or mod.is_module(act) then
    self.activation = act
  else
    error(who .. ": activation must be \"relu\", \"gelu\", a function or a module, got " ..
      show(act), 3)
  end
  self.batch_first = o.batch_first
end

-- src [L, N, E] ([N, L, E] with batch_first, [L, E] unbatched); options (positional in
-- PyTorch's order or a table): src_mask, src_key_padding_mask, is_causal.
function TransformerEncoderLayer:forward(src, ...)
  local o = util.options("TransformerEncoderLayer", 3, {"src_mask", "src_key_padding_mask",
    "is_causal"}, {is_causal = false}, ...)
  if not util.is_tensor(src) then
    error("TransformerEncoderLayer: src must be a tensor, got " .. show(src), 3)
  end
  local function sa_block(x)
    local y = self.self_attn(x, x, x, {attn_mask = o.src_mask,
      key_padding_mask = o.src_key_padding_mask, need_weights = false,
      is_causal = o.is_causal and o.src_mask == nil})
    return self.dropout1(y)
  end
  local function ff_block(x)
    return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))
  end
  local x = src
  if self.norm_first then
    x = x + sa_block(self.norm1(x))
    x = x + ff_block(self.norm2(x))
  else
    x = self.norm1(x + sa_block(x))
    x = self.norm2(x + ff_block(x))
  end
  return x
end

return M
