-- test_tensor.lua: the tensor userdata from Lua: conversions (integers exact), fields, indexing
-- and assignment (PyTorch's index_put_ semantics), metamethods, lifetime (__gc, __close), the
-- collector seeing tensor memory, length and range checks, and the file functions' argument
-- handling (lm.safetensors_save, lm.load_csv).
local T = require "tap"
local lm = require "lumen"
T.plan_auto()

-- lm.tensor and back ---------------------------------------------------------------------------
local a = lm.tensor{{1, 2}, {3, 4}}
T.is(a.dtype, "i64", "all-integer data gives i64 (as PyTorch)")
T.is(table.concat(a.shape, ","), "2,2", "shape is a Lua sequence")
T.is(a.ndim, 2, "ndim")
local f = lm.tensor{{1.5, 2}, {3, 4}}
T.is(f.dtype, "f32", "float data gives f32")
T.is(lm.tensor({1, 2}, {dtype = "f64"}).dtype, "f64", "dtype option")
T.is(lm.tensor{true, false}.dtype, "u8", "booleans give u8")
local tt = f:totable()
T.ok(tt[1][1] == 1.5 and tt[2][2] == 4 and #tt == 2 and #tt[1] == 2, "totable nests as the shape")
T.ok(math.type(a:totable()[1][2]) == "integer", "i64 totable gives Lua integers")
T.is(lm.tensor(7.25):item(), 7.25, "a number gives a 0-dim tensor")
T.is(lm.tensor(7.25).ndim, 0, "0-dim")
T.is(math.type(lm.tensor{3}[0]:item()), "integer", "item of i64 is an integer")
local e = lm.tensor{}
T.is(e:numel(), 0, "empty table gives an empty tensor")
T.errors(function() lm.tensor{{1, 2}, {3}} end, "ragged", "ragged nested tables are refused")
T.errors(function() lm.tensor{1, "x"} end, "expected a number", "non-numbers are refused")
T.errors(function() lm.tensor({1}, {dtype = "f16"}) end, "unknown dtype 'f16'", "bad dtype name")
T.errors(function() lm.tensor({1}, {bogus = 1}) end, "unknown option 'bogus'; takes dtype, requires_grad",
         "lm.tensor refuses an unknown option")
T.errors(function() lm.tensor({1}, "f64") end, "options table expected", "lm.tensor refuses a stray argument")
T.is(lm.tensor{1, 2.5}.dtype, "f32", "a float among integers gives f32")
T.close(lm.tensor{1, 2.5, true}, lm.tensor{1.0, 2.5, 1.0}, 0, "integers, floats and booleans mixed")
local copy = lm.tensor(f)
copy[{0, 0}] = 9
T.is(f[{0, 0}]:item(), 1.5, "lm.tensor(t) copies")

-- bytes -------------------------------------------------------------------------------------------
local s = f:tobytes()
T.is(#s, 16, "tobytes: 4 f32 are 16 bytes")
T.close(lm.frombytes(s, "f32", {2, 2}), f, 0, "frombytes(tobytes(t)) == t")
T.close(lm.frombytes(s, "f32", 2, 2), f, 0, "frombytes with varargs shape")
T.is(lm.frombytes(string.pack("<i8<i8", 5, -3), "i64"):totable()[2], -3, "frombytes i64, shape inferred")
T.errors(function() lm.frombytes("abc", "f32", {1}) end, "3 bytes", "frombytes size mismatch")
T.is(#f:t():tobytes(), 16, "tobytes of a non-contiguous view")
T.is(f:t():tobytes(), lm.tensor{{1.5, 3}, {2, 4}}:to("f32"):tobytes(), "tobytes is in C order of the view")
T.is(lm.zeros(0):tobytes(), "", "tobytes of an empty tensor")
T.is(lm.frombytes("", "f32", {0, 3}).shape[2], 3, "frombytes of an empty shape")
T.errors(function() lm.frombytes("", "f32", {1 << 62, 1 << 62}) end, "0 bytes do not make a f32 tensor",
         "frombytes: a shape whose byte count overflows is refused")

-- integers are exact ----------------------------------------------------------------------------
local big = (1 << 53) + 1 -- the first integer a double cannot hold
T.is(lm.tensor({math.maxinteger}):item(), math.maxinteger, "lm.tensor{math.maxinteger}:item() is exact")
T.is(lm.tensor{math.mininteger}:item(), math.mininteger, "math.mininteger round-trips")
T.is(lm.tensor{big}[0]:item(), big, "lm.tensor{2^53 + 1} is exact")
T.is(lm.tensor(math.maxinteger):item(), math.maxinteger, "a 0-dim tensor of a large integer")
T.is(lm.tensor{{1, big}, {3, 4}}:totable()[1][2], big, "totable of a large integer")
T.is(lm.tensor{{1, math.maxinteger}, {3, 4}}:t()[{1, 0}]:item(), math.maxinteger,
     "item reads the element of a strided view directly")
T.is(math.type(lm.tensor{200}:to("u8"):item()), "integer", "item of u8 is an integer")
local bi = lm.tensor{0, 0}
bi[0] = math.maxinteger
bi[{{1}}] = math.mininteger
T.ok(bi:totable()[1] == math.maxinteger and bi:totable()[2] == math.mininteger,
     "t[i] = large integer and t[range] = large integer are exact")
bi[bi:eq(math.maxinteger)] = big
T.is(bi[0]:item(), big, "t[mask] = large integer is exact")
bi[lm.tensor{1}] = big + 2
T.is(bi[1]:item(), big + 2, "t[idx] = large integer is exact")
bi[{lm.tensor{0}}] = lm.tensor{math.maxinteger}
T.is(bi[0]:item(), math.maxinteger, "t[{idx}] = i64 tensor is exact")

-- fields, size, len, tostring ---------------------------------------------------------------
local x = lm.zeros(3, 4)
T.is(#x, 3, "#t is dim 0's size")
T.is(x:size(1), 4, "size(d) takes a 0-based dim")
T.is(x:size(-1), 4, "size(-1)")
T.is(x:size()[2], 4, "size() is the shape")
T.is(x:numel(), 12, "numel")
T.is(x:dim(), 2, "dim")
T.is(x.device, "cpu", "device")
T.errors(function() return #lm.tensor(1.0) end, "0-dim", "# of a 0-dim tensor")
T.errors(function() return x:size(5) end, "dim", "size with a bad dim")
T.errors(function() return x:size(1 << 32) end, "size: dim 4294967296 is out of range for a tensor of shape [3,4]",
         "size(2^32) is out of range, not dim 0")
T.errors(function() return x:size(-3) end, "dim -3 is out of range", "size(-3) of a 2-dim tensor")
T.errors(function() return lm.tensor(1.0):size(0) end, "out of range", "size(0) of a 0-dim tensor")
T.errors(function() return x.nosuchfield end, "no field or method 'nosuchfield'", "unknown field")
T.errors(function() x.shape = {1} end, "cannot set field 'shape'", "read-only field")
T.is(tostring(lm.tensor{1.0, 2.0}), "tensor([1., 2.], dtype=f32)", "__tostring is the engine's printer")
T.ok(lm.is_tensor(x) and not lm.is_tensor({}), "is_tensor")
local z0 = lm.zeros({}, {dtype = "i64"})
T.ok(z0.ndim == 0 and z0.dtype == "i64", "an empty shape table followed by options is a 0-dim shape")

-- indexing --------------------------------------------------------------------------------------
local m = lm.arange(12):view(3, 4)
T.close(m[1], lm.tensor{4, 5, 6, 7}, 0, "t[i] selects along dim 0 (0-based)")
T.close(m[-1], lm.tensor{8, 9, 10, 11}, 0, "t[-1] is the last row")
T.is(m[{1, 2}]:item(), 6, "t[{i, j}] selects an element")
T.close(m[{{}, {0, 2}}], lm.tensor{{0, 1}, {4, 5}, {8, 9}}, 0, "t[{{}, {0, 2}}] slices columns 0..1")
T.close(m[{{1}, 3}], lm.tensor{7, 11}, 0, "t[{{1}, 3}]: rows 1.. of column 3")
T.close(m[{{0, 3, 2}}], lm.tensor{{0, 1, 2, 3}, {8, 9, 10, 11}}, 0, "a step in a range")
T.close(m[{{-2}}], lm.tensor{{4, 5, 6, 7}, {8, 9, 10, 11}}, 0, "negative range start")
T.close(m[lm.tensor{2, 0}], lm.tensor{{8, 9, 10, 11}, {0, 1, 2, 3}}, 0, "t[i64 tensor] picks rows")
T.close(m[{{}, lm.tensor{3, 0}}], lm.tensor{{3, 0}, {7, 4}, {11, 8}}, 0, "an index tensor in a dim")
T.close(m[m:gt(8)], lm.tensor{9, 10, 11}, 0, "t[mask] selects elements")
T.errors(function() return m[5] end, "index", "index out of range")
T.errors(function() return m[1.5] end, "not an integer", "non-integer index")
T.errors(function() return m[lm.zeros(2, 2):to("u8")] end, "mask [2,2] does not match tensor [3,4]", "mask shape")
T.errors(function() return m["x"] end, "no field or method 'x'", "string keys are fields")
local a5 = lm.arange(5)
T.close(a5[lm.tensor{-1, 0}], lm.tensor{4, 0}, 0, "negative positions in an index tensor count from the end")
T.close(m[{{}, lm.tensor{-1}}], lm.tensor{{3}, {7}, {11}}, 0, "negative positions in a key's index tensor")
T.close(m[{lm.tensor{2}, {1, 3}}], lm.tensor{{9, 10}}, 0, "a range after the index tensor")
T.close(m[{1, lm.tensor{3, 0}}], lm.tensor{7, 4}, 0, "an integer before the index tensor")
T.errors(function() return a5[lm.tensor{5}] end, "index: index 5 is out of range for dim 0 of size 5",
         "an index tensor out of range names the index and the size")
T.errors(function() return a5[lm.tensor{-6}] end, "index -6 is out of range for dim 0 of size 5",
         "a negative index out of range")
T.errors(function() return m[{{}, lm.tensor{4}}] end, "index 4 is out of range for dim 1 of size 4",
         "out of range in a key names t's dim")
T.errors(function() return m[{lm.tensor{0}, lm.tensor{1}}] end, "a key takes at most one",
         "two index tensors in one key are refused")
T.errors(function() return m[lm.tensor{{0}}] end, "must be 1-D, got shape [1,1]", "a 2-D index tensor")
T.errors(function() return m[{{}, lm.tensor{0.5}}] end, "must be i64, got f32", "a float index tensor in a key")
T.close(m[lm.tensor{true, false, true}], lm.tensor{{0, 1, 2, 3}, {8, 9, 10, 11}}, 0,
        "a mask over the leading dims selects rows")
T.errors(function() return m[lm.tensor{true, false}] end, "mask [2] does not match tensor [3,4]",
         "a leading-dims mask of the wrong size")
local mg = lm.randn(3, 4, {requires_grad = true})
mg[lm.tensor{2, 0, 2}]:sum():backward()
T.close(mg.grad[{{}, 0}], lm.tensor{1.0, 0.0, 2.0}, 0, "t[idx] is differentiable (repeated rows add up)")

-- views share memory; assignment writes through --------------------------------------------------
local z = lm.zeros(3, 4)
z[1] = 5
T.close(z[1], lm.full({4}, 5), 0, "t[i] = number fills the row")
z[{{}, {0, 1}}] = lm.tensor{{1.0}, {2.0}, {3.0}}
T.close(z[{{}, 0}], lm.tensor{1.0, 2.0, 3.0}, 0, "t[range] = tensor copies with broadcasting")
z[{2, 3}] = -1
T.is(z[{2, 3}]:item(), -1.0, "t[{i, j}] = v")
z[z:lt(0)] = 7
T.is(z[{2, 3}]:item(), 7.0, "t[mask] = v (masked_fill)")
z[z:eq(7)] = lm.tensor(8.0)
T.is(z[{2, 3}]:item(), 8.0, "t[mask] = 0-dim tensor")
z[lm.tensor{0, 2}] = 0
T.close(z:sum(), lm.tensor(17.0), 0, "t[index tensor] = v")
local row = z[1]
row[0] = 42
T.is(z[{1, 0}]:item(), 42.0, "t[i] is a view")
T.errors(function() z[0] = "a" end, "value must be a number or a tensor", "bad value type")

-- index tensors and masks in assignments write into t -------------------------------------------
local w1 = lm.zeros(3, 4)
w1[{{}, lm.tensor{2, 0}}] = lm.tensor{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}}
T.close(w1, lm.tensor{{2.0, 0, 1, 0}, {4, 0, 3, 0}, {6, 0, 5, 0}}, 0,
        "t[{{}, idx}] = v writes into t: column idx[j] gets v[{{}, j}]")
w1[{{}, lm.tensor{1}}] = 7
T.close(w1[{{}, 1}], lm.tensor{7.0, 7.0, 7.0}, 0, "t[{{}, idx}] = number fills the selected columns")
w1[{1, lm.tensor{0, 3}}] = lm.tensor{8.0, 9.0}
T.close(w1[1], lm.tensor{8.0, 7.0, 3.0, 9.0}, 0, "t[{i, idx}] = v: an integer before the index tensor")
w1[{lm.tensor{0, 2}, {0, 2}}] = lm.tensor{-1.0, -2.0}
T.close(w1[{{}, {0, 2}}], lm.tensor{{-1.0, -2.0}, {8, 7}, {-1, -2}}, 0,
        "t[{idx, range}] = row broadcasts to every selected row")
local w2 = lm.zeros(3, 2)
w2[lm.tensor{2, 0}] = lm.tensor{{1.0, 2.0}, {3.0, 4.0}}
T.close(w2, lm.tensor{{3.0, 4.0}, {0, 0}, {1, 2}}, 0, "t[idx] = v: row idx[j] gets v[j]")
w2[lm.tensor{1, -1}] = lm.tensor{5.0, 6.0}
T.close(w2, lm.tensor{{3.0, 4.0}, {5, 6}, {5, 6}}, 0, "t[idx] = row: every selected row; negative positions")
w2[lm.tensor{0}] = lm.tensor{{{-1.0, -2.0}}}
T.close(w2[0], lm.tensor{-1.0, -2.0}, 0, "leading size-1 dims of the value are dropped")
w2[lm.tensor{0, 0}] = lm.tensor{{1.0, 1.0}, {2.0, 2.0}}
T.close(w2[0], lm.tensor{2.0, 2.0}, 0, "a repeated index: the last write wins")
w2[lm.tensor{2}] = lm.tensor(9.0)
T.close(w2[2], lm.tensor{9.0, 9.0}, 0, "t[idx] = 0-dim tensor")
T.errors(function() w2[lm.tensor{0, 1}] = lm.tensor{1.0, 2.0, 3.0} end,
         "a value of shape [3] cannot be broadcast to [2,2]", "a value that does not fit the selection")
T.errors(function() w2[lm.tensor{3}] = 0 end, "index 3 is out of range for dim 0 of size 3",
         "out of range on writes")
local w3 = lm.arange(4)
w3[lm.tensor{1, 2, 3}] = w3[{{0, 3}}]
T.close(w3, lm.tensor{0, 0, 1, 2}, 0, "a value that shares t's memory is read before t is written")
local s1 = lm.zeros(2, 3)
s1[lm.tensor{{true, false, true}, {false, true, false}}] = lm.tensor{1.0, 2.0, 3.0}
T.close(s1, lm.tensor{{1.0, 0, 2}, {0, 3, 0}}, 0, "t[mask] = v of count(mask) elements fills them in order")
s1[s1:eq(0)] = lm.tensor{{4.0, 5.0, 6.0}}
T.close(s1, lm.tensor{{1.0, 4, 2}, {5, 3, 6}}, 0, "t[mask] = v of any shape with count(mask) elements")
s1[s1:gt(4)] = lm.tensor{-1.0}
T.close(s1, lm.tensor{{1.0, 4, 2}, {-1, 3, -1}}, 0, "t[mask] = one-element tensor fills")
s1[lm.tensor{false, true}] = lm.tensor{7.0, 8.0, 9.0}
T.close(s1, lm.tensor{{1.0, 4, 2}, {7, 8, 9}}, 0, "a mask over the leading dims writes rows")
s1[lm.tensor{true, true}] = 0
T.close(s1:sum(), lm.tensor(0.0), 0, "a leading-dims mask filled with a number")
s1[s1:gt(0)] = lm.zeros(0)
T.close(s1:sum(), lm.tensor(0.0), 0, "a mask selecting nothing takes an empty value")
T.errors(function() s1[s1:gt(0)] = lm.tensor{1.0, 2.0} end, "cannot be broadcast to [0]",
         "a mask selecting nothing refuses two values, as PyTorch")
T.errors(function() s1[s1:eq(0)] = lm.tensor{1.0, 2.0} end,
         "a value of shape [2] cannot be broadcast to [6], the shape that the mask selects",
         "a value of the wrong size for a mask")
local si = lm.zeros(3, {dtype = "i64"})
si[lm.tensor{true, false, true}] = lm.tensor{5, 6}
T.ok(si:totable()[1] == 5 and si:totable()[3] == 6, "t[mask] = i64 values")
local closed_v = lm.ones(4)
closed_v:free()
T.errors(function() w1[0] = closed_v end, "closed", "a closed value is refused before any view is made")
T.errors(function() w1[{{}, lm.tensor{0}}] = closed_v end, "closed", "a closed value with a table key")
T.errors(function() w1[closed_v] = 1 end, "closed", "a closed key tensor in an assignment")
T.errors(function() return w1[closed_v] end, "closed", "a closed key tensor")
T.errors(function() return w1[{closed_v}] end, "closed", "a closed index tensor in a key")
local leaf_w = lm.zeros(3, {requires_grad = true})
T.errors(function() leaf_w[lm.tensor{0}] = 1 end, "requires grad", "writing into a leaf that requires grad is refused")

-- lengths and counts are range-checked ------------------------------------------------------------
local function with_len(t, n) return setmetatable(t, {__len = function() return n end}) end
T.errors(function() lm.zeros(with_len({2}, -1)) end, "shape has a negative length (-1)", "a shape with __len < 0")
T.errors(function() lm.zeros(with_len({2}, (1 << 32) + 1)) end, "shape has 4294967297 entries; at most 8",
         "a shape whose __len wraps around an int")
T.errors(function() lm.zeros(2, 3):permute(with_len({1, 0}, (1 << 32) + 2)) end, "dims has 4294967298 entries",
         "a dims table whose __len wraps around an int")
T.errors(function() lm.tensor(with_len({1}, -3)) end, "negative length (-3)", "lm.tensor of a table with __len < 0")
T.errors(function() lm.tensor(with_len({1}, 1 << 40)) end, "entries; at most", "lm.tensor of a huge __len")
T.errors(function() lm.tensor(with_len({with_len({1}, 1 << 30)}, 1 << 30)) end, "too many elements",
         "lm.tensor: an element count that would overflow")
T.errors(function() return m[with_len({0}, -1)] end, "negative length", "an index key with __len < 0")

-- arithmetic metamethods ------------------------------------------------------------------------
local v = lm.tensor{1.0, 2.0, 4.0}
T.close(v + 1, lm.tensor{2.0, 3.0, 5.0}, 0, "t + n")
T.close(1 + v, lm.tensor{2.0, 3.0, 5.0}, 0, "n + t")
T.close(10 - v, lm.tensor{9.0, 8.0, 6.0}, 0, "n - t")
T.close(8 / v, lm.tensor{8.0, 4.0, 2.0}, 0, "n / t")
T.close(2 ^ v, lm.tensor{2.0, 4.0, 16.0}, 0, "n ^ t")
T.close(v ^ 2, lm.tensor{1.0, 4.0, 16.0}, 0, "t ^ n")
T.close(-v * v, lm.tensor{-1.0, -4.0, -16.0}, 0, "-t * t")
T.ok(v:lt(2):eq(lm.tensor{1, 0, 0}):all(), "comparisons are methods returning u8")
T.ok(v == v and v ~= lm.tensor{1.0, 2.0, 4.0}, "== stays identity")
local iv = lm.tensor{1, 2}
T.is((iv + 2).dtype, "i64", "i64 tensor + Lua integer stays i64")
T.is((iv + 2.0).dtype, "f32", "i64 tensor + Lua float gives f32 (as a Python float in PyTorch)")
T.close(2.5 * iv, lm.tensor{2.5, 5.0}, 0, "Lua float * i64 tensor")
T.is((iv / 2).dtype, "f32", "division is true division")

-- gradients through the metatable ------------------------------------------------------------------
local w = lm.randn(3, 4, {requires_grad = true})
local y = (w * 2):sum()
y:backward()
T.close(w.grad, lm.full({3, 4}, 2.0), 0, "x.grad after backward")
T.ok(w.is_leaf and w.requires_grad and not y.is_leaf, "is_leaf and requires_grad fields")
w.grad = nil
T.ok(w.grad == nil, "t.grad = nil clears the gradient")
T.errors(function() w.grad = lm.zeros(2) end, "[2]", "a gradient of the wrong shape is refused")
local q = lm.zeros(2)
q.requires_grad = true
T.ok(q.requires_grad, "requires_grad is settable")

-- lifetime ---------------------------------------------------------------------------------------
do
  local c <close> = lm.ones(4)
  T.is(c:numel(), 4, "<close> tensor usable in its scope")
  c:free()
  T.errors(function() return c:numel() end, "closed", "a closed tensor gives a clear error")
  T.is(tostring(c), "tensor(<closed>)", "tostring of a closed tensor")
end -- __close on an already freed tensor must be harmless

-- errors keep every object usable -------------------------------------------------------------------
local ok1 = pcall(function() return lm.zeros(2, 3):matmul(lm.zeros(4, 5)) end)
T.ok(not ok1, "matmul shape mismatch raises")
T.errors(function() return lm.zeros(64, 10) + lm.zeros(32, 10) end, "[64,10] and [32,10]",
         "a broadcast error names both shapes")
T.is((w * 1):numel(), 12, "objects stay usable after an error")
T.errors(function() return lm.zeros(2) + "x" end, "bad argument", "wrong argument type")

-- the collector sees tensor memory ------------------------------------------------------------------
local function rss_mb()
  local fh = io.open("/proc/self/status")
  if not fh then return nil end
  local txt = fh:read("a")
  fh:close()
  local kb = txt:match("VmRSS:%s*(%d+)")
  return kb and tonumber(kb) / 1024
end
local peak = 0
-- Under valgrind (make valgrind) the loop is shortened: there it checks leaks, not pacing.
local rounds = os.getenv("LUMEN_UNDER_VALGRIND") and 2000 or 100000
for i = 1, rounds do
  local t = lm.ones(262144) -- 1 MiB of f32, written
  if i % 1000 == 0 then peak = math.max(peak, rss_mb() or 0) end
end
T.diag(string.format("peak RSS over %d temporary 1 MiB tensors: %.0f MB", rounds, peak))
T.ok(peak > 0 and peak < 200, rounds .. " temporary 1 MiB tensors stay under 200 MB resident")

-- Ops that save their output for backward (relu, tanh) share its storage with the graph: the
-- collector must still count it.
local leaf = lm.randn(256, 256, {requires_grad = true})
local before = rss_mb() or 0
for _ = 1, 600 do local r1, r2 = lm.relu(leaf), lm.tanh(leaf) end
local grown = (rss_mb() or 0) - before
T.diag(string.format("RSS growth over 600 relu+tanh of a [256,256] leaf: %.0f MB", grown))
T.ok(grown < 50, "outputs saved for backward are counted for the collector too")

-- files: argument handling ------------------------------------------------------------------------
local st_path = os.tmpname()
lm.safetensors_save(st_path, {"a", "b"}, {lm.ones(2), lm.tensor{1, 2}})
local st_names, st_tensors, st_meta = lm.safetensors_load(st_path)
T.ok(#st_names == 2 and st_tensors[2]:totable()[2] == 2 and next(st_meta) == nil,
     "safetensors_save without metadata")
lm.safetensors_save(st_path, {"a"}, {lm.ones(1)}, {epoch = "3"})
T.is(select(3, lm.safetensors_load(st_path)).epoch, "3", "safetensors_save with metadata")
T.errors(function() lm.safetensors_save(st_path, {"a"}, {closed_v}) end, "tensor 'a' (1) was closed",
         "safetensors_save names a closed tensor as closed")
T.errors(function() lm.safetensors_save(st_path, {"a"}, {lm.ones(1)}, "x") end, "metadata must be a table",
         "safetensors_save: bad metadata")
T.errors(function() lm.safetensors_save(st_path, with_len({"a"}, -1), {}) end, "names has a negative length",
         "safetensors_save: a names table with __len < 0")
T.errors(function() lm.safetensors_save(st_path, {"a"}, with_len({lm.ones(1)}, (1 << 32) + 1)) end,
         "tensors has 4294967297 entries", "safetensors_save: a tensors table whose __len wraps")
os.remove(st_path)
local csv_path = os.tmpname()
local fh = assert(io.open(csv_path, "w"))
fh:write("x;y\n1;2\n3;4\n")
fh:close()
local csv, cols = lm.load_csv(csv_path, {delimiter = ";"})
T.ok(csv:sum():item() == 10 and cols[2] == "y", "load_csv with options")
T.errors(function() lm.load_csv(csv_path, {delimeter = ";"}) end,
         "unknown option 'delimeter'; takes header, delimiter, dtype", "load_csv refuses an unknown option")
os.remove(csv_path)

-- misc ------------------------------------------------------------------------------------------
T.ok(type(lm.isatty(1)) == "boolean", "isatty")
local p1, p2 = lm.randperm(10, {seed = 3}), lm.randperm(10, {seed = 3})
T.ok(p1:eq(p2):all(), "randperm with a seed is reproducible")
local seen = {}
for _, k in ipairs(p1:totable()) do seen[k] = true end
local all = true
for k = 0, 9 do all = all and seen[k] end
T.ok(all and p1.dtype == "i64", "randperm is a permutation of 0..n-1")
T.ok(not lm.randperm(50):eq(lm.randperm(50)):all(), "randperm without a seed draws from the RNG")
T.errors(function() lm.randperm(5, {sed = 1}) end, "unknown option 'sed'; takes seed", "randperm refuses an unknown option")
lm.manual_seed(5); local r1 = lm.randperm(20)
lm.manual_seed(5); local r2 = lm.randperm(20)
T.ok(r1:eq(r2):all(), "randperm follows manual_seed")

T.done()
