/* parse.h - text in and out: numbers and token-id lists from the command line and
 * files, CSV fields. */
#ifndef DS4_PARSE_H
#define DS4_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "mem.h"

/* Append s as one CSV field (quoted and escaped by libcsv). */
int ds4_csv_field(ds4_buf *b, const char *s);

/* Row `row` (0: the header) of the CSV file at path: up to max_fields fields, each cut
 * to DS4_CSV_FIELD - 1 bytes; returns how many (-1 with the error set). */
#define DS4_CSV_FIELD 256
int ds4_csv_row(const char *path, int row, char (*fields)[DS4_CSV_FIELD], int max_fields);

/* Parse all of s as a number in [min, max]; -1 with the error set otherwise. */
int ds4_parse_number(const char *s, double min, double max, double *out);

/* Parse token ids (decimal, 0..INT32_MAX) separated by commas or whitespace into a new
 * array the caller frees. An empty list is valid: *n is 0. */
int ds4_parse_token_ids(const char *s, int32_t **ids, size_t *n);

#endif
