-- test_ops.lua: the tensor op wrappers of the binding (lua/src/ops_lua.c) from Lua: every
-- registered function with a hand-computed value, positional and keyword forms, numbers on
-- either side of arithmetic, in-place methods returning self, and the errors for bad calls.
local T = require "tap"
local lm = require "lumen"
T.plan_auto()

local function f32(v) return lm.tensor(v, {dtype = "f32"}) end
local function shape(t) return table.concat(t.shape, ",") end

-- every function is registered (methods where they read naturally) --------------------------
local functions = {
  "empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like", "full_like",
  "rand_like", "randn_like", "arange", "linspace", "eye", "rand", "randn", "randint",
  "manual_seed", "rng_state", "set_rng_state", "where", "cat", "stack", "set_grad_enabled",
  "is_grad_enabled", "no_grad", "enable_grad", "set_scope", "get_scope", "set_num_threads",
  "get_num_threads", "release_cached_memory", "promote_types", "debug_fail_alloc_after",
}
local methods = {
  "uniform_", "normal_", "bernoulli_", "view", "reshape", "view_as", "reshape_as", "transpose",
  "t", "permute", "narrow", "slice", "select", "expand", "expand_as", "squeeze", "unsqueeze",
  "flatten", "contiguous", "clone", "to", "float", "double", "long", "byte", "copy_", "fill_",
  "zero_", "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le",
  "gt", "ge", "neg", "abs", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh",
  "sigmoid", "relu", "silu", "neg_", "exp_", "log_", "sqrt_", "relu_", "sigmoid_", "tanh_",
  "gelu", "leaky_relu", "clamp", "clamp_", "add_", "sub_", "mul_", "div_", "pow_", "sum",
  "mean", "prod", "logsumexp", "amax", "amin", "var", "std", "norm", "max", "min", "argmax",
  "argmin", "matmul", "mm", "index_select", "gather", "scatter_add", "scatter_add_",
  "masked_fill", "masked_fill_", "split", "chunk", "one_hot", "backward", "detach",
  "retain_grad", "requires_grad_", "graph_json",
}
local missing = {}
for _, n in ipairs(functions) do if type(lm[n]) ~= "function" then missing[#missing + 1] = n end end
for _, n in ipairs(methods) do
  if type(lm[n]) ~= "function" or type(lm.Tensor[n]) ~= "function" then missing[#missing + 1] = n end
end
T.is(table.concat(missing, " "), "", "every op is lm.NAME, and t:NAME where it is a method")

-- creation ------------------------------------------------------------------------------------
local z = lm.zeros(2, 3)
T.ok(shape(z) == "2,3" and z.dtype == "f32", "zeros(2, 3): shape as varargs, f32 by default")
T.close(z, {{0, 0, 0}, {0, 0, 0}}, 0, "zeros values")
T.is(lm.zeros({4}, {dtype = "i64"}).dtype, "i64", "zeros({4}, {dtype}): shape as a table")
T.close(lm.ones(2, {dtype = "f64"}), {1, 1}, 0, "ones with a dtype")
T.is(lm.ones(2, {dtype = "f64"}).dtype, "f64", "ones dtype f64")
T.ok(lm.zeros(3, {requires_grad = true}).requires_grad, "requires_grad option")
T.is(shape(lm.empty(2, 5)), "2,5", "empty")
T.is(lm.zeros().ndim, 0, "zeros() is 0-dim")
T.close(lm.full({2, 2}, 7), {{7, 7}, {7, 7}}, 0, "full")
T.is(lm.full({2}, 7).dtype, "i64", "full with an integer value gives i64")
T.is(lm.full({2}, 0.5).dtype, "f32", "full with a float value gives f32")
T.is(lm.full(3, true).dtype, "u8", "full with a boolean gives u8, and a lone integer shape")
T.is(lm.full({2}, 1, {dtype = "f64"}).dtype, "f64", "full dtype option")
local i64 = lm.tensor{{1, 2}, {3, 4}}
T.ok(lm.zeros_like(i64).dtype == "i64" and shape(lm.zeros_like(i64)) == "2,2", "zeros_like keeps dtype and shape")
T.close(lm.ones_like(i64, {dtype = "f32"}), {{1, 1}, {1, 1}}, 0, "ones_like with a dtype")
T.is(lm.ones_like(i64, {dtype = "f32"}).dtype, "f32", "ones_like dtype option")
T.is(shape(lm.empty_like(i64)), "2,2", "empty_like")
T.close(lm.full_like(i64, 9), {{9, 9}, {9, 9}}, 0, "full_like")
local rl = lm.rand_like(f32{1, 2, 3})
T.ok(shape(rl) == "3" and rl:min():item() >= 0 and rl:max():item() < 1, "rand_like in [0, 1)")
T.is(shape(lm.randn_like(z)), "2,3", "randn_like")
local ar = lm.arange(5)
T.ok(ar.dtype == "i64", "arange(5) of integers is i64")
T.close(ar, {0, 1, 2, 3, 4}, 0, "arange(end)")
T.close(lm.arange(2, 8, 3), {2, 5}, 0, "arange(start, end, step)")
T.is(lm.arange(0, 1, 0.25).dtype, "f32", "a float argument makes arange f32")
T.close(lm.arange(0, 1, 0.25), {0, 0.25, 0.5, 0.75}, 0, "arange with a float step")
T.is(lm.arange(3, {dtype = "f64"}).dtype, "f64", "arange dtype option")
T.close(lm.linspace(0, 1, 5), {0, 0.25, 0.5, 0.75, 1}, 1e-7, "linspace")
T.close(lm.eye(2), {{1, 0}, {0, 1}}, 0, "eye(n)")
T.close(lm.eye(2, 3), {{1, 0, 0}, {0, 1, 0}}, 0, "eye(n, m)")

-- random numbers --------------------------------------------------------------------------------
lm.manual_seed(42)
local r1 = lm.rand(1000)
lm.manual_seed(42)
T.close(lm.rand(1000), r1, 0, "manual_seed repeats rand")
T.ok(r1:min():item() >= 0 and r1:max():item() < 1, "rand in [0, 1)")
T.close(r1:mean(), 0.5, 0.05, "rand mean near 0.5")
local n1 = lm.randn(4000)
T.close(n1:mean(), 0, 0.1, "randn mean near 0")
T.close(n1:std(), 1, 0.1, "randn std near 1")
local seed, offset = lm.rng_state()
T.ok(math.type(seed) == "integer" and seed == 42 and offset > 0, "rng_state gives seed and offset")
local a1 = lm.randn(5)
lm.set_rng_state(seed, offset)
T.close(lm.randn(5), a1, 0, "set_rng_state replays")
local ri = lm.randint(3, 7, {200})
T.ok(ri.dtype == "i64" and ri:min():item() >= 3 and ri:max():item() <= 6, "randint(low, high, shape) in [low, high), i64")
T.ok(lm.randint(5, {2, 2}):max():item() < 5, "randint(high, shape)")
T.is(lm.randint(0, 2, {3}, {dtype = "u8"}).dtype, "u8", "randint dtype option")
local u = lm.empty(500)
T.ok(rawequal(u:uniform_(2, 3), u), "uniform_ returns self")
T.ok(u:min():item() >= 2 and u:max():item() < 3, "uniform_(lo, hi)")
u:uniform_{from = -1, to = 0}
T.ok(u:max():item() < 0, "uniform_ with keyword options")
T.ok(rawequal(u:normal_(10, 0.1), u), "normal_ returns self")
T.close(u:mean(), 10, 0.05, "normal_(mean, std)")
T.ok(rawequal(u:bernoulli_(0.25), u), "bernoulli_ returns self")
T.ok(u:eq(0):add(u:eq(1)):sum():item() == 500, "bernoulli_ gives 0 or 1")
T.close(u:mean(), 0.25, 0.08, "bernoulli_(p) mean near p")

-- views and copies ------------------------------------------------------------------------------
local x = f32{{1, 2, 3}, {4, 5, 6}}
T.close(x:view(3, 2), {{1, 2}, {3, 4}, {5, 6}}, 0, "view with varargs")
T.is(shape(x:view(-1)), "6", "view(-1)")
T.is(shape(x:view{3, -1}), "3,2", "view with a table and -1")
T.is(shape(lm.reshape(x:t(), 6)), "6", "reshape copies a non-contiguous tensor")
T.close(x:view_as(lm.zeros(3, 2)), {{1, 2}, {3, 4}, {5, 6}}, 0, "view_as")
T.is(shape(x:t():reshape_as(lm.zeros(6))), "6", "reshape_as")
T.close(x:transpose(0, 1), {{1, 4}, {2, 5}, {3, 6}}, 0, "transpose")
T.close(x:t(), {{1, 4}, {2, 5}, {3, 6}}, 0, "t()")
local p3 = lm.zeros(2, 3, 4)
T.is(shape(p3:permute(2, 0, 1)), "4,2,3", "permute with varargs")
T.is(shape(p3:permute{1, 2, 0}), "3,4,2", "permute with a table")
T.errors(function() p3:permute(0, 1) end, "permute: 2 dims given for a tensor of shape [2,3,4]", "permute checks the count")
T.close(x:narrow(1, 1, 2), {{2, 3}, {5, 6}}, 0, "narrow(dim, start, len)")
T.close(x:slice(1, 0, 3, 2), {{1, 3}, {4, 6}}, 0, "slice with a step")
T.close(x:slice(1, 1), {{2, 3}, {5, 6}}, 0, "slice with an open end")
T.close(x:slice(1, -1), {{3}, {6}}, 0, "slice from the end")
T.close(x:select(0, 1), {4, 5, 6}, 0, "select")
T.close(f32{1, 2}:view(2, 1):expand(2, 3), {{1, 1, 1}, {2, 2, 2}}, 0, "expand")
T.close(f32{1, 2}:view(2, 1):expand{-1, 2}, {{1, 1}, {2, 2}}, 0, "expand with -1")
T.is(shape(f32{1, 2}:expand_as(lm.zeros(3, 2))), "3,2", "expand_as")
local s1 = lm.zeros(1, 3, 1)
T.is(shape(s1:squeeze()), "3", "squeeze() drops every size-1 dim")
T.is(shape(s1:squeeze(0)), "3,1", "squeeze(dim)")
T.is(shape(s1:squeeze(1)), "1,3,1", "squeeze of a dim that is not 1 is a no-op")
T.is(shape(x:unsqueeze(1)), "2,1,3", "unsqueeze")
local fl = lm.zeros(2, 3, 4)
T.is(shape(fl:flatten()), "24", "flatten()")
T.is(shape(fl:flatten(1)), "2,12", "flatten(start)")
T.is(shape(fl:flatten(0, 1)), "6,4", "flatten(start, end)")
T.is(shape(fl:flatten{start_dim = 1}), "2,12", "flatten with options")
local xt = x:t()
T.ok(not xt:is_contiguous() and xt:contiguous():is_contiguous(), "contiguous")
T.close(xt:contiguous(), {{1, 4}, {2, 5}, {3, 6}}, 0, "contiguous values")
local cl = x:clone()
cl:fill_(0)
T.is(x:sum():item(), 21, "clone copies")
T.is(x:to("f64").dtype, "f64", "to(name)")
T.is(x:to(i64).dtype, "i64", "to(other tensor)")
T.is(x:to{dtype = "u8"}.dtype, "u8", "to{dtype}")
T.ok(x:double().dtype == "f64" and i64:float().dtype == "f32" and x:long().dtype == "i64" and x:byte().dtype == "u8",
     "float double long byte")
T.close(f32{1.7, -2.2}:long(), {1, -2}, 0, "long truncates")
T.errors(function() x:to("f16") end, "unknown dtype 'f16'", "to with a bad dtype name")
local dst = lm.zeros(2, 3)
T.ok(rawequal(dst:copy_(f32{1, 2, 3}), dst), "copy_ returns self")
T.close(dst, {{1, 2, 3}, {1, 2, 3}}, 0, "copy_ broadcasts the source")
dst:copy_(5)
T.close(dst, {{5, 5, 5}, {5, 5, 5}}, 0, "copy_ of a number fills")
T.ok(rawequal(dst:fill_(2), dst), "fill_ returns self")
T.is(dst:sum():item(), 12, "fill_ value")
dst:fill_(lm.tensor(3))
T.is(dst:sum():item(), 18, "fill_ with a one-element tensor")
T.ok(rawequal(dst:zero_(), dst) and dst:sum():item() == 0, "zero_")

-- element-wise, numbers on either side ----------------------------------------------------------
local a = f32{1, 2, 4}
local b = f32{2, 2, 2}
T.close(a + b, {3, 4, 6}, 0, "t + t")
T.close(a + 1, {2, 3, 5}, 0, "t + n")
T.close(1 + a, {2, 3, 5}, 0, "n + t")
T.close(a - 1, {0, 1, 3}, 0, "t - n")
T.close(10 - a, {9, 8, 6}, 0, "n - t (rsub)")
T.close(a * 3, {3, 6, 12}, 0, "t * n")
T.close(3 * a, {3, 6, 12}, 0, "n * t")
T.close(a / 2, {0.5, 1, 2}, 0, "t / n")
T.close(8 / a, {8, 4, 2}, 0, "n / t (rdiv)")
T.close(a ^ 2, {1, 4, 16}, 0, "t ^ n")
T.close(2 ^ a, {2, 4, 16}, 0, "n ^ t (rpow)")
T.close(a ^ b, {1, 4, 16}, 0, "t ^ t")
T.close(-a, {-1, -2, -4}, 0, "unary minus")
T.close(a - b, {-1, 0, 2}, 0, "t - t")
T.close(a / b, {0.5, 1, 2}, 0, "t / t")
T.close(lm.add(a, b, {alpha = 2}), {5, 6, 8}, 0, "add with alpha")
T.close(lm.sub(a, b, {alpha = 0.5}), {0, 1, 3}, 0, "sub with alpha")
T.close(lm.sub(a, 1, {alpha = 2}), {-1, 0, 2}, 0, "sub of a number with alpha")
T.close(lm.maximum(a, b), {2, 2, 4}, 0, "maximum")
T.close(lm.minimum(3, a), {1, 2, 3}, 0, "minimum with a number first")
T.close(a:maximum(3), {3, 3, 4}, 0, "maximum with a number")
T.is(i64:add(1).dtype, "i64", "integer tensor + integer stays i64")
T.is(lm.div(i64, 2).dtype, "f32", "integer division gives f32")
local c = a:gt(1.5)
T.ok(c.dtype == "u8", "comparisons give u8")
T.close(c, {0, 1, 1}, 0, "gt(n)")
T.close(a:lt(b), {1, 0, 0}, 0, "lt(t)")
T.close(a:le(2), {1, 1, 0}, 0, "le")
T.close(a:ge(b), {0, 1, 1}, 0, "ge")
T.close(a:eq(2), {0, 1, 0}, 0, "eq")
T.close(a:ne(b), {1, 0, 1}, 0, "ne")
T.close(lm.lt(1.5, a), {0, 1, 1}, 0, "n < t is t > n")
T.close(lm.ge(2, a), {1, 1, 0}, 0, "n >= t is t <= n")
T.close(lm.gt(2, a), {1, 0, 0}, 0, "n > t is t < n")
T.close(lm.le(2, a), {0, 1, 1}, 0, "n <= t is t >= n")
T.close(lm.eq(2, a), {0, 1, 0}, 0, "n == t")

local v = f32{-1, 0, 1}
T.close(v:abs(), {1, 0, 1}, 0, "abs")
T.close(v:neg(), {1, 0, -1}, 0, "neg")
T.close(v:exp(), {math.exp(-1), 1, math.exp(1)}, 1e-6, "exp")
T.close(f32{1, math.exp(2)}:log(), {0, 2}, 1e-6, "log")
T.close(f32{0, 1}:log1p(), {0, math.log(2)}, 1e-6, "log1p")
T.close(f32{4, 9}:sqrt(), {2, 3}, 1e-6, "sqrt")
T.close(f32{4, 0.25}:rsqrt(), {0.5, 2}, 1e-6, "rsqrt")
T.close(v:sin(), {math.sin(-1), 0, math.sin(1)}, 1e-6, "sin")
T.close(v:cos(), {math.cos(-1), 1, math.cos(1)}, 1e-6, "cos")
T.close(v:tanh(), {-0.7615941762924194, 0, 0.7615941762924194}, 1e-6, "tanh")
T.close(v:sigmoid(), {1 / (1 + math.exp(1)), 0.5, 1 / (1 + math.exp(-1))}, 1e-6, "sigmoid")
T.close(v:relu(), {0, 0, 1}, 0, "relu")
T.close(v:silu(), {-1 / (1 + math.exp(1)), 0, 0.7310585975646973}, 1e-6, "silu")
T.close(v:gelu(), {-0.15865525, 0, 0.8413447141647339}, 1e-6, "gelu exact")
T.close(v:gelu{approximate = "tanh"}, {-0.158808, 0, 0.8411920070648193}, 1e-6, "gelu tanh (option)")
T.close(lm.gelu(v, "tanh"), {-0.158808, 0, 0.8411920070648193}, 1e-6, "gelu tanh (positional)")
T.errors(function() v:gelu{approximate = "fast"} end, "approximate must be", "gelu checks approximate")
T.close(f32{-2, 3}:leaky_relu(), {-0.02, 3}, 1e-7, "leaky_relu default slope 0.01")
T.close(f32{-2, 3}:leaky_relu(0.5), {-1, 3}, 0, "leaky_relu(slope)")
T.close(f32{-2, 3}:leaky_relu{negative_slope = 0.25}, {-0.5, 3}, 0, "leaky_relu{negative_slope}")
local cv = f32{-2, 0.5, 3}
T.close(cv:clamp(-1, 1), {-1, 0.5, 1}, 0, "clamp(min, max)")
T.close(cv:clamp(nil, 1), {-2, 0.5, 1}, 0, "clamp with nil min")
T.close(cv:clamp(0), {0, 0.5, 3}, 0, "clamp(min) only")
T.close(cv:clamp{max = 0}, {-2, 0, 0}, 0, "clamp{max}")
T.errors(function() cv:clamp() end, "clamp: give min, max or both", "clamp with no bounds")
T.close(lm.where(f32{1, 0, 1}:gt(0), f32{1, 2, 3}, f32{-1, -2, -3}), {1, -2, 3}, 0, "where(cond, a, b)")
T.close(lm.where(cv:gt(0), cv, 0), {0, 0.5, 3}, 0, "where with a number")
T.close(lm.where(cv:gt(0), 1, -1), {-1, 1, 1}, 0, "where with two numbers")
T.is(lm.where(cv:gt(0), 1, -1).dtype, "i64", "where of two integers is i64")
T.is(lm.where(cv:gt(0), lm.tensor{1, 2, 3}, 0.5).dtype, "f32", "where of i64 and a float is f32")

-- in place: values and self -------------------------------------------------------------------
local ip = f32{1, 2, 3}
T.ok(rawequal(ip:add_(1), ip), "add_ returns self")
T.close(ip, {2, 3, 4}, 0, "add_ value")
T.ok(rawequal(ip:sub_(f32{1, 1, 1}), ip), "sub_ returns self")
T.close(ip, {1, 2, 3}, 0, "sub_ value")
ip:add_(f32{1, 1, 1}, {alpha = -2})
T.close(ip, {-1, 0, 1}, 0, "add_ with alpha")
ip:sub_(1, {alpha = -1})
T.close(ip, {0, 1, 2}, 0, "sub_ of a number with alpha")
T.ok(rawequal(ip:mul_(2), ip), "mul_ returns self")
T.close(ip, {0, 2, 4}, 0, "mul_ value")
T.ok(rawequal(ip:div_(f32{1, 2, 4}), ip), "div_ returns self")
T.close(ip, {0, 1, 1}, 0, "div_ value")
ip:copy_(f32{1, 2, 3})
T.ok(rawequal(ip:pow_(2), ip), "pow_ returns self")
T.close(ip, {1, 4, 9}, 0, "pow_ value")
T.ok(rawequal(ip:sqrt_(), ip), "sqrt_ returns self")
T.close(ip, {1, 2, 3}, 1e-6, "sqrt_ value")
T.ok(rawequal(ip:neg_(), ip), "neg_ returns self")
T.close(ip, {-1, -2, -3}, 0, "neg_ value")
T.ok(rawequal(ip:clamp_(-2, 5), ip), "clamp_ returns self")
T.close(ip, {-1, -2, -2}, 0, "clamp_ value")
T.ok(rawequal(ip:relu_(), ip), "relu_ returns self")
T.close(ip, {0, 0, 0}, 0, "relu_ value")
T.ok(rawequal(ip:exp_(), ip), "exp_ returns self")
T.close(ip, {1, 1, 1}, 0, "exp_ value")
T.ok(rawequal(ip:log_(), ip), "log_ returns self")
T.close(ip, {0, 0, 0}, 0, "log_ value")
T.ok(rawequal(ip:sigmoid_(), ip), "sigmoid_ returns self")
T.close(ip, {0.5, 0.5, 0.5}, 0, "sigmoid_ value")
ip:zero_()
T.ok(rawequal(ip:tanh_(), ip), "tanh_ returns self")
T.close(ip, {0, 0, 0}, 0, "tanh_ value")
T.ok(rawequal(ip:add_(1):mul_(3):sub_(1), ip), "in-place calls chain")
T.close(ip, {2, 2, 2}, 0, "chained value")
T.errors(function() lm.tensor{1, 2}:add_(0.5) end, "can't be cast to the desired output type i64", "an integer tensor cannot take a float result in place")

-- reductions ------------------------------------------------------------------------------------
local m = f32{{1, 2}, {3, 4}}
T.close(m:sum(), 10, 0, "sum over all")
T.close(m:sum(0), {4, 6}, 0, "sum(dim)")
T.close(m:sum(1, true), {{3}, {7}}, 0, "sum(dim, keepdim)")
T.close(m:sum{dim = 1, keepdim = true}, {{3}, {7}}, 0, "sum{dim, keepdim}")
T.close(m:sum(1, {keepdim = true}), {{3}, {7}}, 0, "positional dim with keyword keepdim")
T.close(m:sum{0, 1}, 10, 0, "sum over a table of dims")
T.close(m:sum{dim = {0, 1}, keepdim = true}, {{10}}, 0, "sum{dim = {dims}, keepdim}")
T.is(lm.tensor{1, 2}:sum().dtype, "i64", "sum of integers is i64")
T.close(m:mean(), 2.5, 0, "mean")
T.close(m:mean(0), {2, 3}, 0, "mean(dim)")
T.close(m:prod(), 24, 0, "prod")
T.close(m:prod(1), {2, 12}, 0, "prod(dim)")
T.close(f32{{0, 1}, {2, 3}}:logsumexp(1), {1.3132616, 3.3132616}, 1e-5, "logsumexp(dim)")
T.close(m:amax(0), {3, 4}, 0, "amax(dim)")
T.close(m:amin(), 1, 0, "amin over all")
T.close(m:amax{dim = 1, keepdim = true}, {{2}, {4}}, 0, "amax{dim, keepdim}")
local vs = f32{1, 2, 3, 4}
T.close(vs:var(), 1.6666666, 1e-5, "var (unbiased)")
T.close(vs:var{correction = 0}, 1.25, 1e-6, "var{correction = 0}")
T.close(vs:var{unbiased = false}, 1.25, 1e-6, "var{unbiased = false}")
T.close(vs:std(), 1.2909944, 1e-5, "std")
T.close(m:std(1), {0.70710678, 0.70710678}, 1e-6, "std(dim)")
T.close(m:var(0, true), {{2, 2}}, 1e-6, "var(dim, keepdim)")
T.errors(function() vs:var{correction = 1, unbiased = true} end, "correction or unbiased", "var refuses both correction and unbiased")
local nv = f32{3, -4}
T.close(nv:norm(), 5, 1e-6, "norm (2)")
T.close(nv:norm(1), 7, 1e-6, "norm(1)")
T.close(nv:norm(math.huge), 4, 0, "norm(inf)")
T.close(nv:norm("inf"), 4, 0, "norm(\"inf\")")
T.close(nv:norm{p = "fro"}, 5, 1e-6, "norm{p = \"fro\"}")
T.close(f32{{3, 4}, {6, 8}}:norm(2, 1), {5, 10}, 1e-5, "norm(p, dim)")
T.close(f32{{3, 4}, {6, 8}}:norm{dim = 1, keepdim = true}, {{5}, {10}}, 1e-5, "norm{dim, keepdim}")
local mx = f32{{1, 5, 2}, {7, 0, 7}}
T.close(mx:max(), 7, 0, "max() over all")
T.is(mx:max().ndim, 0, "max() is 0-dim")
T.close(mx:min(), 0, 0, "min() over all")
local vals, idx = mx:max(1)
T.close(vals, {5, 7}, 0, "max(dim) values")
T.close(idx, {1, 0}, 0, "max(dim) indices, first occurrence")
T.is(idx.dtype, "i64", "max(dim) indices are i64")
vals, idx = mx:min{dim = 0, keepdim = true}
T.close(vals, {{1, 0, 2}}, 0, "min{dim, keepdim} values")
T.close(idx, {{0, 1, 0}}, 0, "min{dim, keepdim} indices")
T.close(lm.max(f32{1, 5}, f32{3, 2}), {3, 5}, 0, "max(t, other) is maximum")
T.close(lm.min(f32{1, 5}, f32{3, 2}), {1, 2}, 0, "min(t, other) is minimum")
T.close(mx:argmax(), 3, 0, "argmax() of the flattened tensor")
T.close(mx:argmax(1), {1, 0}, 0, "argmax(dim)")
T.close(mx:argmin(1, true), {{0}, {1}}, 0, "argmin(dim, keepdim)")
T.close(mx:argmin(), 4, 0, "argmin()")

-- linear algebra, indexing, joining -----------------------------------------------------------
local A, B = f32{{1, 2}, {3, 4}}, f32{{5, 6}, {7, 8}}
T.close(A:matmul(B), {{19, 22}, {43, 50}}, 0, "matmul")
T.close(lm.mm(A, B), {{19, 22}, {43, 50}}, 0, "mm")
T.close(f32{1, 2}:matmul(f32{3, 4}), 11, 0, "matmul of vectors")
local src = f32{{1, 2, 3}, {4, 5, 6}}
T.close(src:index_select(1, lm.tensor{2, 0}), {{3, 1}, {6, 4}}, 0, "index_select")
T.close(src:gather(1, lm.tensor{{0, 0}, {2, 1}}), {{1, 1}, {6, 5}}, 0, "gather")
local sa = lm.zeros(3)
T.close(sa:scatter_add(0, lm.tensor{0, 2, 0}, f32{1, 2, 3}), {4, 0, 2}, 0, "scatter_add")
T.close(sa, {0, 0, 0}, 0, "scatter_add leaves the input alone")
T.ok(rawequal(sa:scatter_add_(0, lm.tensor{1, 1}, f32{5, 6}), sa), "scatter_add_ returns self")
T.close(sa, {0, 11, 0}, 0, "scatter_add_ value")
local mk = f32{1, 2, 3}:gt(1)
T.close(f32{1, 2, 3}:masked_fill(mk, 0), {1, 0, 0}, 0, "masked_fill")
local mf = f32{1, 2, 3}
T.ok(rawequal(mf:masked_fill_(mk, -1), mf), "masked_fill_ returns self")
T.close(mf, {1, -1, -1}, 0, "masked_fill_ value")
T.close(lm.cat{f32{1, 2}, f32{3}}, {1, 2, 3}, 0, "cat along dim 0")
T.close(lm.cat({A, B}, 1), {{1, 2, 5, 6}, {3, 4, 7, 8}}, 0, "cat(list, dim)")
T.close(lm.cat({A, B}, {dim = 1}), {{1, 2, 5, 6}, {3, 4, 7, 8}}, 0, "cat(list, {dim})")
T.close(lm.stack{f32{1, 2}, f32{3, 4}}, {{1, 2}, {3, 4}}, 0, "stack")
T.close(lm.stack({f32{1, 2}, f32{3, 4}}, 1), {{1, 3}, {2, 4}}, 0, "stack(list, dim)")
T.errors(function() lm.cat{A, 3} end, "element 2 is a number, tensor expected", "cat checks the list")
local pieces = lm.arange(5):split(2)
T.ok(#pieces == 3 and shape(pieces[3]) == "1", "split gives a Lua sequence, last piece smaller")
T.close(pieces[2], {2, 3}, 0, "split piece values")
collectgarbage()
local many = lm.arange(3000):split(1)
collectgarbage()
local sum_pieces = 0
for _, piece in ipairs(many) do sum_pieces = sum_pieces + piece:item() end
T.ok(#many == 3000 and sum_pieces == 3000 * 2999 // 2, "split into many pieces (the collector runs while they are boxed)")
local cols = src:split(1, 1)
T.ok(#cols == 3, "split(size, dim)")
T.close(cols[3], {{3}, {6}}, 0, "split along dim 1")
local ch = lm.arange(6):chunk(4)
T.ok(#ch == 3 and shape(ch[1]) == "2", "chunk as torch.chunk (6 into 4 gives 3 pieces of 2)")
T.is(#src:chunk(2, {dim = 1}), 2, "chunk{dim}")
T.close(lm.tensor{0, 2}:one_hot(3), {{1, 0, 0}, {0, 0, 1}}, 0, "one_hot(idx, num_classes)")
T.is(shape(lm.one_hot(lm.tensor{1, 3})), "2,4", "one_hot infers the class count")

-- autograd -------------------------------------------------------------------------------------
local w = lm.tensor({1, 2, 3}, {dtype = "f32", requires_grad = true})
local loss = (w * w):sum()
loss:backward()
T.close(w.grad, {2, 4, 6}, 0, "backward of a scalar")
w.grad = nil
local y = w * 2
y:backward(lm.ones(3))
T.close(w.grad, {2, 2, 2}, 0, "backward with a seed")
w.grad = nil
loss = (w * w):sum()
loss:backward(nil, {retain_graph = true})
loss:backward()
T.close(w.grad, {4, 8, 12}, 0, "retain_graph lets backward run twice (gradients accumulate)")
w.grad = nil
loss = (w * w):sum()
loss:backward{retain_graph = true}
T.close(w.grad, {2, 4, 6}, 0, "backward{retain_graph} without a seed")
w.grad = nil
local h = w * 3
T.ok(rawequal(h:retain_grad(), h), "retain_grad returns self")
h:sum():backward()
T.close(h.grad, {1, 1, 1}, 0, "retain_grad fills a non-leaf's grad")
local d = h:detach()
T.ok(not d.requires_grad and d.is_leaf, "detach gives a leaf without grad")
T.close(d, {3, 6, 9}, 0, "detach shares the values")
local leaf = lm.zeros(2)
T.ok(rawequal(leaf:requires_grad_(), leaf) and leaf.requires_grad, "requires_grad_() turns tracking on, returns self")
leaf:requires_grad_(false)
T.ok(not leaf.requires_grad, "requires_grad_(false)")
T.errors(function() lm.zeros(2, {dtype = "i64"}):requires_grad_() end, "only floating-point", "integer tensors cannot require grad")
T.errors(function() lm.zeros(2):backward() end, "does not require grad", "backward of a tensor without graph fails")

T.is(lm.is_grad_enabled(), true, "grad enabled by default")
T.is(lm.set_grad_enabled(false), true, "set_grad_enabled returns the previous mode")
T.is(lm.is_grad_enabled(), false, "set_grad_enabled(false)")
lm.set_grad_enabled(true)
do
  local _ <close> = lm.no_grad()
  T.is(lm.is_grad_enabled(), false, "no_grad() as a to-be-closed value")
  T.ok(not (w * 2).requires_grad, "no graph is recorded under no_grad")
  do
    local _ <close> = lm.enable_grad()
    T.ok((w * 2).requires_grad, "enable_grad() inside no_grad")
  end
  T.is(lm.is_grad_enabled(), false, "closing enable_grad restores no_grad")
end
T.is(lm.is_grad_enabled(), true, "closing no_grad restores the mode")
local r1v, r2v = lm.no_grad(function(p, q) return lm.is_grad_enabled(), p + q end, 2, 3)
T.ok(r1v == false and r2v == 5, "no_grad(fn, ...) runs fn with grad off and returns its results")
local okc, errc = pcall(lm.no_grad, function() error("boom") end)
T.ok(not okc and tostring(errc):find("boom", 1, true), "no_grad(fn) re-raises fn's error")
T.is(lm.is_grad_enabled(), true, "no_grad(fn) restores the mode after an error")
lm.set_grad_enabled(false)
T.is(lm.enable_grad(lm.is_grad_enabled), true, "enable_grad(fn)")
lm.set_grad_enabled(true)
local okt, tb = xpcall(function()
  lm.no_grad(function()
    local function inner_fail() error("boom") end
    inner_fail()
  end)
end, debug.traceback)
T.ok(not okt and tb:find("inner_fail", 1, true) ~= nil,
     "no_grad(fn): a message handler still sees fn's frames (no pcall and rethrow)")
T.is(lm.is_grad_enabled(), true, "no_grad(fn) restores the mode on the way out of an error")
local err_obj = {}
local _, got_obj = pcall(lm.no_grad, function() error(err_obj) end)
T.ok(got_obj == err_obj, "no_grad(fn): the error value goes on untouched")
local co = coroutine.wrap(function()
  return lm.no_grad(function(base)
    local more = coroutine.yield(lm.is_grad_enabled())
    return base + more, "done"
  end, 1)
end)
T.is(co(), false, "no_grad(fn): fn may yield, with gradients off")
local cr1, cr2 = co(41)
T.ok(cr1 == 42 and cr2 == "done", "no_grad(fn) returns fn's results after a resume")
T.is(lm.is_grad_enabled(), true, "no_grad(fn) restores the mode after a resumed fn returns")
T.is(select("#", lm.no_grad(function() end)), 0, "no_grad(fn) of a function returning nothing")
do
  local scope = lm.no_grad()
  T.is(lm.is_grad_enabled(), false, "lm.no_grad() turns gradients off at once, before any <close>")
  local _ <close> = scope
end
T.is(lm.is_grad_enabled(), true, "closing the scope restores the mode")

-- set_data_ (PyTorch's p.data = src) ---------------------------------------------------------------
local pd = lm.ones(2, {requires_grad = true})
local holder = {param = pd}
pd:mul(3):sum():backward()
local pd_ret = pd:set_data_(lm.tensor({1, 2, 3}, {dtype = "f64"}))
T.ok(pd_ret == pd, "set_data_ returns self")
T.ok(holder.param.dtype == "f64" and shape(holder.param) == "3",
     "every reference to the tensor sees the new data, of another dtype and shape")
T.ok(holder.param.requires_grad and holder.param.is_leaf and holder.param.grad == nil,
     "set_data_ keeps requires_grad and drops the gradient")
holder.param:mul(2):sum():backward()
T.close(pd.grad, lm.full({3}, 2.0, {dtype = "f64"}), 0, "gradients reach the rebound tensor")
local sd_src = lm.zeros(2)
local sd_dst = lm.ones(2)
sd_dst:set_data_(sd_src)
sd_src[0] = 5
T.ok(sd_dst[0]:item() == 5 and not sd_dst.requires_grad, "set_data_ shares src's memory, as p.data = src")
local srcg = lm.ones(2, {requires_grad = true})
local sd_det = lm.zeros(2)
sd_det:set_data_(srcg * 2)
T.ok(sd_det.is_leaf and not sd_det.requires_grad, "set_data_ takes src detached")
T.errors(function() (pd * 2):set_data_(lm.ones(1)) end, "set_data_: the tensor (shape [3]) is not a leaf",
         "set_data_ refuses a non-leaf")
local opt_w = lm.ones(2, 2, {requires_grad = true})
local opt = lm.optim.SGD({opt_w}, {lr = 0.5})
opt_w:set_data_(opt_w:double())
opt_w:sum():backward()
opt:step()
T.ok(opt_w.dtype == "f64" and opt_w:sum():item() == 2,
     "an optimizer holding the tensor steps the rebound data")
local guard = lm.no_grad()
getmetatable(guard).__close(guard)
getmetatable(guard).__close(guard)
T.is(lm.is_grad_enabled(), true, "closing a grad-mode scope twice is harmless")
T.errors(function() lm.no_grad(42) end, "bad argument #1", "no_grad checks its argument")

T.is(lm.get_scope(), nil, "no scope by default")
T.is(lm.set_scope("encoder.0"), nil, "set_scope returns the previous scope")
T.is(lm.get_scope(), "encoder.0", "get_scope")
local gy = (w * 2):sum()
T.is(lm.set_scope(nil), "encoder.0", "set_scope(nil) clears it and returns the previous one")
local json = gy:graph_json()
T.ok(type(json) == "string" and json:find('"nodes"', 1, true) and json:find('"encoder.0"', 1, true),
     "graph_json gives the graph with scopes")
T.ok(lm.graph_json(w):find('"leaf"', 1, true), "graph_json of a leaf")

-- engine settings ------------------------------------------------------------------------------
local nthreads = lm.get_num_threads()
lm.set_num_threads(1)
T.is(lm.get_num_threads(), 1, "set_num_threads / get_num_threads")
lm.set_num_threads(nthreads)
T.errors(function() lm.set_num_threads(0) end, "at least 1", "set_num_threads checks n")
lm.release_cached_memory()
T.ok(true, "release_cached_memory")
T.is(lm.promote_types("i64", "f32"), "f32", "promote_types")
T.is(lm.promote_types("u8", "i64"), "i64", "promote_types of integers")
lm.debug_fail_alloc_after(1)
local okm, errm = pcall(lm.zeros, 1000)
lm.debug_fail_alloc_after(0)
T.ok(not okm and tostring(errm):find("out of memory", 1, true), "an allocation failure becomes a Lua error")
T.close(lm.ones(3):sum(), 3, 0, "the engine works after an allocation failure")

-- integers beyond 2^53 are exact -----------------------------------------------------------------
local big = (1 << 53) + 1
local function first(t) return t:totable()[1] end
T.is(first(lm.full({2}, math.maxinteger)), math.maxinteger, "full with a large integer")
T.is(first(lm.full_like(lm.zeros(2, {dtype = "i64"}), big)), big, "full_like with a large integer")
T.is(first(lm.zeros(2, {dtype = "i64"}):fill_(big)), big, "fill_ with a large integer")
T.is(first(lm.zeros(2, {dtype = "i64"}):fill_(lm.tensor(big))), big, "fill_ with a one-element i64 tensor")
T.is(first(lm.zeros(2, {dtype = "i64"}):copy_(big)), big, "copy_ of a large integer")
local bt = lm.tensor{big, 1}
T.is(first(bt + big), 2 * big, "i64 + large integer")
T.is(first(big - bt), 0, "large integer - i64")
T.is(lm.sub(bt, big, {alpha = 1}):totable()[2], 1 - big, "sub with a large integer")
T.ok(first(bt:eq(big)) == 1 and first(bt:eq(big - 1)) == 0, "eq with a large integer")
T.ok(first(bt:lt(big + 1)) == 1 and first(bt:gt(big - 1)) == 1, "lt / gt with a large integer")
T.is(first(lm.maximum(lm.tensor{0}, big)), big, "maximum with a large integer")
T.is(first(lm.tensor{1, 2}:add_(big)), big + 1, "add_ of a large integer")
T.is(first(lm.tensor{big, 2}:mul_(1)), big, "mul_ of an i64 tensor stays exact")
T.is(first(lm.masked_fill(lm.zeros(2, {dtype = "i64"}), lm.tensor{true, false}, big)), big,
     "masked_fill with a large integer")
T.is(first(lm.zeros(2, {dtype = "i64"}):masked_fill_(lm.tensor{true, false}, big)), big,
     "masked_fill_ with a large integer")
T.is(first(lm.where(lm.tensor{true, false}, big, 0)), big, "where with a large integer")
T.is(first(lm.zeros(1, {dtype = "f64"}) + big), 2.0 ^ 53, "a float tensor rounds a large integer as a double would")

-- fault injection: every engine allocation of an indexing path fails in turn -------------------
local function inject(name, fn)
  local clean = true
  for n = 1, 40 do
    lm.debug_fail_alloc_after(n)
    local okf, errf = pcall(fn)
    lm.debug_fail_alloc_after(0)
    if okf then break end
    if not tostring(errf):find("out of memory", 1, true) and not tostring(errf):find("memory", 1, true) then
      clean = false
      T.diag(name .. ": allocation " .. n .. ": " .. tostring(errf))
    end
  end
  T.ok(clean and pcall(fn), name .. ": each allocation failure is a clean error, and it works after")
end
local fm = lm.arange(12):view(3, 4):to("f32")
inject("t[{{}, idx}]", function() return fm[{{}, lm.tensor{2, -1}}] end)
inject("t[mask]", function() return fm[fm:gt(4)] end)
inject("t[idx] = v", function() fm[lm.tensor{0, 2}] = lm.tensor{{1.0, 2, 3, 4}, {5, 6, 7, 8}} end)
inject("t[mask] = v", function() fm[fm:gt(4)] = lm.arange(5, 12):to("f32") end)
inject("t[{{}, idx}] = big", function() local i = lm.zeros(2, 2, {dtype = "i64"}); i[{{}, lm.tensor{1}}] = big end)
inject("tostring", function() return tostring(fm) end)
inject("tobytes", function() return fm:t():tobytes() end)

-- errors ---------------------------------------------------------------------------------------
T.errors(function() lm.add("x", a) end, "bad argument #1 to", "wrong type on the left")
T.errors(function() lm.mul(a, {}) end, "bad argument #2", "wrong type on the right")
T.errors(function() lm.add(1, 2) end, "bad argument #2", "two numbers: a tensor is expected")
T.errors(function() lm.exp(3) end, "tensor expected, got number", "unary op on a number")
T.errors(function() lm.add(lm.zeros(2, 3), lm.zeros(4, 3)) end, "add: shapes [2,3] and [4,3] cannot be broadcast",
         "shape mismatch names both shapes")
T.errors(function() A:matmul(f32{{1, 2, 3}}) end, "[2,2] and [1,3]", "matmul mismatch names both shapes")
T.errors(function() lm.zeros(2, {dtype = "f16"}) end, "unknown dtype 'f16'", "bad dtype name")
T.errors(function() m:sum{keepdims = true} end, "unknown option 'keepdims'; takes dim, keepdim", "misspelt option")
T.errors(function() lm.sum(m, 0, "yes") end, "bad argument #3", "keepdim must be a boolean")
T.errors(function() m:sum{dim = "x"} end, "option 'dim' must be an integer", "dim option type")
T.errors(function() lm.zeros(2, 3, "f64") end, "options table expected", "stray argument after a shape")
T.errors(function() lm.arange() end, "arange takes", "arange without arguments")
T.errors(function() x:view(4, 4) end, "view: shape [4,4] is invalid for input of size 6", "view of a wrong size")
T.errors(function() x:select(0, 5) end, "select: index 5 is out of range", "select out of range")
T.errors(function() x:transpose(0, "a") end, "bad argument #2 to 'transpose'", "transpose dims must be integers")
T.errors(function() lm.where(1, a, b) end, "bad argument #1", "where needs a tensor condition")
T.errors(function() a:copy_("x") end, "tensor or number expected", "copy_ of a string")
T.errors(function() a:fill_({}) end, "number expected", "fill_ of a table")
local closed = lm.ones(2)
closed:free()
T.errors(function() lm.cat({lm.ones(2), closed}) end, "bad argument #1 to 'cat' (element 2 is a closed tensor)",
         "cat names the closed element of its list")
T.errors(function() lm.stack({closed}, 0) end, "element 1 is a closed tensor", "stack likewise")
T.errors(function() lm.isatty(1 << 32) end, "integer out of range", "isatty: a descriptor beyond an int")

T.done()
