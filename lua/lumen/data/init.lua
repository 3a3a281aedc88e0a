-- lumen.data (lm.data): datasets, the DataLoader, file loaders and batch transforms.
--
--   local train = data.mnist("../shared/data/mnist", "train")      -- TensorDataset (x, y)
--   local loader = data.DataLoader(train, {batch_size = 64, shuffle = true, seed = 1})
--   for i, xb, yb in loader:batches() do ... end                   -- i = 1..#loader
--   local a, b = data.random_split(train, {0.9, 0.1}, {seed = 0})
--
-- Indexing: a dataset is a Lua collection, so ds[i] counts from 1 (i = 1..#ds); anything that
-- addresses a tensor (gather's index, class labels, CSV column positions) counts from 0.
-- See lumen.data.dataset for the Dataset protocol.
local dataset = require "lumen.data.dataset"
local mnist = require "lumen.data.mnist"

local M = {
  Dataset = dataset.Dataset,
  TensorDataset = dataset.TensorDataset,
  Subset = dataset.Subset,
  ConcatDataset = dataset.ConcatDataset,
  random_split = dataset.random_split,
  is_tensor_backed = dataset.is_tensor_backed,
  DataLoader = require "lumen.data.loader",
  mnist = mnist.mnist,
  fashion_mnist = mnist.fashion_mnist,
  FASHION_MNIST_DIR = mnist.FASHION_MNIST_DIR,
  csv = require("lumen.data.csv").csv,
  transforms = require "lumen.data.transforms",
}

return M
