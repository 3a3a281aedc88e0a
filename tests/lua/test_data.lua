-- test_data.lua: lumen.data — the Dataset protocol, TensorDataset, Subset, ConcatDataset,
-- random_split, DataLoader order/shuffling/determinism, MNIST and Fashion-MNIST loaders on the
-- real files, CSV, transforms, and the errors for bad calls.
local T = require "tap"
local lm = require "lumen"
local class = require "lumen.class"
local data = lm.data

T.plan_auto()

local function tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p '" .. path .. "'"))
  return path
end

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Sample positions of a label tensor built as arange: the values are the sample numbers - 1.
local function values(t)
  return t:totable()
end

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- ---- TensorDataset ------------------------------------------------------------------------

local x = lm.arange(0, 20, {dtype = "f32"}):view(10, 2)
local y = lm.arange(0, 10, {dtype = "i64"})
local ds = data.TensorDataset(x, y)
T.is(#ds, 10, "TensorDataset: #ds is the size of dim 0")
local s = ds[3]
T.is(#s, 2, "TensorDataset: a sample is a sequence {x, y}")
T.close(s[1], lm.tensor{4, 5}, 0, "TensorDataset: ds[3] is row 2 (datasets are 1-based)")
T.is(s[2]:item(), 2, "TensorDataset: label of ds[3]")
T.is(ds.foo, nil, "TensorDataset: a missing field is nil, not an error")
T.errors(function() return ds[0] end, "index 0 out of range [1, 10]", "TensorDataset: ds[0] errors")
T.errors(function() return ds[11] end, "index 11 out of range", "TensorDataset: ds[#ds+1] errors")
T.errors(function() data.TensorDataset(x, lm.zeros(9)) end,
  "tensor 1 has shape [10,2], tensor 2 has shape [9]",
  "TensorDataset: size mismatch names both shapes")
T.errors(function() data.TensorDataset(x, 3) end, "argument 2 must be a tensor",
  "TensorDataset: a non-tensor argument")
T.errors(function() data.TensorDataset() end, "at least one tensor", "TensorDataset: no tensors")
T.ok(data.is_tensor_backed(ds), "TensorDataset is tensor-backed")
T.ok(tostring(ds):find("TensorDataset(10 samples", 1, true) ~= nil, "TensorDataset: tostring")

-- ---- DataLoader without shuffle -----------------------------------------------------------

local loader = data.DataLoader(ds, {batch_size = 4})
T.is(#loader, 3, "DataLoader: #loader = ceil(10/4)")
local sizes, ok_slices = {}, true
for i, xb, yb in loader:batches() do
  sizes[i] = xb.shape[1]
  local start = (i - 1) * 4
  local len = math.min(4, 10 - start)
  local want = x:narrow(0, start, len)
  if xb:sub(want):abs():max():item() ~= 0 then ok_slices = false end
  if not same_list(values(yb), values(y:narrow(0, start, len))) then ok_slices = false end
end
T.ok(ok_slices, "DataLoader: without shuffle, batches are consecutive slices")
T.ok(same_list(sizes, {4, 4, 2}), "DataLoader: the last batch is partial (4, 4, 2)")

local dl = data.DataLoader(ds, {batch_size = 4, drop_last = true})
T.is(#dl, 2, "DataLoader: drop_last gives floor(10/4) batches")
local count = 0
for _, xb in dl:batches() do count = count + xb.shape[1] end
T.is(count, 8, "DataLoader: drop_last drops the partial batch")

local held
for i, xb in data.DataLoader(ds, {batch_size = 5}):batches() do
  if i == 1 then held = xb end
end
T.close(held, x:narrow(0, 0, 5), 0, "DataLoader: a batch stays valid after later batches")
held[0][0] = 99
T.is(x[0][0]:item(), 0, "DataLoader: batches are copies, not views of the dataset")

local one = data.DataLoader(ds)
T.is(#one, 10, "DataLoader: batch_size defaults to 1")

-- ---- shuffling ----------------------------------------------------------------------------

local big = data.TensorDataset(lm.arange(0, 100, {dtype = "i64"}))
local function epoch_order(l)
  local out = {}
  for _, b in l:batches() do
    for _, v in ipairs(b:totable()) do out[#out + 1] = v end
  end
  return out
end

local la = data.DataLoader(big, {batch_size = 16, shuffle = true, seed = 42})
local lb = data.DataLoader(big, {batch_size = 16, shuffle = true, seed = 42})
local a1, a2 = epoch_order(la), epoch_order(la)
local b1, b2 = epoch_order(lb), epoch_order(lb)
T.ok(same_list(a1, b1) and same_list(a2, b2), "shuffle: same seed, same order in every epoch")
T.ok(not same_list(a1, a2), "shuffle: a new permutation each epoch")
local sorted_in_order = true
for i = 1, #a1 do if a1[i] ~= i - 1 then sorted_in_order = false end end
T.ok(not sorted_in_order, "shuffle: the order is not the dataset order")
local function each_once(list, n)
  if #list ~= n then return false end
  local seen = {}
  for _, v in ipairs(list) do
    if seen[v] or v < 0 or v >= n then return false end
    seen[v] = true
  end
  return true
end
T.ok(each_once(a1, 100) and each_once(a2, 100), "shuffle: every sample exactly once per epoch")
T.is(la.epoch, 2, "shuffle: loader.epoch counts the epochs begun")

local lc = data.DataLoader(big, {batch_size = 16, shuffle = true, seed = 42})
lc.epoch = 1
T.ok(same_list(epoch_order(lc), a2), "shuffle: setting loader.epoch resumes at that epoch's order")
local ld = data.DataLoader(big, {batch_size = 16, shuffle = true, seed = 43})
T.ok(not same_list(epoch_order(ld), a1), "shuffle: another seed, another order")

lm.manual_seed(7)
local g1 = epoch_order(data.DataLoader(big, {batch_size = 32, shuffle = true}))
lm.manual_seed(7)
local g2 = epoch_order(data.DataLoader(big, {batch_size = 32, shuffle = true}))
local g3 = epoch_order(data.DataLoader(big, {batch_size = 32, shuffle = true}))
T.ok(same_list(g1, g2), "shuffle without seed: follows lm.manual_seed")
T.ok(not same_list(g2, g3) and each_once(g3, 100),
  "shuffle without seed: advances the global generator")

-- ---- Subset, random_split, ConcatDataset --------------------------------------------------

local sub = data.Subset(ds, {2, 4, 6})
T.is(#sub, 3, "Subset: length")
T.is(sub[2][2]:item(), 3, "Subset: sub[2] is ds[4]")
T.ok(data.is_tensor_backed(sub), "Subset of a TensorDataset stays tensor-backed")
local got = {}
for _, _, yb in data.DataLoader(sub, {batch_size = 2}):batches() do
  for _, v in ipairs(yb:totable()) do got[#got + 1] = v end
end
T.ok(same_list(got, {1, 3, 5}), "Subset: batches gather through the composed index")
T.errors(function() data.Subset(ds, {0}) end, "indices[1] = 0 is not a sample number in [1, 10]",
  "Subset: 1-based indices checked")
T.errors(function() data.Subset(ds, lm.tensor({10}, {dtype = "i64"})) end,
  "outside [0, 10)", "Subset: 0-based index tensor checked")

local p1, p2, p3 = data.random_split(big, {50, 30, 20}, {seed = 3})
T.ok(#p1 == 50 and #p2 == 30 and #p3 == 20, "random_split: sizes")
local all = {}
for _, part in ipairs{p1, p2, p3} do
  for _, v in ipairs(part.index:totable()) do all[#all + 1] = v end
end
T.ok(each_once(all, 100), "random_split: parts are disjoint and cover the dataset")
local q1 = data.random_split(big, {50, 30, 20}, {seed = 3})
T.ok(same_list(q1.index:totable(), p1.index:totable()), "random_split: a seed fixes the split")
local f1, f2 = data.random_split(big, {0.75, 0.25}, {seed = 1})
T.ok(#f1 == 75 and #f2 == 25, "random_split: fractions")
local r1, r2, r3 = data.random_split(data.TensorDataset(lm.zeros(10)), {0.34, 0.33, 0.33})
T.ok(#r1 == 4 and #r2 == 3 and #r3 == 3, "random_split: remainder goes to the first parts")
T.errors(function() data.random_split(big, {50, 40}) end,
  "lengths sum to 90 but the dataset has 100",
  "random_split: wrong total")
T.errors(function() data.random_split(big, {0.5, 0.4}) end, "fractions sum to 0.9",
  "random_split: fractions not summing to 1")

local cat = data.ConcatDataset{data.TensorDataset(lm.tensor({1, 2}, {dtype = "i64"})),
                               data.TensorDataset(lm.tensor({3, 4, 5}, {dtype = "i64"}))}
T.is(#cat, 5, "ConcatDataset: length is the sum")
T.is(cat[3][1]:item(), 3, "ConcatDataset: cat[3] is the second part's first sample")
local cat_all = {}
for _, b in data.DataLoader(cat, {batch_size = 2}):batches() do
  for _, v in ipairs(b:totable()) do cat_all[#cat_all + 1] = v end
end
T.ok(same_list(cat_all, {1, 2, 3, 4, 5}), "ConcatDataset: through a DataLoader")

-- ---- user-defined datasets ----------------------------------------------------------------

local Squares = class("Squares", data.Dataset)
function Squares:__init(n) self.n = n end
function Squares:__len() return self.n end
function Squares:__getitem(i)
  if type(i) ~= "number" then return nil end
  return {lm.tensor{i, -i}, i * i}
end
local sq = Squares(7)
T.ok(not data.is_tensor_backed(sq), "user Dataset: not tensor-backed")
local sq_loader = data.DataLoader(sq, {batch_size = 3})
local seen_x, seen_y, shapes = {}, {}, {}
for i, xb, yb in sq_loader:batches() do
  shapes[i] = table.concat(xb.shape, "x")
  for _, row in ipairs(xb:totable()) do seen_x[#seen_x + 1] = row[1] end
  for _, v in ipairs(yb:totable()) do seen_y[#seen_y + 1] = v end
  if i == 1 then T.is(yb.dtype, "i64", "user Dataset: integer fields collate to i64") end
end
T.ok(same_list(shapes, {"3x2", "3x2", "1x2"}), "user Dataset: tensors are stacked per batch")
T.ok(same_list(seen_x, {1, 2, 3, 4, 5, 6, 7}) and same_list(seen_y, {1, 4, 9, 16, 25, 36, 49}),
  "user Dataset: samples in order")
local shuffled = {}
for _, xb in data.DataLoader(sq, {batch_size = 2, shuffle = true, seed = 5}):batches() do
  for _, row in ipairs(xb:totable()) do shuffled[#shuffled + 1] = row[1] - 1 end
end
T.ok(each_once(shuffled, 7), "user Dataset: shuffled, each sample once")

local plain = {{lm.tensor{1}, 0.5}, {lm.tensor{2}, 1.5}}
for _, xb, yb in data.DataLoader(plain, {batch_size = 2}):batches() do
  T.ok(xb.shape[1] == 2 and yb.dtype == "f32", "a plain Lua sequence of samples is a dataset")
end

local Broken = class("Broken", data.Dataset)
function Broken:__len() return 2 end
function Broken:__getitem(i)
  if type(i) ~= "number" then return nil end
  if i == 1 then return {lm.zeros(2), 1} end
  return {lm.zeros(2)}
end
T.errors(function()
  for _ in data.DataLoader(Broken(), {batch_size = 2}):batches() do end
end, "sample 2 has 1 fields, earlier samples have 2", "DataLoader: inconsistent samples")
local Mixed = class("Mixed", data.Dataset)
function Mixed:__len() return 2 end
function Mixed:__getitem(i)
  if type(i) ~= "number" then return nil end
  return {i == 1 and lm.zeros(2) or lm.zeros(3)}
end
T.errors(function()
  for _ in data.DataLoader(Mixed(), {batch_size = 2}):batches() do end
end, "cannot stack field 1", "DataLoader: unstackable shapes")

T.errors(function() data.DataLoader(ds, {batch_size = 0}) end,
  "batch_size must be a positive integer, got 0", "DataLoader: bad batch_size")
T.errors(function() data.DataLoader(ds, {seed = 1.5}) end, "seed must be an integer",
  "DataLoader: bad seed")
T.errors(function() data.DataLoader(42) end, "expected a dataset", "DataLoader: not a dataset")
local rows = {}
for i, b in data.DataLoader(lm.arange(0, 5, {dtype = "i64"}), {batch_size = 2}):batches() do
  rows[i] = table.concat(b:totable(), " ")
end
T.is(table.concat(rows, ","), "0 1,2 3,4", "DataLoader: a bare tensor is a dataset of its rows")
T.errors(function() data.Subset(lm.zeros(4), {1}) end, "wrap it as TensorDataset(x)",
  "Subset: a bare tensor is refused with a hint")
T.errors(function() return ds[1.5] end, "sample index must be an integer, got 1.5",
  "TensorDataset: fractional index")
T.is(ds[2.0][2]:item(), 1, "TensorDataset: an integral float index is accepted")

-- ---- transforms ---------------------------------------------------------------------------

local TF = data.transforms
local img = lm.tensor{{{{1, 2}, {3, 4}}, {{10, 20}, {30, 40}}}}   -- [1, 2, 2, 2]
local norm = TF.Normalize({1, 10}, {2, 5})
T.close(norm(img), lm.tensor{{{{0, 0.5}, {1, 1.5}}, {{0, 2}, {4, 6}}}}, 1e-6,
  "Normalize: per channel along dim 1")
T.close(TF.Normalize(0.5, 0.25)(lm.tensor{{0.5, 1}}), lm.tensor{{0, 2}}, 1e-6,
  "Normalize: one mean/std for every channel")
local u8 = lm.tensor({{0, 255}}, {dtype = "u8"})
T.is(TF.Normalize(0, 255)(u8).dtype, "f32", "Normalize: u8 batches become f32")
T.errors(function() norm(lm.zeros(1, 3, 2, 2)) end,
  "2 channels of mean/std for a batch of shape [1,3,2,2]",
  "Normalize: channel count mismatch")
T.errors(function() TF.Normalize({0}, {0}) end, "every std must be positive", "Normalize: zero std")
local composed = TF.Compose{TF.Normalize(1, 2), TF.Lambda(function(t) return t * 10 end)}
T.close(composed(lm.tensor{{3}}), lm.tensor{{10}}, 1e-6, "Compose: applies in order")

local feats = lm.tensor{{1, 100}, {3, 100}, {5, 100}, {7, 100}}
local fds = data.TensorDataset(feats, lm.zeros(4))
local st = TF.standardize(fds, {batch_size = 3})
T.close(st.mean, lm.tensor({4, 100}, {dtype = "f64"}), 1e-12, "standardize: per-feature mean")
T.close(st.std, lm.tensor({math.sqrt(5), 1}, {dtype = "f64"}), 1e-12,
  "standardize: population std; a constant feature gets 1")
local tl = data.DataLoader(fds, {batch_size = 4, transform = st})
for _, xb in tl:batches() do
  T.close(xb:mean(0), lm.tensor{0, 0}, 1e-6, "DataLoader transform: the whole batch normalised")
end
local tt = data.DataLoader(fds, {batch_size = 2, target_transform = function(t) return t + 1 end})
for _, _, yb in tt:batches() do T.close(yb, lm.tensor{1, 1}, 0,
  "DataLoader: target_transform") break end
T.errors(function() data.DataLoader(fds, {transform = 3}) end, "transform must be a function",
  "DataLoader: bad transform")
T.errors(function() TF.Compose{TF.Normalize(0, 1), 3} end, "transform 2 is a number, not callable",
  "Compose: a non-callable transform")

-- Errors found deep inside the library (class.lua's __index, the dataset, the loader) are
-- reported at the user's line.
do
  local script = arg[0]:match("[^/]+$")
  local line = debug.getinfo(1, "l").currentline + 1
  local ok, err = pcall(function() return ds[0] end)
  T.ok(not ok and tostring(err):find(script .. ":" .. line .. ": TensorDataset", 1, true) ~= nil,
    "ds[0]: the error names the user's line")
  line = debug.getinfo(1, "l").currentline + 1
  ok, err = pcall(function() local _ = data.DataLoader(fds, {batch_size = 0}) end)
  T.ok(not ok and tostring(err):find(script .. ":" .. line .. ": DataLoader", 1, true) ~= nil,
    "DataLoader: the error names the user's line")
end

-- ---- CSV ----------------------------------------------------------------------------------

local dir = tmpdir()
local csv_path = dir .. "/iris.csv"
write_file(csv_path, "len,width,species\n1.5,0.25,0\n2,0.5,1\n3.25,1,2\n4,2,1\n")
local cds = data.csv(csv_path, {target = "species", classification = true})
T.is(#cds, 4, "csv: one sample per row")
T.close(cds.tensors[1], lm.tensor{{1.5, 0.25}, {2, 0.5}, {3.25, 1}, {4, 2}}, 0,
  "csv: features are the other columns")
T.ok(cds.tensors[2].dtype == "i64" and same_list(cds.tensors[2]:totable(), {0, 1, 2, 1}),
  "csv: classification target as i64")
T.ok(same_list(cds.feature_names, {"len", "width"}), "csv: feature names from the header")
local rds = data.csv(csv_path, {target = 0})
T.close(rds.tensors[2], lm.tensor{1.5, 2, 3.25, 4}, 0, "csv: target by 0-based position, f32")
T.close(rds.tensors[1][0], lm.tensor{0.25, 0}, 0, "csv: features without the target column")
local semi = dir .. "/semi.csv"
write_file(semi, "1;2;3\n4;5;6\n")
local sds = data.csv(semi, {header = false, delimiter = ";"})
T.close(sds.tensors[2], lm.tensor{3, 6}, 0, "csv: no header, target defaults to the last column")
T.errors(function() data.csv(csv_path, {target = "colour"}) end, "no column \"colour\"",
  "csv: unknown target column")
T.errors(function() data.csv(rds and csv_path, {target = 3}) end, "target column 3 out of range",
  "csv: target position out of range")
T.errors(function() data.csv(dir .. "/missing.csv") end, dir .. "/missing.csv",
  "csv: a missing file names the path")
write_file(dir .. "/frac.csv", "a,b\n1,0.5\n")
T.errors(function() data.csv(dir .. "/frac.csv", {classification = true}) end, "not whole numbers",
  "csv: classification needs whole-number labels")

-- ---- MNIST and Fashion-MNIST ----------------------------------------------------------------

-- Run from the source root (as meson does): the shared data sits next to the checkout.
local mnist_dir = os.getenv("LUMEN_MNIST_DIR") or "../shared/data/mnist"
if exists(mnist_dir .. "/train-labels-idx1-ubyte.gz") then
  local raw = data.mnist(mnist_dir, "train", {raw = true})
  local mx, my = raw.tensors[1], raw.tensors[2]
  T.is(table.concat(mx.shape, ","), "60000,784", "mnist train: x shape [60000,784] (flat rows by default)")
  T.ok(mx.dtype == "u8" and my.dtype == "i64", "mnist raw: x u8, y i64")
  T.ok(same_list(my:narrow(0, 0, 5):totable(), {5, 0, 4, 1, 9}),
    "mnist train: first labels 5 0 4 1 9")
  local test = data.mnist(mnist_dir, "test")
  local tx = test.tensors[1]
  T.ok(#test == 10000 and tx.dtype == "f32", "mnist test: 10000 f32 images")
  T.ok(tx:min():item() == 0 and tx:max():item() == 1, "mnist: pixels scaled to [0, 1]")
  T.is(test.tensors[2]:max():item(), 9, "mnist: labels 0..9")
  local img = data.mnist(mnist_dir, "test", {flat = false})
  T.ok(table.concat(img.tensors[1].shape, ",") == "10000,1,28,28" and
    img.tensors[1][5]:reshape(784):sub(tx[5]):abs():max():item() == 0,
    "mnist: {flat = false} gives [N,1,28,28] images")
  local copy = tmpdir()
  assert(os.execute(string.format("gunzip -c '%s/t10k-labels-idx1-ubyte.gz' > " ..
    "'%s/t10k-labels-idx1-ubyte'" ..
    " && cp '%s/t10k-images-idx3-ubyte.gz' '%s/'", mnist_dir, copy, mnist_dir, copy)))
  local mixed = data.mnist(copy, "test")
  T.ok(#mixed == 10000 and same_list(mixed.tensors[2]:narrow(0, 0, 3):totable(),
    test.tensors[2]:narrow(0, 0, 3):totable()), "mnist: plain (not gzipped) files are read too")
  os.execute("rm -rf '" .. copy .. "'")
else
  for _ = 1, 8 do T.skip("no MNIST files in " .. mnist_dir, "mnist") end
end
T.errors(function() data.mnist(dir, "train") end, dir .. "/train-images-idx3-ubyte",
  "mnist: a missing file names the path")
T.errors(function() data.mnist(mnist_dir, "valid") end, "split must be \"train\" or \"test\"",
  "mnist: bad split")

if exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") then
  local fm = data.fashion_mnist(nil, "test")
  T.ok(#fm == 10000 and table.concat(fm.tensors[1].shape, ",") == "10000,784",
    "fashion_mnist: Debian's copy by default, [10000,784]")
  T.is(fm.classes[fm.tensors[2][0]:item() + 1], "Ankle boot",
    "fashion_mnist: first test label names")
else
  T.skip("dataset-fashion-mnist not installed", "fashion_mnist default path")
  T.skip("dataset-fashion-mnist not installed", "fashion_mnist classes")
end

os.execute("rm -rf '" .. dir .. "'")
T.done()
