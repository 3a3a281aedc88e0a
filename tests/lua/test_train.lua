-- test_train.lua: lumen.train and lumen.metrics — fit on a small synthetic set, history,
-- validation, callbacks (EarlyStopping, ModelCheckpoint, functions, hook tables, stopping),
-- schedulers, resuming from a checkpoint, evaluate/predict, the metrics on hand-made examples,
-- the printed lines, the log object's scalars, and the errors for bad calls.
local T = require "tap"
local lm = require "lumen"
local data = lm.data
local train = require "lumen.train"
local metrics = require "lumen.metrics"
local optim = lm.optim
local Module = require("lumen.nn.module").Module

T.plan_auto()

-- A two-layer perceptron written as a user module (only Module's public API).
local MLP = Module:extend("MLP")
function MLP:__init(i, h, o)
  Module.__init(self)
  self.w1 = (lm.randn(h, i) * (1 / math.sqrt(i))):requires_grad_()
  self.b1 = lm.zeros(h):requires_grad_()
  self.w2 = (lm.randn(o, h) * (1 / math.sqrt(h))):requires_grad_()
  self.b2 = lm.zeros(o):requires_grad_()
end
function MLP:forward(x)
  return lm.linear(lm.relu(lm.linear(x, self.w1, self.b1)), self.w2, self.b2)
end

-- Four classes by the signs of two coordinates (0-based labels 0..3).
local function quadrants(n, seed)
  lm.manual_seed(seed)
  local x = lm.randn(n, 2)
  local y = x:select(1, 0):gt(0):to("i64") + x:select(1, 1):gt(0):to("i64") * 2
  return x, y
end

local function max_diff(a, b)
  return (a - b):abs():max():item()
end

local function quiet(opts)
  opts.verbose = false
  return opts
end

local x, y = quadrants(256, 1)
local vx, vy = quadrants(128, 2)
local train_ds, val_ds = data.TensorDataset(x, y), data.TensorDataset(vx, vy)

-- ---- fit: learning, history, determinism --------------------------------------------------

lm.manual_seed(10)
local model = MLP(2, 16, 4)
local history, opt = model:fit(train_ds, quiet{epochs = 6, batch_size = 16, lr = 0.02, seed = 1,
  metrics = {"accuracy"}, validation = val_ds})
T.ok(history.accuracy[6] >= 0.9, string.format("fit: training accuracy %.3f >= 0.9 after 6 epochs",
  history.accuracy[6]))
T.ok(history.val_accuracy[6] >= 0.9, string.format("fit: validation accuracy %.3f >= 0.9",
  history.val_accuracy[6]))
T.ok(history.loss[6] < history.loss[1], "fit: the loss decreases")
local fields_ok = true
for _, k in ipairs{"loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time", "epoch"} do
  if type(history[k]) ~= "table" or #history[k] ~= 6 then fields_ok = false end
end
T.ok(fields_ok, "fit: history has loss, accuracy, val_loss, val_accuracy, lr, epoch_time per epoch")
T.ok(history.epoch[1] == 1 and history.epoch[6] == 6, "fit: history.epoch numbers epochs from 1")
T.ok(history.lr[1] == 0.02 and history.epoch_time[1] >= 0, "fit: lr and epoch_time recorded")
T.is(opt and opt.param_groups[1].lr, 0.02, "fit: returns the optimizer made from its name")
local mean_loss = model:evaluate(val_ds, {loss = "cross_entropy", batch_size = 128}).loss
T.close(mean_loss, history.val_loss[6], 1e-5,
  "fit: val_loss equals evaluate's loss after the epoch")

lm.manual_seed(10)
local twin = MLP(2, 16, 4)
local h2 = twin:fit(train_ds, quiet{epochs = 6, batch_size = 16, lr = 0.02, seed = 1,
  metrics = {"accuracy"}, validation = val_ds})
local same = true
for e = 1, 6 do if h2.loss[e] ~= history.loss[e] then same = false end end
T.ok(same and max_diff(twin.w1, model.w1) == 0, "fit: same seeds, identical runs")

-- fit(x, y, opts), validation as {x, y}, validation_split.
lm.manual_seed(3)
local m3 = MLP(2, 8, 4)
local h3 = m3:fit(x, y, quiet{epochs = 2, validation = {vx, vy}, metrics = {"accuracy", "top2"}})
T.ok(#h3.val_loss == 2 and #h3.val_top2 == 2, "fit(x, y): validation given as {x, y} tensors")
local seen_val = 0
local h4 = m3:fit(train_ds, quiet{epochs = 1, validation_split = 0.25, batch_size = 32,
  callbacks = {{on_batch_end = function(_, _, logs) seen_val = seen_val + logs.size end}}})
T.ok(#h4.val_loss == 1 and seen_val == 192, "fit: validation_split keeps the last quarter out")

-- ---- callbacks --------------------------------------------------------------------------

local calls, fn_epochs = {}, {}
local hooks = {
  on_train_begin = function(self)
    calls[#calls + 1] = "train_begin"
    self.seen_model = self.model
  end,
  on_epoch_begin = function(_, e) calls[#calls + 1] = "epoch_begin " .. e end,
  on_batch_end = function(_, i) if i == 1 then calls[#calls + 1] = "batch 1" end end,
  on_epoch_end = function(_, e,
    logs) calls[#calls + 1] = "epoch_end " .. e .. " " .. type(logs.loss) end,
  on_train_end = function() calls[#calls + 1] = "train_end" end,
}
local m5 = MLP(2, 8, 4)
m5:fit(train_ds, quiet{epochs = 2, batch_size = 64, callbacks = {
  hooks, function(epoch, logs) fn_epochs[#fn_epochs + 1] = {epoch, logs.accuracy} end},
  metrics = {"accuracy"}})
T.is(table.concat(calls, ","), "train_begin,epoch_begin 1,batch 1,epoch_end 1 number," ..
  "epoch_begin 2,batch 1,epoch_end 2 number,train_end", "callbacks: hooks called in order")
T.ok(hooks.seen_model == m5, "callbacks: the model is set on callback tables")
T.ok(#fn_epochs == 2 and fn_epochs[2][1] == 2 and type(fn_epochs[2][2]) == "number",
  "callbacks: a function is called per epoch with (epoch, logs)")

local batches_run = 0
local h6 = MLP(2, 8, 4):fit(train_ds, quiet{epochs = 5, batch_size = 16, callbacks = {{
  on_batch_end = function(self, i)
    batches_run = batches_run + 1
    if i == 3 then self.model.stop_training = true end
  end}}})
T.ok(batches_run == 3 and #h6.loss == 1, "callbacks: model.stop_training ends training")

-- EarlyStopping: a validation set with shifted labels gets worse as training fits the real ones.
local bad_val = data.TensorDataset(vx, 3 - vy)
lm.manual_seed(4)
local m7 = MLP(2, 16, 4)
local es = train.EarlyStopping{monitor = "val_loss", patience = 2, restore_best_weights = true}
local h7 = m7:fit(train_ds, quiet{epochs = 30, batch_size = 16, lr = 0.02, seed = 2,
  validation = bad_val, callbacks = {es}})
T.ok(#h7.loss < 30 and es.stopped_epoch == #h7.loss, string.format(
  "EarlyStopping: stopped at epoch %s of 30", tostring(es.stopped_epoch)))
T.is(es.stopped_epoch, es.best_epoch + 2,
  "EarlyStopping: after `patience` epochs without improvement")
local restored = m7:evaluate(bad_val, {loss = "cross_entropy"}).loss
T.close(restored, h7.val_loss[es.best_epoch], 1e-5, "EarlyStopping: restore_best_weights")
T.is(train.EarlyStopping{monitor = "val_accuracy"}.mode, "max",
  "EarlyStopping: auto mode for accuracy")
T.errors(function()
  MLP(2, 4, 4):fit(train_ds, quiet{epochs = 2, callbacks = {train.EarlyStopping{}}})
end, "monitor \"val_loss\" is not among the epoch's values", "EarlyStopping: missing monitor named")

-- Schedulers per epoch: lr halves each epoch.
local m8 = MLP(2, 8, 4)
local sgd = optim.SGD(m8:parameters(), {lr = 0.1})
local h8 = m8:fit(train_ds, quiet{epochs = 3, batch_size = 64, optimizer = sgd,
  scheduler = optim.StepLR(sgd, 1, {gamma = 0.5})})
T.ok(math.abs(h8.lr[1] - 0.1) < 1e-12 and math.abs(h8.lr[2] - 0.05) < 1e-12 and
  math.abs(h8.lr[3] - 0.025) < 1e-12, "scheduler: stepped per epoch, lr in history")
local m9 = MLP(2, 8, 4)
local sgd9 = optim.SGD(m9:parameters(), {lr = 0.1})
local warm = optim.LinearWarmup(sgd9, 8)
m9:fit(train_ds, quiet{epochs = 1, batch_size = 64, optimizer = sgd9, scheduler = warm})
T.is(warm.last_epoch, 4, "scheduler: LinearWarmup is stepped per batch")
local m10 = MLP(2, 8, 4)
local sgd10 = optim.SGD(m10:parameters(), {lr = 0.1})
local cb_sched = optim.StepLR(sgd10, 1, {gamma = 0.1})
local h10 = m10:fit(train_ds, quiet{epochs = 2, batch_size = 64, optimizer = sgd10,
  callbacks = {train.LRSchedulerCallback(cb_sched)}})
T.ok(math.abs(h10.lr[2] - 0.01) < 1e-12, "LRSchedulerCallback: steps after each epoch")

-- ModelCheckpoint, and resuming from a full checkpoint gives the straight run's weights.
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))
lm.manual_seed(5)
local m11 = MLP(2, 8, 4)
local mc = train.ModelCheckpoint{path = dir .. "/best-{epoch}.safetensors",
  monitor = "val_accuracy"}
local last = train.ModelCheckpoint{path = dir .. "/last.safetensors", save_best_only = false}
local h11 = m11:fit(train_ds, quiet{epochs = 3, batch_size = 32, validation = val_ds,
  metrics = {"accuracy"}, callbacks = {mc, last}})
local improvements = 1
for e = 2, 3 do
  local best = math.max(table.unpack(h11.val_accuracy, 1, e - 1))
  if h11.val_accuracy[e] > best then improvements = improvements + 1 end
end
T.ok(#mc.saved == improvements and mc.saved[1] == dir .. "/best-1.safetensors",
  "ModelCheckpoint: save_best_only saves when the monitor improves, {epoch} in the path")
local saved = lm.load(nil, dir .. "/last.safetensors")
T.ok(#last.saved == 3 and max_diff(saved.w1, m11.w1) == 0 and max_diff(saved.b2, m11.b2) == 0,
  "ModelCheckpoint: every epoch without save_best_only; the file holds the model's tensors")

local function fresh()
  lm.manual_seed(6)
  local m = MLP(2, 8, 4)
  return m, optim.Adam(m:parameters(), {lr = 0.01})
end
local straight, sopt = fresh()
straight:fit(train_ds, quiet{epochs = 2, batch_size = 32, seed = 9, optimizer = sopt})
local first, fopt = fresh()
local ck = train.ModelCheckpoint{path = dir .. "/ck.safetensors", save_best_only = false,
  full = true}
first:fit(train_ds, quiet{epochs = 1, batch_size = 32, seed = 9, optimizer = fopt,
  callbacks = {ck}})
local resumed, ropt = fresh()
lm.manual_seed(123)
local info = lm.checkpoint.load(dir .. "/ck.safetensors", {model = resumed, optimizer = ropt})
resumed:fit(train_ds, quiet{epochs = 2, batch_size = 32, seed = 9, optimizer = ropt,
  initial_epoch = info.epoch})
T.ok(info.epoch == 1 and info.step == 8, "ModelCheckpoint full: epoch and step in the checkpoint")
T.ok(max_diff(resumed.w1, straight.w1) == 0 and max_diff(resumed.w2, straight.w2) == 0,
  "resume: 1 epoch + checkpoint + 1 epoch equals 2 epochs straight")
os.execute("rm -rf '" .. dir .. "'")

-- ---- evaluate and predict ---------------------------------------------------------------

local scores = model:evaluate(val_ds, {loss = "cross_entropy", metrics = {"accuracy", "top2"}})
T.ok(type(scores.loss) == "number" and scores.accuracy >= 0.9 and scores.top2 >= scores.accuracy,
  "evaluate: loss and metrics")
model:train()
local preds = model:predict(vx, {batch_size = 50})
T.is(table.concat(preds.shape, ","), "128,4", "predict: [N, classes] from a tensor")
T.ok(model.training == true, "predict: the training mode is restored")
T.ok(not preds.requires_grad, "predict: no graph")
model:eval()
model:evaluate(val_ds, {metrics = {"accuracy"}})
T.ok(model.training == false, "evaluate: the eval mode is kept")
local direct = model(vx)
T.close(model:predict(val_ds, {batch_size = 7}), direct, 1e-5, "predict: a dataset's inputs")
T.errors(function() model:evaluate(val_ds) end, "give a loss or metrics",
  "evaluate: nothing to compute")

-- Regression with [N] targets and [N,1] outputs; binary with bce_with_logits and AUC.
lm.manual_seed(8)
local rx = lm.randn(128, 3)
local ry = rx:matmul(lm.tensor{1, -2, 0.5})
local reg = MLP(3, 16, 1)
local hr = reg:fit(rx, ry, quiet{epochs = 10, batch_size = 16, lr = 0.01, loss = "mse",
  metrics = {"mae"},
  seed = 1})
T.ok(hr.loss[10] < hr.loss[1] * 0.5 and #hr.mae == 10, "fit: mse regression with [N] targets")
local by = rx:select(1, 0):gt(0):to("f32")
local bin = MLP(3, 8, 1)
local hb = bin:fit(rx, by, quiet{epochs = 6, batch_size = 16, lr = 0.02, loss = "bce_with_logits",
  metrics = {"accuracy", "auc"}, seed = 1})
T.ok(hb.auc[6] > 0.9 and hb.accuracy[6] > 0.8, string.format(
  "fit: binary with logits, accuracy %.3f, auc %.3f", hb.accuracy[6], hb.auc[6]))

-- Binary outputs that are probabilities: accuracy must threshold them at 0.5, not at 0, after
-- "bce", an nn.BCELoss module, or a user loss with from_logits = false.
do
  local nn = lm.nn
  -- Probabilities of the sign of the first coordinate, exact on every sample of rx.
  local Oracle = Module:extend("Oracle")
  function Oracle:__init()
    Module.__init(self)
    self.scale = lm.tensor({10.0}):requires_grad_()
  end
  function Oracle:forward(xb) return lm.sigmoid(xb:narrow(1, 0, 1) * self.scale) end
  local oracle = Oracle()
  local positives = by:mean():item()
  local function acc_with(opts)
    opts.metrics = {"accuracy"}
    return oracle:evaluate(data.TensorDataset(rx, by), opts).accuracy
  end
  T.is(acc_with{loss = "bce"}, 1.0, "evaluate: \"bce\" thresholds probabilities at 0.5")
  T.is(acc_with{loss = nn.BCELoss()}, 1.0, "evaluate: an nn.BCELoss module counts as \"bce\"")
  local function user_bce(out, yb) return lm.binary_cross_entropy(out, yb:reshape(out.shape)) end
  T.close(acc_with{loss = user_bce}, positives, 1e-12,
    "evaluate: a user loss defaults to logits (every probability > 0 is positive)")
  T.is(acc_with{loss = user_bce, from_logits = false}, 1.0,
    "evaluate: from_logits = false thresholds a user loss's outputs at 0.5")
  T.is(acc_with{metrics = {"accuracy"}, from_logits = false}, 1.0,
    "evaluate: from_logits without a loss")

  local Prob = Module:extend("Prob")
  function Prob:__init()
    Module.__init(self)
    self.net = MLP(3, 8, 1)
  end
  function Prob:forward(xb) return lm.sigmoid(self.net(xb)) end
  local function fit_prob(loss, extra)
    lm.manual_seed(21)
    local opts = quiet{epochs = 6, batch_size = 16, lr = 0.02, loss = loss,
      metrics = {"accuracy"}, seed = 1}
    for k, v in pairs(extra or {}) do opts[k] = v end
    return Prob():fit(rx, by, opts)
  end
  local h_name = fit_prob("bce")
  local h_module = fit_prob(nn.BCELoss())
  T.ok(h_name.accuracy[6] > 0.8, string.format("fit: \"bce\" on probabilities, accuracy %.3f",
    h_name.accuracy[6]))
  T.ok(h_module.loss[6] == h_name.loss[6] and h_module.accuracy[6] == h_name.accuracy[6],
    "fit: nn.BCELoss() trains and scores as \"bce\" ([N] targets for [N,1] outputs included)")
  local h_user = fit_prob(user_bce, {from_logits = false})
  T.ok(h_user.accuracy[6] == h_name.accuracy[6],
    "fit: a user loss on probabilities with from_logits = false scores as \"bce\"")
  T.errors(function() fit_prob("bce", {from_logits = true}) end,
    "from_logits = true contradicts the loss \"bce\", which takes probabilities",
    "fit: from_logits contradicting the loss")
  T.errors(function() fit_prob(user_bce, {from_logits = "no"}) end,
    'from_logits must be true or false, got "no"', "fit: from_logits must be a boolean")
end

-- ---- metrics on hand-made examples ------------------------------------------------------

T.close(metrics.auc(lm.tensor{0.1, 0.4, 0.35, 0.8}, lm.tensor{0, 0, 1, 1}), 0.75, 1e-12,
  "auc: example")
T.close(metrics.auc(lm.tensor{0.1, 0.5, 0.5, 0.9}, lm.tensor{0, 0, 1, 1}), 0.875, 1e-12,
  "auc: a tied pair counts one half")
T.close(metrics.auc(lm.tensor{0.5, 0.5, 0.5, 0.5}, lm.tensor{0, 1, 0, 1}), 0.5, 1e-12,
  "auc: all tied")
T.close(metrics.auc(lm.tensor{{0, 1}, {1, 0}, {0, 3}}, lm.tensor{1, 0, 1}), 1, 1e-12,
  "auc: two-column logits use their difference")
local nan = metrics.auc(lm.tensor{0.1, 0.2}, lm.tensor{1, 1})
T.ok(nan ~= nan, "auc: NaN when one class is absent")
local auc = metrics.AUC()
auc:update(lm.tensor{0.1, 0.4}, lm.tensor{0, 0})
auc:update(lm.tensor{0.35, 0.8}, lm.tensor{1, 1})
T.close(auc:result(), 0.75, 1e-12, "AUC object: ranks the whole epoch together")

local logits = lm.tensor{{0.1, 0.5, 0.4}, {0.9, 0.05, 0.05}, {0.2, 0.3, 0.5}}
local labels3 = lm.tensor({2, 1, 0}, {dtype = "i64"})
T.close(metrics.top_k_accuracy(logits, labels3, 1), 0, 1e-12, "top-1: none right")
T.close(metrics.top_k_accuracy(logits, labels3, 2), 2 / 3, 1e-12, "top-2: two of three")
T.close(metrics.top_k_accuracy(logits, labels3, 3), 1, 1e-12, "top-3 of 3 classes: all")
T.close(metrics.accuracy(logits, lm.tensor({1, 0, 0}, {dtype = "i64"})), 2 / 3, 1e-12,
  "accuracy: argmax over classes")
T.close(metrics.accuracy(logits, lm.tensor{{0, 1, 0}, {1, 0, 0}, {0, 0, 1}}), 1, 1e-12,
  "accuracy: one-hot targets")
T.close(metrics.accuracy(lm.tensor{-1, 2, 0.5, -0.2}, lm.tensor{0, 1, 0, 0}), 0.75, 1e-12,
  "accuracy: one logit per sample, threshold 0")
T.close(metrics.accuracy(lm.tensor{{0.2}, {0.9}, {0.6}, {0.4}}, lm.tensor{0, 1, 0, 0},
  {from_logits = false}), 0.75, 1e-12, "accuracy: probabilities, threshold 0.5")
T.close(metrics.mse(lm.tensor{1, 2, 3}, lm.tensor{1, 0, 0}), 13 / 3, 1e-12, "mse")
T.close(metrics.mae(lm.tensor{{1}, {2}, {3}}, lm.tensor{1, 0, 0}), 5 / 3, 1e-12, "mae")
local top5 = metrics.get({"top_k", k = 2})
T.is(top5.name, "top2", "metrics.get: {\"top_k\", k = 2} is named top2")
T.errors(function() metrics.accuracy(logits, lm.tensor({1, 0}, {dtype = "i64"})) end,
  "outputs [3,3] and targets [2] do not match", "accuracy: shape mismatch names both shapes")
local custom = metrics.get{name = "mean_out", fn = function(out) return out:mean() end}
custom:update(lm.tensor{1, 1}, lm.tensor{0, 0})
custom:update(lm.tensor{4, 4, 4, 4}, lm.tensor{0, 0, 0, 0})
T.close(custom:result(), 3, 1e-12, "metrics: a function metric is weighted by batch size")

-- ---- printed output ---------------------------------------------------------------------

local out = {}
local function capture(s) out[#out + 1] = s end
MLP(2, 4, 4):fit(train_ds, {epochs = 2, batch_size = 64, metrics = {"accuracy"},
  validation = val_ds,
  write = capture, verbose = 2})
T.is(#out, 2, "lines: one write per epoch")
local pattern = "^epoch 1/2  loss %d+%.%d%d%d%d  accuracy %d%.%d%d%d%d  val_loss %d+%.%d%d%d%d  " ..
  "val_accuracy %d%.%d%d%d%d  %d+%.%ds\n$"
T.ok(out[1] and out[1]:match(pattern) ~= nil, "lines: " .. tostring(out[1]):gsub("\n", ""))
T.ok(out[2] and out[2]:match("^epoch 2/2  loss ") ~= nil, "lines: second epoch")

out = {}
local saved_write = train.write
train.write = capture
MLP(2, 4, 4):fit(train_ds, {epochs = 1, batch_size = 64})
train.write = saved_write
if lm.isatty(1) then
  T.skip("stdout is a terminal", "lines: train.write is the default output")
else
  T.ok(#out == 1 and out[1]:match("^epoch 1/1  loss %d+%.%d+  %d+%.%ds\n$") ~= nil,
    "lines: train.write is the default output, plain lines when not a terminal")
end

out = {}
MLP(2, 4, 4):fit(train_ds, {epochs = 1, batch_size = 64, metrics = {"accuracy"}, write = capture,
  verbose = "bar"})
local text = table.concat(out)
T.ok(text:match("^\rEpoch 1/1  %[[=>%.]+%] 1/4  loss %d+%.%d+  accuracy %d%.%d+  " ..
  "ETA %d+s  [%d%.]+ it/s") ~= nil,
  "bar: redrawn with \\r, batches, loss, metrics, ETA, rate")
T.ok(text:match("\rEpoch 1/1  %[==============================%] 4/4  loss [%d%.]+  " ..
  "accuracy [%d%.]+ *  %d+%.%ds *\n$")
  ~= nil, "bar: the final line of the epoch, full bar, time, newline")

out = {}
MLP(2, 4, 4):fit(train_ds, {epochs = 1, batch_size = 64, write = capture, verbose = false})
T.is(#out, 0, "verbose = false prints nothing")

-- ---- the log object ---------------------------------------------------------------------

local log = {calls = {}}
function log:scalar(tag, step, value)
  self.calls[#self.calls + 1] = {tag, step, value}
end
MLP(2, 4, 4):fit(train_ds, quiet{epochs = 2, batch_size = 64, metrics = {"accuracy"},
  validation = val_ds, log = log, initial_epoch = 0})
local by_tag = {}
for _, c in ipairs(log.calls) do
  by_tag[c[1]] = by_tag[c[1]] or {}
  table.insert(by_tag[c[1]], c)
end
local train_steps = {}
for _, c in ipairs(by_tag["loss/train"] or {}) do train_steps[#train_steps + 1] = c[2] end
T.is(table.concat(train_steps, ","), "1,2,3,4,5,6,7,8",
  "log: loss/train per batch at the global step")
local epoch_tags_ok = true
for _, tag in ipairs{"loss/val", "accuracy/train", "accuracy/val", "lr", "time/epoch"} do
  local list = by_tag[tag]
  if not list or #list ~= 2 or list[1][2] ~= 4 or list[2][2] ~= 8
      or type(list[2][3]) ~= "number" then
    epoch_tags_ok = false
    T.diag("tag " .. tag .. " missing or at the wrong steps")
  end
end
T.ok(epoch_tags_ok,
  "log: loss/val, accuracy/train|val, lr, time/epoch per epoch at the epoch's last step")
T.close(by_tag["lr"][1][3], 1e-3, 1e-12, "log: lr value")

-- ---- errors -----------------------------------------------------------------------------

local m = MLP(2, 4, 4)
T.errors(function() m:fit(train_ds, quiet{loss = "hinge"}) end, "unknown loss \"hinge\"",
  "fit: unknown loss")
T.errors(function() m:fit(train_ds, quiet{metrics = {"f1"}}) end, "unknown metric \"f1\"",
  "fit: unknown metric")
T.errors(function() m:fit(train_ds, quiet{epoch = 3}) end, "unknown option 'epoch'",
  "fit: unknown option")
T.errors(function() m:fit(train_ds, quiet{optimizer = "lbfgs"}) end, "unknown optimizer \"lbfgs\"",
  "fit: unknown optimizer")
T.errors(function() m:fit(train_ds, quiet{epochs = 0}) end, "epochs must be an integer >= 1, got 0",
  "fit: bad epochs")
T.errors(function() m:fit(x, quiet{}) end, "the targets must be a tensor too", "fit(x): missing y")
T.errors(function() m:fit(train_ds, quiet{validation_split = 1.5}) end,
  "validation_split must be a fraction in (0, 1), got 1.5", "fit: bad validation_split")
T.errors(function() train.fit({}, train_ds) end, "expected a model", "fit: not a model")
T.errors(function() m:fit(data.TensorDataset(x), quiet{}) end, "samples have no target",
  "fit: a dataset without targets")
T.errors(function() m:fit(train_ds, quiet{loss = "mse"}) end, "mse_loss",
  "fit: a loss that does not fit the outputs")
local after = m:fit(train_ds, quiet{epochs = 1, batch_size = 64})
T.ok(#after.loss == 1 and after.loss[1] == after.loss[1],
  "fit: the model stays usable after an error")
T.errors(function() train.ModelCheckpoint{} end, "path must be a file path string",
  "ModelCheckpoint: no path")
T.errors(function() train.EarlyStopping{mode = "up"} end,
  "mode must be \"min\", \"max\" or \"auto\"",
  "EarlyStopping: bad mode")

-- A Lua error in the middle of a hand-written training step (after forward, inside no_grad, inside
-- a module's forward) leaves the model, the optimizer, grad mode and the graph scope usable.
do
  lm.manual_seed(3)
  local net = MLP(2, 16, 4)
  local sgd = optim.SGD(net:parameters(), {lr = 0.1})
  local function step(xb, yb)
    local loss = lm.cross_entropy(net(xb), yb)
    sgd:zero_grad(); loss:backward(); sgd:step()
    return loss:item()
  end
  local scope_before = lm.get_scope()
  local first = step(x, y)
  T.errors(function() step(x, y:narrow(0, 0, 10)) end, "cross_entropy",
    "a failing step raises the engine's message")
  T.errors(function() lm.no_grad(function() net(lm.zeros(4, 3)) end) end, "[4,3]",
    "an error inside no_grad(fn) and a module's forward")
  T.errors(function() local _ <close> = lm.no_grad(); error("user error") end, "user error",
    "a user error inside a no_grad scope")
  T.ok(lm.is_grad_enabled(), "grad mode is restored after the errors")
  T.is(lm.get_scope(), scope_before, "the graph scope is restored after the errors")
  local last
  for _ = 1, 20 do last = step(x, y) end
  T.ok(last < first, string.format("training goes on after the errors (loss %.3f -> %.3f)", first, last))
end

T.done()
