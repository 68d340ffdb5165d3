/*
 * A small config file reader: lines of `key = value`, `#` comments, blank
 * lines ignored, values optionally in double quotes (with \" \\ \n escapes).
 * Every error names the file and line, e.g.
 *   vm.conf:7: expected 'key = value', got "memory 512"
 *   vm.conf:9: duplicate key 'cpus' (first set on line 3)
 *   vm.conf:4: memory: '12x' is not a number
 * A config is immutable after loading and may be shared between threads.
 */
#ifndef CANOPY_LIB_CONFIG_H
#define CANOPY_LIB_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"

/* Limits: a line, a key and the number of entries. */
#define CONFIG_LINE_MAX 4096
#define CONFIG_KEY_MAX 64
#define CONFIG_ENTRIES_MAX 1024
/* Largest config file accepted. */
#define CONFIG_FILE_MAX (1u << 20)

struct config;

/* Load path. On error returns -errno (-EINVAL for syntax) and writes a
 * one-line message naming file and line into err (size errlen). *out is the
 * caller's to config_free(). */
CN_MUST_CHECK int config_load(const char *path, struct config **out, char *err,
			      size_t errlen);
/* Parse text already in memory; `name` is used in messages. */
CN_MUST_CHECK int config_parse(const char *name, const char *text, size_t len,
			       struct config **out, char *err, size_t errlen);
void config_free(struct config *c);

/* Number of entries and the i-th key/value, in file order. */
size_t config_count(const struct config *c);
const char *config_key(const struct config *c, size_t i);
const char *config_value(const struct config *c, size_t i);

/* The value of key, or NULL. */
const char *config_get(const struct config *c, const char *key);
/* Typed getters: 0 when found and valid, -ENOENT when absent (out
 * untouched, so callers pre-set defaults), -EINVAL/-ERANGE with a message
 * naming file, line and key in err. Integers accept decimal and 0x hex, and
 * for get_size the suffixes K, M, G (powers of 1024). */
CN_MUST_CHECK int config_get_u64(const struct config *c, const char *key,
				 uint64_t min, uint64_t max, uint64_t *out,
				 char *err, size_t errlen);
CN_MUST_CHECK int config_get_size(const struct config *c, const char *key,
				  uint64_t min, uint64_t max, uint64_t *out,
				  char *err, size_t errlen);
/* true/false, yes/no, on/off, 1/0. */
CN_MUST_CHECK int config_get_bool(const struct config *c, const char *key,
				  int *out, char *err, size_t errlen);
/* Every key must be one of allowed[] (NULL-terminated); otherwise -EINVAL
 * and "file:line: unknown key 'memroy'". */
CN_MUST_CHECK int config_check_keys(const struct config *c,
				    const char *const *allowed, char *err,
				    size_t errlen);

#endif
