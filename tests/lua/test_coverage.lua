-- test_coverage.lua: every function of the engine's public API (engine/include/lumen.h) is
-- reachable from Lua as lm.NAME (the lm_ prefix dropped), under a merged or renamed form listed
-- below, or is C-only for a stated reason. A new engine function fails this test until it is
-- bound or listed.
local T = require "tap"
local lm = require "lumen"
T.plan_auto()

-- Scalar variants are merged into the tensor form (t:add(2)); some names read better in Lua.
local merged = {
  add_scalar = "add", sub_scalar = "sub", rsub_scalar = "sub", mul_scalar = "mul",
  div_scalar = "div", rdiv_scalar = "div", pow_scalar = "pow", rpow_scalar = "pow",
  maximum_scalar = "maximum", minimum_scalar = "minimum", eq_scalar = "eq", ne_scalar = "ne",
  lt_scalar = "lt", le_scalar = "le", gt_scalar = "gt", ge_scalar = "ge",
  add_scalar_ = "add_", sub_scalar_ = "sub_", mul_scalar_ = "mul_", div_scalar_ = "div_",
  pow_scalar_ = "pow_", squeeze_all = "squeeze", max_dim = "max", min_dim = "min",
  gelu_tanh = "gelu", to_dtype = "to", from_data = "tensor", scalar = "tensor",
  rng_get_state = "rng_state", rng_set_state = "set_rng_state", graph_export = "graph_json",
  get = "__index (t[{i, j}])", set = "__newindex (t[{i, j}] = v)", to_string = "tostring(t)", is_leaf = "t.is_leaf",
  print = "print", item = "item", size = "size", numel = "numel",
  set_grad = "t.grad = g", requires_grad_ = "requires_grad_", grad_enabled = "is_grad_enabled",
  get_scope = "get_scope", zero_grad = "t.grad = nil",
  safetensors_load = "safetensors_load", tensor_file_free = "safetensors_load",
}
-- C-only: memory management and error plumbing that the binding does for the user.
local c_only = {
  last_error = "errors become Lua errors", last_status = "errors become Lua errors",
  clear_error = "errors become Lua errors", status_name = "errors become Lua errors",
  retain = "the collector owns references", release = "the collector owns references",
  dtype_name = "t.dtype", dtype_size = "t:element_size()", dtype_is_float = "t.dtype",
  is_contiguous = "is_contiguous", data = "t:tobytes()",
  nbytes = "t:tobytes()", shape_str = "t.shape",
}

local fh = assert(io.open("engine/include/lumen.h"))
local header = fh:read("a")
fh:close()
local names, seen = {}, {}
for name in header:gmatch("[%w_%*]+%s+%*?lm_([%w_]+)%s*%(") do
  if not seen[name] then seen[name] = true; names[#names + 1] = name end
end
T.ok(#names > 150, "found the engine's functions in lumen.h (" .. #names .. ")")

local lookup = function(k)
  local v = rawget(lm, k)
  if v == nil then v = lm.Tensor[k] end
  return v
end
local missing = {}
for _, name in ipairs(names) do
  if c_only[name] then goto continue end
  local target = merged[name] or name
  if target:match("^[%w_]+$") and lookup(target) == nil and not (target == "print") then
    missing[#missing + 1] = name .. (merged[name] and (" (as " .. target .. ")") or "")
  end
  ::continue::
end
if #missing > 0 then T.diag("not reachable from Lua: " .. table.concat(missing, ", ")) end
T.ok(#missing == 0, "every engine function is reachable from Lua")
T.done()
