-- test_program.lua: the `lumen` program itself: -e, script arguments (the `arg` table as lua.c
-- builds it), standard input, exit status and tracebacks on errors, --version, and running from
-- another directory. arg[-1] is the lumen executable running this test.
local T = require "tap"
T.plan_auto()

local exe = arg[-1]
local tmpdir = os.tmpname()
os.remove(tmpdir)
assert(os.execute("mkdir -p '" .. tmpdir .. "'"))

-- Runs a shell command line; returns stdout, stderr and the exit status.
local function run(cmdline)
  local errf = tmpdir .. "/stderr"
  local p = io.popen(cmdline .. " 2>'" .. errf .. "'")
  local out = p:read("a")
  local _, _, code = p:close()
  local fh = io.open(errf)
  local err = fh:read("a")
  fh:close()
  return out, err, code
end

local function write(name, text)
  local path = tmpdir .. "/" .. name
  local fh = assert(io.open(path, "w"))
  fh:write(text)
  fh:close()
  return path
end

local q = function(s) return "'" .. s .. "'" end

local out, err, code = run(q(exe) .. " -e 'print(1 + 1)'")
T.is(out, "2\n", "-e runs code")
T.is(code, 0, "exit status 0 on success")

out = run(q(exe) .. " -e 'io.write(\"a\")' -e 'io.write(\"b\")'")
T.is(out, "ab", "several -e run in order")

out = run(q(exe) .. " -e 'print(lm.zeros(2):sum():item())'")
T.is(out, "0.0\n", "lm is preloaded as a global")

local script = write("args.lua", "print(arg[0], #arg, arg[1], arg[2], ...)\n")
out, err, code = run(q(exe) .. " " .. q(script) .. " one 'two words'")
T.is(out, script .. "\t2\tone\ttwo words\tone\ttwo words\n", "script arguments in arg and ...")

local boom = write("boom.lua", "local function f() error('boom here') end\nf()\n")
out, err, code = run(q(exe) .. " " .. q(boom))
T.ok(code ~= 0, "an error gives a non-zero exit status")
T.ok(err:find("boom here", 1, true) ~= nil, "the message goes to stderr")
T.ok(err:find("stack traceback", 1, true) ~= nil, "with a traceback")
T.ok(err:find("boom.lua:1", 1, true) ~= nil, "naming the script and line")

out, err, code = run(q(exe) .. " -e 'lm.zeros(2, 3):matmul(lm.zeros(4, 5))'")
T.ok(code ~= 0 and err:find("[2,3]", 1, true) and err:find("[4,5]", 1, true),
     "an engine error reaches stderr with both shapes")

out, err, code = run(q(exe) .. " -e 'os.exit(3)'")
T.is(code, 3, "os.exit status passes through")

out, err, code = run("echo 'print(6 * 7)' | " .. q(exe) .. " -")
T.is(out, "42\n", "'-' runs standard input")

out, err, code = run(q(exe) .. " --version")
T.ok(code == 0 and out:match("^lumen %d+%.%d+%.%d+"), "--version")

out, err, code = run(q(exe) .. " --bogus")
T.ok(code ~= 0 and err:find("unknown option '--bogus'", 1, true), "unknown option")

out, err, code = run(q(exe) .. " " .. q(tmpdir .. "/missing.lua"))
T.ok(code ~= 0 and err:find("missing.lua", 1, true), "a missing script names its path")

out, err, code = run("cd / && " .. q(exe) .. " -e 'print(require(\"lumen\") == lm)'")
T.is(out, "true\n", "runs from any directory and require returns the same module")

local syntax = write("syntax.lua", "x = = 1\n")
out, err, code = run(q(exe) .. " " .. q(syntax))
T.ok(code ~= 0 and err:find("syntax.lua:1", 1, true), "a syntax error names file and line")

-- Ctrl-C: the script sends SIGINT to its own process (through a child, as a terminal would),
-- then computes until the signal's hook stops it with an error.
local sigint = write("sigint.lua", [[
local pid = io.open("/proc/self/stat"):read("n")
local x = lm.randn(256, 256)
io.popen("kill -INT " .. pid):close()
while true do x = (x:matmul(x)):tanh() end
]])
out, err, code = run(q(exe) .. " " .. q(sigint))
T.ok(code == 1 and err:find("interrupted!", 1, true) and err:find("sigint.lua:[34]:") ~= nil,
     "SIGINT during a computation raises 'interrupted!' at the running line, exit status 1")

os.execute("rm -rf '" .. tmpdir .. "'")
T.done()
