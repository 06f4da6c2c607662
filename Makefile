# pyrometer — plain Makefile.
#   make            build build/pyrometer
#   make demo       install deps, profile examples/demo.py, write a flame graph
#   make test       install deps, unit tests (also under ASan+UBSan), e2e tests
#   make install    install to $(PREFIX)/bin
#   make fuzz       run the decoder fuzzers briefly (clang libFuzzer)
#   make agent      the in-process agent (Python package + abi3 C extension) in build/agent
#   make bench-agent  the agent's added latency per request and per query (figures only)
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
PKG_MODULES := libelf jansson zlib ncursesw libunwind-ptrace libunwind-generic sqlite3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKG_MODULES) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKG_MODULES) 2>/dev/null || \
              echo -lelf -ljansson -lz -lncursesw -ltinfo -lunwind-ptrace -lunwind-generic -lunwind -lsqlite3)
LDLIBS   += $(PKG_LIBS) -lm

LIB_SRC  := $(filter-out src/cmd/main.c src/mem/tracker.c src/agent/agentmodule.c,$(wildcard src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/src/cmd/main.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

DEPS_DEB := build-essential clang libclang-rt-14-dev pkg-config libelf-dev libjansson-dev zlib1g-dev \
            libcmocka-dev libncurses-dev libunwind-dev python3 python3-pytest procps gdb tmux \
            python3-scalene python3-dev libsqlite3-dev python3-django gunicorn python3-psycopg2 \
            python3-flask postgresql wrk

.PHONY: all deps demo test unit unit-asan e2e install fuzz clean bench bench-mem agent bench-agent
all: $(BUILD)/pyrometer $(BUILD)/libpyrometer-mem.so agent

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

e2e: $(BUILD)/pyrometer $(BUILD)/libpyrometer-mem.so agent
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
            src/mem/capture_write.c src/agent/fingerprint.c
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

install: $(BUILD)/pyrometer $(BUILD)/libpyrometer-mem.so agent
	install -D -m 0755 $(BUILD)/pyrometer $(DESTDIR)$(PREFIX)/bin/pyrometer
	install -D -m 0644 $(BUILD)/libpyrometer-mem.so $(DESTDIR)$(PREFIX)/lib/pyrometer/libpyrometer-mem.so
	@# the agent: `pyrometer run`'s copy beside the binary, and the package for the system Python
	rm -rf $(DESTDIR)$(PREFIX)/lib/pyrometer/agent
	mkdir -p $(DESTDIR)$(PREFIX)/lib/pyrometer/agent
	cp -R $(AGENT_DIR)/python $(AGENT_DIR)/boot $(DESTDIR)$(PREFIX)/lib/pyrometer/agent/
	site=$$($(AGENT_PYTHON) -c 'import sys, sysconfig; p = sys.argv[1]; print(sysconfig.get_path("purelib") if p == "/usr/local" else sysconfig.get_path("purelib", "posix_prefix", vars={"base": p, "platbase": p}))' $(PREFIX)) && \
	  rm -rf "$(DESTDIR)$$site/pyrometer" && mkdir -p "$(DESTDIR)$$site" && \
	  cp -R $(AGENT_DIR)/python/pyrometer "$(DESTDIR)$$site/pyrometer" && \
	  echo "agent installed for $(AGENT_PYTHON) in $(DESTDIR)$$site/pyrometer"

clean:
	rm -rf $(BUILD)

# ---- the in-process agent (src/agent): one abi3 extension for CPython 3.8-3.13,
# built with the system Python's headers, and its Python package, in build/agent:
#   build/agent/python/pyrometer/   the package (import pyrometer)
#   build/agent/boot/               sitecustomize.py for `pyrometer run`
AGENT_PYTHON ?= /usr/bin/python3
AGENT_DIR    := $(BUILD)/agent
AGENT_SO     := $(AGENT_DIR)/python/pyrometer/_agent.abi3.so
AGENT_C      := src/agent/agentmodule.c src/agent/fingerprint.c src/agent/record.c src/agent/store.c
AGENT_PY     := $(shell find src/agent/python src/agent/boot -name '*.py' 2>/dev/null)
AGENT_PY_INC  = $(shell $(AGENT_PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')

agent: $(AGENT_SO) $(AGENT_DIR)/.py-stamp

$(AGENT_SO): $(AGENT_C) $(wildcard src/agent/*.h)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra $(WERROR) -Wno-missing-field-initializers -D_GNU_SOURCE \
	  $(CFLAGS) -fPIC -shared -fvisibility=hidden -I$(AGENT_PY_INC) -o $@ $(AGENT_C) \
	  -lsqlite3 -lpthread -ldl

$(AGENT_DIR)/.py-stamp: $(AGENT_PY)
	@mkdir -p $(AGENT_DIR)/python $(AGENT_DIR)/boot
	cp -R src/agent/python/pyrometer $(AGENT_DIR)/python/
	cp src/agent/boot/sitecustomize.py $(AGENT_DIR)/boot/
	@touch $@

# Figures only (never fails a build).  BENCH_ARGS=--quick for a short run.
bench-agent: $(BUILD)/pyrometer agent
	-/usr/bin/python3 bench/agent_bench.py $(BENCH_ARGS)

-include $(LIB_OBJ:.o=.d) $(MAIN_OBJ:.o=.d) $(MEM_SO_OBJ:.o=.d)
