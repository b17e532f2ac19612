/* hf_tokenizer.h - a Hugging Face tokenizer.json (byte-level BPE, as DeepSeek V3/V4 ship
 * it) written as llama.cpp-style `tokenizer.ggml.*` GGUF metadata, with the chat
 * template and special-token ids from tokenizer_config.json / config.json. */
#ifndef DS4_HF_TOKENIZER_H
#define DS4_HF_TOKENIZER_H

#include <stdint.h>

#include "gguf.h"

/* Token types as llama.cpp stores them in tokenizer.ggml.token_type. */
enum { DS4_TOKEN_NORMAL = 1, DS4_TOKEN_CONTROL = 3, DS4_TOKEN_USER_DEFINED = 4, DS4_TOKEN_UNUSED = 5 };

/* A vocabulary as tokenizer.json describes it: token strings (byte-level encoded for
 * ordinary tokens, raw text for added ones) by id, their types, and the BPE merges in
 * rank order ("left right"). Ids without a token become "[PADn]" of type UNUSED. */
typedef struct {
    char **tokens;
    int32_t *types;
    uint32_t n;
    char **merges;
    size_t n_merges;
} ds4_vocab_data;

/* Load PATH (a tokenizer.json); n_min pads the vocabulary up to at least that size. */
int ds4_vocab_from_json(const char *path, uint32_t n_min, ds4_vocab_data *out);
void ds4_vocab_data_free(ds4_vocab_data *v);
/* Apply a JSON list of added tokens ({"id", "content", "special"}, tokenizer.json's
 * added_tokens form) on top of v, replacing what those ids held: how DeepSeek V4's
 * single-token markers (<think>, </think>, ｜DSML｜, ...) go onto V3's vocabulary. */
int ds4_vocab_add_tokens(ds4_vocab_data *v, const char *overlay_path);
/* tokenizer.ggml.{model,pre,tokens,token_type,merges} for v. */
int ds4_vocab_write_gguf(const ds4_vocab_data *v, gguf_writer *w);

/* Reads DIR/tokenizer.json (and DIR/tokenizer_config.json if present), applies the
 * added-tokens overlay if not NULL, and adds the metadata to w. The token list is padded with "[PADn]" entries up to n_vocab.
 * Returns 1 when written, 0 when DIR has no tokenizer.json, -1 on error. */
int ds4_tokenizer_to_gguf(const char *dir, gguf_writer *w, uint32_t n_vocab, int64_t bos_id, int64_t eos_id,
                          const char *overlay);

#endif
