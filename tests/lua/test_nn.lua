-- test_nn.lua: lm.nn — modules against the functional ops, parameter counts (PyTorch's),
-- initialisation statistics, names and state_dict, train/eval, graph scopes, user modules,
-- printing, gradients, error messages, and a cross-check of outputs and state_dict names with
-- PyTorch (tests/lua/torch_nn_check.py; skipped when python3 with torch is missing).
local T = require "tap"
local lm = require "lumen"
local nn = lm.nn
local F = nn.functional
local class = require "lumen.class"

T.plan_auto()
lm.manual_seed(1234)

local function keys_of(iter)
  local out = {}
  for name in iter do out[#out + 1] = name end
  return table.concat(out, " ")
end

local function shape(t) return table.concat(t.shape, ",") end

-- ---- parameter counts (from PyTorch 1.13: sum(p.numel() for p in m.parameters())) ---------

T.is(nn.Linear(784, 128):num_parameters(), 100480, "Linear(784,128) has 100480 parameters")
T.is(nn.Conv2d(3, 16, 3):num_parameters(), 448, "Conv2d(3,16,3): 448")
T.is(nn.Conv2d(4, 8, {3, 5}, {groups = 2, bias = false}):num_parameters(), 240,
  "Conv2d(4,8,(3,5),groups=2,bias=False): 240")
T.is(nn.ConvTranspose2d(4, 6, 3, {groups = 2}):num_parameters(), 114,
  "ConvTranspose2d(4,6,3,groups=2): 114")
T.is(nn.BatchNorm2d(16):num_parameters(), 32, "BatchNorm2d(16): 32")
T.is(nn.MultiheadAttention(64, 8):num_parameters(), 16640, "MultiheadAttention(64,8): 16640")
T.is(nn.TransformerEncoderLayer(64, 8):num_parameters(), 281152,
  "TransformerEncoderLayer(64,8): 281152")
T.is(nn.TransformerEncoderLayer(64, 8, {dim_feedforward = 256}):num_parameters(), 49984,
  "TransformerEncoderLayer(64,8,dim_feedforward=256): 49984")
T.is(nn.Embedding(10, 3):num_parameters() + nn.LayerNorm(64):num_parameters() +
  nn.GroupNorm(2, 4):num_parameters() + nn.Conv1d(2, 3, 5):num_parameters(), 30 + 128 + 8 + 33,
  "Embedding, LayerNorm, GroupNorm, Conv1d counts")

-- ---- names ------------------------------------------------------------------------------------

do
  local m = nn.Sequential { nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2) }
  T.is(keys_of(m:named_parameters()), "0.weight 0.bias 2.weight 2.bias",
    "Sequential parameter names")
  T.is(#m:parameters(), 4, "parameters() is a sequence of 4 tensors")
  T.is(#m, 3, "#seq counts the children")
  T.ok(m[1] == m:children()[1] and class.name(m[3]) == "Linear", "seq[1] is the first child")
  T.is(keys_of(m:named_modules()), " 0 1 2", "named_modules: root '' first, then children")
  local bn = nn.BatchNorm2d(4)
  local _, keys = bn:state_dict()
  T.is(table.concat(keys, " "), "weight bias running_mean running_var num_batches_tracked",
    "BatchNorm2d state_dict keys as PyTorch")
  T.is(bn.num_batches_tracked.dtype .. "/" .. bn.num_batches_tracked.ndim, "i64/0",
    "num_batches_tracked is a 0-dim i64")
  local mha = nn.MultiheadAttention(8, 2)
  _, keys = mha:state_dict()
  T.is(table.concat(keys, " "), "in_proj_weight in_proj_bias out_proj.weight out_proj.bias",
    "MultiheadAttention names")
  local tel = nn.TransformerEncoderLayer(8, 2, {dim_feedforward = 16})
  _, keys = tel:state_dict()
  T.is(table.concat(keys, " "), "self_attn.in_proj_weight self_attn.in_proj_bias " ..
    "self_attn.out_proj.weight self_attn.out_proj.bias linear1.weight linear1.bias " ..
    "linear2.weight linear2.bias norm1.weight norm1.bias norm2.weight norm2.bias",
    "TransformerEncoderLayer names")
  T.is(keys_of(tel:named_children()), "self_attn linear1 dropout linear2 norm1 norm2 " ..
    "dropout1 dropout2", "TransformerEncoderLayer children in PyTorch's order")
end

-- ---- a user-defined module and the state_dict order -----------------------------------------

local Net = nn.Module:extend("Net")

function Net:__init()
  nn.Module.__init(self)
  self.conv = nn.Conv2d(1, 4, 3)
  self.bn = nn.BatchNorm2d(4)
  self.scale = lm.ones(1):requires_grad_()
  self.head = nn.Sequential { nn.Flatten(), nn.Linear(4 * 6 * 6, 10) }
  self:register_buffer("steps", lm.zeros(1))
  self:register_buffer("tmp", lm.zeros(1), false)
  self.note = "plain"
end

function Net:forward(x)
  return self.head(lm.relu(self.bn(self.conv(x)))) * self.scale
end

do
  local net = Net()
  local sd, keys = net:state_dict()
  -- PyTorch 1.13 on the same class: own parameters, own buffers, then children in order.
  T.is(table.concat(keys, " "), "scale steps conv.weight conv.bias bn.weight bn.bias " ..
    "bn.running_mean bn.running_var bn.num_batches_tracked head.1.weight head.1.bias",
    "user module: state_dict keys in PyTorch's order (non-persistent buffer left out)")
  local ordered = {}
  for k in pairs(sd) do ordered[#ordered + 1] = k end
  T.is(table.concat(ordered, " "), table.concat(keys, " "), "pairs(sd) walks the keys in order")
  T.is(keys_of(net:named_parameters()), "scale conv.weight conv.bias bn.weight bn.bias " ..
    "head.1.weight head.1.bias", "user module: named_parameters")
  T.is(keys_of(net:named_buffers()), "steps tmp bn.running_mean bn.running_var " ..
    "bn.num_batches_tracked", "user module: named_buffers (non-persistent included)")
  T.is(keys_of(net:named_modules()), " conv bn head head.0 head.1", "user module: modules")
  T.is(net:num_parameters(), 1499, "user module: 1499 parameters (PyTorch's count)")
  T.is(net.note, "plain", "a plain field stays a plain field")
  local y = net(lm.randn(2, 1, 8, 8))
  T.is(shape(y), "2,10", "user module forward")
  T.ok(nn.is_module(net) and class.isinstance(net, Net), "instance of Net and of nn.Module")

  local Other = class("Other", nn.Module)
  function Other:__init() nn.Module.__init(self); self.fc = nn.Linear(2, 2) end
  function Other:forward(x) return self.fc(x) end
  T.is(shape(Other()(lm.randn(3, 2))), "3,2", "class(name, nn.Module) works as extend")

  local Broken = nn.Module:extend("Broken")
  function Broken:__init() self.fc = nn.Linear(2, 2) end
  T.errors(function() return Broken() end, "Broken: nn.Module.__init(self) must run",
    "assigning before nn.Module.__init is a clear error")

  net.head = nn.Linear(144, 10)
  local _
  _, keys = net:state_dict()
  T.is(keys[#keys - 1] .. " " .. keys[#keys], "head.weight head.bias",
    "reassigning a child replaces it in place")
  net.scale = nil
  _, keys = net:state_dict()
  T.is(keys[1], "steps", "assigning nil empties a parameter slot")
  T.errors(function() net.conv = 3 end, "cannot assign 3 to child module 'conv'",
    "assigning a number to a child is an error")
  T.ok(net:get_submodule("bn") == net.bn, "get_submodule")
end

-- ---- shared parameters ----------------------------------------------------------------------

do
  local lin = nn.Linear(3, 3)
  local m = nn.Sequential { lin, nn.ReLU(), lin }
  T.is(#m:parameters(), 2, "a module used twice: its parameters counted once")
  T.is(m:num_parameters(), 12, "shared: num_parameters 12")
  local a, b = nn.Linear(4, 4), nn.Linear(4, 4)
  b.weight = a.weight
  local tied = nn.Sequential { a, b }
  T.is(#tied:parameters(), 3, "a tied weight appears once in parameters()")
  T.is(keys_of(tied:named_parameters()), "0.weight 0.bias 1.bias", "tied: first name kept")
  local _, keys = tied:state_dict()
  T.is(#keys, 4, "state_dict keeps both names of a tied weight, as PyTorch")
end

-- ---- initialisation statistics ---------------------------------------------------------------

do
  local lin = nn.Linear(1000, 400)
  local bound = 1 / math.sqrt(1000)
  local w = lin.weight
  T.ok(w:abs():max():item() <= bound * (1 + 1e-6), "Linear weight within 1/sqrt(fan_in)")
  T.ok(w:abs():max():item() > bound * 0.99, "Linear weight fills its range")
  T.close(w:std():item(), bound / math.sqrt(3), bound * 0.01, "Linear weight std = bound/sqrt(3)")
  T.close(w:mean():item(), 0, bound * 0.01, "Linear weight mean 0")
  T.ok(lin.bias:abs():max():item() <= bound, "Linear bias within 1/sqrt(fan_in)")
  local conv = nn.Conv2d(16, 32, 3)
  local cb = 1 / math.sqrt(16 * 9)
  T.ok(conv.weight:abs():max():item() <= cb * (1 + 1e-6) and
    conv.weight:abs():max():item() > cb * 0.95, "Conv2d weight bound 1/sqrt(in*kh*kw)")
  T.ok(conv.bias:abs():max():item() <= cb, "Conv2d bias bound")
  local emb = nn.Embedding(1000, 64, {padding_idx = 3})
  T.close(emb.weight:std():item(), 1, 0.02, "Embedding weight ~ N(0, 1)")
  T.is(emb.weight[3]:abs():sum():item(), 0, "Embedding padding row is zero")
  local bn = nn.BatchNorm1d(5)
  T.ok(bn.weight:eq(1):all() and bn.bias:eq(0):all() and bn.running_mean:eq(0):all() and
    bn.running_var:eq(1):all() and bn.num_batches_tracked:item() == 0,
    "BatchNorm: weight 1, bias 0, running stats 0/1, num_batches_tracked 0")
  local ln = nn.LayerNorm(8)
  T.ok(ln.weight:eq(1):all() and ln.bias:eq(0):all(), "LayerNorm weight 1 bias 0")
  local mha = nn.MultiheadAttention(64, 4)
  local xb = math.sqrt(6 / (64 + 192))
  T.ok(mha.in_proj_weight:abs():max():item() <= xb * (1 + 1e-6) and
    mha.in_proj_weight:abs():max():item() > xb * 0.98, "MHA in_proj_weight xavier_uniform_")
  T.ok(mha.in_proj_bias:eq(0):all() and mha.out_proj.bias:eq(0):all(), "MHA biases zero")
  T.ok(mha.out_proj.weight:abs():max():item() <= 1 / 8 * (1 + 1e-6), "MHA out_proj as Linear")

  local init = nn.init
  T.close(init.calculate_gain("relu"), math.sqrt(2), 1e-12, "calculate_gain relu")
  T.close(init.calculate_gain("tanh"), 5 / 3, 1e-12, "calculate_gain tanh")
  T.close(init.calculate_gain("leaky_relu", 0.2), math.sqrt(2 / 1.04), 1e-12,
    "calculate_gain leaky_relu")
  local t = lm.empty(500, 400)
  init.kaiming_normal_(t, {mode = "fan_out", nonlinearity = "relu"})
  T.close(t:std():item(), math.sqrt(2 / 500), 0.002, "kaiming_normal_ fan_out relu std")
  init.xavier_normal_(t)
  T.close(t:std():item(), math.sqrt(2 / 900), 0.001, "xavier_normal_ std")
  init.trunc_normal_(t, {std = 0.5, a = -0.5, b = 1})
  T.ok(t:min():item() >= -0.5 and t:max():item() <= 1, "trunc_normal_ stays in [a, b]")
  -- PyTorch 1.13: trunc_normal_(std=0.5, a=-0.5, b=1) on 200000 draws: mean 0.115, std 0.360.
  T.close(t:mean():item(), 0.1147, 0.01, "trunc_normal_ mean of the truncated law")
  T.close(t:std():item(), 0.3604, 0.01, "trunc_normal_ std of the truncated law")
  init.constant_(t, 0.25)
  T.ok(t:eq(0.25):all(), "constant_")
  T.errors(function() init.xavier_uniform_(lm.zeros(3)) end, "fewer than 2 dims",
    "xavier_uniform_ on a 1-D tensor")
  local p = lm.zeros(3, 3):requires_grad_()
  init.uniform_(p, -1, 1)
  T.ok(p.is_leaf and p.grad == nil and p:abs():max():item() <= 1,
    "init works in place on a parameter without recording a graph")
end

-- ---- modules against the functional ops ------------------------------------------------------

do
  local x = lm.randn(3, 5)
  local lin = nn.Linear(5, 4)
  T.close(lin(x), F.linear(x, lin.weight, lin.bias), 0, "Linear = F.linear")
  local nb = nn.Linear(5, 4, {bias = false})
  T.ok(nb.bias == nil, "Linear bias=false: no bias")
  T.close(nb(x), F.linear(x, nb.weight), 0, "Linear without bias = F.linear")

  local img = lm.randn(2, 3, 9, 9)
  local c = nn.Conv2d(3, 4, 3, {stride = 2, padding = 1})
  T.close(c(img), F.conv2d(img, c.weight, c.bias, {stride = 2, padding = 1}), 0,
    "Conv2d = F.conv2d")
  T.close(c(img[0]), F.conv2d(img[{{0, 1}}], c.weight, c.bias, 2, 1)[0], 1e-6,
    "Conv2d on an unbatched image")
  local g = nn.Conv2d(4, 6, {3, 1}, {groups = 2, dilation = {2, 1}, bias = false})
  local img4 = lm.randn(1, 4, 8, 5)
  T.close(g(img4), F.conv2d(img4, g.weight, nil, {groups = 2, dilation = {2, 1}}), 0,
    "Conv2d groups and dilation = F.conv2d")
  local s = nn.Conv2d(3, 2, 3, {padding = "same"})
  T.is(shape(s(img)), "2,2,9,9", "Conv2d padding='same' keeps the size")
  local seq = lm.randn(2, 2, 10)
  local c1 = nn.Conv1d(2, 3, 3, {padding = 1})
  T.close(c1(seq), F.conv1d(seq, c1.weight, c1.bias, {padding = 1}), 0, "Conv1d = F.conv1d")
  local ct = nn.ConvTranspose2d(3, 2, 3, {stride = 2, padding = 1, output_padding = 1})
  T.close(ct(img), F.conv_transpose2d(img, ct.weight, ct.bias, {stride = 2, padding = 1,
    output_padding = 1}), 0, "ConvTranspose2d = F.conv_transpose2d")
  T.is(shape(ct(img)), "2,2,18,18", "ConvTranspose2d output size")

  T.close(nn.MaxPool2d(2)(img), F.max_pool2d(img, 2), 0, "MaxPool2d = F.max_pool2d")
  local v, i = nn.MaxPool2d(3, {stride = 2, padding = 1, return_indices = true})(img)
  local v2, i2 = F.max_pool2d(img, 3, {stride = 2, padding = 1, return_indices = true})
  T.ok(v:eq(v2):all() and i:eq(i2):all(), "MaxPool2d return_indices")
  T.close(nn.AvgPool2d(3, {stride = 2, padding = 1, count_include_pad = false})(img),
    F.avg_pool2d(img, 3, 2, 1, false, false), 0, "AvgPool2d = F.avg_pool2d")
  T.close(nn.AdaptiveAvgPool2d({2, 3})(img), F.adaptive_avg_pool2d(img, {2, 3}), 0,
    "AdaptiveAvgPool2d = F.adaptive_avg_pool2d")
  T.close(nn.AdaptiveAvgPool2d(1)(img), img:mean({2, 3}, true), 1e-6,
    "AdaptiveAvgPool2d(1) is the spatial mean")

  local ln = nn.LayerNorm({9, 9})
  nn.init.normal_(ln.weight); nn.init.normal_(ln.bias)
  T.close(ln(img), F.layer_norm(img, {9, 9}, ln.weight, ln.bias, 1e-5), 0,
    "LayerNorm = F.layer_norm")
  local gn = nn.GroupNorm(2, 4)
  nn.init.normal_(gn.weight)
  T.close(gn(img4), F.group_norm(img4, 2, gn.weight, gn.bias, 1e-5), 0,
    "GroupNorm = F.group_norm")

  local emb = nn.Embedding(10, 4, {padding_idx = -1})
  T.is(emb.padding_idx, 9, "a negative padding_idx counts from the end")
  local idx = lm.tensor({{1, 2}, {9, 0}}, {dtype = "i64"})
  T.close(emb(idx), F.embedding(idx, emb.weight, 9), 0, "Embedding = F.embedding")
  local pre = nn.Embedding.from_pretrained(lm.randn(5, 2))
  T.ok(pre.weight.requires_grad == false and pre.num_embeddings == 5,
    "Embedding.from_pretrained: frozen copy")

  local z = lm.randn(4, 6)
  T.close(nn.ReLU()(z), F.relu(z), 0, "ReLU")
  T.close(nn.LeakyReLU(0.2)(z), F.leaky_relu(z, 0.2), 0, "LeakyReLU")
  T.close(nn.GELU()(z), F.gelu(z), 0, "GELU")
  T.close(nn.GELU("tanh")(z), F.gelu(z, {approximate = "tanh"}), 0, "GELU tanh")
  T.close(nn.SiLU()(z), F.silu(z), 0, "SiLU")
  T.close(nn.Sigmoid()(z), F.sigmoid(z), 0, "Sigmoid")
  T.close(nn.Tanh()(z), F.tanh(z), 0, "Tanh")
  T.close(nn.Softmax(1)(z), F.softmax(z, 1), 0, "Softmax")
  T.close(nn.LogSoftmax({dim = 0})(z), F.log_softmax(z, 0), 0, "LogSoftmax")
  T.close(nn.Flatten()(img), img:reshape(2, 243), 0, "Flatten")
  T.ok(nn.Identity(3, "ignored")(z) == z, "Identity returns its input")
  local zc = z:clone()
  T.close(nn.ReLU({inplace = true})(zc), F.relu(z), 0, "ReLU(inplace) result")
  T.close(zc, F.relu(z), 0, "ReLU(inplace) writes its input")

  T.close(F.one_hot(lm.tensor({0, 2}, {dtype = "i64"}), 3),
    lm.tensor({{1, 0, 0}, {0, 0, 1}}, {dtype = "i64"}), 0, "F.one_hot")
  local logits, target = lm.randn(4, 3), lm.tensor({0, 2, 1, 1}, {dtype = "i64"})
  T.close(F.cross_entropy(logits, target), F.nll_loss(F.log_softmax(logits, 1), target), 1e-6,
    "F.cross_entropy = nll_loss(log_softmax)")
  T.close(F.mse_loss(z, z * 0, {reduction = "sum"}), (z * z):sum(), 1e-4, "F.mse_loss sum")
end

-- ---- BatchNorm and Dropout: training and evaluation -------------------------------------------

do
  local x = lm.randn(8, 3, 4, 4) * 2 + 1
  local bn = nn.BatchNorm2d(3)
  nn.init.normal_(bn.weight); nn.init.normal_(bn.bias)
  local rm, rv = lm.zeros(3), lm.ones(3)
  local want = F.batch_norm(x, rm, rv, bn.weight, bn.bias, {training = true, momentum = 0.1})
  T.close(bn(x), want, 1e-6, "BatchNorm2d train = F.batch_norm(training = true)")
  T.close(bn.running_mean, rm, 1e-6, "BatchNorm2d updates running_mean as F.batch_norm")
  T.close(bn.running_var, rv, 1e-6, "BatchNorm2d updates running_var as F.batch_norm")
  T.close(bn.running_mean, x:mean({0, 2, 3}) * 0.1, 1e-5, "running_mean = 0.1 * batch mean")
  T.is(bn.num_batches_tracked:item(), 1, "num_batches_tracked counts batches")
  bn:eval()
  T.ok(not bn.training, "eval() clears training")
  local before = bn.running_mean:clone()
  T.close(bn(x), F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias), 1e-6,
    "BatchNorm2d eval uses the running statistics")
  T.close(bn.running_mean, before, 0, "eval leaves running stats alone")
  T.is(bn.num_batches_tracked:item(), 1, "eval does not count batches")

  local cum = nn.BatchNorm1d(2, 1e-5, nil)
  T.ok(cum.momentum == nil, "BatchNorm1d(2, 1e-5, nil): momentum None")
  local a, b = lm.randn(6, 2), lm.randn(6, 2) + 3
  cum(a); cum(b)
  T.close(cum.running_mean, (a:mean(0) + b:mean(0)) / 2, 1e-5,
    "momentum None: running_mean is the cumulative average")
  local cum2 = nn.BatchNorm1d(2, {momentum = false})
  T.ok(cum2.momentum == nil, "{momentum = false} means None as well")
  local seq3 = lm.randn(4, 2, 5)
  T.is(shape(cum2(seq3)), "4,2,5", "BatchNorm1d on [N, C, L]")
  local nostats = nn.BatchNorm1d(2, {track_running_stats = false})
  local _, keys = nostats:state_dict()
  T.is(table.concat(keys, " "), "weight bias", "track_running_stats=false: no buffers")
  nostats:eval()
  T.close(nostats(a), F.batch_norm(a, nil, nil, nostats.weight, nostats.bias,
    {training = true}), 1e-6, "without running stats eval uses batch statistics")

  local drop = nn.Dropout(0.5)
  local ones = lm.ones(1000)
  local y = drop(ones)
  local zeros = y:eq(0):sum():item()
  T.ok(zeros > 350 and zeros < 650 and y:max():item() == 2, "Dropout in training zeroes and scales")
  drop:eval()
  T.close(drop(ones), ones, 0, "Dropout in eval is the identity")
  local seed, offset = lm.rng_state()
  local d2 = nn.Dropout(0.3)
  local first = d2(ones)
  lm.set_rng_state(seed, offset)
  T.close(first, F.dropout(ones, 0.3, true), 0, "Dropout = F.dropout with the same RNG state")

  local model = nn.Sequential { nn.Linear(2, 2), nn.Sequential { nn.Dropout(), nn.BatchNorm1d(2) } }
  model:eval()
  local all_eval = true
  for _, m in ipairs(model:modules()) do all_eval = all_eval and not m.training end
  T.ok(all_eval, "eval() reaches every module")
  model:train()
  T.ok(model[2][2].training, "train() sets training again")
end

-- ---- attention ----------------------------------------------------------------------------------

do
  local mha = nn.MultiheadAttention(8, 2)
  local q, k = lm.randn(3, 2, 8), lm.randn(4, 2, 8)
  local out, w = mha(q, k, k)
  local out2, w2 = mha(q, k, k, {need_weights = false})
  T.is(shape(out) .. " " .. shape(w), "3,2,8 2,3,4", "MHA output [L,N,E], weights [N,L,S]")
  T.ok(w2 == nil, "need_weights=false gives no weights")
  T.close(out, out2, 1e-5, "MHA: the weights path and the fused path agree")
  T.close(w:sum(-1), lm.ones(2, 3), 1e-5, "attention weights sum to 1")
  -- The same computation written out with the functional ops.
  local e, h, d = 8, 2, 4
  local W, B = mha.in_proj_weight, mha.in_proj_bias
  local qp = F.linear(q:transpose(0, 1), W:narrow(0, 0, e), B:narrow(0, 0, e))
  local kp = F.linear(k:transpose(0, 1), W:narrow(0, e, e), B:narrow(0, e, e))
  local vp = F.linear(k:transpose(0, 1), W:narrow(0, 2 * e, e), B:narrow(0, 2 * e, e))
  local function heads(t) return t:reshape(2, t:size(1), h, d):transpose(1, 2) end
  local att = F.scaled_dot_product_attention(heads(qp), heads(kp), heads(vp))
  local ref = F.linear(att:transpose(1, 2):reshape(2, 3, e), mha.out_proj.weight,
    mha.out_proj.bias):transpose(0, 1)
  T.close(out, ref, 1e-5, "MultiheadAttention = projections + F.scaled_dot_product_attention")
  local per_head = select(2, mha(q, k, k, {average_attn_weights = false}))
  T.is(shape(per_head), "2,2,3,4", "average_attn_weights=false: [N,H,L,S]")
  local bf = nn.MultiheadAttention(8, 2, {batch_first = true})
  bf:load_state_dict(mha:state_dict())
  T.close(bf(q:transpose(0, 1), k:transpose(0, 1), k:transpose(0, 1)), out:transpose(0, 1), 1e-5,
    "batch_first=true is the transposed layout")
  T.close(mha(q[{{}, {0, 1}}]:squeeze(1), k[{{}, {0, 1}}]:squeeze(1), k[{{}, {0, 1}}]:squeeze(1)),
    out[{{}, {0, 1}}]:squeeze(1), 1e-5, "unbatched [L, E] input")
  local kpm = lm.tensor({{0, 0, 0, 1}, {0, 0, 1, 1}}, {dtype = "u8"})
  local _, wm = mha(q, k, k, {key_padding_mask = kpm})
  T.ok(wm[0][{{}, {3, 4}}]:eq(0):all() and wm[1][{{}, {2, 4}}]:eq(0):all(),
    "key_padding_mask: masked keys get no weight")
  local _, wc = mha(q, q, q, {is_causal = true})
  T.close(wc[0][0][1]:item() + wc[0][0][2]:item(), 0, 0, "is_causal masks the future")

  local tel = nn.TransformerEncoderLayer(8, 2, {dim_feedforward = 16, dropout = 0})
  local src = lm.randn(5, 2, 8)
  local sa = tel.self_attn(src, src, src, {need_weights = false})
  local x1 = tel.norm1(src + sa)
  local ref2 = tel.norm2(x1 + tel.linear2(F.relu(tel.linear1(x1))))
  T.close(tel(src), ref2, 1e-5, "TransformerEncoderLayer = its parts composed (post-norm)")
  local pre = nn.TransformerEncoderLayer(8, 2, {dim_feedforward = 16, dropout = 0,
    norm_first = true, activation = "gelu"})
  local n1 = pre.norm1(src)
  local y1 = src + pre.self_attn(n1, n1, n1, {need_weights = false})
  local ref3 = y1 + pre.linear2(F.gelu(pre.linear1(pre.norm2(y1))))
  T.close(pre(src), ref3, 1e-5, "TransformerEncoderLayer norm_first + gelu")
end

-- ---- state_dict round trip and load errors ----------------------------------------------------

do
  local function make()
    return nn.Sequential { nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3) }
  end
  local a, b = make(), make()
  a(lm.randn(4, 1, 4, 4))
  a:eval(); b:eval()
  local x = lm.randn(2, 1, 4, 4)
  T.ok((a(x) - b(x)):abs():max():item() > 1e-4, "two fresh models differ")
  local res = b:load_state_dict(a:state_dict())
  T.close(b(x), a(x), 0, "load_state_dict round trip: same outputs")
  T.ok(#res.missing_keys == 0 and #res.unexpected_keys == 0, "nothing missing or unexpected")
  T.is(b[2].num_batches_tracked:item(), 1, "buffers are loaded too")
  T.ok(b[1].weight.requires_grad and b[1].weight.is_leaf and b[1].weight.grad == nil,
    "loaded parameters stay trainable leaves")
  do
    local _ <close> = lm.no_grad()
    a[1].weight:fill_(7)
  end
  T.ok(b[1].weight:ne(7):all(), "loading copies the values (no aliasing)")

  local sd = a:state_dict()
  sd["3.bias"] = nil
  T.errors(function() b:load_state_dict(sd) end, 'Missing key(s): "3.bias"', "missing key named")
  sd = a:state_dict()
  sd["4.weight"] = lm.zeros(1)
  T.errors(function() b:load_state_dict(sd) end, 'Unexpected key(s): "4.weight"',
    "unexpected key named")
  local r = b:load_state_dict(sd, {strict = false})
  T.is(table.concat(r.unexpected_keys, " "), "4.weight", "strict=false reports unexpected keys")
  sd = a:state_dict()
  sd["3.weight"] = lm.zeros(3, 9)
  T.errors(function() b:load_state_dict(sd, {strict = false}) end,
    "size mismatch for 3.weight: copying a param with shape [3,9], the shape in current model " ..
    "is [3,8]", "shape mismatch named, even with strict=false")
  local w_before = b[4].weight:clone()
  sd = a:state_dict()
  sd["3.weight"] = lm.zeros(3, 9)
  pcall(b.load_state_dict, b, sd)
  T.close(b[4].weight, w_before, 0, "a failed load changes nothing")
  T.errors(function() b:load_state_dict("x") end, "load_state_dict: a table of name -> tensor",
    "load_state_dict with a non-table")
end

-- ---- graph scopes ----------------------------------------------------------------------------

do
  local model = nn.Sequential { nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2),
    nn.Sequential { nn.Tanh() } }
  local y = model(lm.randn(3, 4):requires_grad_())
  local json = lm.graph_json(y:sum())
  T.ok(json:find('"op":"linear"[^}]*"scope":"0"') ~= nil, "graph: first Linear has scope 0")
  T.ok(json:find('"scope":"2"', 1, true) ~= nil, "graph: scope 2 present")
  T.ok(json:find('"op":"tanh"[^}]*"scope":"3.0"') ~= nil, "graph: nested scope 3.0")
  T.ok(lm.get_scope() == nil, "scope restored after forward")

  local Boom = nn.Module:extend("Boom")
  function Boom:__init() nn.Module.__init(self) end
  function Boom:forward() error("boom") end
  local outer = nn.Sequential { nn.Identity(), Boom() }
  lm.set_scope("mine")
  local ok, err = pcall(outer, lm.zeros(1))
  T.ok(not ok and tostring(err):find("boom", 1, true), "an error in forward propagates")
  T.is(lm.get_scope(), "mine", "the scope is restored when forward raises")
  lm.set_scope(nil)

  local Deep = nn.Module:extend("Deep")
  function Deep:__init()
    nn.Module.__init(self)
    self.block = nn.Sequential { nn.Linear(2, 2) }
  end
  function Deep:forward(x) return self.block[1](x) end
  local yd = Deep()(lm.randn(1, 2))
  T.ok(lm.graph_json(yd):find('"scope":"block.0"', 1, true) ~= nil,
    "a grandchild called directly gets its full path")
end

-- The common transformer loop: the blocks of a ModuleList called from the list's parent. Each
-- block finds its path through its parent links (not by searching the tree at every call).
do
  local Block = nn.Module:extend("ScopeBlock")
  function Block:__init()
    nn.Module.__init(self)
    self.fc = nn.Linear(2, 2)
  end
  function Block:forward(x) return self.fc(x):relu() end
  local Stack = nn.Module:extend("ScopeStack")
  function Stack:__init(n)
    nn.Module.__init(self)
    local blocks = {}
    for i = 1, n do blocks[i] = Block() end
    self.layers = nn.ModuleList(blocks)
  end
  function Stack:forward(x)
    for _, block in ipairs(self.layers) do x = block(x) end
    return x
  end

  local N = 200
  local stack = Stack(N)
  local json = lm.graph_json(stack(lm.randn(1, 2):requires_grad_()):sum())
  local linear_scopes, relu_scopes, wrong = {}, {}, 0
  for op, scope in json:gmatch('"op":"(%w+)"[^}]*"scope":"([^"]*)"') do
    if op == "linear" then
      linear_scopes[#linear_scopes + 1] = scope
    elseif op == "relu" then
      relu_scopes[#relu_scopes + 1] = scope
    end
  end
  for i = 1, N do
    if linear_scopes[i] ~= "layers." .. (i - 1) .. ".fc" then wrong = wrong + 1 end
    if relu_scopes[i] ~= "layers." .. (i - 1) then wrong = wrong + 1 end
  end
  T.ok(#linear_scopes == N and #relu_scopes == N and wrong == 0,
    "ModuleList of 200 blocks called in a loop: every node has its block's scope")
  if wrong > 0 then T.diag(table.concat(linear_scopes, " ", 1, math.min(5, #linear_scopes))) end

  -- Replacing a child moves the path to the new module; the old one is in no tree any more
  -- and works under its caller's scope.
  local old, new = stack.layers[1], Block()
  stack.layers["0"] = new
  local Caller = nn.Module:extend("ScopeCaller")
  function Caller:__init(s, o)
    nn.Module.__init(self)
    self.stack = s
    rawset(self, "loose", o)
  end
  function Caller:forward(x) return self.loose(self.stack.layers[1](x)) end
  local caller = Caller(stack, old)
  local cj = lm.graph_json(caller(lm.randn(1, 2):requires_grad_()):sum())
  T.ok(cj:find('"op":"linear"[^}]*"scope":"stack.layers.0.fc"') ~= nil,
    "a replacement child gets the slot's path")
  T.ok(cj:find('"op":"linear"[^}]*"scope":"fc"') ~= nil,
    "a module removed from the tree runs under its caller's scope")

  -- A module shared by two parents, called from above both, gets a path that exists.
  local shared = nn.Linear(2, 2)
  local Two = nn.Module:extend("ScopeTwo")
  function Two:__init()
    nn.Module.__init(self)
    self.a = nn.Sequential {shared}
    self.b = nn.Sequential {shared}
  end
  function Two:forward(x) return self.b[1](x) end
  local sj = lm.graph_json(Two()(lm.randn(1, 2):requires_grad_()):sum())
  T.ok(sj:find('"op":"linear"[^}]*"scope":"a.0"') ~= nil, "a shared module gets its first path")
  -- Detaching it from its first parent leaves the second path, found by search.
  local two = Two()
  two.a = nil
  local dj = lm.graph_json(two(lm.randn(1, 2):requires_grad_()):sum())
  T.ok(dj:find('"op":"linear"[^}]*"scope":"b.0"') ~= nil,
    "a shared module left in one parent gets that parent's path")

  -- A registration cycle (a module registered below its own child) does not hang the lookup.
  local A, B = nn.Sequential {nn.Linear(2, 2)}, nn.Sequential()
  A:append(B)
  B:append(A)
  local Outer = nn.Module:extend("ScopeOuter")
  function Outer:__init() nn.Module.__init(self); self.top = A end
  function Outer:forward(x) return self.top[1](x) end
  local oj = lm.graph_json(Outer()(lm.randn(1, 2):requires_grad_()):sum())
  T.ok(oj:find('"op":"linear"[^}]*"scope":"top.0"') ~= nil,
    "a registration cycle: paths still found")
end

-- ---- printing --------------------------------------------------------------------------------

do
  local model = nn.Sequential { nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10) }
  local s = tostring(model)
  T.ok(s:find("(0): Linear(in_features=784, out_features=128, bias=True)  -- 100,480 params", 1,
    true) ~= nil, "tostring: a child line with its parameter count")
  T.ok(s:find("(1): ReLU()", 1, true) ~= nil, "tostring: ReLU()")
  T.ok(s:find("Total params: 101,770 (trainable: 101,770)", 1, true) ~= nil,
    "tostring: total count")
  T.is(tostring(nn.BatchNorm2d(16)),
    "BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)  " ..
    "-- 32 params", "tostring: BatchNorm2d as PyTorch's repr")
  T.is(tostring(nn.Conv2d(3, 16, 3, {padding = 1})),
    "Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))  -- 448 params",
    "tostring: Conv2d as PyTorch's repr")
  local tel = tostring(nn.TransformerEncoderLayer(16, 4, {dim_feedforward = 32}))
  T.ok(tel:find("  (self_attn): MultiheadAttention(\n    (out_proj): Linear", 1, true) ~= nil,
    "tostring: nested modules are indented")
  local net = tostring(Net())
  T.ok(net:find("^Net%(") and net:find("(head): Sequential(", 1, true) ~= nil,
    "tostring: a user module by its class name")
end

-- ---- gradients -------------------------------------------------------------------------------

do
  local model = nn.Sequential { nn.Conv2d(1, 3, 3, {padding = 1}), nn.BatchNorm2d(3), nn.ReLU(),
    nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.LayerNorm(5) }
  local x, y = lm.randn(4, 1, 8, 8), lm.tensor({0, 1, 2, 3}, {dtype = "i64"})
  F.cross_entropy(model(x), y):backward()
  local all = true
  for name, p in model:named_parameters() do
    local g = p.grad
    if not g or shape(g) ~= shape(p) then all = false; T.diag("no gradient for " .. name) end
  end
  T.ok(all, "backward fills a gradient for every parameter")
  model:zero_grad()
  local none = true
  for _, p in ipairs(model:parameters()) do none = none and p.grad == nil end
  T.ok(none, "zero_grad drops every gradient")
  model:requires_grad_(false)
  T.ok(not model[1].weight.requires_grad, "requires_grad_(false) freezes the parameters")
  local visited = 0
  model:apply(function() visited = visited + 1 end)
  T.is(visited, 8, "apply visits every module")
end

-- ---- containers ------------------------------------------------------------------------------

do
  local list = nn.ModuleList { nn.Linear(2, 2), nn.Linear(2, 3) }
  list:append(nn.ReLU())
  T.is(#list, 3, "ModuleList length")
  local n = 0
  for i, m in ipairs(list) do n = n + i; T.ok(nn.is_module(m), "ipairs(ModuleList) item " .. i) end
  T.is(n, 6, "ipairs walks 3 items")
  T.is(keys_of(list:named_parameters()), "0.weight 0.bias 1.weight 1.bias", "ModuleList names")
  T.errors(function() list(lm.zeros(1)) end, "ModuleList: has no forward", "ModuleList forward")
  local dict = nn.ModuleDict { {"enc", nn.Linear(2, 4)}, {"dec", nn.Linear(4, 2)} }
  dict.act = nn.ReLU()
  T.is(table.concat(dict:keys(), " "), "enc dec act", "ModuleDict keeps insertion order")
  T.ok(class.name(dict.enc) == "Linear" and dict["dec"].out_features == 2, "ModuleDict lookup")
  T.is(keys_of(dict:named_parameters()), "enc.weight enc.bias dec.weight dec.bias",
    "ModuleDict names")
  local sorted = nn.ModuleDict { b = nn.ReLU(), a = nn.Tanh() }
  T.is(table.concat(sorted:keys(), " "), "a b", "ModuleDict from a map: sorted keys")
  local seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
  seq:append(nn.Linear(3, 1))
  T.is(keys_of(seq:named_parameters()), "0.weight 0.bias 2.weight 2.bias",
    "Sequential(m1, m2) and append")
  T.is(shape(seq(lm.randn(5, 2))), "5,1", "Sequential forward")
end

-- ---- error messages ----------------------------------------------------------------------------

do
  local lin = nn.Linear(4, 3)
  T.errors(function() lin(lm.zeros(2, 5)) end, "Linear: input of shape [2,5] does not fit " ..
    "in_features=4 (weight of shape [3,4])", "Linear with the wrong width names both shapes")
  T.errors(function() lin("x") end, 'Linear: expected a tensor as input, got "x"',
    "Linear with a string input")
  T.errors(function() nn.Linear(-3, 2) end, "Linear: in_features must be a positive integer, " ..
    "got -3", "Linear(-3, 2)")
  T.errors(function() nn.Linear("a", 2) end, 'in_features must be a positive integer, got "a"',
    "Linear with a string size")
  T.errors(function() nn.Linear(2, 2, {bais = false}) end, "Linear: unknown option 'bais'",
    "an unknown option is named")
  T.errors(function() nn.Conv2d(3, 4, 3)(lm.zeros(1, 2, 5, 5)) end,
    "Conv2d: expected 3 input channels", "Conv2d with the wrong channel count")
  T.errors(function() nn.Conv2d(3, 4, 3, {groups = 2}) end, "in_channels=3 must be divisible " ..
    "by groups=2", "Conv2d groups check")
  T.errors(function() nn.BatchNorm2d(3)(lm.zeros(2, 3, 4)) end,
    "BatchNorm2d: expected 4D input, got shape [2,3,4]", "BatchNorm2d with a 3-D input")
  T.errors(function() nn.Embedding(5, 2)(lm.zeros(3)) end,
    "Embedding: indices must be an i64 tensor", "Embedding with float indices")
  T.errors(function() nn.Softmax() end, "Softmax: dim is required", "Softmax without dim")
  T.errors(function() nn.Dropout(1.5) end, "Dropout: p must be a probability", "Dropout(1.5)")
  T.errors(function() nn.MultiheadAttention(10, 3) end, "embed_dim=10 must be divisible by " ..
    "num_heads=3", "MultiheadAttention head check")
  T.errors(function() nn.MultiheadAttention(8, 2)(lm.zeros(3, 2, 6)) end,
    "query of shape [3,2,6] does not fit", "MultiheadAttention with the wrong width")
  T.errors(function() nn.LayerNorm(4)(lm.zeros(2, 5)) end,
    "LayerNorm: expected an input whose last dims are [4], got shape [2,5]", "LayerNorm shape")
  T.errors(function() nn.Sequential { nn.Linear(2, 2), 3 } end,
    "Sequential: element 2 must be an nn.Module, got 3", "Sequential with a non-module")
  T.errors(function() nn.Module()(lm.zeros(1)) end, "Module: forward is not defined",
    "a module without forward")
  local ok, err = pcall(function() local y = lin(lm.zeros(2, 5)); return y end)
  T.ok(not ok and tostring(err):find("test_nn.lua", 1, true) ~= nil,
    "a forward error points at the caller's line")
end

-- ---- cross-check with PyTorch ------------------------------------------------------------------

local function find_python()
  for _, py in ipairs({"/usr/bin/python3", "python3"}) do
    local ok = os.execute(py .. " -c 'import torch, numpy' >/dev/null 2>&1")
    if ok then return py end
  end
  return nil
end

local case_names = {}
local function write_case(dir, name, module, spec, inputs)
  local cdir = dir .. "/" .. name
  assert(os.execute("mkdir -p '" .. cdir .. "/sd'"))
  local sd, keys = module:state_dict()
  local kf = assert(io.open(cdir .. "/keys.txt", "w"))
  for _, k in ipairs(keys) do
    kf:write(k, "\n")
    lm.save_npy(sd[k], cdir .. "/sd/" .. k .. ".npy")
  end
  kf:close()
  local sf = assert(io.open(cdir .. "/spec.txt", "w"))
  for _, line in ipairs(spec) do sf:write(line, "\n") end
  sf:close()
  for stem, t in pairs(inputs) do lm.save_npy(t, cdir .. "/" .. stem .. ".npy") end
  case_names[#case_names + 1] = name
  return cdir
end

local python = find_python()
if not python then
  T.skip("python3 with torch and numpy not found", "PyTorch cross-check")
else
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local results = {}   -- case -> function(cdir) comparing our results with torch's

  local function fresh_randn_(m)
    local _ <close> = lm.no_grad()
    for _, p in ipairs(m:parameters()) do p:normal_(0, 0.5) end
  end

  do
    local m = nn.Linear(5, 3)
    local x = lm.randn(4, 5)
    local cdir = write_case(dir, "linear", m, {"kind 'Linear'", "args (5, 3)", "inputs ('x',)"},
      {x = x})
    results.linear = function() T.close(lm.load_npy(cdir .. "/out0.npy"), m(x), 1e-5,
      "torch: Linear") end
  end
  do
    local m = nn.Conv2d(3, 4, 3, {stride = 2, padding = 1})
    local x = lm.randn(2, 3, 7, 7)
    local cdir = write_case(dir, "conv2d", m, {"kind 'Conv2d'", "args (3, 4, 3)",
      "kwargs {'stride': 2, 'padding': 1}", "inputs ('x',)"}, {x = x})
    results.conv2d = function() T.close(lm.load_npy(cdir .. "/out0.npy"), m(x), 1e-5,
      "torch: Conv2d") end
  end
  do
    local m = nn.BatchNorm2d(3)
    fresh_randn_(m)
    local x = lm.randn(4, 3, 5, 5) * 3 + 1
    local cdir = write_case(dir, "bn_train", m, {"kind 'BatchNorm2d'", "args (3,)",
      "train True", "inputs ('x',)", "save_state True"}, {x = x})
    results.bn_train = function()
      T.close(lm.load_npy(cdir .. "/out0.npy"), m(x), 1e-4, "torch: BatchNorm2d training")
      T.close(lm.load_npy(cdir .. "/state_running_mean.npy"), m.running_mean, 1e-5,
        "torch: BatchNorm2d running_mean after a step")
      T.close(lm.load_npy(cdir .. "/state_running_var.npy"), m.running_var, 1e-4,
        "torch: BatchNorm2d running_var after a step")
      T.close(lm.load_npy(cdir .. "/state_num_batches_tracked.npy"), m.num_batches_tracked, 0,
        "torch: num_batches_tracked after a step")
    end
  end
  do
    local m = nn.BatchNorm2d(3)
    fresh_randn_(m)
    m(lm.randn(6, 3, 4, 4) * 2 - 1)
    m:eval()
    local x = lm.randn(2, 3, 5, 5)
    local cdir = write_case(dir, "bn_eval", m, {"kind 'BatchNorm2d'", "args (3,)",
      "train False", "inputs ('x',)"}, {x = x})
    results.bn_eval = function() T.close(lm.load_npy(cdir .. "/out0.npy"), m(x), 1e-5,
      "torch: BatchNorm2d eval") end
  end
  do
    local m = nn.LayerNorm({4, 6})
    fresh_randn_(m)
    local x = lm.randn(2, 3, 4, 6)
    local cdir = write_case(dir, "layernorm", m, {"kind 'LayerNorm'", "args ((4, 6),)",
      "inputs ('x',)"}, {x = x})
    results.layernorm = function() T.close(lm.load_npy(cdir .. "/out0.npy"), m(x), 1e-5,
      "torch: LayerNorm") end
  end
  do
    local m = nn.MultiheadAttention(8, 2)
    fresh_randn_(m)
    local q, k, v = lm.randn(5, 2, 8), lm.randn(6, 2, 8), lm.randn(6, 2, 8)
    local cdir = write_case(dir, "mha", m, {"kind 'MultiheadAttention'", "args (8, 2)",
      "inputs ('q', 'k', 'v')"}, {q = q, k = k, v = v})
    results.mha = function()
      local out, w = m(q, k, v)
      T.close(lm.load_npy(cdir .. "/out0.npy"), out, 1e-5, "torch: MultiheadAttention output")
      T.close(lm.load_npy(cdir .. "/out1.npy"), w, 1e-5, "torch: MultiheadAttention weights")
    end
  end
  do
    local m = nn.MultiheadAttention(8, 4, {batch_first = true})
    fresh_randn_(m)
    local x = lm.randn(2, 5, 8)
    local am = lm.tensor({{0, 1, 1, 1, 1}, {0, 0, 1, 1, 1}, {0, 0, 0, 1, 1}, {0, 0, 0, 0, 1},
      {0, 0, 0, 0, 0}}, {dtype = "u8"})
    local kpm = lm.tensor({{0, 0, 0, 0, 1}, {0, 0, 0, 1, 1}}, {dtype = "u8"})
    local cdir = write_case(dir, "mha_masks", m, {"kind 'MultiheadAttention'", "args (8, 4)",
      "kwargs {'batch_first': True}", "inputs ('x', 'x', 'x')",
      "call_kwargs {'average_attn_weights': False}",
      "tensor_kwargs ('attn_mask', 'key_padding_mask')"},
      {x = x, attn_mask = am, key_padding_mask = kpm})
    results.mha_masks = function()
      local out, w = m(x, x, x, {attn_mask = am, key_padding_mask = kpm,
        average_attn_weights = false})
      T.close(lm.load_npy(cdir .. "/out0.npy"), out, 1e-5,
        "torch: MultiheadAttention self-attention with boolean masks, batch_first")
      T.close(lm.load_npy(cdir .. "/out1.npy"), w, 1e-5, "torch: per-head weights with masks")
    end
  end
  do
    local m = nn.TransformerEncoderLayer(8, 2, {dim_feedforward = 16, dropout = 0})
    fresh_randn_(m)
    m:eval()
    local x = lm.randn(5, 3, 8)
    local cdir = write_case(dir, "tel", m, {"kind 'TransformerEncoderLayer'", "args (8, 2)",
      "kwargs {'dim_feedforward': 16, 'dropout': 0.0}", "train False", "inputs ('x',)"}, {x = x})
    results.tel = function() T.close(lm.load_npy(cdir .. "/out0.npy"), m(x), 1e-4,
      "torch: TransformerEncoderLayer (post-norm, relu)") end
  end
  do
    local m = nn.TransformerEncoderLayer(8, 2, {dim_feedforward = 16, dropout = 0,
      batch_first = true, norm_first = true, activation = "gelu"})
    fresh_randn_(m)
    m:eval()
    local x = lm.randn(3, 4, 8)
    local kpm = lm.tensor({{0, 0, 0, 1}, {0, 0, 0, 0}, {0, 1, 1, 1}}, {dtype = "u8"})
    local cdir = write_case(dir, "tel_prenorm", m, {"kind 'TransformerEncoderLayer'",
      "args (8, 2)", "kwargs {'dim_feedforward': 16, 'dropout': 0.0, 'batch_first': True, " ..
      "'norm_first': True, 'activation': 'gelu'}", "train False", "inputs ('x',)",
      "tensor_kwargs ('src_key_padding_mask',)"}, {x = x, src_key_padding_mask = kpm})
    results.tel_prenorm = function()
      T.close(lm.load_npy(cdir .. "/out0.npy"), m(x, {src_key_padding_mask = kpm}), 1e-4,
        "torch: TransformerEncoderLayer (norm_first, gelu, batch_first, padding mask)")
    end
  end

  local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
  local pipe = assert(io.popen(python .. " '" .. here .. "torch_nn_check.py' '" .. dir ..
    "' 2>&1"))
  local report = {}
  for line in pipe:lines() do
    local status, case, why = line:match("^(%a+) ([%w_]+):? ?(.*)$")
    if status == "ok" or status == "fail" then
      report[case] = status == "ok" and true or why
    else
      T.diag(line)
    end
  end
  pipe:close()
  for _, case in ipairs(case_names) do
    if report[case] == true then
      results[case]()
    else
      T.ok(false, "torch: case " .. case .. " ran in PyTorch (names and load_state_dict)")
      T.diag(tostring(report[case] or "no report"))
    end
  end
  os.execute("rm -rf '" .. dir .. "'")
end

-- ---- loss modules -------------------------------------------------------------------------
do
  lm.manual_seed(21)
  local logits, labels = lm.randn(6, 4), lm.tensor{0, 3, 1, 2, 3, 0}
  local cw = lm.tensor{1.0, 2.0, 0.5, 1.5}
  T.close(nn.CrossEntropyLoss{label_smoothing = 0.1}(logits, labels),
    lm.cross_entropy(logits, labels, {label_smoothing = 0.1}), 0, "CrossEntropyLoss = cross_entropy")
  local weighted = nn.CrossEntropyLoss(cw)
  T.close(weighted(logits, labels), lm.cross_entropy(logits, labels, {weight = cw}), 0,
    "CrossEntropyLoss(weight) positional")
  local sd, keys = weighted:state_dict()
  T.ok(#keys == 1 and keys[1] == "weight" and sd.weight ~= nil, "a class weight is a buffer in state_dict")
  T.close(nn.NLLLoss{reduction = "sum"}(lm.log_softmax(logits, 1), labels),
    lm.nll_loss(lm.log_softmax(logits, 1), labels, {reduction = "sum"}), 0, "NLLLoss")
  local a, b = lm.randn(5, 3), lm.randn(5, 3)
  T.close(nn.MSELoss()(a, b), lm.mse_loss(a, b), 0, "MSELoss")
  T.close(nn.L1Loss("none")(a, b), lm.l1_loss(a, b, {reduction = "none"}), 0, "L1Loss('none')")
  T.close(nn.SmoothL1Loss{beta = 0.5}(a, b), lm.smooth_l1_loss(a, b, {beta = 0.5}), 0, "SmoothL1Loss")
  local p, t = lm.rand(5, 3), lm.rand(5, 3):gt(0.5):float()
  T.close(nn.BCELoss()(p, t), lm.binary_cross_entropy(p, t), 0, "BCELoss")
  local pw = lm.tensor{1.0, 2.0, 3.0}
  T.close(nn.BCEWithLogitsLoss{pos_weight = pw}(a, t),
    lm.binary_cross_entropy_with_logits(a, t, {pos_weight = pw}), 0, "BCEWithLogitsLoss(pos_weight)")
  T.is(tostring(nn.MSELoss("sum")), "MSELoss(reduction='sum')", "loss repr as PyTorch's")
  T.errors(function() nn.MSELoss("avg") end, 'reduction must be "mean", "sum" or "none"',
    "a bad reduction is refused")
  T.errors(function() nn.MSELoss()(a, 3) end, "target", "a non-tensor target is refused")
  T.ok(nn.utils.clip_grad_norm_ == lm.optim.clip_grad_norm_, "nn.utils.clip_grad_norm_ as torch.nn.utils")
  local net = nn.Sequential {nn.Linear(3, 4)}
  local h = net:fit(lm.data.TensorDataset(lm.randn(32, 3), lm.randint(0, 4, {32})),
    {epochs = 1, batch_size = 8, optimizer = "sgd", lr = 0.1, loss = nn.CrossEntropyLoss(), verbose = false})
  T.ok(#h.loss == 1, "fit takes a loss module")
end

-- ---- forward options built once ---------------------------------------------------------------
-- Conv, pooling and loss modules pass the same options table to their op at every call; a
-- reassigned attribute is still honoured.
do
  local conv = nn.Conv2d(2, 3, 3, {padding = 1})
  local x = lm.randn(1, 2, 8, 8)
  T.is(shape(conv(x)), "1,3,8,8", "Conv2d forward")
  local first = rawget(conv, "_op_options")
  conv(x)
  T.ok(first ~= nil and rawequal(rawget(conv, "_op_options"), first),
    "Conv2d: the op's options table is reused across calls")
  conv.stride = {2, 2}
  T.is(shape(conv(x)), "1,3,4,4", "Conv2d: a reassigned stride takes effect")
  T.close(conv(x), lm.conv2d(x, conv.weight, conv.bias, {stride = 2, padding = 1}), 0,
    "Conv2d: output with the new stride equals the functional op's")
  conv.padding[1], conv.padding[2] = 0, 0
  T.is(shape(conv(x)), "1,3,3,3", "Conv2d: a padding changed in place takes effect")

  local pool = nn.MaxPool2d(2)
  T.is(shape(pool(x)), "1,2,4,4", "MaxPool2d forward")
  pool.return_indices = true
  local v, idx = pool(x)
  T.ok(v ~= nil and idx ~= nil and idx.dtype == "i64", "MaxPool2d: return_indices set later")
  local avg = nn.AvgPool2d(2, {padding = 1})
  local a1 = avg(x)
  avg.count_include_pad = false
  T.close(avg(x), lm.avg_pool2d(x, 2, {padding = 1, count_include_pad = false}), 0,
    "AvgPool2d: count_include_pad set later")
  T.ok(shape(a1) == "1,2,5,5", "AvgPool2d forward")

  local tr = nn.ConvTranspose2d(2, 2, 3, {stride = 2, output_padding = 1})
  T.is(shape(tr(x)), "1,2,18,18", "ConvTranspose2d forward with output_padding")

  local crit = nn.MSELoss()
  local p, t = lm.randn(4, 3), lm.randn(4, 3)
  T.close(crit(p, t), lm.mse_loss(p, t), 0, "MSELoss forward")
  crit.reduction = "sum"
  T.close(crit(p, t), lm.mse_loss(p, t, {reduction = "sum"}), 0,
    "MSELoss: a reassigned reduction takes effect")
  local w = lm.tensor{1.0, 2.0, 3.0}
  local ce = nn.CrossEntropyLoss()
  local labels = lm.tensor{0, 2, 1, 1}
  ce(p, labels)
  ce.weight = w
  T.close(ce(p, labels), lm.cross_entropy(p, labels, {weight = w}), 0,
    "CrossEntropyLoss: a weight buffer assigned later takes effect")
end

-- ---- dtype conversion ------------------------------------------------------------------------
do
  local m = nn.Sequential {nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 4, {bias = false})}
  m[3].weight = nil
  m[3]:register_parameter("weight", m[2].weight:view(4, 1):expand(4, 4):contiguous():detach():requires_grad_())
  m:double()
  T.ok(m[1].weight.dtype == "f64" and m[1].weight.requires_grad and m[1].weight.is_leaf,
    "double(): parameters become f64 leaves requiring grad")
  T.ok(m[2].running_mean.dtype == "f64" and m[2].num_batches_tracked.dtype == "i64",
    "double(): float buffers convert, integer buffers keep their dtype")
  local y = m(lm.randn(5, 3, {dtype = "f64"})):sum()
  y:backward()
  T.is(m[1].weight.grad.dtype, "f64", "double(): gradients in f64")
  local tied = nn.Sequential {nn.Linear(2, 2, {bias = false}), nn.Linear(2, 2, {bias = false})}
  tied[2].weight = nil
  tied[2]:register_parameter("weight", tied[1].weight)
  tied:double()
  T.ok(rawequal(tied[1].weight, tied[2].weight) and #tied:parameters() == 1, "double(): a shared parameter stays shared")
  T.is(tied:float()[1].weight.dtype, "f32", "float() converts back and returns the module")
  T.errors(function() m:to("i64") end, 'dtype must be "f32" or "f64"', "to(): integer dtypes are refused")
end

-- to() converts in place (PyTorch swaps param.data): an optimizer made before the conversion
-- keeps training the module, and references to parameters and buffers stay valid.
do
  lm.manual_seed(5)
  local lin = nn.Linear(3, 2)
  local opt = lm.optim.SGD(lin:parameters(), {lr = 0.1})
  local w = lin.weight
  lin(lm.randn(4, 3)):sum():backward()
  lin:double()
  T.ok(rawequal(lin.weight, w) and w.dtype == "f64" and w.requires_grad and w.is_leaf,
    "double(): a parameter keeps its identity, becomes f64 and still requires grad")
  T.ok(w.grad == nil, "double(): the old-dtype gradient is dropped")
  local before = w:clone()
  opt:zero_grad()
  lin(lm.randn(4, 3, {dtype = "f64"})):sum():backward()
  opt:step()
  T.ok((w - before):abs():max():item() > 0,
    "an optimizer made before double() still updates the weight")
  T.close(w, before - w.grad * 0.1, 1e-12, "the step is SGD's on the f64 weight")

  local bn = nn.BatchNorm1d(3)
  local rm = bn.running_mean
  bn:double()
  T.ok(rawequal(bn.running_mean, rm) and rm.dtype == "f64",
    "double(): a buffer keeps its identity and becomes f64")
  bn(lm.randn(5, 3, {dtype = "f64"}) + 2)
  T.ok(rm:min():item() > 0, "the running statistics update through the kept reference")
  local holder = nn.Identity()
  holder:register_buffer("derived", lm.ones(2, {requires_grad = true}) * 2)
  holder:double()
  T.ok(holder.derived.dtype == "f64" and holder.derived:sum():item() == 4,
    "double(): a non-leaf buffer is replaced by its converted copy")
end

T.done()
