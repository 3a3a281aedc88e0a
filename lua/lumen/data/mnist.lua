-- lumen.data.mnist: MNIST and Fashion-MNIST from their IDX files, as TensorDatasets.
--
--   local train = data.mnist("../shared/data/mnist", "train")   -- 60000 samples
--   local test = data.fashion_mnist(nil, "test")                -- Debian's copy, 10000 samples
--   local x, y = train.tensors[1], train.tensors[2]            -- [N,784] f32, [N] i64
--
-- Files: train-images-idx3-ubyte / train-labels-idx1-ubyte (split "train") and t10k-* (split
-- "test"), gzipped (.gz) or not; the older dotted names (train-images.idx3-ubyte) are accepted too.
-- Images become f32 in [0, 1] (pixel / 255), or stay u8 with {raw = true}. They come as [N, 784]
-- rows, so DESIGN.md's `model:fit(data.mnist(...), ...)` feeds an MLP as written; {flat = false}
-- gives [N, 1, 28, 28] images for convolutions. Labels are i64 0..9.
local lm = require "lumen.core"
local dataset = require "lumen.data.dataset"

local M = {}

local raise = require("lumen.util").raise

-- Debian's dataset-fashion-mnist package.
M.FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

M.FASHION_MNIST_CLASSES = {
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

local PREFIX = {train = "train", test = "t10k"}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- The first existing file among the spellings of one IDX file in dir.
local function find_file(fname, dir, prefix, kind)
  local names = {
    prefix .. "-" .. kind, prefix .. "-" .. kind .. ".gz",
    prefix .. "-" .. kind:gsub("%-", ".", 1), prefix .. "-" .. kind:gsub("%-", ".", 1) .. ".gz",
  }
  for _, name in ipairs(names) do
    local path = dir .. "/" .. name
    if exists(path) then return path end
  end
  raise(string.format("%s: no %s file in %s (looked for %s and %s)", fname, kind,
    dir, dir .. "/" .. names[1], names[2]))
end

-- lm.load_idx with the engine's message (which names the path) raised at the caller's caller.
local function read_idx(fname, path)
  local ok, t = pcall(lm.load_idx, path)
  if not ok then raise(fname .. ": " .. tostring(t):gsub("^[^:]*:%d+: ", "")) end
  return t
end

local function load(fname, dir, split, opts)
  if type(dir) ~= "string" then
    raise(string.format("%s: dir must be a path string, got %s", fname, type(dir)))
  end
  local prefix = PREFIX[split or "train"]
  if not prefix then
    raise(string.format("%s: split must be \"train\" or \"test\", got %s", fname,
      tostring(split)))
  end
  opts = opts or {}
  dir = dir:gsub("/+$", "")
  local images_path = find_file(fname, dir, prefix, "images-idx3-ubyte")
  local labels_path = find_file(fname, dir, prefix, "labels-idx1-ubyte")
  local images = read_idx(fname, images_path)
  local labels = read_idx(fname, labels_path)
  if images.ndim ~= 3 or images.dtype ~= "u8" then
    raise(string.format("%s: %s holds a %s tensor of %d dims, expected u8 [N,H,W]", fname,
      images_path, images.dtype, images.ndim))
  end
  if labels.ndim ~= 1 or labels.shape[1] ~= images.shape[1] then
    raise(string.format("%s: %s holds %s labels for %d images in %s", fname, labels_path,
      table.concat(labels.shape, "x"), images.shape[1], images_path))
  end
  local n, h, w = images.shape[1], images.shape[2], images.shape[3]
  local x = opts.flat == false and images:view(n, 1, h, w) or images:view(n, h * w)
  if not opts.raw then x = x:to("f32"):div_(255) end
  return dataset.TensorDataset(x, labels:to("i64"))
end

-- data.mnist(dir, split = "train", {raw = false, flat = true}) -> TensorDataset (x, y).
function M.mnist(dir, split, opts)
  return load("mnist", dir, split, opts)
end

-- data.fashion_mnist(dir = Debian's path, split = "train", opts as mnist) -> TensorDataset (x, y),
-- with ds.classes the class names (ds.classes[y + 1] names label y).
function M.fashion_mnist(dir, split, opts)
  local ds = load("fashion_mnist", dir or M.FASHION_MNIST_DIR, split, opts)
  ds.classes = M.FASHION_MNIST_CLASSES
  return ds
end

return M
