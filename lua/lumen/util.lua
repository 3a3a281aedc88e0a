-- lumen.util: the helpers every Lua library file shares: recognising tensors and callables,
-- describing values in error messages, checking a trailing options table, and raising an error
-- at the user's line rather than inside the library. lumen.nn.util re-exports what nn needs and
-- adds its argument checks on top.
local lm = require "lumen.core"
local class = require "lumen.class"

local util = {}

util.is_tensor = lm.is_tensor

-- "[2,3]" for messages.
function util.shape_str(t) return "[" .. table.concat(t.shape, ",") .. "]" end

-- A short description of a value for error messages: strings quoted, numbers, booleans and nil
-- as themselves, a tensor by its shape, an instance by its class, anything else by its type.
function util.show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" or type(v) == "boolean" or v == nil then return tostring(v) end
  if util.is_tensor(v) then return "a tensor of shape " .. util.shape_str(v) end
  if type(v) == "table" and getmetatable(v) ~= nil then return "a " .. class.name(v) end
  return "a " .. type(v)
end

-- True for a function or a value whose metatable has __call (a module, a transform object).
function util.is_callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

-- ---- errors at the user's line --------------------------------------------------------------

-- The directory of the library files ("@/.../lua/lumen/"), from this file's own chunk name:
-- every library file is loaded by the same package.path entry, so their chunk names share it.
-- Comparing against it, rather than against any path containing "lumen/", keeps the position
-- of a user script that happens to live in a directory named lumen (a clone of this repository).
local LIB_DIR = debug.getinfo(1, "S").source:match("^(@.*[/\\])")

local function in_library(source)
  return LIB_DIR ~= nil and source:sub(1, #LIB_DIR) == LIB_DIR
end

-- Raises msg at the first stack frame outside the library files (and C functions), so an error
-- found deep inside optim, data, metrics or train points at the user's line.
function util.raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then break end
    if info.what ~= "C" and not in_library(info.source or "") then break end
    level = level + 1
  end
  error(msg, level)
end

-- ---- options tables ---------------------------------------------------------------------------

-- Checks a trailing options table against the option names it may hold (a sequence): nil gives
-- {}, a value that is not a table or an unknown key is an error naming `who`. lvl is the stack
-- level to blame, counted from the function calling check_options (1: that function, 2: its
-- caller), as lumen.nn.util's checks count; nil blames the first frame outside the library
-- (util.raise). Returns the table.
function util.check_options(who, opts, allowed, lvl)
  if opts == nil then return {} end
  local problem
  if type(opts) ~= "table" then
    problem = string.format("%s: options must be a table, got %s", who, util.show(opts))
  else
    for k in pairs(opts) do
      local known = false
      for _, name in ipairs(allowed) do
        if name == k then known = true; break end
      end
      if not known then
        problem = string.format("%s: unknown option '%s' (known: %s)", who, tostring(k),
          table.concat(allowed, ", "))
        break
      end
    end
  end
  if problem == nil then return opts end
  if lvl then error(problem, lvl + 1) end
  util.raise(problem)
end

return util
