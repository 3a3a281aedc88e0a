-- lumen.class: the small class system shared by nn, optim and data.
--
--   local class = require "lumen.class"
--   local Linear = class("Linear", Module)       -- parent optional
--   function Linear:__init(a, b) Module.__init(self) ... end
--   local m = Linear(4, 3)                       -- calls __init on a new instance
--
-- Methods are inherited through the class chain. Lua looks metamethods up with rawget, so the
-- ones a parent defines (__call, __tostring, __len, __newindex, __close...) are copied down when
-- a subclass is made. A class that defines __getitem(self, key) gets it for keys that are not
-- found among the methods (a Dataset's ds[i]).
local M = {}

local metamethods = {
  "__call", "__tostring", "__len", "__newindex", "__close", "__eq", "__lt", "__le",
  "__add", "__sub", "__mul", "__div", "__unm", "__concat", "__pairs", "__getitem",
}

local function install_index(cls)
  if rawget(cls, "__getitem") then
    -- Looked up at each call: a subclass may define its own __getitem after it was made.
    cls.__index = function(self, key)
      local v = cls[key]
      if v ~= nil then return v end
      return cls.__getitem(self, key)
    end
  else
    cls.__index = cls
  end
end

local function new(cls, ...)
  local obj = setmetatable({}, cls)
  local init = cls.__init
  if init then init(obj, ...) end
  return obj
end

local class_mt = {
  __call = new,
  __tostring = function(cls) return "class " .. rawget(cls, "__name") end,
}

function M.new(name, parent)
  assert(type(name) == "string", "class: a name is required")
  local cls = {__name = name, super = parent}
  if parent then
    for _, k in ipairs(metamethods) do
      if rawget(cls, k) == nil and parent[k] ~= nil then cls[k] = parent[k] end
    end
  end
  install_index(cls)
  return setmetatable(cls, {
    __index = parent,
    __call = new,
    __tostring = class_mt.__tostring,
    -- Defining __getitem after the class was made still takes effect.
    __newindex = function(c, k, v)
      rawset(c, k, v)
      if k == "__getitem" then install_index(c) end
    end,
  })
end

-- True when obj is an instance of cls or of one of its subclasses.
function M.isinstance(obj, cls)
  if type(obj) ~= "table" then return false end
  local c = getmetatable(obj)
  while c do
    if c == cls then return true end
    c = rawget(c, "super")
  end
  return false
end

-- The class name of an instance ("table" etc. for other values).
function M.name(obj)
  local mt = type(obj) == "table" and getmetatable(obj)
  return mt and rawget(mt, "__name") or type(obj)
end

return setmetatable(M, {__call = function(_, name, parent) return M.new(name, parent) end})
