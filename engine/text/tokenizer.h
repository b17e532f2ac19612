/* tokenizer.h - DeepSeek's byte-level BPE: added/special tokens matched first, the
 * three-stage "deepseek-v3" pre-tokenizer (digit runs of 1-3, CJK runs, the main split
 * regex; PCRE2 with Unicode properties, JIT), the GPT-2 byte-to-unicode mapping and
 * merges by rank. Loads from GGUF metadata (tokenizer.ggml.*) or a Hugging Face
 * tokenizer.json. Invalid UTF-8 is tokenized byte-wise and round-trips exactly. */
#ifndef DS4_TOKENIZER_H
#define DS4_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "hf_tokenizer.h"

typedef struct ds4_tokenizer ds4_tokenizer;

/* NULL with an error when the file has no (supported) tokenizer. */
ds4_tokenizer *ds4_tokenizer_from_gguf(const gguf_file *f);
/* The same for files that may have none: NULL without an error when the GGUF has no
 * tokenizer.ggml.model (models fed token ids only). */
ds4_tokenizer *ds4_tokenizer_if_any(const gguf_file *f);
/* A tokenizer.json, optionally with an added-tokens overlay (see ds4_vocab_add_tokens). */
ds4_tokenizer *ds4_tokenizer_from_json(const char *path, const char *overlay);
void ds4_tokenizer_free(ds4_tokenizer *t);

/* Append the ids of text to *ids (grown with realloc; *n counts them). With
 * parse_special, added tokens written in the text become their ids; without, the text
 * is taken literally (for untrusted content). */
int ds4_tokenize(const ds4_tokenizer *t, const char *text, size_t len, bool parse_special, int32_t **ids, size_t *n);

/* The bytes a token stands for (special tokens: their text). */
int ds4_token_bytes(const ds4_tokenizer *t, int32_t id, const char **bytes, size_t *len);
/* A hash of the vocabulary (every token's bytes and type, and BOS): two models whose
 * predictions are compared token by token must agree on it. */
uint64_t ds4_tokenizer_hash(const ds4_tokenizer *t);
/* ids -> bytes appended to out; out-of-range ids are an error. Special tokens are
 * written only when show_special. */
int ds4_detokenize(const ds4_tokenizer *t, const int32_t *ids, size_t n, bool show_special, ds4_buf *out);
/* How many leading bytes of buf form complete UTF-8 characters (the rest may be the
 * start of a character still being decoded). */
size_t ds4_utf8_complete(const char *buf, size_t len);

int32_t ds4_token_id(const ds4_tokenizer *t, const char *text); /* exact token text, -1 if none */
/* The token whose bytes are exactly these (an ordinary token via its byte-level text,
 * else an added token's text); -1 if none. */
int32_t ds4_token_from_bytes(const ds4_tokenizer *t, const char *bytes, size_t len);
uint32_t ds4_tokenizer_size(const ds4_tokenizer *t);
int32_t ds4_tokenizer_bos(const ds4_tokenizer *t);
int32_t ds4_tokenizer_eos(const ds4_tokenizer *t);

#endif
