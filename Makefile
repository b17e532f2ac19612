# ds4 - DeepSeek V4 Flash inference engine and validation toolkit.
#
#   make            build the library (build/libds4.a) and the tools (bin/)
#   make deps       install missing Debian packages and the test npm packages
#                   (scripts/deps.sh; a fast no-op when present)
#   make demo       the main job on the synthetic test model: convert, check against
#                   transformers, benchmark, quantize, batch, generate (results/demo/)
#   make test       unit tests (plain and ASan+UBSan), CLI and hardening tests, logitcheck,
#                   long-context consistency, fuzzing; ends "N passed, N failed[, N skipped]"
#   make fuzz       libFuzzer builds of the fuzz targets (needs clang; scripts/fuzz_long.sh)

CC      ?= gcc
.DEFAULT_GOAL := all
ARCH    := $(shell uname -m)
WARN    := -Wall -Wextra -Werror -Wshadow
# engine/ is layered in folders (README, Layout); each folder's headers are on the path.
ENGINE_DIRS := base formats model ops forward cpu text jobs serve
BASE    := -std=c11 -D_GNU_SOURCE $(ENGINE_DIRS:%=-Iengine/%) -g -pthread
ifeq ($(ARCH),x86_64)
# Baseline x86-64-v2; AVX2/AVX-512 kernels are compiled per function and chosen at run time.
BASE    += -march=x86-64-v2 -mtune=generic
endif
CFLAGS  ?= -O2
ALL_CFLAGS = $(BASE) $(WARN) $(CFLAGS)
LDLIBS  := -ljson-c -lgsl -lgslcblas -lpcre2-8 -lcsv -lzstd -lm -lpthread

SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

ENGINE_SRC := $(foreach d,$(ENGINE_DIRS),$(wildcard engine/$(d)/*.c))
ENGINE_HDR := $(foreach d,$(ENGINE_DIRS),$(wildcard engine/$(d)/*.h engine/$(d)/*.inc))
TOOLS      := ds4-gguf ds4-quant ds4-logitcheck ds4 ds4-bench ds4-longctx ds4-server
TEST_SRC   := $(wildcard tests/unit/*.c)
FUZZ_NAMES := fuzz_gguf fuzz_forward fuzz_safetensors fuzz_chat

OBJ     := $(ENGINE_SRC:%.c=build/obj/%.o)
SAN_OBJ := $(ENGINE_SRC:%.c=build/san/%.o)

# make CUDA=1: the CUDA backend (cuda/) in libds4.a and the tools, with the CUDA runtime
# linked statically, so the binaries start where there is no GPU or driver. CUDA_ARCHS:
# the GPUs to compile for (default Ampere to Blackwell, with PTX for later ones). The
# sanitizer builds stay CPU-only.
CUDA ?= 0
ifeq ($(CUDA),1)
NVCC       ?= nvcc
CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC)))
CUDA_ARCHS ?= 80 86 89 90a 120
CUDA_GENCODE := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
                -gencode arch=compute_$(firstword $(CUDA_ARCHS)),code=compute_$(firstword $(CUDA_ARCHS))
CUDA_C   := $(wildcard cuda/*.c)
CUDA_CU  := $(wildcard cuda/*.cu)
OBJ      += $(CUDA_C:%.c=build/obj/%.o) $(CUDA_CU:%.cu=build/obj/%.o)
ENGINE_HDR += $(wildcard cuda/*.h)
LDLIBS   += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -lcudart_static -ldl -lrt -lstdc++
build/obj/engine/forward/registry.o build/obj/cuda/%.o: CPPFLAGS += -DDS4_CUDA -Icuda
all: build/tests/cuda_decode
build/tests/cuda_decode: tests/cuda/decode_test.c build/libds4.a
	@mkdir -p $(dir $@)
	@$(CC) $(ALL_CFLAGS) -Icuda $< build/libds4.a $(LDLIBS) -o $@
endif
build/obj/engine/forward/registry.o: build/cuda-flag.txt
build/cuda-flag.txt: FORCE
	@mkdir -p build
	@[ "$$(cat $@ 2>/dev/null)" = "$(CUDA)" ] || echo "$(CUDA)" >$@

build/obj/cuda/%.o: cuda/%.cu $(wildcard cuda/*.h cuda/*.cuh)
	@mkdir -p $(dir $@)
	@echo "NVCC $<"
	@$(NVCC) -O2 -std=c++17 $(CUDA_GENCODE) -Xcompiler -Wall,-Wextra -c $< -o $@

.PHONY: all deps demo test test-cuda fuzz clean
all: build/libds4.a $(TOOLS:%=bin/%)

deps:
	@sh scripts/deps.sh

GIT_SHA := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

# The commit id goes into version.o alone; this file changes only when the id does.
build/git-sha.txt: FORCE
	@mkdir -p build
	@[ "$$(cat $@ 2>/dev/null)" = "$(GIT_SHA)" ] || echo "$(GIT_SHA)" >$@
.PHONY: FORCE

build/obj/engine/base/version.o build/san/engine/base/version.o: build/git-sha.txt
build/obj/engine/base/version.o build/san/engine/base/version.o: CPPFLAGS += -DDS4_GIT_SHA='"$(GIT_SHA)"'

build/obj/%.o: %.c $(ENGINE_HDR) | deps-checked
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(ALL_CFLAGS) $(CPPFLAGS) -c $< -o $@

build/san/%.o: %.c $(ENGINE_HDR) | deps-checked
	@mkdir -p $(dir $@)
	@echo "CC (asan+ubsan) $<"
	@$(CC) $(BASE) $(WARN) $(SAN_FLAGS) $(CPPFLAGS) -c $< -o $@

# Build rules need the libraries; check once per make invocation, cheaply.
.PHONY: deps-checked
deps-checked:
	@sh scripts/deps.sh

build/libds4.a: $(OBJ)
	@rm -f $@ && ar rcs $@ $^

build/libds4-san.a: $(SAN_OBJ)
	@rm -f $@ && ar rcs $@ $^

# Each tool is one file: bin/NAME from tools/DIR/NAME.c.
TOOL_DIR_ds4-gguf := gguf
TOOL_DIR_ds4-quant := quantize
TOOL_DIR_ds4-logitcheck := logitcheck
TOOL_DIR_ds4 := ds4
TOOL_DIR_ds4-bench := bench
TOOL_DIR_ds4-longctx := longctx
TOOL_DIR_ds4-server := server
TOOL_LIBS_ds4-server := -lmicrohttpd
.SECONDEXPANSION:
$(TOOLS:%=bin/%): bin/%: tools/$$(TOOL_DIR_%)/%.c tools/flags.h build/libds4.a
	@mkdir -p bin
	@echo "LD $@"
	@$(CC) $(ALL_CFLAGS) $< build/libds4.a $(LDLIBS) $(TOOL_LIBS_$*) -o $@

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

# the CUDA backend on this machine's GPU (skipped without one): make CUDA=1 test-cuda
test-cuda: deps all
	@sh tests/cuda.sh

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
