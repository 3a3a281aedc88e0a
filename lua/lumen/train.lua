-- lumen.train: Keras-style training on nn modules: model:fit, model:evaluate, model:predict,
-- callbacks (EarlyStopping, ModelCheckpoint, LRSchedulerCallback, functions) and the progress
-- display. Requiring it adds fit/evaluate/predict to nn.Module; train.fit(model, ...) works on any
-- object with parameters(), train(), eval() and __call.
--
--   local history = model:fit(train_ds, {epochs = 5, batch_size = 64, optimizer = "adam",
--     lr = 1e-3, loss = "cross_entropy", metrics = {"accuracy"}, validation = test_ds,
--     callbacks = {train.EarlyStopping{patience = 2}}})
--   print(history.val_accuracy[#history.val_accuracy])
--   local scores = model:evaluate(test_ds, {loss = "cross_entropy", metrics = {"accuracy"}})
--   local logits = model:predict(x)                    -- outputs of every sample, concatenated
--
-- fit(dataset, opts) or fit(x, y, opts); dataset is a Dataset (samples {x, y}) or a DataLoader.
-- Options (defaults): epochs (1), batch_size (32), shuffle (true), seed (nil: shuffling draws from
-- the engine's generator), optimizer (an optim object, or "adam" | "adamw" | "sgd" | "rmsprop"
-- made with lr = opts.lr), loss ("cross_entropy" | "nll" | "mse" | "l1" | "smooth_l1" | "bce" |
-- "bce_with_logits", the nn loss module of one of them such as nn.BCELoss{weight = w}, or
-- function(out, y) -> scalar tensor), metrics (see lumen.metrics: "accuracy", "top5",
-- {"top_k", k = 5}, "auc", "mse", "mae", objects), from_logits (whether binary outputs are
-- logits, which accuracy thresholds at 0, or probabilities, thresholded at 0.5, as Keras' flag:
-- false with "bce" or nn.BCELoss, true otherwise; give false for a user loss taking
-- probabilities), validation (a dataset,
-- a DataLoader or {x, y} tensors; alias validation_data) or validation_split (a fraction: the
-- LAST samples, before shuffling, as Keras), callbacks, verbose (true: a progress bar on a
-- terminal, plain lines otherwise; 2: plain lines; false: silent), initial_epoch (0; epochs
-- counts up to the final epoch, as Keras), scheduler (an lr scheduler stepped after each epoch,
-- or after each batch for OneCycleLR / LinearWarmup / one whose per_batch field is true;
-- scheduler_per_batch overrides), log (a run object: log:scalar(tag, step, value)), write (the
-- output function, default train.write).
--
-- Returns history, optimizer: history holds one entry per epoch under Keras' names (loss,
-- accuracy, ..., val_loss, val_accuracy, ..., lr, epoch_time) and history.epoch (the epoch
-- numbers); the optimizer is the one used (useful when it was given by name).
--
-- Callbacks: a function is called as fn(epoch, logs) after each epoch; a table may define
-- on_train_begin(self, logs), on_epoch_begin(self, epoch, logs), on_batch_end(self, batch, logs),
-- on_epoch_end(self, epoch, logs) and on_train_end(self, logs). Before training, fit sets the
-- table's model, optimizer and scheduler fields (as Keras' set_model). Epochs are numbered from
-- 1 (initial_epoch + 1 first); logs are the epoch's values by history name. Setting
-- model.stop_training = true ends training after the current batch.
--
-- Targets: for "mse", "l1", "smooth_l1", "bce" and "bce_with_logits" (names or modules), targets
-- are converted to the output's dtype and reshaped to its shape when the sizes match ([N] labels
-- for [N,1] outputs); for "cross_entropy"/"nll", u8 labels become i64. A user function gets the
-- targets as the loader gives them.
--
-- Logging (opts.log): "loss/train" after every batch at step = the global batch count (which
-- starts at initial_epoch * #loader, so a resumed run continues the axis); after each epoch, at
-- the same step count: "loss/val", "<metric>/train", "<metric>/val", "lr", "time/epoch".
local lm = require "lumen.core"
local class = require "lumen.class"
local data = require "lumen.data"
local dataset = require "lumen.data.dataset"
local metrics = require "lumen.metrics"
local Module = require("lumen.nn.module").Module
local nn_loss = require "lumen.nn.loss"
local util = require "lumen.util"

local M = {}

local is_tensor, raise, shape_str, is_callable = util.is_tensor, util.raise, util.shape_str,
  util.is_callable
local check_options = util.check_options

-- The output function of progress and epoch lines; tests replace it.
function M.write(s)
  io.stdout:write(s)
  io.stdout:flush()
end

-- ---- losses -------------------------------------------------------------------------------

-- Regression-style targets take the output's dtype and shape.
local function like(y, out)
  if y.dtype ~= out.dtype then y = y:to(out.dtype) end
  if y.ndim ~= out.ndim or shape_str(y) ~= shape_str(out) then
    if y:numel() == out:numel() then y = y:reshape(out.shape) end
  end
  return y
end

local function labels(y)
  if y.dtype == "u8" then return y:to("i64") end
  return y
end

-- fit's loss names: the nn loss class computing each (lumen.nn.loss, built with its defaults)
-- and how the targets are adapted to the outputs first.
local LOSSES = {
  cross_entropy = {nn_loss.CrossEntropyLoss, labels},
  nll = {nn_loss.NLLLoss, labels},
  mse = {nn_loss.MSELoss, like},
  l1 = {nn_loss.L1Loss, like},
  smooth_l1 = {nn_loss.SmoothL1Loss, like},
  bce = {nn_loss.BCELoss, like},
  bce_with_logits = {nn_loss.BCEWithLogitsLoss, like},
}
local LOSS_ALIASES = {
  nll_loss = "nll", mse_loss = "mse", l1_loss = "l1", mae = "l1", smooth_l1_loss = "smooth_l1",
  binary_cross_entropy = "bce", binary_cross_entropy_with_logits = "bce_with_logits",
}

-- The loss criterion called with targets adapted to the outputs.
local function adapted(criterion, adapt)
  return function(out, y) return criterion(out, adapt(y, out)) end
end

-- A loss function and its canonical name (nil for a user function). An instance of one of the
-- loss classes above (nn.BCELoss{...}) is treated as its name, with the same target handling.
local function resolve_loss(who, spec)
  if spec == nil then spec = "cross_entropy" end
  if type(spec) == "string" then
    local name = LOSS_ALIASES[spec] or spec
    local entry = LOSSES[name]
    if not entry then
      local known = {}
      for k in pairs(LOSSES) do known[#known + 1] = k end
      table.sort(known)
      raise(string.format("%s: unknown loss %q (known: %s, or a function(out, y))", who, spec,
        table.concat(known, ", ")))
    end
    return adapted(entry[1](), entry[2]), name
  end
  for name, entry in pairs(LOSSES) do
    if class.isinstance(spec, entry[1]) then return adapted(spec, entry[2]), name end
  end
  if is_callable(spec) then return spec, nil end
  raise(string.format("%s: loss must be a name or a function(out, y), got %s", who,
    type(spec)))
end

-- The binary losses fix what the outputs are: BCE takes probabilities, BCE with logits logits.
local TAKES_LOGITS = {bce = false, bce_with_logits = true}

-- Whether binary outputs are logits (accuracy thresholds them at 0) or probabilities (at 0.5):
-- the from_logits option when given, else probabilities after "bce" and logits otherwise.
local function outputs_are_logits(who, from_logits, loss_name)
  if from_logits == nil then return loss_name ~= "bce" end
  if type(from_logits) ~= "boolean" then
    raise(string.format("%s: from_logits must be true or false, got %s", who,
      util.show(from_logits)))
  end
  local fixed = TAKES_LOGITS[loss_name]
  if fixed ~= nil and fixed ~= from_logits then
    raise(string.format("%s: from_logits = %s contradicts the loss %q, which takes %s", who,
      tostring(from_logits), loss_name, fixed and "logits" or "probabilities"))
  end
  return from_logits
end

-- ---- metrics ------------------------------------------------------------------------------

local function build_metrics(who, specs, from_logits)
  if specs == nil then return {} end
  if type(specs) == "string" then specs = {specs} end
  if type(specs) ~= "table" then
    raise(string.format("%s: metrics must be a sequence, got %s", who, type(specs)))
  end
  local out, seen = {}, {}
  for k, spec in ipairs(specs) do
    local ok, m = pcall(metrics.get, spec, {from_logits = from_logits})
    if not ok then
      raise(string.format("%s: metrics[%d]: %s", who, k, tostring(m):gsub("^[^:]*:%d+: ", "")))
    end
    if seen[m.name] or m.name == "loss" then
      raise(string.format("%s: two metrics are named %q", who, m.name))
    end
    seen[m.name] = true
    out[k] = m
  end
  return out
end

-- ---- datasets and loaders -----------------------------------------------------------------

local function is_loader(v)
  return class.isinstance(v, data.DataLoader)
end

-- {x, y} of two tensors (a plain table): Keras' validation_data = (x_val, y_val).
local function as_dataset(v)
  if type(v) == "table" and getmetatable(v) == nil and #v == 2 and is_tensor(v[1])
      and is_tensor(v[2]) then
    return data.TensorDataset(v[1], v[2])
  end
  return v
end

local function loader_for(ds, batch_size, shuffle, seed)
  if is_loader(ds) then return ds end
  return data.DataLoader(ds, {batch_size = batch_size, shuffle = shuffle, seed = seed})
end

-- ---- the progress display -----------------------------------------------------------------

local BAR_WIDTH = 30

local function fmt_value(v)
  if v ~= v then return "nan" end
  return string.format("%.4f", v)
end

local function fmt_duration(s)
  if s < 60 then return string.format("%ds", math.floor(s + 0.5)) end
  if s < 3600 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
  return string.format("%dh%02dm", s // 3600, math.floor(s % 3600) // 60)
end

local function fmt_rate(r)
  if r >= 10 then return string.format("%d it/s", math.floor(r + 0.5)) end
  return string.format("%.2f it/s", r)
end

-- "loss 0.2931  accuracy 0.9143  val_loss ..." for the keys in order that logs has.
local function fmt_logs(keys, logs)
  local parts = {}
  for _, k in ipairs(keys) do
    if logs[k] ~= nil then parts[#parts + 1] = k .. " " .. fmt_value(logs[k]) end
  end
  return table.concat(parts, "  ")
end

local Progress = class("Progress")

-- mode: "bar" (redrawn with \r), "lines" (one line per epoch) or "none".
function Progress:__init(mode, write, epochs)
  self.mode, self.write, self.epochs = mode, write, epochs
  self.width = 0
end

function Progress:epoch_begin(epoch, nbatches)
  self.epoch, self.nbatches = epoch, nbatches
  self.start = lm.perf_counter()
  self.last_draw = -math.huge
  self.width = 0
end

function Progress:redraw(line)
  local pad = self.width > #line and string.rep(" ", self.width - #line) or ""
  self.write("\r" .. line .. pad)
  self.width = #line
end

function Progress:bar(i)
  local n = self.nbatches
  local done = n > 0 and math.floor(BAR_WIDTH * i / n) or BAR_WIDTH
  local bar
  if done >= BAR_WIDTH then
    bar = string.rep("=", BAR_WIDTH)
  else
    local head = math.max(done, 1)
    bar = string.rep("=", head - 1) .. ">" .. string.rep(".", BAR_WIDTH - head)
  end
  -- The batch counter keeps its width so the rest of the line does not shift.
  local counter = string.format("%" .. #tostring(n) .. "d/%d", i, n)
  return string.format("Epoch %d/%d  [%s] %s", self.epoch, self.epochs, bar, counter)
end

-- After batch i: keys/logs are the running values to show.
function Progress:batch(i, keys, logs)
  if self.mode ~= "bar" then return end
  local now = lm.perf_counter()
  if i < self.nbatches and now - self.last_draw < 0.1 then return end
  self.last_draw = now
  local elapsed = now - self.start
  local rate = elapsed > 0 and i / elapsed or 0
  local eta = rate > 0 and (self.nbatches - i) / rate or 0
  local line = self:bar(i)
  local values = fmt_logs(keys, logs)
  if values ~= "" then line = line .. "  " .. values end
  line = line .. "  ETA " .. fmt_duration(eta) .. "  " .. fmt_rate(rate)
  self:redraw(line)
end

function Progress:epoch_end(keys, logs, seconds)
  if self.mode == "none" then return end
  local values = fmt_logs(keys, logs)
  local time = string.format("%.1fs", seconds)
  if self.mode == "bar" then
    local line = self:bar(self.nbatches)
    if values ~= "" then line = line .. "  " .. values end
    self:redraw(line .. "  " .. time)
    self.write("\n")
  else
    local line = string.format("epoch %d/%d", self.epoch, self.epochs)
    if values ~= "" then line = line .. "  " .. values end
    self.write(line .. "  " .. time .. "\n")
  end
end

local function progress_mode(verbose)
  if verbose == false or verbose == 0 then return "none" end
  if verbose == 2 or verbose == "lines" then return "lines" end
  if verbose == "bar" then return "bar" end
  return lm.isatty(1) and "bar" or "lines"
end

-- ---- one pass over a loader ---------------------------------------------------------------

local NO_TARGET = "the dataset's samples have no target: a supervised sample is {x, y}"

-- Restores a model's train/eval mode when the scope closes (also when an error unwinds it).
local function mode_guard(model, training)
  return setmetatable({}, {__close = function() model:train(training) end})
end

-- Loss (weighted mean over samples) and metrics of model on loader, in eval mode, no grad.
local function run_eval(model, loader, loss_fn, mets)
  local was_training = model.training ~= false
  model:eval()
  local _restore <close> = mode_guard(model, was_training)
  local _nograd <close> = lm.no_grad()
  for _, m in ipairs(mets) do m:reset() end
  local total, count = 0, 0
  local next_batch = loader:batches()
  while true do
    local i, xb, yb = next_batch()
    if i == nil then break end
    if yb == nil then raise(NO_TARGET) end
    local out = model(xb)
    local n = out.ndim > 0 and out.shape[1] or 1
    if loss_fn then
      total = total + loss_fn(out, yb):item() * n
    end
    count = count + n
    for _, m in ipairs(mets) do m:update(out, yb) end
  end
  local logs = {}
  if loss_fn then logs.loss = count > 0 and total / count or 0 / 0 end
  for _, m in ipairs(mets) do logs[m.name] = m:result() end
  return logs
end

-- ---- fit ----------------------------------------------------------------------------------

local FIT_OPTIONS = {
  "epochs", "batch_size", "shuffle", "seed", "optimizer", "lr", "loss", "metrics", "validation",
  "validation_data", "validation_split", "callbacks", "verbose", "initial_epoch", "scheduler",
  "scheduler_per_batch", "log", "write", "from_logits",
}

local function check_model(who, model)
  if type(model) ~= "table" or type(model.parameters) ~= "function"
      or type(model.train) ~= "function" or not is_callable(model) then
    raise(string.format("%s: expected a model (an nn.Module), got %s", who, class.name(model)))
  end
end

local OPTIMIZERS = {adam = "Adam", adamw = "AdamW", sgd = "SGD", rmsprop = "RMSprop"}

local function make_optimizer(who, model, spec, lr)
  if spec == nil then spec = "adam" end
  if type(spec) == "string" then
    local cname = OPTIMIZERS[spec:lower()]
    if not cname then
      raise(string.format("%s: unknown optimizer %q (known: adam, adamw, sgd, rmsprop, or an " ..
        "optim object)", who, spec))
    end
    local optim = require "lumen.optim"
    -- SGD has no default lr in PyTorch; Keras' 0.01 keeps fit{optimizer = "sgd"} usable.
    if lr == nil and cname == "SGD" then lr = 0.01 end
    return optim[cname](model:parameters(), {lr = lr})
  end
  if type(spec) == "table" and type(spec.step) == "function"
      and type(spec.zero_grad) == "function" then
    return spec
  end
  raise(string.format("%s: optimizer must be a name or an object with step and zero_grad, got %s",
    who, class.name(spec)))
end

-- The lr of the first param group, when the optimizer has one.
local function current_lr(opt)
  local groups = opt.param_groups
  if type(groups) == "table" and type(groups[1]) == "table" then return groups[1].lr end
  return nil
end

local PER_BATCH_SCHEDULERS = {OneCycleLR = true, LinearWarmup = true}

local function scheduler_per_batch(sched, override)
  if override ~= nil then return override and true or false end
  if sched.per_batch ~= nil then return sched.per_batch and true or false end
  return PER_BATCH_SCHEDULERS[class.name(sched)] or false
end

local HOOKS = {"on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end",
  "on_train_end"}

-- True for one callback object (as opposed to a sequence of them).
local function is_callback_object(v)
  if type(v) ~= "table" then return false end
  for _, h in ipairs(HOOKS) do
    if v[h] ~= nil then return true end
  end
  return false
end

local function normalize_callbacks(who, list)
  if list == nil then return {} end
  if type(list) == "function" or is_callback_object(list) then list = {list} end
  if type(list) ~= "table" then
    raise(string.format("%s: callbacks must be a sequence of callbacks, got %s", who,
      type(list)))
  end
  local out = {}
  for k, cb in ipairs(list) do
    if type(cb) == "function" then
      out[k] = {on_epoch_end = function(_, epoch, logs) return cb(epoch, logs) end}
    elseif type(cb) == "table" then
      out[k] = cb
    else
      raise(string.format("%s: callbacks[%d] must be a function or a table, got %s", who, k,
        type(cb)))
    end
  end
  return out
end

local function call_hooks(callbacks, hook, ...)
  for _, cb in ipairs(callbacks) do
    local f = cb[hook]
    if f then f(cb, ...) end
  end
end

-- Splits off the last fraction of ds (Keras takes validation_split before shuffling).
local function split_validation(who, ds, fraction)
  if type(fraction) ~= "number" or not (fraction > 0 and fraction < 1) then
    raise(string.format("%s: validation_split must be a fraction in (0, 1), got %s", who,
      tostring(fraction)))
  end
  if is_loader(ds) then
    raise(who .. ": validation_split needs a dataset, not a DataLoader")
  end
  local n = dataset.length(ds)
  local ntrain = math.floor(n * (1 - fraction))
  if ntrain < 1 or ntrain >= n then
    raise(string.format("%s: validation_split %g of %d samples leaves an empty part", who,
      fraction, n))
  end
  local train_idx = lm.arange(0, ntrain, {dtype = "i64"})
  local val_idx = lm.arange(ntrain, n, {dtype = "i64"})
  return data.Subset(ds, train_idx), data.Subset(ds, val_idx)
end

local function check_count(who, name, v, min)
  if math.type(v) ~= "integer" or v < min then
    raise(string.format("%s: %s must be an integer >= %d, got %s", who, name, min, tostring(v)))
  end
  return v
end

-- Calls log:scalar; an undefined value (NaN: an AUC over one class) is not logged.
local function log_scalar(log, tag, step, value)
  if log and value ~= nil and value == value then log:scalar(tag, step, value) end
end

function M.fit(model, a, b, c)
  local who = "fit"
  check_model(who, model)
  local ds, opts
  if is_tensor(a) then
    if not is_tensor(b) then
      raise("fit: with a tensor of inputs, the targets must be a tensor too, got " .. type(b))
    end
    ds, opts = data.TensorDataset(a, b), c
  else
    ds, opts = a, b
  end
  opts = check_options(who, opts, FIT_OPTIONS)
  if ds == nil then raise("fit: a dataset is required") end
  local epochs = check_count(who, "epochs", opts.epochs or 1, 1)
  local initial_epoch = check_count(who, "initial_epoch", opts.initial_epoch or 0, 0)
  local batch_size = check_count(who, "batch_size", opts.batch_size or 32, 1)
  local loss_fn, loss_name = resolve_loss(who, opts.loss)
  local mets = build_metrics(who, opts.metrics,
    outputs_are_logits(who, opts.from_logits, loss_name))
  local write = opts.write or M.write
  -- A log object without scalar (a later issue's run may grow more methods) logs nothing.
  local log = opts.log
  if log ~= nil and type(log.scalar) ~= "function" then log = nil end

  local validation = as_dataset(opts.validation or opts.validation_data)
  if opts.validation_split ~= nil then
    if validation ~= nil then
      raise("fit: give either validation or validation_split, not both")
    end
    ds, validation = split_validation(who, ds, opts.validation_split)
  end
  local loader = loader_for(ds, batch_size, opts.shuffle ~= false, opts.seed)
  if not is_loader(ds) then loader.epoch = initial_epoch end
  local nbatches = #loader
  if nbatches == 0 then raise("fit: the training set gives no batches") end
  local val_loader = validation ~= nil and loader_for(validation, batch_size, false, nil) or nil

  local opt = make_optimizer(who, model, opts.optimizer, opts.lr)
  local sched = opts.scheduler
  local sched_per_batch = sched and scheduler_per_batch(sched, opts.scheduler_per_batch)
  local callbacks = normalize_callbacks(who, opts.callbacks)
  local progress = Progress(progress_mode(opts.verbose), write, epochs)

  -- Display and history order: loss, metrics, then the same for validation.
  local keys = {"loss"}
  for _, m in ipairs(mets) do keys[#keys + 1] = m.name end
  local train_keys = {table.unpack(keys)}
  if val_loader then
    for k = 1, #train_keys do keys[#keys + 1] = "val_" .. train_keys[k] end
  end
  local history = {epoch = {}, lr = {}, epoch_time = {}}
  for _, k in ipairs(keys) do history[k] = {} end

  for _, cb in ipairs(callbacks) do
    cb.model, cb.optimizer, cb.scheduler = model, opt, sched
  end
  rawset(model, "stop_training", false)
  call_hooks(callbacks, "on_train_begin", {})
  local step = initial_epoch * nbatches

  for epoch = initial_epoch + 1, epochs do
    call_hooks(callbacks, "on_epoch_begin", epoch, {})
    model:train()
    for _, m in ipairs(mets) do m:reset() end
    progress:epoch_begin(epoch, nbatches)
    local t0 = lm.perf_counter()
    local lr = current_lr(opt)
    local total, count = 0, 0
    local running = {}
    local next_batch = loader:batches()
    while true do
      local i, xb, yb = next_batch()
      if i == nil then break end
      if yb == nil then raise(NO_TARGET) end
      opt:zero_grad()
      local out = model(xb)
      if not is_tensor(out) then
        raise(string.format("fit: the model returned %s, not a tensor", type(out)))
      end
      local loss = loss_fn(out, yb)
      if not is_tensor(loss) or loss:numel() ~= 1 then
        raise("fit: the loss must be a one-element tensor, got " ..
          (is_tensor(loss) and shape_str(loss) or type(loss)))
      end
      loss:backward()
      opt:step()
      lr = current_lr(opt)
      local n = out.ndim > 0 and out.shape[1] or 1
      local value = loss:item()
      total, count = total + value * n, count + n
      local detached = out:detach()
      for _, m in ipairs(mets) do m:update(detached, yb) end
      step = step + 1
      log_scalar(log, "loss/train", step, value)
      if sched and sched_per_batch then sched:step() end
      call_hooks(callbacks, "on_batch_end", i, {loss = value, size = n, step = step})
      if progress.mode == "bar" then
        running.loss = total / count
        for _, m in ipairs(mets) do
          if m.live ~= false then running[m.name] = m:result() end
        end
        progress:batch(i, train_keys, running)
      end
      if rawget(model, "stop_training") then break end
    end

    local logs = {loss = count > 0 and total / count or 0 / 0}
    for _, m in ipairs(mets) do logs[m.name] = m:result() end
    if val_loader then
      local v = run_eval(model, val_loader, loss_fn, mets)
      for k, x in pairs(v) do logs["val_" .. k] = x end
    end
    local seconds = lm.perf_counter() - t0
    logs.lr, logs.epoch_time = lr, seconds
    if sched and not sched_per_batch then sched:step() end

    history.epoch[#history.epoch + 1] = epoch
    for _, k in ipairs(keys) do history[k][#history[k] + 1] = logs[k] end
    history.lr[#history.lr + 1] = lr
    history.epoch_time[#history.epoch_time + 1] = seconds
    if log then
      for _, k in ipairs(train_keys) do
        if k ~= "loss" then log_scalar(log, k .. "/train", step, logs[k]) end
        if val_loader then log_scalar(log, k .. "/val", step, logs["val_" .. k]) end
      end
      log_scalar(log, "lr", step, lr)
      log_scalar(log, "time/epoch", step, seconds)
    end
    progress:epoch_end(keys, logs, seconds)
    call_hooks(callbacks, "on_epoch_end", epoch, logs)
    if rawget(model, "stop_training") then break end
  end
  call_hooks(callbacks, "on_train_end", {})
  return history, opt
end

-- ---- evaluate and predict -----------------------------------------------------------------

-- evaluate(dataset, {batch_size = 32, loss = nil, metrics = nil, from_logits = nil}) ->
-- {loss = ..., accuracy = ...} in eval mode and without gradients (the model's previous mode is
-- restored); loss, metrics and from_logits as fit's.
function M.evaluate(model, dataset, opts)
  local who = "evaluate"
  check_model(who, model)
  opts = check_options(who, opts, {"batch_size", "loss", "metrics", "from_logits"})
  dataset = as_dataset(dataset)
  if dataset == nil then raise("evaluate: a dataset is required") end
  local batch_size = check_count(who, "batch_size", opts.batch_size or 32, 1)
  local loss_fn, loss_name
  if opts.loss ~= nil then loss_fn, loss_name = resolve_loss(who, opts.loss) end
  local mets = build_metrics(who, opts.metrics,
    outputs_are_logits(who, opts.from_logits, loss_name))
  if not loss_fn and #mets == 0 then
    raise("evaluate: give a loss or metrics to compute")
  end
  return run_eval(model, loader_for(dataset, batch_size, false, nil), loss_fn, mets)
end

-- predict(x or dataset, {batch_size = 32}) -> the model's outputs for every sample (the first
-- field of each dataset sample), concatenated along dim 0, in eval mode without gradients.
function M.predict(model, x, opts)
  local who = "predict"
  check_model(who, model)
  opts = check_options(who, opts, {"batch_size"})
  local batch_size = check_count(who, "batch_size", opts.batch_size or 32, 1)
  local ds = is_tensor(x) and data.TensorDataset(x) or x
  if ds == nil then raise("predict: inputs (a tensor or a dataset) are required") end
  local loader = loader_for(ds, batch_size, false, nil)
  local was_training = model.training ~= false
  model:eval()
  local _restore <close> = mode_guard(model, was_training)
  local _nograd <close> = lm.no_grad()
  local outs = {}
  local next_batch = loader:batches()
  while true do
    local i, xb = next_batch()
    if i == nil then break end
    local out = model(xb)
    if not is_tensor(out) then
      raise(string.format("predict: the model returned %s, not a tensor", type(out)))
    end
    outs[i] = out
  end
  if #outs == 0 then raise("predict: no samples to predict") end
  if #outs == 1 then return outs[1] end
  return lm.cat(outs, 0)
end

-- ---- callbacks ----------------------------------------------------------------------------

-- "auto" mode: larger is better for accuracies and AUC, smaller for losses and errors.
local function resolve_mode(who, mode, monitor)
  mode = mode or "auto"
  if mode == "min" or mode == "max" then return mode end
  if mode ~= "auto" then
    raise(string.format("%s: mode must be \"min\", \"max\" or \"auto\", got %s", who,
      tostring(mode)))
  end
  local base = monitor:gsub("^val_", "")
  if base:find("acc") or base == "auc" or base:match("^top_?%d+$") then return "max" end
  return "min"
end

local function monitored(who, monitor, logs)
  local v = logs[monitor]
  if v == nil then
    local have = {}
    for k in pairs(logs) do have[#have + 1] = k end
    table.sort(have)
    raise(string.format("%s: monitor %q is not among the epoch's values (%s)%s", who, monitor,
      table.concat(have, ", "),
      monitor:find("^val_") and "; give fit a validation set" or ""))
  end
  return v
end

local function improved(mode, current, best, min_delta)
  if best == nil then return current == current end
  if mode == "min" then return current < best - min_delta end
  return current > best + min_delta
end

-- EarlyStopping{monitor = "val_loss", patience = 3, min_delta = 0, mode = "auto",
-- restore_best_weights = false, baseline = nil}: stops training when the monitored value has
-- not improved by more than min_delta for `patience` epochs. With restore_best_weights the
-- model gets the weights of its best epoch back when training ends. stopped_epoch and best
-- are readable afterwards.
local EarlyStopping = class("EarlyStopping")
M.EarlyStopping = EarlyStopping

function EarlyStopping:__init(opts)
  opts = check_options("EarlyStopping", opts, {"monitor", "patience", "min_delta", "mode",
    "restore_best_weights", "baseline"})
  self.monitor = opts.monitor or "val_loss"
  self.patience = check_count("EarlyStopping", "patience", opts.patience or 3, 0)
  self.min_delta = math.abs(opts.min_delta or 0)
  self.mode = resolve_mode("EarlyStopping", opts.mode, self.monitor)
  self.restore_best_weights = opts.restore_best_weights and true or false
  self.baseline = opts.baseline
end

function EarlyStopping:on_train_begin()
  self.wait, self.stopped_epoch, self.best_epoch = 0, nil, nil
  self.best, self.best_weights = self.baseline, nil
end

function EarlyStopping:on_epoch_end(epoch, logs)
  local current = monitored("EarlyStopping", self.monitor, logs)
  if improved(self.mode, current, self.best, self.min_delta) then
    self.best, self.best_epoch, self.wait = current, epoch, 0
    if self.restore_best_weights then
      local sd, names = self.model:state_dict()
      local copy = {}
      for _, k in ipairs(names) do copy[k] = sd[k]:clone() end
      self.best_weights = copy
    end
    return
  end
  self.wait = self.wait + 1
  if self.wait >= self.patience then
    self.stopped_epoch = epoch
    rawset(self.model, "stop_training", true)
  end
end

function EarlyStopping:on_train_end()
  if self.best_weights then self.model:load_state_dict(self.best_weights) end
end

-- ModelCheckpoint{path = "best.safetensors", monitor = "val_loss", save_best_only = true,
-- mode = "auto", full = false}: saves the model (lm.save) after an epoch, only when the
-- monitored value improved if save_best_only. "{epoch}" in the path becomes the epoch number
-- and "{name}" a log value such as {val_loss}. full = true writes a whole training checkpoint
-- (lm.checkpoint.save: model, optimizer, scheduler, epoch, step = the global batch count) from
-- which fit can resume with initial_epoch = info.epoch.
local ModelCheckpoint = class("ModelCheckpoint")
M.ModelCheckpoint = ModelCheckpoint

function ModelCheckpoint:__init(opts)
  opts = check_options("ModelCheckpoint", opts, {"path", "monitor", "save_best_only", "mode",
    "full"})
  if type(opts.path) ~= "string" or opts.path == "" then
    raise("ModelCheckpoint: path must be a file path string, got " .. tostring(opts.path))
  end
  self.path = opts.path
  self.monitor = opts.monitor or "val_loss"
  self.save_best_only = opts.save_best_only ~= false
  self.mode = resolve_mode("ModelCheckpoint", opts.mode, self.monitor)
  self.full = opts.full and true or false
end

function ModelCheckpoint:on_train_begin()
  self.best = nil
  self.saved = {}
end

function ModelCheckpoint:on_batch_end(_, logs)
  self.step = logs.step
end

function ModelCheckpoint:on_epoch_end(epoch, logs)
  if self.save_best_only then
    local current = monitored("ModelCheckpoint", self.monitor, logs)
    if not improved(self.mode, current, self.best, 0) then return end
    self.best = current
  end
  local path = self.path:gsub("{([%w_]+)}", function(key)
    if key == "epoch" then return tostring(epoch) end
    local v = logs[key]
    return v ~= nil and string.format("%.4f", v) or nil
  end)
  local serialize = require "lumen.serialize"
  if self.full then
    serialize.checkpoint.save(path, {model = self.model, optimizer = self.optimizer,
      scheduler = self.scheduler, epoch = epoch, step = self.step})
  else
    serialize.save(self.model, path)
  end
  self.saved[#self.saved + 1] = path
end

-- LRSchedulerCallback(scheduler, {per_batch = false}): steps a scheduler after each epoch (or
-- batch); the same as fit's scheduler option, for use with a custom loop of callbacks.
local LRSchedulerCallback = class("LRSchedulerCallback")
M.LRSchedulerCallback = LRSchedulerCallback

function LRSchedulerCallback:__init(scheduler, opts)
  if type(scheduler) ~= "table" or type(scheduler.step) ~= "function" then
    raise("LRSchedulerCallback: expected a scheduler (an object with step), got " ..
      class.name(scheduler))
  end
  opts = check_options("LRSchedulerCallback", opts, {"per_batch"})
  self.sched = scheduler
  self.per_batch = scheduler_per_batch(scheduler, opts.per_batch)
end

function LRSchedulerCallback:on_batch_end()
  if self.per_batch then self.sched:step() end
end

function LRSchedulerCallback:on_epoch_end()
  if not self.per_batch then self.sched:step() end
end

-- ---- nn.Module methods --------------------------------------------------------------------

Module.fit = M.fit
Module.evaluate = M.evaluate
Module.predict = M.predict

return M
