-- lumen.optim.optimizer: the Optimizer base class (PyTorch's torch.optim.Optimizer), and
-- Optimizer.copy (a deep copy of plain data) that the schedulers share.
--
-- An optimizer holds `param_groups`, a sequence of groups {params = {tensors...}, lr = ...,
-- <other hyper-parameters>}, and `state`, a table keyed by parameter tensor holding that
-- parameter's step count and buffers (created at its first step, as PyTorch does). A subclass
-- gives its option table (OPTIONS: name, default, kind) and a step(); everything else lives here:
-- reading params and param groups, zero_grad, state_dict/load_state_dict, add_param_group.
-- Errors are raised at the user's line (lumen.util.raise), however deep inside optim they are
-- found.
--
-- Hyper-parameters are read from the group at every step, so a scheduler (or the user) can change
-- `opt.param_groups[i].lr` between steps.
local class = require "lumen.class"

local Optimizer = class("Optimizer")

-- ---- shared helpers ---------------------------------------------------------------------------

local util = require "lumen.util"
local is_tensor, raise, shape_str, show = util.is_tensor, util.raise, util.shape_str, util.show

-- A deep copy of plain Lua data (tables of numbers, strings, booleans); tensors are kept as they
-- are (shared), as PyTorch's state_dict shares its tensors. Also used by the schedulers.
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end
Optimizer.copy = copy

-- ---- options ----------------------------------------------------------------------------------

-- Checks one hyper-parameter value against its kind; returns an error message or nil.
--   "nonneg": number >= 0; "number": any number; "bool": boolean;
--   "betas": a pair {b1, b2} with each in [0, 1).
local function check_kind(kind, v)
  if kind == "nonneg" then
    if type(v) ~= "number" then return "must be a number, got " .. show(v) end
    if not (v >= 0) then return "must be >= 0" end
  elseif kind == "number" then
    if type(v) ~= "number" then return "must be a number, got " .. show(v) end
  elseif kind == "bool" then
    if type(v) ~= "boolean" then return "must be a boolean, got " .. show(v) end
  elseif kind == "betas" then
    if type(v) ~= "table" or type(v[1]) ~= "number" or type(v[2]) ~= "number" or v[3] ~= nil then
      return "must be a pair of numbers {beta1, beta2}"
    end
    for i = 1, 2 do
      if not (v[i] >= 0 and v[i] < 1) then
        return string.format("has beta%d = %s (must be in [0, 1))", i, tostring(v[i]))
      end
    end
  end
  return nil
end

local function value_str(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- Validates the hyper-parameters of a group (or of the defaults): every option of the class's
-- OPTIONS that the group has, plus the class's own cross-option rule (check_group).
function Optimizer:_check_options(group, where)
  local name = class.name(self)
  for _, spec in ipairs(self.OPTIONS) do
    local key, kind = spec[1], spec[3]
    local v = group[key]
    if v ~= nil then
      local problem = check_kind(kind, v)
      if problem then
        raise(string.format("%s: invalid %s %s%s (%s)", name, key, value_str(v), where, problem))
      end
    end
  end
  if self.check_group then
    local problem = self:check_group(group)
    if problem then raise(string.format("%s: %s%s", name, problem, where)) end
  end
end

-- The constructor's options: known keys only, defaults filled in. A default of `nil` in OPTIONS
-- with required = true (SGD's lr) must come either from here or from every param group.
function Optimizer:_read_defaults(opts)
  local names = {}
  for _, spec in ipairs(self.OPTIONS) do names[#names + 1] = spec[1] end
  opts = util.check_options(class.name(self), opts, names)
  local defaults = {}
  for _, spec in ipairs(self.OPTIONS) do
    local v = opts[spec[1]]
    if v == nil then v = copy(spec[2]) else v = copy(v) end
    defaults[spec[1]] = v
  end
  self:_check_options(defaults, "")
  return defaults
end

-- ---- construction -----------------------------------------------------------------------------

-- params: a tensor, a sequence of tensors, or a sequence of param groups
-- ({params = ..., lr = ...});
-- defaults: the table from _read_defaults.
function Optimizer:__init(params, defaults)
  local name = class.name(self)
  self.defaults = defaults
  self.state = {}
  self.param_groups = {}
  if is_tensor(params) then params = {params} end
  if type(params) ~= "table" then
    raise(string.format("%s: params must be a sequence of tensors or of param groups, got %s",
      name, show(params)))
  end
  if #params == 0 then raise(name .. ": optimizer got an empty parameter list") end
  if is_tensor(params[1]) then
    self:add_param_group({params = params})
  else
    for i, group in ipairs(params) do
      if type(group) ~= "table" or is_tensor(group) or group.params == nil then
        raise(string.format("%s: params[%d] is %s; params must be all tensors or all param groups "
          .. "(tables with a 'params' field)", name, i, show(group)))
      end
      self:add_param_group(group)
    end
  end
end

-- Adds a group {params = tensor or sequence of tensors, option = value...}; options it lacks
-- take the constructor's values. The group table is copied: later changes to the caller's table
-- do not reach the optimizer.
function Optimizer:add_param_group(group)
  local name = class.name(self)
  local where = string.format(" in param group %d", #self.param_groups + 1)
  if type(group) ~= "table" or is_tensor(group) then
    raise(string.format("%s: a param group must be a table with a 'params' field, got %s", name,
      show(group)))
  end
  local params = group.params
  if is_tensor(params) then params = {params} end
  if type(params) ~= "table" then
    raise(string.format("%s: 'params'%s must be a tensor or a sequence of tensors, got %s", name,
      where, show(params)))
  end
  local seen = {}
  for _, other in ipairs(self.param_groups) do
    for _, p in ipairs(other.params) do seen[p] = true end
  end
  local list = {}
  local count = 0
  for k in pairs(params) do
    count = count + 1
    if math.type(k) ~= "integer" or k < 1 then
      raise(string.format("%s: 'params'%s must be a sequence (found key %s)", name, where,
        tostring(k)))
    end
  end
  if count ~= #params then
    raise(string.format("%s: 'params'%s must be a sequence without holes", name, where))
  end
  for i, p in ipairs(params) do
    if not is_tensor(p) then
      raise(string.format("%s: params[%d]%s is %s, expected a tensor", name, i, where, show(p)))
    end
    if p.dtype ~= "f32" and p.dtype ~= "f64" then
      raise(string.format("%s: params[%d]%s has dtype %s; optimizers update f32 or f64 tensors",
        name, i, where, p.dtype))
    end
    if not p.is_leaf then
      raise(string.format("%s: params[%d]%s is not a leaf tensor (it was computed from others); "
        .. "optimize the leaves, or detach() it", name, i, where))
    end
    if seen[p] then
      raise(string.format("%s: params[%d]%s appears more than once in the optimizer's param groups",
        name, i, where))
    end
    seen[p] = true
    list[i] = p
  end
  -- Schedulers store their own entries in the groups (initial_lr, max_lr...) and a group may come
  -- back from a state_dict with them, so keys beyond OPTIONS are kept, never rejected.
  local g = {params = list}
  for k, v in pairs(group) do
    if type(k) ~= "string" then
      raise(string.format("%s: param group keys must be strings, got %s%s", name, tostring(k),
        where))
    end
    if k ~= "params" then g[k] = copy(v) end
  end
  for _, spec in ipairs(self.OPTIONS) do
    local key = spec[1]
    if g[key] == nil then
      if self.defaults[key] == nil then
        raise(string.format("%s: %s is required (give it to the constructor or to every param "
          .. "group)%s", name, key, where))
      end
      g[key] = copy(self.defaults[key])
    end
  end
  self:_check_options(g, where)
  self.param_groups[#self.param_groups + 1] = g
end

-- ---- gradients --------------------------------------------------------------------------------

-- Drops every parameter's gradient (set_to_none, PyTorch 2's default), or zeroes it in place with
-- {set_to_none = false}.
function Optimizer:zero_grad(opts)
  local set_to_none = true
  if opts ~= nil then
    if type(opts) ~= "table" then
      raise(class.name(self) .. ":zero_grad: options must be a table like {set_to_none = false}")
    end
    if opts.set_to_none ~= nil then set_to_none = opts.set_to_none end
  end
  for _, group in ipairs(self.param_groups) do
    for _, p in ipairs(group.params) do
      if set_to_none then
        p.grad = nil
      else
        local g = p.grad
        if g ~= nil then g:zero_() end
      end
    end
  end
end

-- Runs closure (if given) and returns its result: PyTorch's step(closure) protocol, for
-- optimizers that need to re-evaluate the loss.
function Optimizer:_closure(closure)
  if closure == nil then return nil end
  if type(closure) ~= "function" then
    raise(string.format("%s:step: closure must be a function, got %s", class.name(self),
      show(closure)))
  end
  return closure()
end

-- ---- state_dict -------------------------------------------------------------------------------

-- PyTorch's layout: {state = {[index] = {step = n, exp_avg = tensor, ...}},
-- param_groups = {{lr = ..., params = {0, 1, ...}}, ...}}, parameters numbered by position across
-- the groups from 0. The tensors are the optimizer's own (not copies), as in PyTorch.
function Optimizer:state_dict()
  local index, next_index = {}, 0
  local groups = {}
  for gi, group in ipairs(self.param_groups) do
    local packed = {}
    for k, v in pairs(group) do
      if k ~= "params" then packed[k] = copy(v) end
    end
    local ids = {}
    for i, p in ipairs(group.params) do
      if index[p] == nil then
        index[p] = next_index
        next_index = next_index + 1
      end
      ids[i] = index[p]
    end
    packed.params = ids
    groups[gi] = packed
  end
  local state = {}
  for p, st in pairs(self.state) do
    local id = index[p]
    if id ~= nil then
      local s = {}
      for k, v in pairs(st) do s[k] = copy(v) end
      state[id] = s
    end
  end
  return {state = state, param_groups = groups}
end

-- Turns one loaded state value into what this optimizer keeps for parameter p: tensors are
-- copied (cast to the parameter's dtype, shape checked), a `step` given as a tensor (PyTorch keeps
-- it so) becomes a Lua number.
function Optimizer:_load_state_value(p, id, key, v)
  local name = class.name(self)
  if not is_tensor(v) then return copy(v) end
  if key == "step" then
    if v:numel() ~= 1 then
      raise(string.format("%s:load_state_dict: state of parameter %d: 'step' has shape %s, "
        .. "expected one element", name, id, shape_str(v)))
    end
    local n = v:item()
    return math.tointeger(n) or n
  end
  if v.ndim ~= 0 and shape_str(v) ~= shape_str(p) then
    raise(string.format("%s:load_state_dict: state of parameter %d: '%s' has shape %s but the "
      .. "parameter has shape %s", name, id, key, shape_str(v), shape_str(p)))
  end
  local out = v:clone()
  if out.dtype ~= p.dtype and (out.dtype == "f32" or out.dtype == "f64") then
    out = out:to(p.dtype)
  end
  return out
end

-- Restores a state_dict made by state_dict() (or PyTorch's layout): the groups must list as many
-- parameters as this optimizer's; their hyper-parameters replace the current ones (the parameters
-- stay), state tensors are copied.
function Optimizer:load_state_dict(sd)
  local name = class.name(self)
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    raise(name .. ":load_state_dict: expected a table {state = ..., param_groups = ...}")
  end
  local saved = sd.param_groups
  if #saved ~= #self.param_groups then
    raise(string.format("%s:load_state_dict: the state_dict has %d param groups but the optimizer "
      .. "has %d", name, #saved, #self.param_groups))
  end
  local by_id = {}
  for gi, group in ipairs(self.param_groups) do
    local sg = saved[gi]
    if type(sg) ~= "table" or type(sg.params) ~= "table" then
      raise(string.format("%s:load_state_dict: param group %d has no 'params' list", name, gi))
    end
    if #sg.params ~= #group.params then
      raise(string.format("%s:load_state_dict: param group %d has %d parameters in the state_dict "
        .. "but %d in the optimizer", name, gi, #sg.params, #group.params))
    end
    for i, id in ipairs(sg.params) do by_id[id] = group.params[i] end
    for _, spec in ipairs(self.OPTIONS) do
      if sg[spec[1]] == nil then
        raise(string.format("%s:load_state_dict: param group %d has no '%s' (a state_dict of "
          .. "another optimizer?)", name, gi, spec[1]))
      end
    end
  end
  local state = {}
  for id, st in pairs(sd.state) do
    local p = by_id[id]
    if p == nil then
      raise(string.format("%s:load_state_dict: the state_dict has state for parameter %s, which "
        .. "no param group lists", name, tostring(id)))
    end
    if type(st) ~= "table" then
      raise(string.format("%s:load_state_dict: state of parameter %s must be a table", name,
        tostring(id)))
    end
    -- In key order, so that the first problem reported does not depend on hashing.
    local keys = {}
    for k in pairs(st) do keys[#keys + 1] = k end
    table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
    local s = {}
    for _, k in ipairs(keys) do s[k] = self:_load_state_value(p, id, k, st[k]) end
    state[p] = s
  end
  -- Everything was checked: now commit. Groups are updated in place so references to them stay.
  for gi, group in ipairs(self.param_groups) do
    local params = group.params
    for k in pairs(group) do group[k] = nil end
    for k, v in pairs(saved[gi]) do
      if k ~= "params" then group[k] = copy(v) end
    end
    group.params = params
  end
  self.state = state
end

-- ---- printing ---------------------------------------------------------------------------------

-- As PyTorch prints an optimizer: its class, then each group's hyper-parameters by name.
function Optimizer:__tostring()
  local lines = {class.name(self) .. " ("}
  for gi, group in ipairs(self.param_groups) do
    lines[#lines + 1] = "Parameter Group " .. (gi - 1)
    local keys = {}
    for k in pairs(group) do
      if k ~= "params" then keys[#keys + 1] = k end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      lines[#lines + 1] = string.format("    %s: %s", k, value_str(group[k]))
    end
  end
  lines[#lines + 1] = ")"
  return table.concat(lines, "\n")
end

return Optimizer
