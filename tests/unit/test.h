/* test.h - a tiny unit-test harness: each suite is an array of {name, fn}; CHECK
 * records a failure with file and line and returns from the test. main.c runs every
 * suite (or those named on the command line) and prints "N passed, N failed". */
#ifndef DS4_TEST_H
#define DS4_TEST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"

typedef struct { const char *name; void (*fn)(void); } test_case;

void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_skip(const char *why);
const char *test_tmpdir(void);      /* a fresh directory for this run */
const char *test_shared_dir(void);  /* ../shared beside the checkout, or $DS4_SHARED; NULL if absent */
/* A committed model (vectors/models/NAME) converted to `type` in the run's directory,
 * then quantized with `recipe` (NULL: none), made once per run and loaded; NULL on error. */
ds4_model *test_model(const char *name, uint32_t type, const char *recipe);

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) { test_fail(__FILE__, __LINE__, "%s", #cond); return; } \
    } while (0)
#define CHECKF(cond, ...)                                                 \
    do {                                                                  \
        if (!(cond)) { test_fail(__FILE__, __LINE__, __VA_ARGS__); return; } \
    } while (0)

extern const test_case numeric_tests[], quant_tests[], gguf_tests[], safetensors_tests[], convert_tests[],
    forward_tests[], tokenizer_tests[], chat_tests[], logitcheck_tests[],
    kvfile_tests[], needle_tests[], threads_tests[], hostile_tests[], backend_tests[], perplexity_tests[], batch_step_tests[], chat_stream_tests[], api_tests[];

#endif
