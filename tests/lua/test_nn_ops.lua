-- test_nn_ops.lua: the neural-network op wrappers of the binding (lua/src/nn_lua.c) from Lua:
-- each op on a small hand-computed case (or PyTorch 1.13's value for the same inputs, noted),
-- positional and keyword forms, gradients flowing, and the errors for bad calls.
local T = require "tap"
local lm = require "lumen"
T.plan_auto()

local function f32(v) return lm.tensor(v, {dtype = "f32"}) end
local function shape(t) return table.concat(t.shape, ",") end
local ln2, ln3 = math.log(2), math.log(3)

local names = {
  "linear", "conv1d", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d",
  "adaptive_avg_pool2d", "batch_norm", "layer_norm", "group_norm", "dropout", "embedding",
  "softmax", "log_softmax", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss",
  "binary_cross_entropy", "binary_cross_entropy_with_logits", "scaled_dot_product_attention",
  "sgd_step", "adam_step", "rmsprop_step",
}
local missing = {}
for _, n in ipairs(names) do if type(lm[n]) ~= "function" then missing[#missing + 1] = n end end
T.is(table.concat(missing, " "), "", "every nn op is lm.NAME")
T.ok(lm.Tensor.softmax and lm.Tensor.log_softmax and not lm.Tensor.conv2d, "softmax and log_softmax are methods, conv2d is not")

-- linear and convolutions -------------------------------------------------------------------------
local x = f32{{1, 2}}
local w = f32{{1, 0}, {0, 1}, {1, 1}}
T.close(lm.linear(x, w), {{1, 2, 3}}, 0, "linear without bias")
T.close(lm.linear(x, w, f32{0, 0, 1}), {{1, 2, 4}}, 0, "linear with bias")
T.errors(function() lm.linear(x, f32{{1, 2, 3}}) end, "[1,2]", "linear shape mismatch names the shapes")

local s1 = f32{{{1, 2, 3, 4}}}
local k2 = f32{{{1, 1}}}
T.close(lm.conv1d(s1, k2), {{{3, 5, 7}}}, 0, "conv1d")
T.close(lm.conv1d(s1, k2, f32{10}), {{{13, 15, 17}}}, 0, "conv1d with bias")
T.close(lm.conv1d(s1, k2, nil, 2), {{{3, 7}}}, 0, "conv1d positional stride")
T.close(lm.conv1d(s1, k2, nil, 1, 1), {{{1, 3, 5, 7, 4}}}, 0, "conv1d positional padding")
T.close(lm.conv1d(s1, k2, {dilation = 2}), {{{4, 6}}}, 0, "conv1d{dilation}")
T.close(lm.conv1d(s1, f32{{{1, 1, 1}}}, {padding = "same"}), {{{3, 6, 9, 7}}}, 0, "conv1d padding \"same\"")
T.close(lm.conv1d(s1, k2, {padding = "valid"}), {{{3, 5, 7}}}, 0, "conv1d padding \"valid\"")
T.close(lm.conv1d(f32{{{1, 2}, {3, 4}}}, f32{{{2}}, {{-1}}}, {groups = 2}), {{{2, 4}, {-3, -4}}}, 0, "conv1d groups")
T.errors(function() lm.conv1d(s1, k2, {padding = "same"}) end, "pads one side more", "padding \"same\" with an even kernel")
T.errors(function() lm.conv1d(s1, f32{{{1, 1, 1}}}, {padding = "same", stride = 2}) end, "needs stride 1", "padding \"same\" with a stride")

local img = lm.arange(1, 10):float():view(1, 1, 3, 3)
local ones22 = lm.ones(1, 1, 2, 2)
T.close(lm.conv2d(img, ones22), {{{{12, 16}, {24, 28}}}}, 0, "conv2d")
T.close(lm.conv2d(img, ones22, nil, {2, 1}), {{{{12, 16}}}}, 0, "conv2d stride {h, w}")
T.is(shape(lm.conv2d(img, ones22, {padding = 1})), "1,1,4,4", "conv2d{padding}")
T.is(shape(lm.conv2d(img, ones22, {padding = {1, 0}})), "1,1,4,2", "conv2d padding {h, w}")
T.close(lm.conv2d(img, ones22, f32{1}, {stride = 2, padding = 1}), {{{{2, 6}, {12, 29}}}}, 0, "conv2d bias, stride and padding")
T.close(lm.conv2d(img, lm.ones(1, 1, 3, 3), {padding = "same"}), {{{{12, 21, 16}, {27, 45, 33}, {24, 39, 28}}}}, 0, "conv2d padding \"same\"")
T.close(lm.conv2d(img, ones22, {dilation = 2}), {{{{20}}}}, 0, "conv2d dilation")
T.errors(function() lm.conv2d(img, ones22, {stride = "x"}) end, "'stride' must be an integer or a table {h, w}", "conv2d stride type")
T.errors(function() lm.conv2d(img, ones22, {strides = 2}) end, "unknown option 'strides'", "conv2d misspelt option")
T.errors(function() lm.conv2d(img, lm.ones(1, 2, 2, 2)) end, "conv2d", "conv2d channel mismatch is an engine error")

local ct_in = f32{{{{1, 2}, {3, 4}}}}
T.close(lm.conv_transpose2d(ct_in, ones22), {{{{1, 3, 2}, {4, 10, 6}, {3, 7, 4}}}}, 0, "conv_transpose2d")
T.close(lm.conv_transpose2d(ct_in, ones22, nil, 2),
        {{{{1, 1, 2, 2}, {1, 1, 2, 2}, {3, 3, 4, 4}, {3, 3, 4, 4}}}}, 0, "conv_transpose2d stride")
T.close(lm.conv_transpose2d(ct_in, ones22, {stride = 2, output_padding = 1}),
        {{{{1, 1, 2, 2, 0}, {1, 1, 2, 2, 0}, {3, 3, 4, 4, 0}, {3, 3, 4, 4, 0}, {0, 0, 0, 0, 0}}}}, 0,
        "conv_transpose2d output_padding (PyTorch's value)")
T.close(lm.conv_transpose2d(ct_in, ones22, {padding = 1}), {{{{10}}}}, 0, "conv_transpose2d padding")

-- pooling ----------------------------------------------------------------------------------------
local grid = lm.arange(16):float():view(1, 1, 4, 4)
T.close(lm.max_pool2d(grid, 2), {{{{5, 7}, {13, 15}}}}, 0, "max_pool2d")
local pv, pi = lm.max_pool2d(grid, 2, {return_indices = true})
T.close(pv, {{{{5, 7}, {13, 15}}}}, 0, "max_pool2d values with return_indices")
T.close(pi, {{{{5, 7}, {13, 15}}}}, 0, "max_pool2d indices are flat positions in the plane")
T.is(pi.dtype, "i64", "max_pool2d indices are i64")
T.is(shape(lm.max_pool2d(grid, 2, 1)), "1,1,3,3", "max_pool2d positional stride")
T.close(lm.max_pool2d(grid, {2, 2}, {stride = 1, dilation = 2}), {{{{10, 11}, {14, 15}}}}, 0, "max_pool2d dilation (PyTorch's value)")
T.close(lm.max_pool2d(lm.arange(9):float():view(1, 1, 3, 3), 2, {ceil_mode = true}), {{{{4, 5}, {7, 8}}}}, 0, "max_pool2d ceil_mode")
T.close(lm.max_pool2d(grid, {kernel_size = 4}), {{{{15}}}}, 0, "max_pool2d{kernel_size}")
T.errors(function() lm.max_pool2d(grid) end, "kernel_size is required", "max_pool2d without kernel")
T.close(lm.avg_pool2d(grid, 2), {{{{2.5, 4.5}, {10.5, 12.5}}}}, 0, "avg_pool2d")
T.close(lm.avg_pool2d(grid, 2, {padding = 1}), {{{{0, 0.75, 0.75}, {3, 7.5, 4.5}, {3, 6.75, 3.75}}}}, 1e-6,
        "avg_pool2d padding counts the pad (PyTorch's value)")
T.close(lm.avg_pool2d(grid, 2, {padding = 1, count_include_pad = false}),
        {{{{0, 1.5, 3}, {6, 7.5, 9}, {12, 13.5, 15}}}}, 1e-6, "avg_pool2d count_include_pad = false")
T.close(lm.avg_pool2d(grid, 2, 2, 0, true), {{{{2.5, 4.5}, {10.5, 12.5}}}}, 0, "avg_pool2d positional stride, padding, ceil_mode")
T.close(lm.adaptive_avg_pool2d(grid, 1), {{{{7.5}}}}, 0, "adaptive_avg_pool2d(1)")
T.close(lm.adaptive_avg_pool2d(grid, {2, 1}), {{{{3.5}, {11.5}}}}, 0, "adaptive_avg_pool2d {h, w}")

-- normalisation, dropout, embedding, softmax ----------------------------------------------------
local bx = f32{{1, 2}, {3, 4}, {5, 9}}
local rm, rv = lm.zeros(2), lm.ones(2)
T.close(lm.batch_norm(bx, rm, rv, nil, nil, {training = true}),
        {{-1.2247427, -1.0190487}, {0, -0.3396829}, {1.2247424, 1.3587316}}, 1e-5, "batch_norm training (PyTorch's value)")
T.close(rm, {0.3, 0.5}, 1e-6, "batch_norm updates running_mean")
T.close(rv, {1.3, 2.2}, 1e-6, "batch_norm updates running_var (unbiased, momentum 0.1)")
T.close(lm.batch_norm(bx, lm.zeros(2), lm.ones(2), f32{2, 1}, f32{0, 1}, {eps = 0}),
        {{2, 3}, {6, 5}, {10, 10}}, 1e-6, "batch_norm eval with weight and bias")
T.close(lm.batch_norm(bx, lm.zeros(2), lm.ones(2), nil, nil, false, 0.1, 0), bx, 0, "batch_norm positional training, momentum, eps")
local rm2 = lm.zeros(2)
lm.batch_norm(bx, rm2, lm.ones(2), nil, nil, {training = true, momentum = 1})
T.close(rm2, {3, 5}, 1e-6, "batch_norm momentum option")
T.is(shape(lm.batch_norm(bx, nil, nil, {training = true})), "3,2", "batch_norm training without running stats")
T.errors(function() lm.batch_norm(bx, nil, nil) end, "eval mode needs running_mean", "batch_norm eval without running stats")
T.close(lm.layer_norm(f32{{1, 3}}, 2, nil, nil, {eps = 0}), {{-1, 1}}, 1e-6, "layer_norm")
T.close(lm.layer_norm(f32{{1, 3}}, {2}, f32{2, 2}, f32{1, 1}, 0), {{-1, 3}}, 1e-6, "layer_norm with a table shape, weight, bias, eps")
T.close(lm.layer_norm(f32{{1, 3}, {5, 7}}, {2, 2}, {weight = lm.ones(2, 2), eps = 0}), {{-1.3416408, -0.4472136}, {0.4472136, 1.3416408}}, 1e-6,
        "layer_norm over two dims, weight as option")
T.errors(function() lm.layer_norm(f32{{1, 3}}, 3) end, "layer_norm", "layer_norm shape mismatch")
T.close(lm.group_norm(f32{{{1}, {3}, {5}, {9}}}, 2), {{{-0.999995}, {0.999995}, {-0.9999988}, {0.9999988}}}, 1e-6, "group_norm (PyTorch's value)")
T.close(lm.group_norm(f32{{{1}, {3}, {5}, {9}}}, 2, f32{1, 1, 2, 2}, nil, {eps = 0}), {{{-1}, {1}, {-2}, {2}}}, 1e-6, "group_norm weight, eps")
local dx = lm.ones(1000)
T.close(lm.dropout(dx, {training = false}), dx, 0, "dropout in eval is the identity")
T.close(lm.dropout(dx, 0), dx, 0, "dropout(p = 0)")
T.close(lm.dropout(dx, 1), lm.zeros(1000), 0, "dropout(p = 1)")
local dr = lm.dropout(dx)
T.ok(dr:eq(0):add(dr:eq(2)):sum():item() == 1000, "dropout keeps 1/(1-p)-scaled values or zeros")
T.close(dr:mean(), 1, 0.15, "dropout keeps the mean")
T.close(lm.dropout(dx, {p = 0.75}):mean(), 1, 0.3, "dropout{p}")
local ew = f32{{0, 0}, {1, 1}, {2, 2}}
local ei = lm.tensor{2, 0}
T.close(lm.embedding(ew, ei), {{2, 2}, {0, 0}}, 0, "embedding(weight, indices)")
T.close(lm.embedding(ei, ew), {{2, 2}, {0, 0}}, 0, "embedding(indices, weight), PyTorch's order")
local ewg = lm.tensor({{0, 0}, {1, 1}, {2, 2}}, {dtype = "f32", requires_grad = true})
lm.embedding(ewg, lm.tensor{0, 1, 1}, {padding_idx = 1}):sum():backward()
T.close(ewg.grad, {{1, 1}, {0, 0}, {0, 0}}, 0, "embedding padding_idx gets no gradient")
ewg.grad = nil
lm.embedding(ewg, lm.tensor{0, 2}, {padding_idx = -1}):sum():backward()
T.close(ewg.grad, {{1, 1}, {0, 0}, {0, 0}}, 0, "a negative padding_idx counts from the end")
T.errors(function() lm.embedding(ew, ei, {padding_idx = -4}) end, "padding_idx -4 is out of range", "padding_idx below -V")
T.errors(function() lm.embedding(ew, ei, 3) end, "padding_idx 3 is out of range", "padding_idx of V")
local sm = f32{{0, ln3}, {0, 0}}
T.close(sm:softmax(1), {{0.25, 0.75}, {0.5, 0.5}}, 1e-6, "softmax(dim)")
T.close(lm.softmax(sm, {dim = 0}), {{0.5, 0.75}, {0.5, 0.25}}, 1e-6, "softmax{dim}")
T.close(sm:log_softmax(-1), {{math.log(0.25), math.log(0.75)}, {-ln2, -ln2}}, 1e-6, "log_softmax")
T.errors(function() sm:softmax() end, "dim is required", "softmax needs a dim")

-- losses ---------------------------------------------------------------------------------------
local logits = f32{{0, ln3}, {1, 2}}
local target = lm.tensor{0, 1}
T.close(lm.cross_entropy(logits, target), 0.8497780, 1e-6, "cross_entropy (mean)")
T.close(lm.cross_entropy(logits, target, {reduction = "none"}), {1.3862944, 0.3132617}, 1e-6, "cross_entropy none")
T.close(lm.cross_entropy(logits, target, {reduction = "sum"}), 1.6995561, 1e-6, "cross_entropy sum")
T.close(lm.cross_entropy(logits, target, {label_smoothing = 0.2}), 0.8448474, 1e-6, "cross_entropy label_smoothing (PyTorch's value)")
T.close(lm.cross_entropy(logits, target, f32{1, 3}), 0.5815198, 1e-6, "cross_entropy positional weight (PyTorch's value)")
T.close(lm.cross_entropy(logits, target, {weight = f32{1, 3}}), 0.5815198, 1e-6, "cross_entropy{weight}")
T.close(lm.cross_entropy(logits, lm.tensor{0, -100}), 1.3862944, 1e-6, "cross_entropy ignores -100")
T.close(lm.cross_entropy(logits, target, {ignore_index = 1}), 1.3862944, 1e-6, "cross_entropy{ignore_index}")
T.errors(function() lm.cross_entropy(logits, target, {reduction = "avg"}) end, "reduction must be", "bad reduction name")
T.errors(function() lm.cross_entropy(logits, lm.tensor{0, 1, 1}) end, "cross_entropy", "target of the wrong size")
local lp = f32{{-1, -2}, {-3, -4}}
T.close(lm.nll_loss(lp, target), 2.5, 1e-6, "nll_loss")
T.close(lm.nll_loss(lp, target, {reduction = "none"}), {1, 4}, 1e-6, "nll_loss none")
T.close(lm.nll_loss(lp, target, f32{3, 1}), 7 / 4, 1e-6, "nll_loss weight")
T.close(lm.nll_loss(lp, target, {ignore_index = 0, reduction = "sum"}), 4, 1e-6, "nll_loss ignore_index")
local pr, zero2 = f32{1, 2}, lm.zeros(2)
T.close(lm.mse_loss(pr, zero2), 2.5, 1e-6, "mse_loss")
T.close(lm.mse_loss(pr, zero2, {reduction = "sum"}), 5, 1e-6, "mse_loss sum")
T.close(lm.l1_loss(pr, zero2), 1.5, 1e-6, "l1_loss")
T.close(lm.l1_loss(pr, zero2, {reduction = "none"}), {1, 2}, 1e-6, "l1_loss none")
T.close(lm.smooth_l1_loss(pr, zero2), 1.0, 1e-6, "smooth_l1_loss beta 1")
T.close(lm.smooth_l1_loss(pr, zero2, {beta = 2}), 0.625, 1e-6, "smooth_l1_loss{beta}")
T.errors(function() lm.mse_loss(pr, lm.zeros(3)) end, "[2]", "mse_loss shape mismatch names the shapes")
local half, t10 = f32{0.5, 0.5}, f32{1, 0}
T.close(lm.binary_cross_entropy(half, t10), ln2, 1e-6, "binary_cross_entropy")
T.close(lm.binary_cross_entropy(half, t10, {weight = f32{2, 0}, reduction = "sum"}), 2 * ln2, 1e-6, "binary_cross_entropy weight")
T.close(lm.binary_cross_entropy_with_logits(zero2, t10), ln2, 1e-6, "binary_cross_entropy_with_logits")
T.close(lm.binary_cross_entropy_with_logits(zero2, t10, {pos_weight = f32{3}}), 2 * ln2, 1e-6, "bce_with_logits pos_weight")
T.close(lm.binary_cross_entropy_with_logits(zero2, t10, f32{1, 3}, {reduction = "sum"}), 4 * ln2, 1e-6, "bce_with_logits weight")

-- attention ----------------------------------------------------------------------------------------
local q = f32{{1, 0}, {0, 1}, {1, 1}}
local k = f32{{1, 0}, {0, 2}}
local v = f32{{1, 2}, {3, 4}}
local sdpa = lm.scaled_dot_product_attention
T.close(sdpa(q, k, v), {{1.6604769, 2.6604769}, {2.6088595, 3.6088595}, {2.3395231, 3.3395231}}, 1e-5, "attention (PyTorch's value)")
T.close(sdpa(q, k, v, {is_causal = true}), {{1, 2}, {2.6088595, 3.6088595}, {2.3395231, 3.3395231}}, 1e-5, "attention is_causal")
T.close(sdpa(q, k, v, nil, 0, true), {{1, 2}, {2.6088595, 3.6088595}, {2.3395231, 3.3395231}}, 1e-5, "attention positional is_causal")
T.close(sdpa(q, k, v, {scale = 1}), {{1.5378829, 2.5378829}, {2.7615941, 3.7615941}, {2.4621172, 3.4621172}}, 1e-5, "attention scale")
local bmask = lm.tensor({{1, 0}, {1, 1}, {0, 1}}, {dtype = "u8"})
T.close(sdpa(q, k, v, bmask), {{1, 2}, {2.6088595, 3.6088595}, {3, 4}}, 1e-5, "attention u8 mask (0 = masked)")
T.close(sdpa(q, k, v, {attn_mask = f32{{0, -1}, {0, 0}, {0, 0}}}), {{1.3070787, 2.3070786}, {2.6088595, 3.6088595}, {2.3395231, 3.3395231}},
        1e-5, "attention float mask is added")
T.close(sdpa(q, k, v, {dropout_p = 1}), lm.zeros(3, 2), 0, "attention dropout_p = 1 drops everything")
-- dropout_p > 0 takes the composed path: with a tiny p it must match the fused op.
local bq, bk, bv = lm.randn(2, 3, 5, 4), lm.randn(3, 6, 4), lm.randn(2, 3, 6, 2)
local fmask = lm.randn(5, 6)
for _, case in ipairs{
  {"no mask", {}}, {"float mask", {attn_mask = fmask}}, {"u8 mask", {attn_mask = fmask:gt(-1)}},
  {"causal", {is_causal = true}}, {"scale", {scale = 0.3}},
} do
  local opts = case[2]
  local fused = sdpa(bq, bk, bv, opts)
  opts.dropout_p = 1e-12
  T.close(sdpa(bq, bk, bv, opts), fused, 1e-5, "attention composed for dropout matches the fused op: " .. case[1])
end
local dq = lm.randn(2, 500, 4, {requires_grad = true})
local dout = sdpa(dq, lm.randn(2, 8, 4), lm.ones(2, 8, 1), {dropout_p = 0.5})
T.is(shape(dout), "2,500,1", "attention with dropout keeps the shape")
T.close(dout:mean(), 1, 0.1, "attention dropout rescales the kept probabilities")
dout:sum():backward()
T.ok(dq.grad ~= nil and shape(dq.grad) == "2,500,4", "attention with dropout has gradients")
T.close(sdpa(q, k, v, {dropout_p = 0.5, is_causal = true}):select(0, 0):select(0, 0) * 0, 0, 0, "attention dropout with is_causal runs")
local masked_drop = sdpa(q, k, v, {dropout_p = 0.5, attn_mask = bmask})
T.ok(masked_drop:select(0, 2):eq(0):add(masked_drop:select(0, 2):eq(v:select(0, 1) * 2)):sum():item() == 2,
     "attention dropout with a u8 mask keeps only unmasked rows")
T.errors(function() sdpa(q, k, v, {attn_mask = bmask, is_causal = true}) end, "not both", "attn_mask and is_causal together")
T.errors(function() sdpa(q, f32{{1, 0, 0}}, v) end, "scaled_dot_product_attention", "attention shape mismatch")
T.errors(function() sdpa(q, k, v, {dropout_p = 2}) end, "dropout_p must be in [0, 1]", "attention dropout_p range")

-- fused optimizer steps (PyTorch 1.13's torch.optim values for the same two steps) -------------
local function param() local p = f32{1, 2}; p:requires_grad_(); p.grad = f32{0.5, 1}; return p end
local p = param()
local buf = lm.zeros(2)
lm.sgd_step(p, buf, true, {lr = 0.1, momentum = 0.9})
lm.sgd_step(p, buf, false, {lr = 0.1, momentum = 0.9})
T.close(p, {0.855, 1.71}, 1e-6, "sgd_step with momentum")
T.close(buf, {0.95, 1.9}, 1e-6, "sgd_step momentum buffer")
p, buf = param(), lm.zeros(2)
lm.sgd_step(p, buf, true, {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.1})
lm.sgd_step(p, buf, false, {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.1})
T.close(p, {0.72556597, 1.45113194}, 1e-6, "sgd_step nesterov with weight decay")
p = param()
lm.sgd_step(p, nil, false, {lr = 0.1, maximize = true})
T.close(p, {1.05, 2.1}, 1e-6, "sgd_step without momentum, maximize")
T.errors(function() lm.sgd_step(param(), nil, false, {}) end, "option 'lr' is required", "sgd_step needs lr")
T.errors(function() lm.sgd_step(param(), nil, false, {lr = 0.1, momentum = 0.9}) end, "momentum_buf", "sgd_step momentum without a buffer")

p = param()
local m1, m2 = lm.zeros(2), lm.zeros(2)
lm.adam_step(p, m1, m2, nil, 1, {lr = 0.1})
lm.adam_step(p, m1, m2, nil, 2, {lr = 0.1})
T.close(p, {0.8, 1.8}, 1e-6, "adam_step")
T.close(m1, {0.095, 0.19}, 1e-7, "adam_step exp_avg")
T.close(m2, {0.00049975, 0.001999}, 1e-8, "adam_step exp_avg_sq")
p, m1, m2 = param(), lm.zeros(2), lm.zeros(2)
local vmax = lm.zeros(2)
lm.adam_step(p, m1, m2, vmax, 1, {lr = 0.1, betas = {0.5, 0.9}, amsgrad = true})
lm.adam_step(p, m1, m2, vmax, 2, {lr = 0.1, beta1 = 0.5, beta2 = 0.9, amsgrad = true})
T.close(m1, {0.375, 0.75}, 1e-7, "adam_step betas / beta1")
T.close(vmax, {0.0475, 0.19}, 1e-7, "adam_step amsgrad max_exp_avg_sq")
T.close(p, {0.8, 1.8}, 1e-6, "adam_step amsgrad parameter")
p, m1, m2 = param(), lm.zeros(2), lm.zeros(2)
lm.adam_step(p, m1, m2, nil, 1, {lr = 0.1, weight_decay = 0.5, decoupled_weight_decay = true})
T.close(p, {0.85, 1.8}, 1e-6, "adam_step decoupled weight decay (AdamW)")
T.errors(function() lm.adam_step(param(), lm.zeros(2), lm.zeros(2), nil, 0, {}) end, "step", "adam_step counts steps from 1")
T.errors(function() lm.adam_step(param(), lm.zeros(2), lm.zeros(2), nil, 1, {betas = 0.9}) end, "betas", "adam_step betas must be a pair")

p = param()
local sq = lm.zeros(2)
lm.rmsprop_step(p, sq, nil, nil, {lr = 0.01})
lm.rmsprop_step(p, sq, nil, nil, {lr = 0.01})
T.close(p, {0.82911193, 1.82911181}, 1e-6, "rmsprop_step")
T.close(sq, {0.004975, 0.0199}, 1e-8, "rmsprop_step square_avg")
p, sq = param(), lm.zeros(2)
local mb, ga = lm.zeros(2), lm.zeros(2)
lm.rmsprop_step(p, sq, mb, ga, {lr = 0.01, centered = true, momentum = 0.5})
lm.rmsprop_step(p, sq, mb, ga, {lr = 0.01, centered = true, momentum = 0.5})
T.close(p, {0.77764022, 1.77764010}, 1e-5, "rmsprop_step centered with momentum")
T.close(ga, {0.00995, 0.0199}, 1e-8, "rmsprop_step grad_avg")
T.errors(function() lm.rmsprop_step(param(), lm.zeros(2), nil, nil, {lr = 0.01, mom = 0.5}) end, "unknown option 'mom'", "rmsprop_step misspelt option")

-- argument errors --------------------------------------------------------------------------------
T.errors(function() lm.linear("x", w) end, "bad argument #1 to", "linear with a string")
T.errors(function() lm.conv2d(img, 3) end, "bad argument #2", "conv2d weight must be a tensor")
T.errors(function() lm.cross_entropy(logits, {0, 1}) end, "bad argument #2", "cross_entropy target must be a tensor")
T.errors(function() lm.dropout(dx, "half") end, "bad argument #2", "dropout p must be a number")
T.errors(function() lm.dropout(dx, {p = "half"}) end, "bad option 'p' to 'dropout' (number expected", "dropout option type")
local closed = lm.ones(3)
closed:free()
T.errors(function() lm.cross_entropy(logits, lm.tensor{0, 1}, {weight = closed}) end,
         "bad option 'weight' (tensor was closed)", "a closed tensor in an option is named as closed")
T.errors(function() lm.linear(dx, closed) end, "tensor was closed", "a closed tensor argument")

T.done()
