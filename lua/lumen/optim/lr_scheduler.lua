-- lumen.optim.lr_scheduler: learning-rate schedules, as torch.optim.lr_scheduler: StepLR,
-- MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR, LinearWarmup, LambdaLR, OneCycleLR
-- and SequentialLR (to chain a warmup with a decay).
--
--   local sched = optim.StepLR(opt, 30, {gamma = 0.1})
--   for epoch = 1, 90 do train_one_epoch(); sched:step() end
--
-- A scheduler is made on an optimizer; making it applies the lr of step 0 to every param group
-- (and stores the group's starting lr as group.initial_lr, as PyTorch). Each step() advances
-- last_epoch by one and writes the new lr into opt.param_groups[i].lr; OneCycleLR and LinearWarmup
-- are meant to step once per batch, the others once per epoch.
--
-- Every schedule here computes the lr from the group's base lr and the step count in closed form
-- (PyTorch's formulas, the "closed form" its docs give). So one scheduler owns a group's lr:
-- schedulers are not multiplied together as PyTorch's chainable form allows; use SequentialLR to
-- run them one after another. Resuming needs only last_epoch (state_dict/load_state_dict).
local class = require "lumen.class"
local util = require "lumen.util"
local Optimizer = require "lumen.optim.optimizer"

local raise, show, check_options = util.raise, util.show, util.check_options
local copy = Optimizer.copy

local M = {}

-- ---- argument helpers -------------------------------------------------------------------------

-- A required positional argument that may also come in the options table:
-- StepLR(opt, 30) and StepLR(opt, {step_size = 30}).
local function positional(arg, opts, key)
  if type(arg) == "table" and opts == nil and getmetatable(arg) == nil and arg[1] == nil then
    return arg[key], arg
  end
  return arg, opts
end

local function check_positive_int(name, key, v)
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    raise(string.format("%s: %s must be a positive integer, got %s", name, key, show(v)))
  end
  if v <= 0 then
    raise(string.format("%s: %s must be a positive integer, got %s", name, key, tostring(v)))
  end
  return math.tointeger(v)
end

local function check_number(name, key, v, lo, hi)
  if type(v) ~= "number" then
    raise(string.format("%s: %s must be a number, got %s", name, key, show(v)))
  end
  if (lo and not (v >= lo)) or (hi and not (v <= hi)) then
    raise(string.format("%s: %s must be in [%s, %s], got %s", name, key, tostring(lo or "-inf"),
      tostring(hi or "inf"), tostring(v)))
  end
  return v
end

-- A number for every param group, from a number or a sequence of one per group.
local function per_group(name, key, optimizer, v)
  local n = #optimizer.param_groups
  if type(v) == "table" then
    if #v ~= n then
      raise(string.format("%s: expected %d values for %s (one per param group), got %d", name, n,
        key, #v))
    end
    local out = {}
    for i = 1, n do out[i] = check_number(name, key, v[i]) end
    return out
  end
  check_number(name, key, v)
  local out = {}
  for i = 1, n do out[i] = v end
  return out
end

-- ---- the base class ---------------------------------------------------------------------------

local LRScheduler = class("LRScheduler")
M.LRScheduler = LRScheduler

-- Subclasses set their fields, then call this; get_lr() gives the lrs at self.last_epoch.
-- last_epoch = -1 starts a new schedule; another value resumes one whose groups already hold
-- initial_lr (PyTorch's rule).
function LRScheduler:__init(optimizer, last_epoch)
  local name = class.name(self)
  if not class.isinstance(optimizer, Optimizer) then
    raise(string.format("%s: expected an optimizer, got %s", name, show(optimizer)))
  end
  self.optimizer = optimizer
  last_epoch = last_epoch or -1
  if math.type(last_epoch) ~= "integer" or last_epoch < -1 then
    raise(string.format("%s: last_epoch must be an integer >= -1, got %s", name,
      tostring(last_epoch)))
  end
  for i, group in ipairs(optimizer.param_groups) do
    if last_epoch == -1 then
      if group.initial_lr == nil then group.initial_lr = group.lr end
    elseif group.initial_lr == nil then
      raise(string.format("%s: resuming (last_epoch = %d) needs initial_lr in param group %d",
        name, last_epoch, i))
    end
  end
  self.base_lrs = {}
  for i, group in ipairs(optimizer.param_groups) do self.base_lrs[i] = group.initial_lr end
  self.last_epoch = last_epoch
  self:step()
end

-- Sets the schedule to step `epoch` and writes its lrs into the optimizer.
function LRScheduler:_apply(epoch)
  local groups = self.optimizer.param_groups
  if #groups ~= #self.base_lrs then
    raise(string.format("%s: the optimizer has %d param groups but the scheduler was made for %d",
      class.name(self), #groups, #self.base_lrs))
  end
  -- get_lr reads last_epoch; a schedule that refuses the step (OneCycleLR past its end) leaves
  -- the scheduler as it was.
  local prev = self.last_epoch
  self.last_epoch = epoch
  local ok, lrs = pcall(self.get_lr, self)
  if not ok then
    self.last_epoch = prev
    error(lrs, 0)
  end
  for i, group in ipairs(groups) do group.lr = lrs[i] end
  self._last_lr = lrs
end

-- Advances the schedule by one step (an epoch, or a batch for per-batch schedules).
function LRScheduler:step()
  self:_apply(self.last_epoch + 1)
end

-- The lrs the last step() set, one per param group.
function LRScheduler:get_last_lr()
  return copy(self._last_lr)
end

-- Every field but the optimizer and functions (LambdaLR's lambdas), as PyTorch's __dict__.
function LRScheduler:state_dict()
  local sd = {}
  for k, v in pairs(self) do
    if k ~= "optimizer" and type(v) ~= "function" then sd[k] = copy(v) end
  end
  return sd
end

-- Restores a state_dict(); the optimizer's lrs come from the optimizer's own state_dict.
function LRScheduler:load_state_dict(sd)
  if type(sd) ~= "table" or math.type(sd.last_epoch) ~= "integer" then
    raise(class.name(self) .. ":load_state_dict: expected a table with an integer last_epoch")
  end
  for k, v in pairs(sd) do
    if k ~= "optimizer" then self[k] = copy(v) end
  end
end

function LRScheduler:__tostring()
  return string.format("%s(last_epoch=%d, lr=%s)", class.name(self), self.last_epoch,
    table.concat(self._last_lr, ", "))
end

-- Fills a table of one lr per group from f(base_lr, group_index).
function LRScheduler:_each(f)
  local out = {}
  for i, base in ipairs(self.base_lrs) do out[i] = f(base, i) end
  return out
end

-- ---- StepLR, MultiStepLR, ExponentialLR -------------------------------------------------------

-- lr = base_lr * gamma ^ floor(epoch / step_size)
local StepLR = class("StepLR", LRScheduler)
M.StepLR = StepLR

-- StepLR(opt, step_size, {gamma = 0.1, last_epoch = -1})
function StepLR:__init(optimizer, step_size, opts)
  step_size, opts = positional(step_size, opts, "step_size")
  opts = check_options("StepLR", opts, {"step_size", "gamma", "last_epoch"})
  self.step_size = check_positive_int("StepLR", "step_size", step_size)
  self.gamma = check_number("StepLR", "gamma", opts.gamma == nil and 0.1 or opts.gamma)
  LRScheduler.__init(self, optimizer, opts.last_epoch)
end

function StepLR:get_lr()
  local k = self.last_epoch // self.step_size
  return self:_each(function(base) return base * self.gamma ^ k end)
end

-- lr = base_lr * gamma ^ (number of milestones <= epoch)
local MultiStepLR = class("MultiStepLR", LRScheduler)
M.MultiStepLR = MultiStepLR

-- MultiStepLR(opt, {30, 80}, {gamma = 0.1})
function MultiStepLR:__init(optimizer, milestones, opts)
  opts = check_options("MultiStepLR", opts, {"gamma", "last_epoch"})
  if type(milestones) ~= "table" then
    raise("MultiStepLR: milestones must be a sequence of increasing integers, got "
      .. show(milestones))
  end
  self.milestones = {}
  for i, m in ipairs(milestones) do
    self.milestones[i] = check_positive_int("MultiStepLR", "a milestone", m)
    if i > 1 and self.milestones[i] <= self.milestones[i - 1] then
      raise("MultiStepLR: milestones must be increasing, got " .. table.concat(milestones, ", "))
    end
  end
  self.gamma = check_number("MultiStepLR", "gamma", opts.gamma == nil and 0.1 or opts.gamma)
  LRScheduler.__init(self, optimizer, opts.last_epoch)
end

function MultiStepLR:get_lr()
  local k = 0
  for _, m in ipairs(self.milestones) do
    if m <= self.last_epoch then k = k + 1 end
  end
  return self:_each(function(base) return base * self.gamma ^ k end)
end

-- lr = base_lr * gamma ^ epoch
local ExponentialLR = class("ExponentialLR", LRScheduler)
M.ExponentialLR = ExponentialLR

-- ExponentialLR(opt, gamma)
function ExponentialLR:__init(optimizer, gamma, opts)
  gamma, opts = positional(gamma, opts, "gamma")
  opts = check_options("ExponentialLR", opts, {"gamma", "last_epoch"})
  self.gamma = check_number("ExponentialLR", "gamma", gamma)
  LRScheduler.__init(self, optimizer, opts.last_epoch)
end

function ExponentialLR:get_lr()
  return self:_each(function(base) return base * self.gamma ^ self.last_epoch end)
end

-- ---- CosineAnnealingLR ------------------------------------------------------------------------

-- lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (SGDR without restarts:
-- past T_max the cosine rises again, as PyTorch's closed form).
local CosineAnnealingLR = class("CosineAnnealingLR", LRScheduler)
M.CosineAnnealingLR = CosineAnnealingLR

-- CosineAnnealingLR(opt, T_max, {eta_min = 0})
function CosineAnnealingLR:__init(optimizer, T_max, opts)
  T_max, opts = positional(T_max, opts, "T_max")
  opts = check_options("CosineAnnealingLR", opts, {"T_max", "eta_min", "last_epoch"})
  self.T_max = check_positive_int("CosineAnnealingLR", "T_max", T_max)
  self.eta_min = check_number("CosineAnnealingLR", "eta_min",
    opts.eta_min == nil and 0 or opts.eta_min)
  LRScheduler.__init(self, optimizer, opts.last_epoch)
end

function CosineAnnealingLR:get_lr()
  local c = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
  return self:_each(function(base) return self.eta_min + (base - self.eta_min) * c end)
end

-- ---- LinearLR, LinearWarmup -------------------------------------------------------------------

-- lr = base_lr * (start_factor + (end_factor - start_factor) * min(epoch, total_iters)
--                  / total_iters)
local LinearLR = class("LinearLR", LRScheduler)
M.LinearLR = LinearLR

-- LinearLR(opt, {start_factor = 1/3, end_factor = 1, total_iters = 5})
function LinearLR:__init(optimizer, opts)
  opts = check_options(class.name(self), opts, {"start_factor", "end_factor", "total_iters",
    "last_epoch"})
  local name = class.name(self)
  self.start_factor = check_number(name, "start_factor",
    opts.start_factor == nil and 1 / 3 or opts.start_factor, 0, 1)
  self.end_factor = check_number(name, "end_factor",
    opts.end_factor == nil and 1 or opts.end_factor, 0, 1)
  self.total_iters = check_positive_int(name, "total_iters",
    opts.total_iters == nil and 5 or opts.total_iters)
  LRScheduler.__init(self, optimizer, opts.last_epoch)
end

function LinearLR:get_lr()
  local t = math.min(self.last_epoch, self.total_iters)
  local f = self.start_factor + (self.end_factor - self.start_factor) * t / self.total_iters
  return self:_each(function(base) return base * f end)
end

-- Linear warmup, stepped once per batch: the lr grows linearly from start_factor * base_lr at
-- step 0 to base_lr at step warmup_steps, then stays there. It has no exact PyTorch twin: it is
-- LinearLR(start_factor, end_factor = 1, total_iters = warmup_steps), with start_factor allowed to
-- be 0 and defaulting to 1 / warmup_steps (so the first step does not waste a batch at lr 0).
-- For warmup then decay, put it first in a SequentialLR.
local LinearWarmup = class("LinearWarmup", LinearLR)
M.LinearWarmup = LinearWarmup

-- LinearWarmup(opt, warmup_steps, {start_factor = 1 / warmup_steps})
function LinearWarmup:__init(optimizer, warmup_steps, opts)
  warmup_steps, opts = positional(warmup_steps, opts, "warmup_steps")
  opts = check_options("LinearWarmup", opts, {"warmup_steps", "start_factor", "last_epoch"})
  warmup_steps = check_positive_int("LinearWarmup", "warmup_steps", warmup_steps)
  self.warmup_steps = warmup_steps
  LinearLR.__init(self, optimizer, {
    start_factor = opts.start_factor == nil and 1 / warmup_steps or opts.start_factor,
    end_factor = 1, total_iters = warmup_steps, last_epoch = opts.last_epoch,
  })
end

-- ---- LambdaLR ---------------------------------------------------------------------------------

-- lr = base_lr * lr_lambda(epoch), with one function or one per param group. The functions are
-- not part of state_dict (code is not data): give the same ones when resuming.
local LambdaLR = class("LambdaLR", LRScheduler)
M.LambdaLR = LambdaLR

-- LambdaLR(opt, function(epoch) return 0.95 ^ epoch end)
function LambdaLR:__init(optimizer, lr_lambda, opts)
  opts = check_options("LambdaLR", opts, {"last_epoch"})
  local groups = class.isinstance(optimizer, Optimizer) and #optimizer.param_groups or 0
  local fns = {}
  if type(lr_lambda) == "function" then
    for i = 1, groups do fns[i] = lr_lambda end
  elseif type(lr_lambda) == "table" and #lr_lambda == groups then
    for i = 1, groups do
      if type(lr_lambda[i]) ~= "function" then
        raise(string.format("LambdaLR: lr_lambda[%d] is %s, expected a function", i,
          show(lr_lambda[i])))
      end
      fns[i] = lr_lambda[i]
    end
  else
    raise(string.format("LambdaLR: lr_lambda must be a function or a sequence of %d functions "
      .. "(one per param group), got %s", groups, show(lr_lambda)))
  end
  self._lambda_list = fns
  LRScheduler.__init(self, optimizer, opts.last_epoch)
end

function LambdaLR:state_dict()
  local sd = LRScheduler.state_dict(self)
  sd._lambda_list = nil
  return sd
end

function LambdaLR:load_state_dict(sd)
  local fns = self._lambda_list
  LRScheduler.load_state_dict(self, sd)
  self._lambda_list = fns
end

function LambdaLR:get_lr()
  return self:_each(function(base, i)
    local f = self._lambda_list[i](self.last_epoch)
    if type(f) ~= "number" then
      raise(string.format("LambdaLR: lr_lambda of param group %d returned %s, expected a number",
        i, show(f)))
    end
    return base * f
  end)
end

-- ---- OneCycleLR -------------------------------------------------------------------------------

local function anneal_cos(start, stop, pct)
  return stop + (start - stop) / 2 * (math.cos(math.pi * pct) + 1)
end

local function anneal_linear(start, stop, pct)
  return (stop - start) * pct + start
end

-- The 1cycle policy (Smith & Topin), stepped once per batch: the lr rises from max_lr/div_factor
-- to max_lr over pct_start of the steps, then anneals to max_lr/div_factor/final_div_factor
-- (three_phase: back down to the initial lr first, then to the minimum). With cycle_momentum the
-- momentum (SGD, RMSprop) or Adam's beta1 moves the opposite way between base_momentum and
-- max_momentum. Exactly PyTorch's schedule.
local OneCycleLR = class("OneCycleLR", LRScheduler)
M.OneCycleLR = OneCycleLR

-- OneCycleLR(opt, max_lr, {total_steps = n} or {epochs = e, steps_per_epoch = s}, pct_start = 0.3,
--   anneal_strategy = "cos", cycle_momentum = true, base_momentum = 0.85, max_momentum = 0.95,
--   div_factor = 25, final_div_factor = 1e4, three_phase = false})
function OneCycleLR:__init(optimizer, max_lr, opts)
  local name = "OneCycleLR"
  max_lr, opts = positional(max_lr, opts, "max_lr")
  opts = check_options(name, opts, {"max_lr", "total_steps", "epochs", "steps_per_epoch",
    "pct_start", "anneal_strategy", "cycle_momentum", "base_momentum", "max_momentum", "div_factor",
    "final_div_factor", "three_phase", "last_epoch"})
  if not class.isinstance(optimizer, Optimizer) then
    raise(string.format("%s: expected an optimizer, got %s", name, show(optimizer)))
  end
  if opts.total_steps ~= nil then
    self.total_steps = check_positive_int(name, "total_steps", opts.total_steps)
  elseif opts.epochs ~= nil and opts.steps_per_epoch ~= nil then
    self.total_steps = check_positive_int(name, "epochs", opts.epochs)
      * check_positive_int(name, "steps_per_epoch", opts.steps_per_epoch)
  else
    raise(name .. ": give either total_steps or both epochs and steps_per_epoch")
  end
  local pct_start = check_number(name, "pct_start", opts.pct_start == nil and 0.3
    or opts.pct_start, 0, 1)
  local strategy = opts.anneal_strategy or "cos"
  if strategy ~= "cos" and strategy ~= "linear" then
    raise(string.format("%s: anneal_strategy must be \"cos\" or \"linear\", got %s", name,
      tostring(strategy)))
  end
  self.anneal_strategy = strategy
  local total = self.total_steps
  if opts.three_phase then
    self._schedule_phases = {
      {end_step = pct_start * total - 1, start_lr = "initial_lr", end_lr = "max_lr",
       start_momentum = "max_momentum", end_momentum = "base_momentum"},
      {end_step = 2 * pct_start * total - 2, start_lr = "max_lr", end_lr = "initial_lr",
       start_momentum = "base_momentum", end_momentum = "max_momentum"},
      {end_step = total - 1, start_lr = "initial_lr", end_lr = "min_lr",
       start_momentum = "max_momentum", end_momentum = "max_momentum"},
    }
  else
    self._schedule_phases = {
      {end_step = pct_start * total - 1, start_lr = "initial_lr", end_lr = "max_lr",
       start_momentum = "max_momentum", end_momentum = "base_momentum"},
      {end_step = total - 1, start_lr = "max_lr", end_lr = "min_lr",
       start_momentum = "base_momentum", end_momentum = "max_momentum"},
    }
  end
  local div = check_number(name, "div_factor", opts.div_factor == nil and 25 or opts.div_factor)
  local final_div = check_number(name, "final_div_factor",
    opts.final_div_factor == nil and 1e4 or opts.final_div_factor)
  local last_epoch = opts.last_epoch or -1
  local groups = optimizer.param_groups
  local max_lrs = per_group(name, "max_lr", optimizer, max_lr)
  if last_epoch == -1 then
    for i, group in ipairs(groups) do
      group.initial_lr = max_lrs[i] / div
      group.max_lr = max_lrs[i]
      group.min_lr = group.initial_lr / final_div
    end
  end
  self.cycle_momentum = opts.cycle_momentum ~= false
  if self.cycle_momentum then
    local defaults = optimizer.defaults
    if defaults.momentum == nil and defaults.betas == nil then
      raise(name .. ": cycle_momentum needs an optimizer with momentum or betas (or give "
        .. "cycle_momentum = false)")
    end
    self.use_beta1 = defaults.betas ~= nil
    local max_m = per_group(name, "max_momentum", optimizer,
      opts.max_momentum == nil and 0.95 or opts.max_momentum)
    local base_m = per_group(name, "base_momentum", optimizer,
      opts.base_momentum == nil and 0.85 or opts.base_momentum)
    if last_epoch == -1 then
      for i, group in ipairs(groups) do
        self:_set_momentum(group, max_m[i])
        group.max_momentum = max_m[i]
        group.base_momentum = base_m[i]
      end
    end
  end
  LRScheduler.__init(self, optimizer, last_epoch)
end

-- A new betas pair rather than a write into the old one: groups may share a betas table given by
-- the user.
function OneCycleLR:_set_momentum(group, m)
  if self.use_beta1 then
    group.betas = {m, group.betas[2]}
  else
    group.momentum = m
  end
end

function OneCycleLR:get_lr()
  local step = self.last_epoch
  if step > self.total_steps then
    raise(string.format("OneCycleLR: stepped %d times but total_steps is %d", step,
      self.total_steps))
  end
  local anneal = self.anneal_strategy == "cos" and anneal_cos or anneal_linear
  local phases = self._schedule_phases
  local lrs = {}
  for i, group in ipairs(self.optimizer.param_groups) do
    local start_step = 0
    for pi, phase in ipairs(phases) do
      local end_step = phase.end_step
      if step <= end_step or pi == #phases then
        local pct = (step - start_step) / (end_step - start_step)
        lrs[i] = anneal(group[phase.start_lr], group[phase.end_lr], pct)
        if self.cycle_momentum then
          self:_set_momentum(group, anneal(group[phase.start_momentum], group[phase.end_momentum],
            pct))
        end
        break
      end
      start_step = end_step
    end
  end
  return lrs
end

-- ---- SequentialLR -----------------------------------------------------------------------------

-- Runs schedulers one after another: schedulers[i + 1] takes over at step milestones[i], starting
-- from its own step 0. SequentialLR(opt, {LinearWarmup(opt, 100), CosineAnnealingLR(opt, 900)},
-- {100}).
local SequentialLR = class("SequentialLR", LRScheduler)
M.SequentialLR = SequentialLR

function SequentialLR:__init(optimizer, schedulers, milestones, opts)
  local name = "SequentialLR"
  opts = check_options(name, opts, {"last_epoch"})
  if not class.isinstance(optimizer, Optimizer) then
    raise(string.format("%s: expected an optimizer, got %s", name, show(optimizer)))
  end
  if type(schedulers) ~= "table" or #schedulers == 0 then
    raise(name .. ": schedulers must be a non-empty sequence of schedulers")
  end
  for i, s in ipairs(schedulers) do
    if not class.isinstance(s, LRScheduler) then
      raise(string.format("%s: schedulers[%d] is %s, expected a scheduler", name, i, show(s)))
    end
    if s.optimizer ~= optimizer then
      raise(string.format("%s: schedulers[%d] belongs to another optimizer", name, i))
    end
  end
  if type(milestones) ~= "table" or #milestones ~= #schedulers - 1 then
    local got = type(milestones) == "table" and tostring(#milestones) or show(milestones)
    raise(string.format("%s: expected %d milestones (one fewer than schedulers), got %s", name,
      #schedulers - 1, got))
  end
  self._milestones = {}
  for i, m in ipairs(milestones) do
    self._milestones[i] = check_positive_int(name, "a milestone", m)
    if i > 1 and self._milestones[i] <= self._milestones[i - 1] then
      raise(name .. ": milestones must be increasing")
    end
  end
  self.optimizer = optimizer
  self._schedulers = schedulers
  self.last_epoch = (opts.last_epoch or -1) + 1
  -- The schedulers each applied their step 0 when made; the first one rules from step 0.
  schedulers[1]:_apply(0)
  self._last_lr = schedulers[1]:get_last_lr()
end

-- Which scheduler rules at step e, and whether e is its first step.
function SequentialLR:_current(e)
  local idx = 1
  for i, m in ipairs(self._milestones) do
    if e >= m then idx = i + 1 end
  end
  return idx, idx > 1 and self._milestones[idx - 1] == e
end

function SequentialLR:step()
  self.last_epoch = self.last_epoch + 1
  local idx, starts = self:_current(self.last_epoch)
  local s = self._schedulers[idx]
  if starts then s:_apply(0) else s:step() end
  self._last_lr = s:get_last_lr()
end

function SequentialLR:state_dict()
  local states = {}
  for i, s in ipairs(self._schedulers) do states[i] = s:state_dict() end
  return {last_epoch = self.last_epoch, _milestones = copy(self._milestones),
          _last_lr = copy(self._last_lr), _schedulers = states}
end

function SequentialLR:load_state_dict(sd)
  if type(sd) ~= "table" or math.type(sd.last_epoch) ~= "integer"
      or type(sd._schedulers) ~= "table" or #sd._schedulers ~= #self._schedulers then
    raise(string.format("SequentialLR:load_state_dict: expected a table with last_epoch and %d "
      .. "scheduler states", #self._schedulers))
  end
  for i, s in ipairs(self._schedulers) do s:load_state_dict(sd._schedulers[i]) end
  self.last_epoch = sd.last_epoch
  self._milestones = copy(sd._milestones)
  self._last_lr = copy(sd._last_lr)
end

return M
