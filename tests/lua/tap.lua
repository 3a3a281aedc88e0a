-- tap.lua: a tiny TAP producer for the Lua tests (meson test, protocol tap).
--   local T = require "tap"
--   T.plan(n) | T.plan_auto();  T.ok(cond, name);  T.is(got, want, name)
--   T.close(got, want, tol, name)   -- numbers or tensors (max |got - want| <= tol, same shape)
--   T.errors(fn, pattern, name)     -- fn must raise an error containing the plain string pattern
--   T.skip(reason, name);  T.diag(msg);  T.done()  (exits non-zero when a test failed)
local T = {}
local count, failed, planned = 0, 0, nil

function T.plan(n) planned = n; print("1.." .. n) end
function T.plan_auto() planned = false end
function T.diag(msg) for line in (tostring(msg) .. "\n"):gmatch("(.-)\n") do print("# " .. line) end end

function T.ok(cond, name)
  count = count + 1
  if not cond then failed = failed + 1 end
  print(string.format("%s %d - %s", cond and "ok" or "not ok", count, name or ""))
  return cond and true or false
end

function T.is(got, want, name)
  local good = got == want
  if not good then T.diag(string.format("got: %s\nwant: %s", tostring(got), tostring(want))) end
  return T.ok(good, name)
end

local function is_tensor(v)
  local mt = getmetatable(v)
  return type(v) == "userdata" and mt and mt.__name == "lumen.Tensor"
end

local function shape_str(t) return "[" .. table.concat(t.shape, ",") .. "]" end

function T.close(got, want, tol, name)
  tol = tol or 1e-6
  if is_tensor(got) or is_tensor(want) then
    local lm = require "lumen"
    if not is_tensor(got) then got = lm.tensor(got) end
    if not is_tensor(want) then want = lm.tensor(want) end
    if shape_str(got) ~= shape_str(want) then
      T.diag("shapes differ: " .. shape_str(got) .. " vs " .. shape_str(want))
      return T.ok(false, name)
    end
    local diff = got:double() - want:double()
    local err = diff:numel() == 0 and 0 or diff:abs():max():item()
    if not (err <= tol) then T.diag(string.format("max |diff| = %g > %g", err, tol)) end
    return T.ok(err <= tol, name)
  end
  local good = type(got) == "number" and math.abs(got - want) <= tol
  if not good then T.diag(string.format("got: %s\nwant: %s (tol %g)", tostring(got), tostring(want), tol)) end
  return T.ok(good, name)
end

function T.errors(fn, pattern, name)
  local okay, err = pcall(fn)
  if okay then
    T.diag("no error raised")
    return T.ok(false, name)
  end
  local msg = tostring(err)
  local good = msg:find(pattern, 1, true) ~= nil
  if not good then T.diag("error was: " .. msg .. "\nexpected to contain: " .. pattern) end
  return T.ok(good, name)
end

function T.skip(reason, name)
  count = count + 1
  print(string.format("ok %d - %s # SKIP %s", count, name or "", reason))
end

function T.done()
  if planned == false then print("1.." .. count)
  elseif planned and planned ~= count then
    T.diag(string.format("planned %d tests but ran %d", planned, count)); failed = failed + 1
  end
  io.stdout:flush()
  if failed > 0 then os.exit(1) end
end

return T
