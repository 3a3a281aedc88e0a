-- lumen.nn.util: the argument checks and Python-style printing helpers the nn files share, with
-- the library-wide helpers of lumen.util (is_tensor, show, shape_str) re-exported.
-- Every check takes `lvl`, the stack level (seen from the function calling the check) that the
-- error message should blame: 2 for a plain function's caller, 3 for the user of a class
-- constructor (user -> class.new -> __init) or of a module call (user -> __call -> forward).

local base = require "lumen.util"

local util = {}

util.is_tensor, util.show, util.shape_str = base.is_tensor, base.show, base.shape_str

-- A table of keyword options: a plain table (no metatable) without [1], so that a kernel size
-- {3, 3} or a sequence of modules is never taken for one.
function util.is_opts(v)
  return type(v) == "table" and getmetatable(v) == nil and v[1] == nil
end

-- Arguments given positionally in PyTorch's order and/or as a trailing options table:
--   util.options("Conv2d", 3, {"stride", "padding"}, {stride = 1, padding = 0}, ...)
-- Unknown option names and a name given both ways are errors. `defaults` fills what is absent.
function util.options(who, lvl, names, defaults, ...)
  local n = select("#", ...)
  local args = {...}
  local out = {}
  if n > 0 and util.is_opts(args[n]) then
    for k, v in pairs(base.check_options(who, args[n], names, lvl + 1)) do out[k] = v end
    n = n - 1
  end
  if n > #names then
    error(string.format("%s: too many arguments (%d positional, at most %d: %s)", who, n,
      #names, table.concat(names, ", ")), lvl + 1)
  end
  for i = 1, n do
    if args[i] ~= nil then
      if out[names[i]] ~= nil then
        error(string.format("%s: %s given both positionally and as an option", who, names[i]),
          lvl + 1)
      end
      out[names[i]] = args[i]
    end
  end
  for k, v in pairs(defaults) do
    if out[k] == nil then out[k] = v end
  end
  return out
end

-- The options table a module's forward passes to its op ({stride = m.stride, ...}, one entry
-- per name in keys), built at the first call and then reused: a training step allocates nothing
-- for it. It is rebuilt when one of those fields was reassigned (conv.stride = {2, 2}); fields
-- holding tables are shared with it, so changing one in place reaches the op too.
function util.forward_options(m, keys)
  local o = rawget(m, "_op_options")
  if o ~= nil then
    local same = true
    for i = 1, #keys do
      local k = keys[i]
      if o[k] ~= m[k] then same = false; break end
    end
    if same then return o end
  end
  o = {}
  for i = 1, #keys do o[keys[i]] = m[keys[i]] end
  rawset(m, "_op_options", o)
  return o
end

local function int_of(v)
  if math.type(v) == "integer" then return v end
  if type(v) == "number" then return math.tointeger(v) end
  return nil
end

-- An integer >= min (min may be nil).
function util.int(who, name, v, min, lvl)
  local i = int_of(v)
  if i == nil or (min and i < min) then
    local what = min == 1 and "a positive integer" or min == 0 and "a non-negative integer"
      or min and ("an integer >= " .. min) or "an integer"
    error(string.format("%s: %s must be %s, got %s", who, name, what, util.show(v)), lvl + 1)
  end
  return i
end

-- An integer or a sequence of n integers (each >= min) -> a sequence of n integers.
function util.tuple(who, name, v, n, min, lvl)
  if type(v) == "table" and getmetatable(v) == nil then
    if #v ~= n then
      error(string.format("%s: %s must be an integer or %d integers, got %d values", who, name,
        n, #v), lvl + 1)
    end
    local out = {}
    for i = 1, n do out[i] = util.int(who, name, v[i], min, lvl + 1) end
    return out
  end
  local i = util.int(who, name, v, min, lvl + 1)
  local out = {}
  for k = 1, n do out[k] = i end
  return out
end

function util.number(who, name, v, lvl)
  if type(v) ~= "number" then
    error(string.format("%s: %s must be a number, got %s", who, name, util.show(v)), lvl + 1)
  end
  return v
end

function util.boolean(who, name, v, lvl)
  if type(v) ~= "boolean" then
    error(string.format("%s: %s must be true or false, got %s", who, name, util.show(v)), lvl + 1)
  end
  return v
end

function util.check_tensor(who, name, v, lvl)
  if not util.is_tensor(v) then
    error(string.format("%s: %s must be a tensor, got %s", who, name, util.show(v)), lvl + 1)
  end
  return v
end

local float_dtypes = {f32 = "f32", float32 = "f32", float = "f32",
                      f64 = "f64", float64 = "f64", double = "f64"}

-- The dtype of new parameters: "f32" or "f64" (or their long names) -> "f32" / "f64".
function util.float_dtype(who, v, lvl)
  local dt = float_dtypes[v]
  if not dt then
    error(string.format("%s: dtype must be \"f32\" or \"f64\", got %s", who, util.show(v)),
      lvl + 1)
  end
  return dt
end

-- Python's repr of a value, for extra_repr lines that read like PyTorch's.
function util.py(v)
  if v == nil then return "None" end
  if v == true then return "True" end
  if v == false then return "False" end
  if type(v) == "string" then return "'" .. v .. "'" end
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 1e16 then return string.format("%.1f", v) end
    return string.format("%.6g", v)
  end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = util.py(x) end
    if #parts == 1 then return "(" .. parts[1] .. ",)" end
    return "(" .. table.concat(parts, ", ") .. ")"
  end
  return tostring(v)
end

-- 100480 -> "100,480"
function util.thousands(n)
  local s = tostring(math.tointeger(n) or n)
  local sign, digits = s:match("^(-?)(%d+)$")
  if not digits then return s end
  return sign .. digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

return util
