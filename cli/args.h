/*
 * Command-line parsing for the canopy CLI: options anywhere among the
 * positionals ("--name value", "--name=value", "-o json", "-ojson", "--"
 * ends options), repeatable options, and the value parsers the commands use
 * (sizes, counts, disk specs, the server address). Pure code: no I/O, no
 * globals, so every bad-input path is unit-tested (tests/unit/test_cli_args).
 */
#ifndef CANOPY_CLI_ARGS_H
#define CANOPY_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"

/* Most options a command plus the global options may define. */
#define CLI_OPTS_MAX 32
/* Most values one repeatable option may collect (--disk ...). */
#define CLI_OPT_VALUES_MAX 16
/* Most positional arguments kept. */
#define CLI_POS_MAX 16
/* Size of an error sentence. */
#define CLI_ERR_MAX 256

/* One option: long name (without "--"), optional short letter (0: none),
 * whether it takes a value, whether it may be repeated. */
struct cli_optdef {
	const char *name;
	char shortc;
	bool has_arg;
	bool repeat;
};

/* The result of a parse. Values point into argv (not copied). */
struct cli_args {
	const struct cli_optdef *defs[CLI_OPTS_MAX];
	size_t ndefs;
	unsigned count[CLI_OPTS_MAX]; /* times each option was given */
	const char *vals[CLI_OPTS_MAX][CLI_OPT_VALUES_MAX];
	const char *pos[CLI_POS_MAX];
	size_t npos;
};

/* Parse argv[0..argc) against two NULL-name-terminated tables (cmd may be
 * NULL; global is appended after it). 0, or -EINVAL with a sentence in err
 * (unknown option, missing value, value given to a flag, a non-repeatable
 * option given twice, too many values or positionals). */
CN_MUST_CHECK int cli_args_parse(struct cli_args *a,
				 const struct cli_optdef *cmd,
				 const struct cli_optdef *global, int argc,
				 const char *const *argv, char *err,
				 size_t errlen);

/* Was option `name` given? How many times? */
bool cli_args_has(const struct cli_args *a, const char *name);
/* The last value of option name, or NULL when absent. */
const char *cli_args_get(const struct cli_args *a, const char *name);
/* All values of a repeatable option: *n gets their number. */
const char *const *cli_args_all(const struct cli_args *a, const char *name,
				unsigned *n);

/* A size: a decimal number with an optional suffix K, M, G, T (powers of
 * 1024; "KiB", "MiB", "GiB", "TiB" and "B" accepted too). 0 or -EINVAL
 * (not a size) / -ERANGE (over 2^63), with a sentence in err. */
CN_MUST_CHECK int cli_parse_size(const char *s, uint64_t *out, char *err,
				 size_t errlen);
/* A decimal integer in [min, max]; -EINVAL / -ERANGE with a sentence naming
 * what (e.g. "--cpus"). */
CN_MUST_CHECK int cli_parse_uint(const char *what, const char *s, uint64_t min,
				 uint64_t max, uint64_t *out, char *err,
				 size_t errlen);

/* A --disk value: comma-separated size=SIZE, path=P, readonly, direct,
 * serial=S; at least one of size and path. */
struct cli_disk {
	char path[256];
	uint64_t size_bytes;
	bool readonly;
	bool direct;
	char serial[21];
};
CN_MUST_CHECK int cli_parse_disk(const char *s, struct cli_disk *d, char *err,
				 size_t errlen);

/* A server address "HOST:PORT" or "[V6]:PORT": port 1..65535, host
 * non-empty, no spaces; copied to out (size outlen). -EINVAL with a
 * sentence otherwise. */
CN_MUST_CHECK int cli_parse_server(const char *s, char *out, size_t outlen,
				   char *err, size_t errlen);

/* Most managers one --server list may name. */
#define CLI_SERVERS_MAX 8
/* Longest single "HOST:PORT". */
#define CLI_ADDR_MAX 256

/* A comma-separated list of server addresses ("m1:7443,m2:7443"), each
 * checked as by cli_parse_server, into out[0..*n). -EINVAL with a sentence
 * (empty item, bad address, more than CLI_SERVERS_MAX). */
CN_MUST_CHECK int cli_parse_server_list(const char *s,
					char (*out)[CLI_ADDR_MAX], size_t *n,
					char *err, size_t errlen);

/* A duration in seconds ("30", "1.5"): milliseconds in *ms, 1 ms .. 24 h. */
CN_MUST_CHECK int cli_parse_seconds(const char *what, const char *s,
				    unsigned *ms, char *err, size_t errlen);

#endif
