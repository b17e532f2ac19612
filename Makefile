# ds4 - DeepSeek V4 Flash inference engine and validation toolkit.
#
#   make            build the library (build/libds4.a) and the tools (bin/)
#   make deps       install missing Debian packages (fast no-op when present)
#   make demo       convert a synthetic test model and print its summary
#   make test       unit tests, CLI tests and fuzzing, plain and under ASan+UBSan
#   make fuzz       libFuzzer builds of the fuzz targets (needs clang)

CC      ?= gcc
ARCH    := $(shell uname -m)
WARN    := -Wall -Wextra -Werror -Wshadow
BASE    := -std=c11 -D_GNU_SOURCE -Iengine -g -pthread
ifeq ($(ARCH),x86_64)
# Baseline x86-64-v2; AVX2/AVX-512 kernels are compiled per function and chosen at run time.
BASE    += -march=x86-64-v2 -mtune=generic
endif
CFLAGS  ?= -O2
ALL_CFLAGS = $(BASE) $(WARN) $(CFLAGS)
LDLIBS  := -ljson-c -lgsl -lgslcblas -lpcre2-8 -lcsv -lzstd -lm -lpthread

SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

ENGINE_SRC := $(wildcard engine/*.c)
TOOLS      := ds4-gguf ds4-quant ds4-logitcheck ds4 ds4-bench ds4-longctx
TEST_SRC   := $(wildcard tests/unit/*.c)
FUZZ_NAMES := fuzz_gguf fuzz_safetensors fuzz_chat

OBJ     := $(ENGINE_SRC:%.c=build/obj/%.o)
SAN_OBJ := $(ENGINE_SRC:%.c=build/san/%.o)

.PHONY: all deps demo test fuzz clean
all: build/libds4.a $(TOOLS:%=bin/%)

deps:
	@sh scripts/deps.sh

build/obj/%.o: %.c $(wildcard engine/*.h engine/*.inc) | deps-checked
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(ALL_CFLAGS) -c $< -o $@

build/san/%.o: %.c $(wildcard engine/*.h engine/*.inc) | deps-checked
	@mkdir -p $(dir $@)
	@echo "CC (asan+ubsan) $<"
	@$(CC) $(BASE) $(WARN) $(SAN_FLAGS) -c $< -o $@

# Build rules need the libraries; check once per make invocation, cheaply.
.PHONY: deps-checked
deps-checked:
	@sh scripts/deps.sh

build/libds4.a: $(OBJ)
	@rm -f $@ && ar rcs $@ $^

build/libds4-san.a: $(SAN_OBJ)
	@rm -f $@ && ar rcs $@ $^

bin/ds4-gguf: tools/gguf/ds4-gguf.c tools/flags.h build/libds4.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) $< build/libds4.a $(LDLIBS) -o $@

bin/ds4-quant: tools/quantize/ds4-quant.c tools/flags.h build/libds4.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) $< build/libds4.a $(LDLIBS) -o $@

bin/ds4-logitcheck: tools/logitcheck/ds4-logitcheck.c tools/flags.h build/libds4.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) $< build/libds4.a $(LDLIBS) -o $@

GIT_SHA := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

bin/ds4-bench: tools/bench/ds4-bench.c tools/flags.h tools/plot.h build/libds4.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) -DDS4_GIT_SHA='"$(GIT_SHA)"' $< build/libds4.a $(LDLIBS) -o $@

bin/ds4: tools/ds4/ds4.c tools/flags.h build/libds4.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) $< build/libds4.a $(LDLIBS) -o $@

bin/ds4-longctx: tools/longctx/ds4-longctx.c tools/flags.h tools/plot.h build/libds4.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) $< build/libds4.a $(LDLIBS) -o $@

# ---- tests ----

build/tests/unit: $(TEST_SRC) tests/unit/test.h build/libds4.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(TEST_SRC) build/libds4.a $(LDLIBS) -o $@

build/tests/unit-san: $(TEST_SRC) tests/unit/test.h build/libds4-san.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(WARN) $(SAN_FLAGS) -Itests/unit $(TEST_SRC) build/libds4-san.a $(LDLIBS) -o $@

build/tests/%-san: tests/fuzz/%.c tests/fuzz/driver.c build/libds4-san.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(WARN) $(SAN_FLAGS) $< tests/fuzz/driver.c build/libds4-san.a $(LDLIBS) -o $@

TEST_BINS := build/tests/unit build/tests/unit-san $(FUZZ_NAMES:%=build/tests/%-san)

test: deps all $(TEST_BINS)
	@sh tests/run.sh

demo: deps all
	@sh scripts/demo.sh

# libFuzzer builds for longer, coverage-guided runs: build/fuzz/fuzz_gguf CORPUS_DIR
fuzz: $(ENGINE_SRC)
	@mkdir -p build/fuzz
	for t in $(FUZZ_NAMES); do \
	  clang $(BASE) -O1 -g -fsanitize=fuzzer,address,undefined tests/fuzz/$$t.c $(ENGINE_SRC) $(LDLIBS) -o build/fuzz/$$t || exit 1; \
	done

clean:
	rm -rf build bin
