-- lumen.serialize: saving and loading tensors, models and whole training states, in the
-- safetensors format (readable by PyTorch's and Hugging Face's tools). Attached to lumen as
-- lm.save, lm.load and lm.checkpoint.
--
--   lm.save(model, "mlp.safetensors")        -- the model's state_dict, PyTorch's names
--   lm.load(model, "mlp.safetensors")        -- strict load_state_dict; returns the model
--   local t, meta = lm.load(nil, "mlp.safetensors")   -- name -> tensor, metadata
--
--   lm.checkpoint.save("ckpt.safetensors", {model = m, optimizer = opt, scheduler = sched,
--                                            epoch = 3, step = 1200, best = 0.91})
--   local info = lm.checkpoint.load("ckpt.safetensors", {model = m, optimizer = opt,
--                                                         scheduler = sched})  -- info.epoch == 3
--
-- A checkpoint is one safetensors file:
--   model.<name>                 the model's state_dict tensors
--   optimizer.state.<i>.<key>    the optimizer's per-parameter state (i numbers the parameters
--                                from 0 as PyTorch's state_dict); numbers such as step become
--                                0-dim tensors (i64 for integers, f64 otherwise)
--   __metadata__ (strings only): "format" = "lumen.checkpoint", "version", and JSON texts:
--     "optimizer" {class, param_groups, scalars}, "scheduler" {class, state}, "rng" {seed,
--     offset} (the engine's RNG, restored on load so dropout and shuffling continue as if
--     training had not stopped), "info" (every other field given to save: step, epoch, ...).
-- The JSON numbers round-trip exactly: integers as integers, floats with 17 significant digits
-- (always with a '.' or an exponent, so they come back as floats), NaN and infinities as NaN,
-- Infinity, -Infinity (as Python's json module writes them).
local lm = require "lumen.core"
local class = require "lumen.class"

local M = {}

local FORMAT = "lumen.checkpoint"
local VERSION = "1"

-- ---- small helpers ---------------------------------------------------------------------------

local util = require "lumen.util"
local is_tensor, show = util.is_tensor, util.show

-- A model is anything with state_dict and load_state_dict (an nn.Module, or a user's object
-- following the protocol).
local function is_model(v)
  return type(v) == "table" and type(v.state_dict) == "function"
    and type(v.load_state_dict) == "function"
end

local function check_path(fname, path)
  if type(path) ~= "string" or path == "" then
    error(string.format("%s: path must be a non-empty string, got %s", fname, show(path)), 3)
  end
end

-- The names of a state dict in order: the order nn's state_dict gives as its second result, or
-- sorted names for a plain table.
local function ordered_names(sd, order)
  if type(order) == "table" then return order end
  local names = {}
  for k in pairs(sd) do names[#names + 1] = k end
  table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
  return names
end

-- Runs fn(...); an error raised inside gets "<fname>: <path>: " in front (once) and is raised
-- at the caller of the public function.
local function with_path(fname, path, fn, ...)
  local results = table.pack(pcall(fn, ...))
  if results[1] then return table.unpack(results, 2, results.n) end
  local msg = tostring(results[2])
  if not msg:find(path, 1, true) then msg = string.format("%s: %s: %s", fname, path, msg) end
  error(msg, 3)
end

-- ---- JSON-ish metadata ------------------------------------------------------------------------

local encode_value

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                   ["\b"] = "\\b", ["\f"] = "\\f"}
    return named[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_number(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x then return "NaN" end
  if x == math.huge then return "Infinity" end
  if x == -math.huge then return "-Infinity" end
  local s = string.format("%.17g", x)
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

-- A table whose keys are exactly 1..n is a JSON array; any other table is an object, its integer
-- keys written as "[n]" so they come back as integers (optimizer state is keyed by 0-based index).
local function encode_table(t, path, seen)
  if seen[t] then error(string.format("cannot store %s: it contains itself", path), 0) end
  seen[t] = true
  local n, count = #t, 0
  for _ in pairs(t) do count = count + 1 end
  local is_array = count == n and n > 0
  for i = 1, is_array and n or 0 do
    if t[i] == nil then is_array = false end
  end
  local out = {}
  if is_array then
    for i = 1, n do out[i] = encode_value(t[i], path .. "[" .. i .. "]", seen) end
    seen[t] = nil
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(t) do
    if math.type(k) == "integer" then
      keys[#keys + 1] = {string.format("[%d]", k), k}
    elseif type(k) == "string" then
      keys[#keys + 1] = {k, k}
    else
      error(string.format("cannot store %s: keys must be strings or integers, got %s", path,
        show(k)), 0)
    end
  end
  table.sort(keys, function(a, b) return a[1] < b[1] end)
  for i, kv in ipairs(keys) do
    out[i] = encode_string(kv[1]) .. ":" .. encode_value(t[kv[2]], path .. "." .. kv[1], seen)
  end
  seen[t] = nil
  return "{" .. table.concat(out, ",") .. "}"
end

function encode_value(v, path, seen)
  local tv = type(v)
  if tv == "number" then return encode_number(v) end
  if tv == "string" then return encode_string(v) end
  if tv == "boolean" then return v and "true" or "false" end
  if tv == "table" and getmetatable(v) == nil then return encode_table(v, path, seen) end
  error(string.format("cannot store %s: it is %s (metadata holds numbers, strings, booleans and "
    .. "plain tables of them)", path, show(v)), 0)
end

-- Lua data (numbers, strings, booleans, plain tables) -> JSON text. `what` names the value in
-- errors ("info.best").
function M.encode(v, what)
  return encode_value(v, what or "value", {})
end

-- JSON text -> Lua data, the inverse of encode. Raises "bad JSON at byte n: ..." on bad input.
function M.decode(s)
  local pos = 1
  local function fail(msg) error(string.format("bad JSON at byte %d: %s", pos, msg), 0) end
  local function skip() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    pos = pos + 1
    local parts = {}
    while true do
      local i = s:find('["\\]', pos)
      if not i then fail("unterminated string") end
      parts[#parts + 1] = s:sub(pos, i - 1)
      if s:sub(i, i) == '"' then
        pos = i + 1
        return table.concat(parts)
      end
      local c = s:sub(i + 1, i + 1)
      local simple = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                      r = "\r", t = "\t"}
      if simple[c] then
        parts[#parts + 1] = simple[c]
        pos = i + 2
      elseif c == "u" then
        local hex = s:sub(i + 2, i + 5)
        if not hex:match("^%x%x%x%x$") then fail("bad \\u escape") end
        parts[#parts + 1] = utf8.char(tonumber(hex, 16))
        pos = i + 6
      else
        fail("bad escape \\" .. c)
      end
    end
  end
  function value()
    skip()
    local c = s:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local t = {}
      skip()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        skip()
        if s:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = str()
        local ik = k:match("^%[(%-?%d+)%]$")
        skip()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[ik and math.tointeger(tonumber(ik)) or k] = value()
        skip()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      pos = pos + 1
      local t = {}
      skip()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        t[#t + 1] = value()
        skip()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    end
    for word, v in pairs({["true"] = true, ["false"] = false, NaN = 0 / 0, Infinity = math.huge,
                          ["-Infinity"] = -math.huge}) do
      if s:sub(pos, pos + #word - 1) == word then
        pos = pos + #word
        return v
      end
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" or num == "-" then fail("unexpected character '" .. c .. "'") end
    local x = tonumber(num)
    if not x then fail("bad number '" .. num .. "'") end
    pos = pos + #num
    if num:find("[%.eE]") then return x end
    local i = math.tointeger(x)
    if not i then fail("integer out of range: " .. num) end
    return i
  end
  local ok, v = pcall(value)
  if not ok then error(v, 2) end
  skip()
  if pos <= #s then error(string.format("bad JSON at byte %d: trailing characters", pos), 2) end
  return v
end

-- ---- lm.save / lm.load ------------------------------------------------------------------------

-- lm.save(obj, path, {metadata = {key = "string"}}): obj is a model (its state_dict), a table
-- name -> tensor, or one tensor (stored under the name "tensor", which lm.load gives back as the
-- tensor itself). The file is written atomically by the engine (a temporary file, then rename).
function M.save(obj, path, opts)
  local fname = "lm.save"
  check_path(fname, path)
  opts = util.check_options(fname, opts, {"metadata"}, 2)
  local meta = {format = "pt"}
  if opts.metadata ~= nil then
    if type(opts.metadata) ~= "table" then
      error(fname .. ": metadata must be a table of strings, got " .. show(opts.metadata), 2)
    end
    for k, v in pairs(opts.metadata) do
      if type(k) ~= "string" or type(v) ~= "string" then
        error(string.format("%s: metadata entries must be string = string (safetensors stores "
          .. "strings only), got %s = %s", fname, tostring(k), show(v)), 2)
      end
      meta[k] = v
    end
  end
  local names, tensors = {}, {}
  if is_tensor(obj) then
    names[1], tensors[1] = "tensor", obj
    meta["lumen.kind"] = "tensor"
  else
    local sd, order
    if is_model(obj) then
      sd, order = obj:state_dict()
    elseif type(obj) == "table" then
      sd = obj
    else
      error(string.format("%s: expected a model, a table of name -> tensor or a tensor, got %s",
        fname, show(obj)), 2)
    end
    -- A shared (tied) tensor is stored once (DESIGN.md); its other names are listed in the
    -- metadata entry "lumen.shared" (JSON: alias -> stored name) and restored by lm.load.
    local first_name, shared = {}, {}
    for _, name in ipairs(ordered_names(sd, order)) do
      local t = sd[name]
      if type(name) ~= "string" or not is_tensor(t) then
        error(string.format("%s: entry %s is %s; a state dict maps names (strings) to tensors",
          fname, tostring(name), show(t)), 2)
      end
      if first_name[t] then
        shared[name] = first_name[t]
      else
        first_name[t] = name
        names[#names + 1], tensors[#tensors + 1] = name, t
      end
    end
    if next(shared) then meta["lumen.shared"] = M.encode(shared, "shared names") end
  end
  with_path(fname, path, lm.safetensors_save, path, names, tensors, meta)
end

-- lm.load(obj, path): with a model, loads the file into it (strict: a missing or unexpected name
-- is an error) and returns the model; with a table name -> tensor, copies into its tensors
-- (strict too) and returns it; with a tensor, copies a one-tensor file into it; with nil, returns
-- the file's tensors as a table name -> tensor (or the tensor itself for a file lm.save wrote from
-- one tensor) and the metadata table.
function M.load(obj, path)
  local fname = "lm.load"
  check_path(fname, path)
  local names, tensors, meta = with_path(fname, path, lm.safetensors_load, path)
  local sd = {}
  for i, name in ipairs(names) do sd[name] = tensors[i] end
  if meta and meta["lumen.shared"] then
    for alias, stored in pairs(M.decode(meta["lumen.shared"])) do sd[alias] = sd[stored] end
    meta["lumen.shared"] = nil
  end
  if obj == nil then
    if meta and meta["lumen.kind"] == "tensor" and #names == 1 then return tensors[1], meta end
    return sd, meta
  end
  if is_model(obj) then
    with_path(fname, path, obj.load_state_dict, obj, sd)
    return obj
  end
  if is_tensor(obj) then
    if #names ~= 1 then
      error(string.format("%s: %s holds %d tensors; loading into one tensor needs a file with "
        .. "exactly one", fname, path, #names), 2)
    end
    with_path(fname, path, obj.copy_, obj, tensors[1])
    return obj
  end
  if type(obj) ~= "table" then
    error(string.format("%s: expected a model, a table of tensors, a tensor or nil, got %s",
      fname, show(obj)), 2)
  end
  for name, t in pairs(obj) do
    if not is_tensor(t) then
      error(string.format("%s: entry %s of the table is %s, not a tensor", fname, tostring(name),
        show(t)), 2)
    end
    if sd[name] == nil then
      error(string.format("%s: %s has no tensor named '%s'", fname, path, tostring(name)), 2)
    end
  end
  for name in pairs(sd) do
    if obj[name] == nil then
      error(string.format("%s: %s has a tensor '%s' that the table lacks", fname, path, name), 2)
    end
  end
  for name, t in pairs(obj) do
    local src = sd[name]
    if table.concat(src.shape, ",") ~= table.concat(t.shape, ",") then
      error(string.format("%s: %s: '%s' has shape [%s] in the file but [%s] in the table", fname,
        path, name, table.concat(src.shape, ","), table.concat(t.shape, ",")), 2)
    end
  end
  for name, t in pairs(obj) do with_path(fname, path, t.copy_, t, sd[name]) end
  return obj
end

-- ---- checkpoints ------------------------------------------------------------------------------

local checkpoint = {}
M.checkpoint = checkpoint

local TARGETS = {model = true, optimizer = true, scheduler = true}

-- 0-dim tensor holding a Lua number: i64 for integers, f64 for floats (both exact).
local function number_tensor(x)
  return lm.tensor(x, {dtype = math.type(x) == "integer" and "i64" or "f64"})
end

-- checkpoint.save(path, {model =, optimizer =, scheduler =, <any other field> = plain data}):
-- everything needed to resume training exactly, in one file (see the banner for its layout).
function checkpoint.save(path, state)
  local fname = "checkpoint.save"
  check_path(fname, path)
  if type(state) ~= "table" then
    error(fname .. ": expected a table {model =, optimizer =, scheduler =, ...}, got "
      .. show(state), 2)
  end
  local names, tensors = {}, {}
  local meta = {format = FORMAT, version = VERSION}
  local function add(name, t)
    names[#names + 1], tensors[#tensors + 1] = name, t
  end
  if state.model ~= nil then
    if not is_model(state.model) then
      error(fname .. ": model must have state_dict and load_state_dict, got "
        .. show(state.model), 2)
    end
    local sd, order = state.model:state_dict()
    for _, name in ipairs(ordered_names(sd, order)) do add("model." .. name, sd[name]) end
  end
  if state.optimizer ~= nil then
    local opt = state.optimizer
    if type(opt) ~= "table" or type(opt.state_dict) ~= "function" then
      error(fname .. ": optimizer must be an optimizer, got " .. show(opt), 2)
    end
    local sd = opt:state_dict()
    local scalars, others = {}, {}
    local ids = {}
    for id in pairs(sd.state) do ids[#ids + 1] = id end
    table.sort(ids)
    for _, id in ipairs(ids) do
      local keys = {}
      for k in pairs(sd.state[id]) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do
        local v = sd.state[id][k]
        local name = string.format("optimizer.state.%d.%s", id, k)
        if is_tensor(v) then
          add(name, v)
        elseif type(v) == "number" then
          add(name, number_tensor(v))
          scalars[#scalars + 1] = string.format("%d.%s", id, k)
        else
          others[string.format("%d.%s", id, k)] = v
        end
      end
    end
    meta.optimizer = with_path(fname, path, M.encode, {class = class.name(opt),
      param_groups = sd.param_groups, scalars = scalars, others = others}, "optimizer")
  end
  if state.scheduler ~= nil then
    local s = state.scheduler
    if type(s) ~= "table" or type(s.state_dict) ~= "function" then
      error(fname .. ": scheduler must be a scheduler, got " .. show(s), 2)
    end
    meta.scheduler = with_path(fname, path, M.encode,
      {class = class.name(s), state = s:state_dict()}, "scheduler")
  end
  local seed, offset = lm.rng_state()
  meta.rng = M.encode({seed = seed, offset = offset})
  local info = {}
  for k, v in pairs(state) do
    if not TARGETS[k] then info[k] = v end
  end
  meta.info = with_path(fname, path, M.encode, info, "info")
  with_path(fname, path, lm.safetensors_save, path, names, tensors, meta)
end

local function decode_meta(fname, path, meta, key)
  local text = meta[key]
  if text == nil then return nil end
  local ok, v = pcall(M.decode, text)
  if not ok then
    error(string.format("%s: %s: metadata '%s': %s", fname, path, key, v), 3)
  end
  return v
end

-- checkpoint.load(path, {model =, optimizer =, scheduler =, rng = true}) -> info: loads what the
-- file holds into the objects given (each must be of the kind saved: an Adam state does not go
-- into an SGD), restores the RNG (unless rng = false) and returns the other fields given to save
-- ({step =, epoch =, ...}).
function checkpoint.load(path, targets)
  local fname = "checkpoint.load"
  check_path(fname, path)
  if targets ~= nil and type(targets) ~= "table" then
    error(fname .. ": expected a table {model =, optimizer =, scheduler =}, got "
      .. show(targets), 2)
  end
  targets = targets or {}
  local names, tensors, meta = with_path(fname, path, lm.safetensors_load, path)
  meta = meta or {}
  if meta.format ~= FORMAT then
    error(string.format("%s: %s is not a lumen checkpoint (its metadata has no format = \"%s\"); "
      .. "lm.load reads plain tensor files", fname, path, FORMAT), 2)
  end
  local model_sd, opt_state, seen_model = {}, {}, false
  for i, name in ipairs(names) do
    local mname = name:match("^model%.(.+)$")
    if mname then
      model_sd[mname] = tensors[i]
      seen_model = true
    else
      local id, key = name:match("^optimizer%.state%.(%d+)%.(.+)$")
      if id then
        id = math.tointeger(tonumber(id))
        opt_state[id] = opt_state[id] or {}
        opt_state[id][key] = tensors[i]
      end
    end
  end
  local model = targets.model
  if model ~= nil then
    if not is_model(model) then
      error(fname .. ": model must have state_dict and load_state_dict, got " .. show(model), 2)
    end
    if not seen_model then error(string.format("%s: %s holds no model", fname, path), 2) end
    with_path(fname, path, model.load_state_dict, model, model_sd)
  end
  local opt = targets.optimizer
  if opt ~= nil then
    local saved = decode_meta(fname, path, meta, "optimizer")
    if saved == nil then error(string.format("%s: %s holds no optimizer", fname, path), 2) end
    if saved.class ~= class.name(opt) then
      error(string.format("%s: %s holds the state of a %s, not of a %s", fname, path,
        tostring(saved.class), class.name(opt)), 2)
    end
    for _, idkey in ipairs(saved.scalars or {}) do
      local id, key = idkey:match("^(%d+)%.(.+)$")
      id = math.tointeger(tonumber(id))
      local t = opt_state[id] and opt_state[id][key]
      if t == nil then
        error(string.format("%s: %s lists optimizer.state.%s but has no such tensor", fname,
          path, idkey), 2)
      end
      local x = t:item()
      opt_state[id][key] = t.dtype == "i64" and math.tointeger(x) or x
    end
    for idkey, v in pairs(saved.others or {}) do
      local id, key = idkey:match("^(%d+)%.(.+)$")
      id = math.tointeger(tonumber(id))
      opt_state[id] = opt_state[id] or {}
      opt_state[id][key] = v
    end
    with_path(fname, path, opt.load_state_dict, opt,
      {state = opt_state, param_groups = saved.param_groups})
  end
  local sched = targets.scheduler
  if sched ~= nil then
    local saved = decode_meta(fname, path, meta, "scheduler")
    if saved == nil then error(string.format("%s: %s holds no scheduler", fname, path), 2) end
    if saved.class ~= class.name(sched) then
      error(string.format("%s: %s holds the state of a %s, not of a %s", fname, path,
        tostring(saved.class), class.name(sched)), 2)
    end
    with_path(fname, path, sched.load_state_dict, sched, saved.state)
  end
  if targets.rng ~= false then
    local rng = decode_meta(fname, path, meta, "rng")
    if rng then lm.set_rng_state(rng.seed, rng.offset) end
  end
  return decode_meta(fname, path, meta, "info") or {}
end

return M
