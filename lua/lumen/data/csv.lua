-- lumen.data.csv: a numeric CSV file as a TensorDataset (features, target).
--
--   local ds = data.csv("iris.csv", {target = "species", classification = true})
--   local ds = data.csv("points.csv", {target = -1, header = false})   -- the last column
--
-- Options: target (a column name from the header, or a 0-based column position as for tensor
-- columns, negative counting from the end; default the last column), header (true),
-- delimiter (","), dtype of the features ("f32"), classification (false: the target is f32 [N];
-- true: i64 class labels [N], which must be whole numbers). ds.columns is the header's names
-- (a Lua sequence), ds.feature_names those of the feature columns.
local lm = require "lumen.core"
local dataset = require "lumen.data.dataset"

local M = {}

local raise = require("lumen.util").raise

-- The 0-based position of the target column among ncols.
local function target_column(path, target, names, ncols)
  if target == nil then return ncols - 1 end
  if type(target) == "string" then
    if not names then
      raise(string.format("data.csv: target %q is a column name but %s is read without a header",
        target, path))
    end
    for k, name in ipairs(names) do
      if name == target then return k - 1 end
    end
    raise(string.format("data.csv: no column %q in %s (columns: %s)", target, path,
      table.concat(names, ", ")))
  end
  if math.type(target) ~= "integer" then
    raise("data.csv: target must be a column name or an integer position, got " ..
      tostring(target))
  end
  local c = target < 0 and ncols + target or target
  if c < 0 or c >= ncols then
    raise(string.format("data.csv: target column %d out of range for %d columns in %s " ..
      "(positions are 0-based)", target, ncols, path))
  end
  return c
end

-- data.csv(path, opts) -> TensorDataset (features [N, cols-1], target [N]).
function M.csv(path, opts)
  if type(path) ~= "string" then
    raise("data.csv: path must be a string, got " .. type(path))
  end
  opts = opts or {}
  local header = opts.header ~= false
  local dtype = opts.dtype or "f32"
  local ok, tab, names = pcall(lm.load_csv, path, {header = header,
                                                   delimiter = opts.delimiter or ",",
                                                   dtype = dtype})
  if not ok then
    -- The engine's message names the path; drop the position inside this file.
    raise("data.csv: " .. tostring(tab):gsub("^[^:]*:%d+: ", ""))
  end
  if tab.ndim ~= 2 or tab.shape[2] < 2 then
    raise(string.format("data.csv: %s has %d column(s); a features + target set needs 2 or more",
      path, tab.ndim == 2 and tab.shape[2] or 0))
  end
  local ncols = tab.shape[2]
  local c = target_column(path, opts.target, header and names or nil, ncols)
  local keep = {}
  for k = 0, ncols - 1 do
    if k ~= c then keep[#keep + 1] = k end
  end
  local features = tab:index_select(1, lm.tensor(keep, {dtype = "i64"}))
  local y = tab:select(1, c)
  if opts.classification then
    local labels = y:to("i64")
    if labels:to(y.dtype):ne(y):sum():item() ~= 0 then
      raise(string.format("data.csv: target column %d of %s holds values that are not whole " ..
        "numbers (classification = true needs class labels)", c, path))
    end
    y = labels
  else
    y = y:to("f32"):contiguous()
  end
  local ds = dataset.TensorDataset(features, y)
  if header and names then
    ds.columns = names
    local fnames = {}
    for _, k in ipairs(keep) do fnames[#fnames + 1] = names[k + 1] end
    ds.feature_names = fnames
  end
  return ds
end

return M
