-- test_optim.lua: lumen.optim — one and two steps of every optimizer against updates computed
-- here in plain Lua from PyTorch's algorithms, param groups, skipped parameters, zero_grad,
-- state_dict round trips, the learning-rate schedulers against PyTorch 1.13's sequences,
-- gradient clipping, and the errors for bad calls.
local T = require "tap"
local lm = require "lumen"
local optim = lm.optim
T.plan_auto()

-- ---- helpers ----------------------------------------------------------------------------------

local function param(vals, dtype)
  return lm.tensor(vals, {dtype = dtype or "f64", requires_grad = true})
end

local function set_grad(p, vals) p.grad = lm.tensor(vals, {dtype = p.dtype}) end

local P0 = {0.5, -1.25, 2.0}
local G1 = {0.1, -0.2, 0.3}
-- Smaller than G1 where G1 is large, so amsgrad's running maximum matters at step 2.
local G2 = {0.25, 0.05, -0.02}

local function copy(v)
  local out = {}
  for i, x in ipairs(v) do out[i] = x end
  return out
end

-- Runs `make(p)` on a fresh f64 parameter for #grads steps; returns the parameter as a table.
local function run(make, grads, p0, dtype)
  local p = param(p0 or P0, dtype)
  local opt = make(p)
  for _, g in ipairs(grads) do
    set_grad(p, g)
    opt:step()
  end
  return p:totable(), opt, p
end

