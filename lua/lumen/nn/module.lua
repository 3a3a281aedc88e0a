-- lumen.nn.module: Module, the base class of every layer, and the containers Sequential,
-- ModuleList and ModuleDict.
--
-- A user-defined module is a class with __init and forward:
--   local Net = nn.Module:extend("Net")            -- same as class("Net", nn.Module)
--   function Net:__init(n)
--     nn.Module.__init(self)                       -- first: creates the registries
--     self.fc1 = nn.Linear(n, 16)                  -- a module value registers the child "fc1"
--     self.scale = lm.ones(1):requires_grad_()     -- a leaf that requires grad: a parameter
--     self:register_buffer("steps", lm.zeros(1))   -- saved in state_dict, not trained
--   end
--   function Net:forward(x) return self.fc1(x) * self.scale end
--   local net = Net(8); local y = net(x)           -- __call runs forward
--
-- Registration: assignment goes through __newindex, which records children, parameters and
-- buffers in the order of their first assignment; named_parameters and state_dict follow
-- PyTorch's order (a module's own parameters, then its buffers, then its children, recursively).
-- Registered values live in the registries, not in the instance table, so every later
-- assignment to the same name passes through __newindex again (reassigning self.fc replaces the
-- child, self.bias = nil empties the slot). A name first bound to a plain value (number, string,
-- function, tensor that is not a leaf requiring grad) stays a plain field; use register_module /
-- register_parameter to turn such a name into a registered one.
--
-- What the queries return (Lua collections are 1-based, names are PyTorch's):
--   model:parameters()                     {p1, p2, ...}, each shared tensor once
--   for name, p in model:named_parameters() do ... end   "0.weight", "fc1.bias", ...
--   model:buffers() / named_buffers(), children() / named_children(), modules() / named_modules()
--   local sd, keys = model:state_dict()    sd["0.weight"] = tensor; keys = names in order;
--                                          pairs(sd) walks them in that order too
--   model:load_state_dict(sd)              strict: missing or unexpected keys are an error;
--   model:load_state_dict(sd, {strict = false}) -> {missing_keys = {...}, unexpected_keys = {...}}
--
-- Graph scopes: while a module's forward runs, the engine's scope (lm.set_scope) is the
-- module's path from the outermost module being called ("" for it, "0", "encoder.layers.0.attn"
-- below), so every graph node records which module made it.
local lm = require "lumen.core"
local class = require "lumen.class"

local M = {}

local util = require "lumen.nn.util"

local is_tensor, show = util.is_tensor, util.show

-- ---- ordered registries -------------------------------------------------------------------
-- keys: names in registration order; vals: name -> value (nil for an empty slot, as PyTorch's
-- None); has: name -> true for every registered name; name_of: value -> its first name here.
-- A child-module registry also has owner (the module holding it) and keeps the parent links.

local function registry(owner)
  return {keys = {}, vals = {}, has = {}, name_of = {}, owner = owner}
end

-- Parent links, so that a called module finds its path in O(depth) (see "calling" below):
-- parent_of[m] is the module m was registered in (the first that holds it, for a module
-- registered in several places) and link_name[m] its first name there; slots[m] counts the
-- registry slots holding m, so a module in no tree is known without a search. Weak, so that
-- they keep neither a dropped child nor a dropped parent alive. Invariant: the links form no
-- cycle (a module is never linked below one of its own descendants), so climbing always ends.
local parent_of = setmetatable({}, {__mode = "kv"})
local link_name = setmetatable({}, {__mode = "k"})
local slots = setmetatable({}, {__mode = "k"})

local function is_above(a, m)
  local c = m
  while c ~= nil do
    if c == a then return true end
    c = parent_of[c]
  end
  return false
end

local function link(r, v)
  slots[v] = (slots[v] or 0) + 1
  if parent_of[v] == nil and not is_above(v, r.owner) then
    parent_of[v], link_name[v] = r.owner, r.name_of[v]
  end
end

-- old left the slot k of r: drop its link when the link was that slot.
local function unlink(r, k, old)
  slots[old] = slots[old] - 1
  if parent_of[old] == r.owner and link_name[old] == k then
    parent_of[old], link_name[old] = nil, nil
  end
