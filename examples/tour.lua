-- tour.lua — the code block of DESIGN.md (section lua/) as a user types it, without the event
-- log lines (they come with the logging issue). Runs from any directory:
--   lumen examples/tour.lua [EPOCHS]
-- MNIST is read from ../shared/data/mnist next to the repository, or from $MNIST_DIR; without
-- either, Fashion-MNIST from Debian's dataset-fashion-mnist package takes its place.
local lm = require "lumen"                   -- also preloaded in the REPL as `lm`
local nn, optim, data = lm.nn, lm.optim, lm.data

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local mnist_dir = os.getenv("MNIST_DIR") or (here .. "/../../shared/data/mnist")
local epochs = tonumber(arg and arg[1]) or 5
local function readable(path)
  local fh = io.open(path)
  if fh then fh:close() end
  return fh ~= nil
end
local mnist = data.mnist
if not readable(mnist_dir .. "/train-labels-idx1-ubyte.gz") and not readable(mnist_dir .. "/train-labels-idx1-ubyte") then
  -- A checkout without ../shared: Fashion-MNIST (same format) from Debian's package instead.
  print("tour: no MNIST in " .. mnist_dir .. "; using Fashion-MNIST from " .. data.FASHION_MNIST_DIR)
  mnist, mnist_dir = data.fashion_mnist, data.FASHION_MNIST_DIR
end

x = lm.randn(3, 4, {requires_grad = true})
y = (x * 2):sum()
y:backward()
print(x.grad)                                -- pretty printed like PyTorch

model = nn.Sequential {
  nn.Linear(784, 128), nn.ReLU(),
  nn.Linear(128, 10),
}
print(model)                                 -- module tree with shapes and parameter counts
opt = optim.Adam(model:parameters(), {lr = 1e-3})

train = mnist(mnist_dir, "train")            -- a Dataset (data.mnist)
loader = data.DataLoader(train, {batch_size = 64, shuffle = true})

for epoch = 1, epochs do
  local total = 0
  for i, xb, yb in loader:batches() do       -- i: batch number in this epoch; #loader batches
    local loss = nn.functional.cross_entropy(model(xb:view(-1, 784)), yb)
    opt:zero_grad(); loss:backward(); opt:step()
    total = total + loss:item()
  end
  print(string.format("epoch %d: mean loss %.4f over %d batches", epoch, total / #loader, #loader))
end

-- or, the Keras way, with a progress bar:
local history = model:fit(train, {epochs = epochs, batch_size = 64, optimizer = opt,
                                  loss = "cross_entropy", metrics = {"accuracy"},
                                  validation = mnist(mnist_dir, "test")})
lm.save(model, "mlp.safetensors"); lm.load(model, "mlp.safetensors")
print(string.format("validation accuracy after fit: %.4f", history.val_accuracy[#history.val_accuracy]))
os.remove("mlp.safetensors")
