# The two commands of the README, and a few more. Each installs what is missing first.
#   make run       bootstrap, build, run the main job
#   make test      bootstrap, build, run every test suite but `slow`
BUILD    ?= build
ASAN     ?= build-asan
MESON_OPTS ?=

.PHONY: all bootstrap build run test test-all sanitize valgrind bench clean

all: build

bootstrap:
	@./scripts/bootstrap

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: bootstrap $(BUILD)/build.ninja
	@ninja -C $(BUILD)

# The main job: DESIGN.md's tour from Lua (autograd, an MLP trained on MNIST by hand and by fit).
run: build
	./$(BUILD)/lua/lumen examples/tour.lua

test: build
	meson test -C $(BUILD) --no-suite slow --print-errorlogs

test-all: build
	meson test -C $(BUILD) --print-errorlogs

# AddressSanitizer + UndefinedBehaviorSanitizer; no -march=native and no CUDA (NOTES.md).
sanitize: bootstrap
	@[ -f $(ASAN)/build.ninja ] || meson setup $(ASAN) -Dbuildtype=debugoptimized \
	    -Db_sanitize=address,undefined -Db_lundef=false -Dnative=false -Dcuda=disabled
	@ninja -C $(ASAN)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
	    meson test -C $(ASAN) --no-suite slow --print-errorlogs

# Every engine and Lua test under valgrind's memcheck (portable build: valgrind cannot run
# AVX-512). LUMEN_UNDER_VALGRIND shortens the Lua memory-pacing loop, which checks RSS, not leaks.
valgrind: bootstrap
	@[ -f build-vg/build.ninja ] || meson setup build-vg -Dbuildtype=debugoptimized -Dnative=false -Dcuda=disabled
	@ninja -C build-vg
	LUMEN_UNDER_VALGRIND=1 meson test -C build-vg --suite engine --suite lua --no-suite slow \
	    --timeout-multiplier 20 --print-errorlogs \
	    --wrapper 'valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1 -q'

bench: build
	@./scripts/bootstrap --bench
	./$(BUILD)/bench/engine_micro
	BUILD=$(BUILD) bench/nn_step.sh
	BUILD=$(BUILD) bench/mnist_epoch.sh

clean:
	rm -rf $(BUILD) $(ASAN) build-vg
