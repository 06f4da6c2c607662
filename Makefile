# pyrometer — plain Makefile.
#   make            build build/pyrometer
#   make demo       install deps, profile examples/demo.py, write a flame graph
#   make test       install deps, unit tests (also under ASan+UBSan), e2e tests
#   make install    install to $(PREFIX)/bin
#   make fuzz       run the decoder fuzzers briefly (clang libFuzzer)
CC       ?= gcc
PREFIX   ?= /usr/local
BUILD    ?= build
# Debian's pytest lives with Debian's python3, whatever python3 is first on PATH.
PYTEST   ?= /usr/bin/python3 -m pytest -q -ra
DEMO_PY  ?= python3
WERROR   ?= -Werror
CFLAGS   ?= -O2 -g
WFLAGS   := -std=gnu11 -Wall -Wextra $(WERROR) -Wno-missing-field-initializers \
            -D_GNU_SOURCE -MMD -MP
PKG_MODULES := libelf jansson zlib ncursesw libunwind-ptrace libunwind-generic
PKG_CFLAGS := $(shell pkg-config --cflags $(PKG_MODULES) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKG_MODULES) 2>/dev/null || \
              echo -lelf -ljansson -lz -lncursesw -ltinfo -lunwind-ptrace -lunwind-generic -lunwind)
LDLIBS   += $(PKG_LIBS) -lm

LIB_SRC  := $(filter-out src/cmd/main.c src/mem/tracker.c,$(wildcard src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/src/cmd/main.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

DEPS_DEB := build-essential clang libclang-rt-14-dev pkg-config libelf-dev libjansson-dev zlib1g-dev \
            libcmocka-dev libncurses-dev libunwind-dev python3 python3-pytest procps gdb tmux \
            python3-scalene

.PHONY: all deps demo test unit unit-asan e2e install fuzz clean bench bench-mem
all: $(BUILD)/pyrometer $(BUILD)/libpyrometer-mem.so

# The allocation tracker preloaded into programs by `pyrometer mem run`: small,
# position-independent, linked with nothing but libc, libm and libunwind.
MEM_SO_SRC := src/mem/tracker.c src/mem/capture_write.c src/common/error.c src/target/reader.c \
              src/python/objects.c src/python/pystr.c src/python/layouts_gen.c \
              src/python/debug_offsets.c
MEM_SO_OBJ := $(MEM_SO_SRC:%.c=$(BUILD)/pic/%.o)
$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(WFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/libpyrometer-mem.so: $(MEM_SO_OBJ)
	$(CC) -shared -o $@ $^ -Wl,-z,nodelete -lunwind -lm -ldl -lpthread

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(WFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/libpyrometer.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/pyrometer: $(MAIN_OBJ) $(BUILD)/libpyrometer.a
	$(CC) $(WFLAGS) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libpyrometer.a
	@mkdir -p $(dir $@)
	$(CC) $(WFLAGS) $(CFLAGS) $(PKG_CFLAGS) -Isrc -o $@ $< $(BUILD)/libpyrometer.a $(LDFLAGS) $(LDLIBS) -lcmocka

# Install the Debian packages the build and tests need (only what is missing).
deps:
	@missing=""; for p in $(DEPS_DEB); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/pyrometer record -r 250 -o $(BUILD)/demo.svg -- $(DEMO_PY) examples/demo.py
	@echo "open $(BUILD)/demo.svg in a browser: click a frame to zoom, press / to search"

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

unit-asan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" unit $(BUILD)/asan/pyrometer

e2e: $(BUILD)/pyrometer $(BUILD)/libpyrometer-mem.so
	$(PYTEST) tests/e2e

test: deps
	@$(MAKE) --no-print-directory all unit unit-asan
	@$(MAKE) --no-print-directory e2e

# Figures only (never fails a build; not part of test).  BENCH_ARGS=--quick for a short run.
bench: $(BUILD)/pyrometer $(BUILD)/libpyrometer.a
	-/usr/bin/python3 bench/run.py $(BENCH_ARGS)

# Memory tracker figures (never fails a build; not part of test).
bench-mem: $(BUILD)/pyrometer $(BUILD)/libpyrometer-mem.so
	-/usr/bin/python3 bench/mem_bench.py $(BENCH_ARGS)

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
# What the fuzzers link: the layers below sampling (no commands, no main).
FUZZ_LIB := $(wildcard src/common/*.c src/target/*.c src/python/*.c) src/mem/capture_read.c src/mem/replay.c \
            src/mem/capture_write.c
fuzz:
	@mkdir -p $(BUILD)/fuzz
	@set -e; for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -std=gnu11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=all -Isrc -o $(BUILD)/fuzz/$$n $$f $(FUZZ_LIB) $(PKG_LIBS); \
	  rm -rf $(BUILD)/fuzz/corpus-$$n; mkdir -p $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n; \
	  echo "== $$n"; \
	  if ! $(BUILD)/fuzz/$$n -max_total_time=$${FUZZ_SECONDS:-20} -print_final_stats=0 -timeout=5 \
	      -artifact_prefix=$(BUILD)/fuzz/$$n- $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n \
	      > $(BUILD)/fuzz/$$n.log 2>&1; then \
	    tail -40 $(BUILD)/fuzz/$$n.log; echo "fuzz: $$n FAILED (input saved as $(BUILD)/fuzz/$$n-*)"; \
	    exit 1; fi; tail -1 $(BUILD)/fuzz/$$n.log; done

install: $(BUILD)/pyrometer $(BUILD)/libpyrometer-mem.so
	install -D -m 0755 $(BUILD)/pyrometer $(DESTDIR)$(PREFIX)/bin/pyrometer
	install -D -m 0644 $(BUILD)/libpyrometer-mem.so $(DESTDIR)$(PREFIX)/lib/pyrometer/libpyrometer-mem.so

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(MAIN_OBJ:.o=.d) $(MEM_SO_OBJ:.o=.d)