-- ---- reference updates (plain Lua, from the algorithms in PyTorch's docs and code) -----------

-- SGD: buf = g at the first step, else momentum * buf + (1 - dampening) * g.
local function ref_sgd(o, grads, p0)
  local p, buf = copy(p0 or P0), {}
  for t, gr in ipairs(grads) do
    for i = 1, #p do
      local g = gr[i]
      if o.maximize then g = -g end
      if (o.weight_decay or 0) ~= 0 then g = g + o.weight_decay * p[i] end
      if (o.momentum or 0) ~= 0 then
        if t == 1 then buf[i] = g
        else buf[i] = o.momentum * buf[i] + (1 - (o.dampening or 0)) * g end
        if o.nesterov then g = g + o.momentum * buf[i] else g = buf[i] end
      end
      p[i] = p[i] - o.lr * g
    end
  end
  return p
end

-- Adam / AdamW as PyTorch's single-tensor code: amsgrad keeps the maximum of the raw second
-- moment and divides it by the bias correction.
local function ref_adam(o, grads, decoupled)
  local p, m, v, vmax = copy(P0), {0, 0, 0}, {0, 0, 0}, {0, 0, 0}
  local b1, b2 = o.betas[1], o.betas[2]
  for t, gr in ipairs(grads) do
    for i = 1, #p do
      local g = gr[i]
      if o.maximize then g = -g end
      if decoupled then
        p[i] = p[i] * (1 - o.lr * o.weight_decay)
      elseif o.weight_decay ~= 0 then
        g = g + o.weight_decay * p[i]
      end
      m[i] = b1 * m[i] + (1 - b1) * g
      v[i] = b2 * v[i] + (1 - b2) * g * g
      local vv = v[i]
      if o.amsgrad then
        vmax[i] = math.max(vmax[i], v[i])
        vv = vmax[i]
      end
      local bc1, bc2 = 1 - b1 ^ t, 1 - b2 ^ t
      p[i] = p[i] - o.lr / bc1 * m[i] / (math.sqrt(vv) / math.sqrt(bc2) + o.eps)
    end
  end
  return p, m, v
end

local function ref_rmsprop(o, grads)
  local p, sq, ga, buf = copy(P0), {0, 0, 0}, {0, 0, 0}, {0, 0, 0}
  for _, gr in ipairs(grads) do
    for i = 1, #p do
      local g = gr[i]
      if o.weight_decay ~= 0 then g = g + o.weight_decay * p[i] end
      sq[i] = o.alpha * sq[i] + (1 - o.alpha) * g * g
      local avg
      if o.centered then
        ga[i] = o.alpha * ga[i] + (1 - o.alpha) * g
        avg = math.sqrt(sq[i] - ga[i] * ga[i]) + o.eps
      else
        avg = math.sqrt(sq[i]) + o.eps
      end
      if o.momentum > 0 then
        buf[i] = o.momentum * buf[i] + g / avg
        p[i] = p[i] - o.lr * buf[i]
      else
        p[i] = p[i] - o.lr * g / avg
      end
    end
  end
  return p
end

local function close_list(got, want, tol, name)
  local worst = 0
  for i = 1, #want do worst = math.max(worst, math.abs(got[i] - want[i])) end
  if #got ~= #want then worst = math.huge end
  if not (worst <= tol) then T.diag(string.format("max |diff| = %g", worst)) end
  return T.ok(worst <= tol, name)
end

-- ---- SGD --------------------------------------------------------------------------------------

local sgd_cases = {
  {"SGD plain, one step", {lr = 0.1}, {G1}},
  {"SGD momentum, two steps", {lr = 0.1, momentum = 0.9}, {G1, G2}},
  {"SGD momentum with dampening, two steps", {lr = 0.1, momentum = 0.9, dampening = 0.3}, {G1, G2}},
  {"SGD nesterov, two steps", {lr = 0.1, momentum = 0.9, nesterov = true}, {G1, G2}},
  {"SGD weight_decay, one step", {lr = 0.1, weight_decay = 0.5}, {G1}},
  {"SGD maximize with momentum, two steps", {lr = 0.05, momentum = 0.5, maximize = true}, {G1, G2}},
}
for _, c in ipairs(sgd_cases) do
  local got = run(function(p) return optim.SGD({p}, c[2]) end, c[3])
  close_list(got, ref_sgd(c[2], c[3]), 1e-14, c[1])
end
do
  -- A hand check of the reference itself: 0.5 - 0.1 * 0.1, then momentum 0.9 at step 2.
  local got = run(function(p) return optim.SGD({p}, {lr = 0.1, momentum = 0.9}) end, {G1, G2})
  T.close(got[1], 0.5 - 0.1 * 0.1 - 0.1 * (0.9 * 0.1 + 0.25), 1e-14,
    "SGD momentum step 2 by hand: p - lr * (0.9 * g1 + g2)")
  local p32 = run(function(p) return optim.SGD({p}, {lr = 0.1, momentum = 0.9}) end, {G1, G2},
    nil, "f32")
  close_list(p32, ref_sgd({lr = 0.1, momentum = 0.9}, {G1, G2}), 1e-6, "SGD on an f32 parameter")
end

-- ---- Adam, AdamW --------------------------------------------------------------------------------

local adam_cases = {
  {"Adam, two steps", optim.Adam, false, {lr = 0.01, betas = {0.9, 0.999}, eps = 1e-8,
    weight_decay = 0}},
  {"Adam weight_decay (coupled), two steps", optim.Adam, false, {lr = 0.01, betas = {0.8, 0.99},
    eps = 1e-6, weight_decay = 0.1}},
  {"Adam amsgrad, two steps", optim.Adam, false, {lr = 0.01, betas = {0.9, 0.5}, eps = 1e-8,
    weight_decay = 0, amsgrad = true}},
  {"Adam maximize, two steps", optim.Adam, false, {lr = 0.01, betas = {0.9, 0.999}, eps = 1e-8,
    weight_decay = 0, maximize = true}},
  {"AdamW, two steps", optim.AdamW, true, {lr = 0.01, betas = {0.9, 0.999}, eps = 1e-8,
    weight_decay = 0.1}},
  {"AdamW amsgrad, two steps", optim.AdamW, true, {lr = 0.01, betas = {0.9, 0.5}, eps = 1e-8,
    weight_decay = 0.1, amsgrad = true}},
}
for _, c in ipairs(adam_cases) do
  local got, opt, p = run(function(p) return c[2]({p}, c[4]) end, {G1, G2})
  local want, m, v = ref_adam(c[4], {G1, G2}, c[3])
  close_list(got, want, 1e-14, c[1])
  if c[1] == "Adam, two steps" then
    local st = opt.state[p]
    T.is(st.step, 2, "Adam state: step counts the steps taken")
    T.ok(math.type(st.step) == "integer", "Adam state: step is a Lua integer")
    close_list(st.exp_avg:totable(), m, 1e-15, "Adam state: exp_avg")
    close_list(st.exp_avg_sq:totable(), v, 1e-15, "Adam state: exp_avg_sq")
    T.ok(st.max_exp_avg_sq == nil, "Adam state: no max_exp_avg_sq without amsgrad")
  end
end
do
  -- One Adam step by hand: with zero state, the first update is lr * g / (|g| + eps') = ±lr.
  local got = run(function(p) return optim.Adam({p}, {lr = 0.01}) end, {G1})
  T.close(got[1], 0.5 - 0.01 * 0.1 / (0.1 + 1e-8), 1e-12, "Adam step 1 by hand: p - lr * sign(g)")
  -- beta2 = 0.5 forgets fast enough that the third element's v shrinks at step 2.
  local amsgrad = run(function(p) return optim.Adam({p}, {lr = 0.01, betas = {0.9, 0.5},
    amsgrad = true}) end, {G1, G2})
  local plain = run(function(p) return optim.Adam({p}, {lr = 0.01, betas = {0.9, 0.5}}) end,
    {G1, G2})
  T.ok(math.abs(amsgrad[3] - plain[3]) > 1e-6, "amsgrad changes the update when v shrinks")
  local w = optim.AdamW({param(P0)})
  T.is(w.param_groups[1].weight_decay, 1e-2, "AdamW's default weight_decay is 1e-2")
  T.is(optim.Adam({param(P0)}).param_groups[1].weight_decay, 0, "Adam's default weight_decay is 0")
end

-- ---- RMSprop ----------------------------------------------------------------------------------

local rms_base = {lr = 0.01, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0,
                  centered = false}
local function rms(over)
  local o = {}
  for k, v in pairs(rms_base) do o[k] = v end
  for k, v in pairs(over) do o[k] = v end
  return o
end
local rms_cases = {
  {"RMSprop plain, two steps", rms{}},
  {"RMSprop centered, two steps", rms{centered = true}},
  {"RMSprop momentum, two steps", rms{momentum = 0.9}},
  {"RMSprop centered + momentum + weight_decay, two steps", rms{centered = true, momentum = 0.5,
    weight_decay = 0.1, alpha = 0.9}},
}
for _, c in ipairs(rms_cases) do
  local got = run(function(p) return optim.RMSprop({p}, c[2]) end, {G1, G2})
  close_list(got, ref_rmsprop(c[2], {G1, G2}), 1e-13, c[1])
end
do
  local got = run(function(p) return optim.RMSprop({p}) end, {G1})
  T.close(got[1], 0.5 - 0.01 * 0.1 / (math.sqrt(0.01 * 0.01) + 1e-8), 1e-12,
    "RMSprop step 1 by hand: p - lr * g / (sqrt((1 - alpha) g^2) + eps)")
end

-- ---- param groups, skipped parameters, closure ------------------------------------------------

do
  local a, b = param(P0), param(P0)
  local opt = optim.SGD({{params = {a}}, {params = {b}, lr = 0.01, momentum = 0.9}}, {lr = 0.1})
  T.is(#opt.param_groups, 2, "two param groups")
  T.is(opt.param_groups[1].lr, 0.1, "group 1 takes the constructor's lr")
  T.is(opt.param_groups[1].momentum, 0, "group 1 takes the default momentum")
  T.is(opt.param_groups[2].lr, 0.01, "group 2 keeps its own lr")
  for _, g in ipairs({G1, G2}) do
    set_grad(a, g); set_grad(b, g)
    opt:step()
  end
  close_list(a:totable(), ref_sgd({lr = 0.1}, {G1, G2}), 1e-14, "group 1 stepped with lr 0.1")
  close_list(b:totable(), ref_sgd({lr = 0.01, momentum = 0.9}, {G1, G2}), 1e-14,
    "group 2 stepped with lr 0.01 and momentum 0.9")

  local c, d = param(P0), param(P0)
  local adam = optim.Adam({c, d}, {lr = 0.01})
  set_grad(c, G1)
  adam:step()
  close_list(d:totable(), P0, 0, "a parameter without grad is left alone")
  T.ok(adam.state[d] == nil, "and gets no state")
  T.ok(adam.state[c] ~= nil and adam.state[c].step == 1, "the one with a grad has state")

  opt.param_groups[1].lr = 0.5
  local before = a:totable()
  set_grad(a, G1); b.grad = nil
  opt:step()
  T.close(a:totable()[1], before[1] - 0.5 * G1[1], 1e-14,
    "lr changed in the group is used at the next step")

  local calls = 0
  local loss = opt:step(function() calls = calls + 1; return 42 end)
  T.ok(calls == 1 and loss == 42, "step(closure) calls it once and returns its result")

  local e = param(P0)
  opt:add_param_group({params = {e}, lr = 0.2})
  T.is(#opt.param_groups, 3, "add_param_group adds a group")
  T.is(opt.param_groups[3].dampening, 0, "added group gets the defaults")
  T.errors(function() opt:add_param_group({params = {a}}) end, "appears more than once",
    "a parameter cannot be in two groups")
end

-- ---- zero_grad --------------------------------------------------------------------------------

do
  local p, q = param(P0), param(P0)
  local opt = optim.SGD({p, q}, {lr = 0.1})
  set_grad(p, G1)
  opt:zero_grad()
  T.ok(p.grad == nil and q.grad == nil, "zero_grad() sets grads to nil (set_to_none)")
  set_grad(p, G1)
  local g = p.grad
  opt:zero_grad({set_to_none = false})
  T.ok(p.grad ~= nil, "zero_grad{set_to_none = false} keeps the grad tensor")
  close_list(p.grad:totable(), {0, 0, 0}, 0, "and zeroes it")
  close_list(g:totable(), {0, 0, 0}, 0, "in place")
  T.ok(q.grad == nil, "a missing grad stays missing")
end

-- ---- state_dict -------------------------------------------------------------------------------

do
  local a, b = param(P0), param({1.0, 2.0})
  local opt = optim.Adam({{params = {a}}, {params = {b}, lr = 0.02}}, {lr = 0.01, amsgrad = true})
  set_grad(a, G1); set_grad(b, {0.3, -0.1})
  opt:step()
  local sd = opt:state_dict()
  T.is(#sd.param_groups, 2, "state_dict: two groups")
  T.is(table.concat(sd.param_groups[1].params, ","), "0", "state_dict: group 1 lists param 0")
  T.is(table.concat(sd.param_groups[2].params, ","), "1", "state_dict: group 2 lists param 1")
  T.is(sd.param_groups[2].lr, 0.02, "state_dict: group hyper-parameters")
  T.is(sd.param_groups[1].betas[2], 0.999, "state_dict: betas")
  T.ok(sd.state[0] ~= nil and sd.state[1] ~= nil, "state_dict: state indexed from 0")
  T.is(sd.state[1].step, 1, "state_dict: step")
  T.is(table.concat(sd.state[1].exp_avg.shape, ","), "2", "state_dict: exp_avg tensor")
  T.ok(sd.state[0].max_exp_avg_sq ~= nil, "state_dict: amsgrad's max_exp_avg_sq")

  -- A fresh optimizer on copies of the parameters, loaded from the state_dict, must continue
  -- exactly as the original.
  local a2, b2 = param(a:totable()), param(b:totable())
  local opt2 = optim.Adam({{params = {a2}}, {params = {b2}}}, {lr = 0.5})
  opt2:load_state_dict(sd)
  T.is(opt2.param_groups[2].lr, 0.02, "load_state_dict restores the group lr")
  T.is(opt2.param_groups[1].amsgrad, true, "load_state_dict restores amsgrad")
  T.ok(opt2.state[a2].exp_avg ~= opt.state[a].exp_avg, "loaded state tensors are copies")
  for _, g in ipairs({G2, G1}) do
    set_grad(a, g); set_grad(a2, g)
    set_grad(b, {g[1], g[2]}); set_grad(b2, {g[1], g[2]})
    opt:step(); opt2:step()
  end
  T.ok(a:eq(a2):all() and b:eq(b2):all(),
    "after load_state_dict, two more steps give identical parameters")
  T.is(opt2.state[a2].step, 3, "the step count continued")

  local s = optim.SGD({param(P0)}, {lr = 0.1, momentum = 0.9})
  T.errors(function() opt2:load_state_dict(s:state_dict()) end,
    "has 1 param groups but the optimizer has 2", "load_state_dict: group count mismatch")
  local one = optim.Adam({param(P0)})
  T.errors(function() one:load_state_dict(s:state_dict()) end, "no 'betas'",
    "load_state_dict: another optimizer's state")
  local wrong = optim.Adam({param({1.0, 2.0, 3.0, 4.0})})
  local src = optim.Adam({param(P0)})
  local sp = src.param_groups[1].params[1]
  set_grad(sp, G1)
  src:step()
  T.errors(function() wrong:load_state_dict(src:state_dict()) end,
    "'exp_avg' has shape [3] but the parameter has shape [4]", "load_state_dict: shape mismatch")
  local sd3 = src:state_dict()
  sd3.state[0].step = lm.tensor(4.0, {dtype = "f32"})
  local tgt = optim.Adam({param(P0)})
  tgt:load_state_dict(sd3)
  T.ok(math.type(tgt.state[tgt.param_groups[1].params[1]].step) == "integer",
    "a step given as a tensor (PyTorch's layout) becomes a Lua integer")
end

-- ---- printing ---------------------------------------------------------------------------------

do
  local s = tostring(optim.SGD({param(P0)}, {lr = 0.1}))
  T.ok(s:find("SGD (", 1, true) and s:find("Parameter Group 0", 1, true)
    and s:find("lr: 0.1", 1, true), "tostring(optimizer) lists its groups")
end

-- ---- errors -----------------------------------------------------------------------------------

do
  local p = param(P0)
  T.errors(function() optim.SGD({p}) end, "SGD: lr is required", "SGD without lr")
  T.errors(function() optim.SGD({p}, {lr = -0.1}) end, "SGD: invalid lr -0.1", "negative lr")
  T.errors(function() optim.Adam({p}, {lr = -1}) end, "Adam: invalid lr -1", "Adam negative lr")
  T.errors(function() optim.SGD({p, "w"}, {lr = 0.1}) end,
    'params[2] in param group 1 is "w", expected a tensor',
    "a non-tensor in params")
  T.errors(function() optim.SGD({p}, {lr = 0.1, momentun = 0.9}) end, "unknown option 'momentun'",
    "misspelled option")
  T.errors(function() optim.SGD({p}, {lr = 0.1, nesterov = true}) end,
    "nesterov momentum needs momentum > 0", "nesterov without momentum")
  T.errors(function() optim.Adam({p}, {betas = {0.9, 1.0}}) end, "beta2 = 1.0", "beta2 = 1")
  T.errors(function() optim.RMSprop({p}, {alpha = -0.5}) end, "RMSprop: invalid alpha -0.5",
    "negative alpha")
  T.errors(function() optim.SGD({}, {lr = 0.1}) end, "empty parameter list", "no parameters")
  T.errors(function() optim.SGD({p, p}, {lr = 0.1}) end, "appears more than once",
    "a parameter twice")
  T.errors(function() optim.SGD({p * 2}, {lr = 0.1}) end, "not a leaf tensor", "a non-leaf")
  T.errors(function() optim.SGD({lm.tensor({1, 2})}, {lr = 0.1}) end, "has dtype i64",
    "an integer tensor")
  T.errors(function() optim.SGD(42, {lr = 0.1}) end, "params must be a sequence",
    "params not a table")
  local _, err2 = pcall(function() optim.SGD({p}, {lr = -1}) end)
  T.ok(tostring(err2):find("test_optim.lua:", 1, true) ~= nil, "errors point at the caller's line")
end

-- ---- schedulers -------------------------------------------------------------------------------
-- Reference sequences: PyTorch 1.13, lr (and momentum) seen at each of n optimizer steps, a
-- scheduler step after each, on SGD(lr = 0.1, momentum = 0.9) unless noted. Printed by:
--   o = SGD([p], lr=0.1, momentum=0.9); s = <scheduler>(o, ...)
--   for i in range(n): lrs.append(o.param_groups[0]["lr"]); o.step(); s.step()
local REF = {
  step = {0.1, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002, 0.010000000000000002,
    0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002, 0.00010000000000000003},
  multistep = {0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025},
  exponential = {0.1, 0.09000000000000001, 0.08100000000000002, 0.07290000000000002,
    0.06561000000000002, 0.05904900000000002},
  cosine = {0.1, 0.09757729755661011, 0.0905463412215599, 0.07959536998847742, 0.0657963412215599,
    0.0505, 0.03520365877844011, 0.02140463001152259, 0.010453658778440109, 0.0034227024433899004,
    0.001, 0.0034227024433899004},
  linear = {0.03333333333333333, 0.04666666666666667, 0.060000000000000005, 0.07333333333333335,
    0.08666666666666668, 0.1, 0.1, 0.1},
  linear2 = {0.05, 0.04000000000000001, 0.030000000000000006, 0.020000000000000004, 0.01, 0.01,
    0.01},
  onecycle = {0.0040000000000000036, 0.052000000000000005, 0.1, 0.09504846320134738,
    0.0811745653949763, 0.06112620219362893, 0.03887419780637107, 0.0188258346050237,
    0.004951936798652629, 4e-07},
  onecycle_mom = {0.95, 0.8999999999999999, 0.85, 0.854951556604879, 0.8688255099070633,
    0.8888739533021842, 0.9111260466978157, 0.9311744900929366, 0.945048443395121, 0.95},
  -- Adam(lr = 0.1); OneCycleLR(o, 0.01, epochs=2, steps_per_epoch=6, three_phase=True,
  -- anneal_strategy="linear"); momentum is betas[0].
  onecycle3 = {0.0004, 0.004092307692307694, 0.007784615384615387, 0.008523076923076921,
    0.004830769230769229, 0.0011384615384615344, 0.00034483310344827583, 0.0002758744827586207,
    0.00020691586206896548, 0.00013795724137931028, 6.899862068965518e-05, 3.999999999997929e-08},
  onecycle3_mom = {0.95, 0.9115384615384615, 0.8730769230769231, 0.8653846153846154,
    0.9038461538461539, 0.9423076923076923, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95},
  -- SequentialLR([LinearLR(o, 0.25, 1.0, 3), CosineAnnealingLR(o, 5)], milestones=[3])
  sequential = {0.025, 0.05, 0.07500000000000001, 0.1, 0.09045084971874738, 0.06545084971874737,
    0.03454915028125263, 0.009549150281252633, 0.0, 0.009549150281252628},
}

local function sgd_opt() return optim.SGD({param(P0)}, {lr = 0.1, momentum = 0.9}) end

-- The lr (and momentum) at each of n steps, stepping the optimizer and then the scheduler.
local function sequence(opt, sched, n, mom)
  local lrs, moms = {}, {}
  for i = 1, n do
    lrs[i] = opt.param_groups[1].lr
    if mom == "momentum" then moms[i] = opt.param_groups[1].momentum end
    if mom == "betas" then moms[i] = opt.param_groups[1].betas[1] end
    local p = opt.param_groups[1].params[1]
    set_grad(p, G1)
    opt:step()
    sched:step()
  end
  return lrs, moms
end

local function close_rel(got, want, name)
  local worst = 0
  for i = 1, #want do
    worst = math.max(worst, math.abs(got[i] - want[i]) / math.max(math.abs(want[i]), 1e-300))
    if want[i] == 0 then worst = math.max(worst, math.abs(got[i])) end
  end
  if #got ~= #want then worst = math.huge end
  if not (worst <= 1e-12) then T.diag(string.format("max rel diff %g", worst)) end
  return T.ok(worst <= 1e-12, name)
end

do
  local o = sgd_opt()
  close_rel(sequence(o, optim.StepLR(o, 3, {gamma = 0.1}), 10), REF.step, "StepLR matches PyTorch")
  o = sgd_opt()
  close_rel(sequence(o, optim.lr_scheduler.MultiStepLR(o, {2, 5}, {gamma = 0.5}), 8), REF.multistep,
    "MultiStepLR matches PyTorch")
  o = sgd_opt()
  close_rel(sequence(o, optim.ExponentialLR(o, 0.9), 6), REF.exponential,
    "ExponentialLR matches PyTorch")
  o = sgd_opt()
  close_rel(sequence(o, optim.CosineAnnealingLR(o, 10, {eta_min = 0.001}), 12), REF.cosine,
    "CosineAnnealingLR matches PyTorch (closed form, past T_max too)")
  o = sgd_opt()
  close_rel(sequence(o, optim.LinearLR(o), 8), REF.linear, "LinearLR defaults match PyTorch")
  o = sgd_opt()
  local dec = optim.LinearLR(o, {start_factor = 0.5, end_factor = 0.1, total_iters = 4})
  close_rel(sequence(o, dec, 7), REF.linear2, "LinearLR decreasing matches PyTorch")
  o = sgd_opt()
  local lrs, moms = sequence(o, optim.OneCycleLR(o, 0.1, {total_steps = 10}), 10, "momentum")
  close_rel(lrs, REF.onecycle, "OneCycleLR lr matches PyTorch")
  close_rel(moms, REF.onecycle_mom, "OneCycleLR cycles SGD momentum as PyTorch")
  local a = optim.Adam({param(P0)}, {lr = 0.1})
  lrs, moms = sequence(a, optim.OneCycleLR(a, 0.01, {epochs = 2, steps_per_epoch = 6,
    three_phase = true, anneal_strategy = "linear"}), 12, "betas")
  close_rel(lrs, REF.onecycle3, "OneCycleLR three_phase linear matches PyTorch")
  close_rel(moms, REF.onecycle3_mom, "OneCycleLR cycles Adam's beta1 as PyTorch")
  T.is(a.param_groups[1].betas[2], 0.999, "beta2 is left alone")
end

do
  local o = sgd_opt()
  local warm = optim.LinearLR(o, {start_factor = 0.25, end_factor = 1, total_iters = 3})
  local cos = optim.CosineAnnealingLR(o, 5)
  close_rel(sequence(o, optim.SequentialLR(o, {warm, cos}, {3}), 10), REF.sequential,
    "SequentialLR (linear warmup, then cosine) matches PyTorch")

  o = sgd_opt()
  local w = optim.LinearWarmup(o, 4)
  local want = {}
  for e = 0, 6 do want[#want + 1] = 0.1 * (0.25 + 0.75 * math.min(e, 4) / 4) end
  close_rel(sequence(o, w, 7), want, "LinearWarmup: from lr / warmup_steps up to lr, then flat")
  o = sgd_opt()
  close_rel(sequence(o, optim.LinearWarmup(o, 2, {start_factor = 0}), 4), {0, 0.05, 0.1, 0.1},
    "LinearWarmup with start_factor 0")
  o = sgd_opt()
  close_rel(sequence(o, optim.lr_scheduler.LambdaLR(o, function(e) return 1 / (e + 1) end), 4),
    {0.1, 0.05, 0.1 / 3, 0.025}, "LambdaLR multiplies the base lr")
end

do
  -- get_last_lr, per-group base lrs, state_dict round trip mid-schedule.
  local a, b = param(P0), param(P0)
  local o = optim.SGD({{params = {a}}, {params = {b}, lr = 0.01}}, {lr = 0.1})
  local s = optim.StepLR(o, 2, {gamma = 0.5})
  T.is(s:get_last_lr()[2], 0.01, "get_last_lr: one lr per group")
  s:step(); s:step()
  T.is(s:get_last_lr()[1], 0.05, "StepLR after 2 steps")
  T.is(o.param_groups[2].lr, 0.005, "the second group follows its own base lr")
  local sd = s:state_dict()
  T.ok(sd.optimizer == nil and sd.last_epoch == 2, "scheduler state_dict: last_epoch, no optimizer")
  local o2 = optim.SGD({{params = {param(P0)}}, {params = {param(P0)}, lr = 0.01}}, {lr = 0.1})
  local s2 = optim.StepLR(o2, 2, {gamma = 0.5})
  o2:load_state_dict(o:state_dict())
  s2:load_state_dict(sd)
  for _ = 1, 3 do s:step(); s2:step() end
  T.ok(s:get_last_lr()[1] == s2:get_last_lr()[1] and o.param_groups[2].lr == o2.param_groups[2].lr,
    "a scheduler loaded from a state_dict continues identically")
  T.is(o.param_groups[1].initial_lr, 0.1, "initial_lr stored in the groups, as PyTorch")

  local oc = sgd_opt()
  local one = optim.OneCycleLR(oc, 0.1, {total_steps = 3})
  for _ = 1, 3 do one:step() end
  T.errors(function() one:step() end, "OneCycleLR: stepped 4 times but total_steps is 3",
    "OneCycleLR past total_steps")
  T.ok(tostring(one):find("OneCycleLR(last_epoch=3", 1, true) ~= nil, "tostring(scheduler)")
end

do
  local o = sgd_opt()
  T.errors(function() optim.StepLR(o) end, "StepLR: step_size must be a positive integer, got nil",
    "StepLR without step_size")
  T.errors(function() optim.StepLR(o, 0) end, "step_size must be a positive integer, got 0",
    "StepLR step_size 0")
  T.errors(function() optim.StepLR({}, 3) end, "StepLR: expected an optimizer",
    "StepLR on a non-optimizer")
  T.errors(function() optim.StepLR(o, 3, {gama = 0.5}) end, "unknown option 'gama'",
    "misspelled option")
  T.errors(function() optim.OneCycleLR(o, 0.1) end, "give either total_steps",
    "OneCycleLR without length")
  T.errors(function() optim.OneCycleLR(optim.SGD({param(P0)}, {lr = 0.1}), 0.1,
    {total_steps = 5, anneal_strategy = "exp"}) end, "anneal_strategy must be",
    "bad anneal_strategy")
  T.errors(function() optim.LinearLR(o, {start_factor = 2}) end, "start_factor must be in [0, 1]",
    "LinearLR factor out of range")
  T.errors(function() optim.SequentialLR(o, {optim.StepLR(o, 2)}, {3}) end, "expected 0 milestones",
    "SequentialLR milestone count")
  local o2 = optim.RMSprop({param(P0)})
  o2.defaults.momentum = nil
  T.errors(function() optim.OneCycleLR(o2, 0.1, {total_steps = 5}) end, "cycle_momentum needs",
    "OneCycleLR cycle_momentum on an optimizer without momentum")
end

do
  -- The scheduled lr is the one the optimizer uses.
  local p = param(P0)
  local o = optim.SGD({p}, {lr = 1.0})
  local s = optim.StepLR(o, 1, {gamma = 0.5})
  s:step()
  set_grad(p, G1)
  o:step()
  T.close(p:totable()[1], 0.5 - 0.5 * 0.1, 1e-15, "the optimizer steps with the scheduled lr")
end

-- ---- gradient clipping ------------------------------------------------------------------------

do
  local a, b, c = param({1, 1}), param({1}), param({1})
  set_grad(a, {3, 4}); set_grad(b, {12})
  local norm = optim.clip_grad_norm_({a, b, c}, 6.5)
  T.close(norm, 13, 1e-12, "clip_grad_norm_ returns the total norm (sqrt(9 + 16 + 144))")
  local f = 6.5 / (13 + 1e-6)
  close_list(a.grad:totable(), {3 * f, 4 * f}, 1e-12, "clip_grad_norm_ scales the grads")
  close_list(b.grad:totable(), {12 * f}, 1e-12, "across every parameter")
  T.ok(c.grad == nil, "a parameter without grad is skipped")

  set_grad(a, {3, 4}); set_grad(b, {12})
  T.close(optim.clip_grad_norm_({a, b}, 100), 13, 1e-12, "norm below max_norm")
  close_list(a.grad:totable(), {3, 4}, 0, "no clipping below max_norm")

  set_grad(a, {3, -4}); set_grad(b, {12})
  T.close(optim.clip_grad_norm_({a, b}, 100, {norm_type = 1}), 19, 1e-12, "norm_type = 1")
  T.close(optim.clip_grad_norm_({a, b}, 100, {norm_type = math.huge}), 12, 0, "norm_type = inf")
  T.close(optim.clip_grad_norm_({a, b}, 100, {norm_type = 3}), (27 + 64 + 1728) ^ (1 / 3), 1e-12,
    "norm_type = 3")
  T.close(optim.clip_grad_norm_(a, 2.5), 5, 1e-12, "a single tensor is accepted")
  T.close(optim.clip_grad_norm_({c}, 1), 0, 0, "no grads: norm 0")

  local p32 = param({1, 1}, "f32")
  set_grad(p32, {3, 4})
  optim.clip_grad_norm_({p32}, 1)
  close_list(p32.grad:totable(), {0.6, 0.8}, 1e-6, "clipping an f32 grad")

  set_grad(a, {0 / 0, 1})
  T.errors(function() optim.clip_grad_norm_({a}, 1, {error_if_nonfinite = true}) end,
    "total norm of order 2 of the gradients is", "error_if_nonfinite")

  set_grad(a, {3, -4})
  optim.clip_grad_value_({a}, 3.5)
  close_list(a.grad:totable(), {3, -3.5}, 0, "clip_grad_value_ clamps")
  T.errors(function() optim.clip_grad_norm_({a, "b"}, 1) end, 'params[2] is "b", expected a tensor',
    "clip_grad_norm_ with a non-tensor")
  T.errors(function() optim.clip_grad_norm_({a}, -1) end, "max_norm must be a number >= 0",
    "negative max_norm")
end

-- The joint norm is combined from the engine's per-gradient norms (no copies): it must agree
-- with the norm of all elements summed in f64 here.
do
  lm.manual_seed(7)
  local params, refs = {}, {}
  for i = 1, 6 do
    local p = lm.zeros(40 * i, 33, {requires_grad = true})
    p.grad = lm.randn(40 * i, 33) * (i * 0.5)
    params[i] = p
  end
  local function reference(norm_type)
    if norm_type == math.huge then
      local m = 0
      for _, p in ipairs(params) do m = math.max(m, p.grad:double():abs():max():item()) end
      return m
    end
    local sum = 0
    for _, p in ipairs(params) do
      sum = sum + (p.grad:double():abs() ^ norm_type):sum():item()
    end
    return sum ^ (1 / norm_type)
  end
  for _, norm_type in ipairs({2, 1, 3, 0.5, math.huge}) do
    refs[norm_type] = reference(norm_type)
    local got = optim.clip_grad_norm_(params, 1e30, {norm_type = norm_type})
    local rel = math.abs(got - refs[norm_type]) / refs[norm_type]
    if not (rel <= 1e-6) then
      T.diag(string.format("got %.17g, f64 %.17g", got, refs[norm_type]))
    end
    T.ok(rel <= 1e-6, "clip_grad_norm_ of f32 grads matches the f64 norm (norm_type "
      .. tostring(norm_type) .. ")")
  end
  local total = optim.clip_grad_norm_(params, 1.0)
  T.close(total, refs[2], refs[2] * 1e-6, "clip_grad_norm_ returns the norm before clipping")
  T.close(reference(2), 1.0, 1e-5, "after clipping the joint norm is max_norm")

  local q = lm.zeros(3, {requires_grad = true})
  q.grad = lm.tensor{1, 0 / 0, 2}
  T.errors(function()
    optim.clip_grad_norm_({q}, 1, {norm_type = math.huge, error_if_nonfinite = true})
  end, "gradients is nan", "error_if_nonfinite sees a NaN in the inf-norm")
  q.grad = lm.tensor{1, math.huge, 2}
  T.errors(function() optim.clip_grad_norm_({q}, 1, {error_if_nonfinite = true}) end,
    "gradients is inf", "error_if_nonfinite sees an infinite gradient")
  T.errors(function() optim.clip_grad_norm_({q}, 1, {norm = 2}) end, "unknown option 'norm'",
    "clip_grad_norm_: a misspelt option is refused")
end

-- ---- error positions ----------------------------------------------------------------------------

-- A bad call is reported at the user's line even when the user's script lives in a directory
-- named lumen/ (the default name of a clone): the library recognises its own files by their
-- directory, not by a "lumen/" in the path.
do
  local exe = arg[-1]
  local root = os.tmpname()
  os.remove(root)
  local dir = root .. "/lumen/proj"
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local script = dir .. "/bad_sgd.lua"
  local f = assert(io.open(script, "w"))
  f:write('local lm = require "lumen"\n',
          'local p = lm.zeros(2, {requires_grad = true})\n',
          'local opt = lm.optim.SGD({p}, {lr = -1})\n')
  f:close()
  local pipe = assert(io.popen("'" .. exe .. "' '" .. script .. "' 2>&1"))
  local out = pipe:read("a")
  pipe:close()
  T.ok(out:find("bad_sgd.lua:3: SGD: invalid lr -1", 1, true) ~= nil,
    "an error in a script under a lumen/ directory names the script's line")
  if not out:find("bad_sgd.lua:3:", 1, true) then T.diag(out) end
  os.execute("rm -rf '" .. root .. "'")
end

T.done()