end

local function reg_set(r, k, v)
  if not r.has[k] then
    r.has[k] = true
    r.keys[#r.keys + 1] = k
  end
  local old = r.vals[k]
  if old ~= nil then
    if r.name_of[old] == k then r.name_of[old] = nil end
    if r.owner then unlink(r, k, old) end
  end
  r.vals[k] = v
  if v ~= nil then
    if r.name_of[v] == nil then r.name_of[v] = k end
    if r.owner then link(r, v) end
  end
end

local function reg_del(r, k)
  if not r.has[k] then return end
  local old = r.vals[k]
  if old ~= nil then
    if r.name_of[old] == k then r.name_of[old] = nil end
    if r.owner then unlink(r, k, old) end
  end
  r.has[k], r.vals[k] = nil, nil
  for i, name in ipairs(r.keys) do
    if name == k then table.remove(r.keys, i); break end
  end
end

-- ---- Module ----------------------------------------------------------------------------------

local Module = class("Module")
M.Module = Module

local function is_module(v) return class.isinstance(v, Module) end
M.is_module = is_module

local function regs(self, who, lvl)
  local p = rawget(self, "_parameters")
  if not p then
    error(string.format("%s: nn.Module.__init(self) must run first, in the class's __init",
      who), lvl + 1)
  end
  return p, rawget(self, "_buffers"), rawget(self, "_modules")
end

local function check_name(who, name, lvl)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error(string.format("%s: a name must be a non-empty string without '.', got %s", who,
      show(name)), lvl + 1)
  end
end

function Module:__init()
  rawset(self, "_parameters", registry())
  rawset(self, "_buffers", registry())
  rawset(self, "_modules", registry(self))
  rawset(self, "_non_persistent", {})
  rawset(self, "training", true)
end

-- A subclass: local Net = nn.Module:extend("Net").
function Module:extend(name)
  return class(name, self)
end

function Module:__newindex(k, v)
  if type(k) ~= "string" then rawset(self, k, v); return end
  local params = rawget(self, "_parameters")
  if not params then
    error(string.format("%s: nn.Module.__init(self) must run before fields are assigned " ..
      "(assigning '%s')", class.name(self), k), 2)
  end
  local buffers, modules = rawget(self, "_buffers"), rawget(self, "_modules")
  if is_module(v) then
    reg_del(params, k); reg_del(buffers, k)
    reg_set(modules, k, v)
  elseif modules.has[k] then
    if v ~= nil then
      error(string.format("%s: cannot assign %s to child module '%s' (a module or nil expected)",
        class.name(self), show(v), k), 2)
    end
    reg_set(modules, k, nil)
  elseif params.has[k] then
    if v ~= nil and not is_tensor(v) then
      error(string.format("%s: cannot assign %s to parameter '%s' (a tensor or nil expected)",
        class.name(self), show(v), k), 2)
    end
    reg_set(params, k, v)
  elseif buffers.has[k] then
    if v ~= nil and not is_tensor(v) then
      error(string.format("%s: cannot assign %s to buffer '%s' (a tensor or nil expected)",
        class.name(self), show(v), k), 2)
    end
    reg_set(buffers, k, v)
  elseif is_tensor(v) and v.requires_grad and v.is_leaf then
    reg_set(params, k, v)
  else
    rawset(self, k, v)
  end
end

-- Reads of registered names (the class's methods are found first). Containers that set
-- _indexable answer an integer i with their i-th child (1-based, as Lua sequences).
function Module:__getitem(key)
  local params = rawget(self, "_parameters")
  if not params then return nil end
  local v = params.vals[key]
  if v ~= nil then return v end
  v = rawget(self, "_buffers").vals[key]
  if v ~= nil then return v end
  local modules = rawget(self, "_modules")
  v = modules.vals[key]
  if v ~= nil then return v end
  if math.type(key) == "integer" and getmetatable(self)._indexable then
    local name = modules.keys[key]
    return name and modules.vals[name]
  end
  return nil
end

function Module:register_parameter(name, t)
  local who = class.name(self) .. ":register_parameter"
  check_name(who, name, 2)
  if t ~= nil and not is_tensor(t) then
    error(string.format("%s: '%s' must be a tensor or nil, got %s", who, name, show(t)), 2)
  end
  local params, buffers, modules = regs(self, who, 2)
  if buffers.has[name] or modules.has[name] or rawget(self, name) ~= nil then
    error(string.format("%s: attribute '%s' already exists", who, name), 2)
  end
  reg_set(params, name, t)
end

-- persistent = false keeps the buffer out of state_dict (PyTorch's persistent=False).
function Module:register_buffer(name, t, persistent)
  local who = class.name(self) .. ":register_buffer"
  check_name(who, name, 2)
  if t ~= nil and not is_tensor(t) then
    error(string.format("%s: '%s' must be a tensor or nil, got %s", who, name, show(t)), 2)
  end
  local params, buffers, modules = regs(self, who, 2)
  if params.has[name] or modules.has[name] or rawget(self, name) ~= nil then
    error(string.format("%s: attribute '%s' already exists", who, name), 2)
  end
  reg_set(buffers, name, t)
  rawget(self, "_non_persistent")[name] = (persistent == false) or nil
end

function Module:register_module(name, m)
  local who = class.name(self) .. ":register_module"
  check_name(who, name, 2)
  if m ~= nil and not is_module(m) then
    error(string.format("%s: '%s' must be an nn.Module or nil, got %s", who, name, show(m)), 2)
  end
  local params, buffers, modules = regs(self, who, 2)
  if params.has[name] or buffers.has[name] or rawget(self, name) ~= nil then
    error(string.format("%s: attribute '%s' already exists", who, name), 2)
  end
  reg_set(modules, name, m)
end
Module.add_module = Module.register_module

-- ---- walking the tree ---------------------------------------------------------------------

local function join(prefix, name)
  if prefix == "" then return name end
  return prefix .. "." .. name
end

-- Pre-order walk, each module once: a sequence of {path, module}.
local function walk(m, prefix, memo, out)
  if memo[m] then return out end
  memo[m] = true
  out[#out + 1] = {prefix, m}
  local r = rawget(m, "_modules")
  for _, k in ipairs(r.keys) do
    local c = r.vals[k]
    if c ~= nil then walk(c, join(prefix, k), memo, out) end
  end
  return out
end

local function module_list(self)
  regs(self, class.name(self), 3)
  return walk(self, "", {}, {})
end

-- Each tensor once, in pre-order: a sequence of {name, tensor}.
local function members(self, kind)
  local out, seen = {}, {}
  for _, e in ipairs(module_list(self)) do
    local r = rawget(e[2], kind)
    for _, k in ipairs(r.keys) do
      local t = r.vals[k]
      if t ~= nil and not seen[t] then
        seen[t] = true
        out[#out + 1] = {join(e[1], k), t}
      end
    end
  end
  return out
end

local function pairs_iter(list)
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then return e[1], e[2] end
  end
end

local function values(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e[2] end
  return out
end

function Module:parameters() return values(members(self, "_parameters")) end
function Module:named_parameters() return pairs_iter(members(self, "_parameters")) end
function Module:buffers() return values(members(self, "_buffers")) end
function Module:named_buffers() return pairs_iter(members(self, "_buffers")) end
function Module:modules() return values(module_list(self)) end
function Module:named_modules() return pairs_iter(module_list(self)) end

local function child_list(self)
  local _, _, modules = regs(self, class.name(self), 3)
  local out, seen = {}, {}
  for _, k in ipairs(modules.keys) do
    local c = modules.vals[k]
    if c ~= nil and not seen[c] then
      seen[c] = true
      out[#out + 1] = {k, c}
    end
  end
  return out
end

function Module:children() return values(child_list(self)) end
function Module:named_children() return pairs_iter(child_list(self)) end

-- The number of elements of all parameters, each shared tensor once.
function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

-- The module at a dotted path ("encoder.layers.0"); "" is self.
function Module:get_submodule(path)
  if type(path) ~= "string" then
    error(class.name(self) .. ":get_submodule: the path must be a string, got " .. show(path), 2)
  end
  local m = self
  if path == "" then return m end
  for part in path:gmatch("[^.]+") do
    local r = rawget(m, "_modules")
    local c = r and r.vals[part]
    if c == nil then
      error(string.format("%s:get_submodule: no submodule '%s' (in '%s')", class.name(self),
        part, path), 2)
    end
    m = c
  end
  return m
end

-- ---- modes, gradients ---------------------------------------------------------------------

function Module:train(mode)
  if mode == nil then mode = true end
  if type(mode) ~= "boolean" then
    error(class.name(self) .. ":train: mode must be true or false, got " .. show(mode), 2)
  end
  for _, m in ipairs(self:modules()) do rawset(m, "training", mode) end
  return self
end

function Module:eval() return self:train(false) end

-- Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
  return self
end

function Module:requires_grad_(flag)
  if flag == nil then flag = true end
  for _, p in ipairs(self:parameters()) do p.requires_grad = flag end
  return self
end

-- to(dtype) converts floating-point parameters and buffers to "f32" or "f64" (also double() and
-- float()), as PyTorch's module.to(dtype): integer buffers (num_batches_tracked) keep theirs, a
-- shared tensor is converted once. As PyTorch swaps param.data, each tensor is converted in
-- place (t:set_data_): it keeps its identity and requires_grad, and loses its gradient (of the
-- old dtype), so an optimizer made before still updates the module's parameters and other
-- references to them stay valid. Convert before the optimizer's first step, as its state
-- (momentum, Adam's moments) keeps the old dtype. A registered non-leaf (a tensor computed from
-- others) cannot be rebound and is replaced by its converted copy instead. Returns the module.
function Module:to(dtype)
  local who = class.name(self) .. ":to"
  if dtype ~= "f32" and dtype ~= "f64" then
    error(who .. ': dtype must be "f32" or "f64", got ' .. show(dtype), 2)
  end
  -- tensor -> what its slots hold afterwards: itself, or a non-leaf's converted copy.
  local result = {}
  local function convert(t)
    if result[t] then return result[t] end
    local c = t
    if (t.dtype == "f32" or t.dtype == "f64") and t.dtype ~= dtype then
      local data = t:detach():to(dtype)
      if t.is_leaf then t:set_data_(data) else c = data end
    end
    result[t] = c
    return c
  end
  for _, m in ipairs(self:modules()) do
    local params, buffers = regs(m, who, 2)
    for _, reg in ipairs({params, buffers}) do
      for _, k in ipairs(reg.keys) do
        local t = reg.vals[k]
        if t ~= nil then
          local c = convert(t)
          if not rawequal(c, t) then reg_set(reg, k, c) end
        end
      end
    end
  end
  return self
end

function Module:double() return self:to("f64") end
function Module:float() return self:to("f32") end

-- fn(module) on every child (recursively) first, then on self, as PyTorch.
function Module:apply(fn)
  if type(fn) ~= "function" then
    error(class.name(self) .. ":apply: a function is expected, got " .. show(fn), 2)
  end
  for _, c in ipairs(self:children()) do c:apply(fn) end
  fn(self)
  return self
end

-- ---- state_dict -------------------------------------------------------------------------

local function collect_state(m, prefix, names, tensors)
  local params, buffers = rawget(m, "_parameters"), rawget(m, "_buffers")
  for _, k in ipairs(params.keys) do
    local t = params.vals[k]
    if t ~= nil then names[#names + 1] = prefix .. k; tensors[#tensors + 1] = t end
  end
  local skip = rawget(m, "_non_persistent")
  for _, k in ipairs(buffers.keys) do
    local t = buffers.vals[k]
    if t ~= nil and not skip[k] then names[#names + 1] = prefix .. k; tensors[#tensors + 1] = t end
  end
  local modules = rawget(m, "_modules")
  for _, k in ipairs(modules.keys) do
    local c = modules.vals[k]
    if c ~= nil then collect_state(c, prefix .. k .. ".", names, tensors) end
  end
end

-- pairs() over a state dict: its keys in order, then any key added afterwards.
local function ordered_pairs(keys)
  return function(t)
    local i, listed, k = 0, {}, nil
    for _, name in ipairs(keys) do listed[name] = true end
    return function()
      while i < #keys do
        i = i + 1
        local v = rawget(t, keys[i])
        if v ~= nil then return keys[i], v end
      end
      repeat
        k = next(t, k)
      until k == nil or not listed[k]
      if k ~= nil then return k, rawget(t, k) end
    end, t, nil
  end
end

-- As PyTorch: parameters (detached views sharing memory) and persistent buffers, by name; a
-- module reached twice (shared) appears under each of its names. Returns the map and the
-- sequence of its keys in order (pairs(sd) follows that order too).
function Module:state_dict()
  regs(self, class.name(self) .. ":state_dict", 2)
  local names, tensors = {}, {}
  collect_state(self, "", names, tensors)
  local sd, detached = {}, {}
  for i, name in ipairs(names) do
    local t = tensors[i]
    -- A shared parameter maps to one detached tensor, so lm.save can store it once.
    if t.requires_grad then
      detached[t] = detached[t] or t:detach()
      t = detached[t]
    end
    sd[name] = t
  end
  return setmetatable(sd, {__pairs = ordered_pairs(names)}), names
end

-- Copies sd's tensors into this module's parameters and buffers, in place and without
-- recording gradients. Every check runs before anything is copied: a shape mismatch is always
-- an error, missing and unexpected keys are one unless strict is false (load_state_dict(sd,
-- false) or {strict = false}). A sequence of names in place of the options is ignored: it is
-- state_dict's second result, passed along by b:load_state_dict(a:state_dict()).
function Module:load_state_dict(sd, opts)
  local who = class.name(self) .. ":load_state_dict"
  if type(sd) ~= "table" then
    error(who .. ": a table of name -> tensor is expected, got " .. show(sd), 2)
  end
  if type(opts) == "table" and getmetatable(opts) == nil and type(opts[1]) == "string" then
    opts = nil
  end
  local o = util.options(who, 2, {"strict"}, {strict = true}, opts)
  util.boolean(who, "strict", o.strict, 2)
  regs(self, who, 2)
  local names, tensors = {}, {}
  collect_state(self, "", names, tensors)
  local own = {}
  local missing, unexpected, problems = {}, {}, {}
  for i, name in ipairs(names) do
    own[name] = true
    local v = sd[name]
    if v == nil then
      missing[#missing + 1] = name
    elseif not is_tensor(v) then
      problems[#problems + 1] = string.format("'%s' is %s, not a tensor", name, show(v))
    else
      local a, b = util.shape_str(v), util.shape_str(tensors[i])
      if a ~= b then
        problems[#problems + 1] = string.format("size mismatch for %s: copying a param with " ..
          "shape %s, the shape in current model is %s", name, a, b)
      end
    end
  end
  for k in pairs(sd) do
    if not own[k] then unexpected[#unexpected + 1] = tostring(k) end
  end
  table.sort(unexpected)
  local function quoted(list)
    local q = {}
    for i, s in ipairs(list) do q[i] = '"' .. s .. '"' end
    return table.concat(q, ", ")
  end
  if o.strict then
    if #missing > 0 then problems[#problems + 1] = "Missing key(s): " .. quoted(missing) end
    if #unexpected > 0 then
      problems[#problems + 1] = "Unexpected key(s): " .. quoted(unexpected)
    end
  end
  if #problems > 0 then
    error(string.format("%s: error(s) in loading state_dict for %s:\n\t%s", who,
      class.name(self), table.concat(problems, "\n\t")), 2)
  end
  local _ <close> = lm.no_grad()
  for i, name in ipairs(names) do
    local v = sd[name]
    if v ~= nil then tensors[i]:copy_(v) end
  end
  return {missing_keys = missing, unexpected_keys = unexpected}
end

-- ---- calling: forward under the module's graph scope ------------------------------------------
-- A stack of the modules whose forward is running and their paths. A module called inside its
-- parent's forward is named by the parent's registry; one called from further up the tree (a
-- block of a ModuleList called in its grandparent's loop) is found by climbing its parent links
-- to the running module, in O(depth); a module shared by several places that are not on its
-- link chain is searched for among the running module's descendants; a module that is not in
-- the tree at all works under its caller's scope. The outermost call has the path "".

local running, running_path, saved_scope = {}, {}, {}
local depth = 0

-- m's path below r by the parent links ("layers.3"), or nil when r is not above m.
local function linked_path(r, m)
  local p = parent_of[m]
  if p == nil then return nil end
  if p == r then return link_name[m] end
  local up = linked_path(r, p)
  return up and up .. "." .. link_name[m]
end

local function path_in(parent, ppath, m)
  if m == parent then return ppath end
  local name = rawget(parent, "_modules").name_of[m]
  if name then return join(ppath, name) end
  local sub = linked_path(parent, m)
  if sub then return join(ppath, sub) end
  if (slots[m] or 0) > 0 then
    for _, e in ipairs(walk(parent, "", {}, {})) do
      if e[2] == m then return join(ppath, e[1]) end
    end
  end
  return ppath
end

-- Closed when forward returns or raises, innermost first, so one shared guard suffices.
local scope_guard = setmetatable({}, {
  __close = function()
    lm.set_scope(saved_scope[depth])
    running[depth], running_path[depth], saved_scope[depth] = nil, nil, nil
    depth = depth - 1
  end,
})

function Module:__call(...)
  local path = depth == 0 and "" or path_in(running[depth], running_path[depth], self)
  local prev = lm.set_scope(path) or ""
  depth = depth + 1
  running[depth], running_path[depth], saved_scope[depth] = self, path, prev
  local _ <close> = scope_guard
  return self:forward(...)
end

function Module:forward()
  error(class.name(self) .. ": forward is not defined (define " .. class.name(self) ..
    ":forward)", 3)
end

-- ---- printing -------------------------------------------------------------------------------

-- The text inside a module's parentheses (as PyTorch's extra_repr); layers override it.
function Module:extra_repr() return "" end

local function count_of(m)
  local n = 0
  for _, e in ipairs(members(m, "_parameters")) do n = n + e[2]:numel() end
  return n
end

local function params_note(n)
  if n == 0 then return "" end
  return "  -- " .. util.thousands(n) .. (n == 1 and " param" or " params")
end

local function indent(s)
  return (s:gsub("\n", "\n  "))
end

-- As PyTorch's __repr__: one line when there is no child and at most one line of extra_repr.
local function repr(m)
  local lines = {}
  local extra = m:extra_repr()
  if extra ~= "" then
    for line in (extra .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  end
  local r = rawget(m, "_modules")
  local has_children = false
  for _, k in ipairs(r.keys) do
    local c = r.vals[k]
    if c ~= nil then
      has_children = true
      lines[#lines + 1] = "(" .. k .. "): " .. indent(repr(c))
    end
  end
  local note = params_note(count_of(m))
  if not has_children and #lines <= 1 then
    return class.name(m) .. "(" .. (lines[1] or "") .. ")" .. note
  end
  return class.name(m) .. "(\n  " .. table.concat(lines, "\n  ") .. "\n)" .. note
end

-- PyTorch's module tree; every module with parameters shows their count (shared tensors once).
-- A module with children ends with a line giving the total and how much of it is trainable.
function Module:__tostring()
  if not rawget(self, "_parameters") then return class.name(self) .. "(uninitialised)" end
  local text = repr(self)
  if #self:children() == 0 then return text end
  local total, trainable = 0, 0
  for _, p in ipairs(self:parameters()) do
    total = total + p:numel()
    if p.requires_grad then trainable = trainable + p:numel() end
  end
  return text .. "\nTotal params: " .. util.thousands(total) .. " (trainable: " ..
    util.thousands(trainable) .. ")"
end

-- ---- containers -------------------------------------------------------------------------------

local function child_count(self) return #rawget(self, "_modules").keys end

local function check_module(who, i, m, lvl)
  if not is_module(m) then
    error(string.format("%s: element %d must be an nn.Module, got %s", who, i, show(m)), lvl + 1)
  end
  return m
end

-- The modules given as one sequence {m1, m2} or as separate arguments (m1, m2).
local function module_args(who, lvl, ...)
  local first = ...
  if select("#", ...) == 1 and type(first) == "table" and not is_module(first) then
    local n = 0
    for _ in pairs(first) do n = n + 1 end
    if n ~= #first then
      error(who .. ": expected a sequence of modules {m1, m2, ...}", lvl + 1)
    end
    return first
  end
  local list = table.pack(...)
  list.n = nil
  return list
end

-- Sequential {m1, m2, ...} or Sequential(m1, m2, ...): children "0", "1", ...; seq[1] is the
-- first child (Lua's 1-based sequences), #seq the number of children.
local Sequential = class("Sequential", Module)
M.Sequential = Sequential
Sequential._indexable = true

function Sequential:__init(...)
  Module.__init(self)
  for i, m in ipairs(module_args("Sequential", 3, ...)) do
    Module.register_module(self, tostring(i - 1), check_module("Sequential", i, m, 3))
  end
end

function Sequential:forward(x)
  local r = rawget(self, "_modules")
  for _, k in ipairs(r.keys) do
    local m = r.vals[k]
    if m ~= nil then x = m(x) end
  end
  return x
end

function Sequential:append(m)
  check_module("Sequential:append", 1, m, 2)
  Module.register_module(self, tostring(child_count(self)), m)
  return self
end

Sequential.__len = child_count

-- ModuleList {m1, m2, ...}: children "0", "1", ...; list[1] is the first (1-based), #list and
-- ipairs(list) work. It has no forward of its own.
local ModuleList = class("ModuleList", Module)
M.ModuleList = ModuleList
ModuleList._indexable = true

function ModuleList:__init(...)
  Module.__init(self)
  if select("#", ...) == 0 then return end
  for i, m in ipairs(module_args("ModuleList", 3, ...)) do
    Module.register_module(self, tostring(i - 1), check_module("ModuleList", i, m, 3))
  end
end

function ModuleList:append(m)
  check_module("ModuleList:append", 1, m, 2)
  Module.register_module(self, tostring(child_count(self)), m)
  return self
end

function ModuleList:extend(list)
  if type(list) ~= "table" or is_module(list) then
    error("ModuleList:extend: a sequence of modules is expected, got " .. show(list), 2)
  end
  for i, m in ipairs(list) do
    check_module("ModuleList:extend", i, m, 2)
    Module.register_module(self, tostring(child_count(self)), m)
  end
  return self
end

ModuleList.__len = child_count

function ModuleList:forward()
  error("ModuleList: has no forward; call its modules (for i, m in ipairs(list) do ... end)", 3)
end

-- ModuleDict: children named by their keys, in insertion order. Built from a sequence of
-- {name, module} pairs (kept in that order) or from a map (then in sorted key order, since a
-- Lua table has none). md.name / md["name"] read a child, md.name = m adds or replaces one.
local ModuleDict = class("ModuleDict", Module)
M.ModuleDict = ModuleDict

function ModuleDict:__init(entries)
  Module.__init(self)
  if entries == nil then return end
  if type(entries) ~= "table" or is_module(entries) then
    error("ModuleDict: expected a table of name -> module or a sequence of {name, module}, got "
      .. show(entries), 3)
  end
  if entries[1] ~= nil then
    for i, e in ipairs(entries) do
      if type(e) ~= "table" or is_module(e) or e[1] == nil then
        error(string.format("ModuleDict: element %d must be a {name, module} pair", i), 3)
      end
      check_name("ModuleDict", e[1], 3)
      Module.register_module(self, e[1], check_module("ModuleDict", i, e[2], 3))
    end
    return
  end
  local keys = {}
  for k in pairs(entries) do
    check_name("ModuleDict", k, 3)
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for i, k in ipairs(keys) do
    Module.register_module(self, k, check_module("ModuleDict", i, entries[k], 3))
  end
end

function ModuleDict:keys()
  local out = {}
  for name in self:named_children() do out[#out + 1] = name end
  return out
end

function ModuleDict:values() return self:children() end
function ModuleDict:items() return self:named_children() end
ModuleDict.__len = child_count

function ModuleDict:forward()
  error("ModuleDict: has no forward; call its modules by name", 3)
end

return M
