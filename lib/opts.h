/*
 * A daemon's command line and --config file from one option table: each
 * option is named once, and the table says where its value goes, so the
 * long-option list, the config keys and the "fill from the file what the
 * command line left unset" step are not written out by every program.
 *
 *   canopy-x --name VALUE ... [--config FILE] [--help]
 *   FILE: "name = value" lines (lib/config.h) with the same names.
 *
 * Options given on the command line win over the file. --config and --help
 * are added by opt_parse; the table does not list them. Messages go to
 * stderr prefixed with the program's name. Start-up only (uses getopt's
 * globals): one thread, before anything runs.
 */
#ifndef CANOPY_LIB_OPTS_H
#define CANOPY_LIB_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/compiler.h"
#include "lib/config.h"

/* Most options in one table. */
#define OPT_DEFS_MAX 48
/* opt_parse's answer when --help printed the usage (exit 0). */
#define OPT_HELP 1

/* Where an option's value goes. */
enum opt_kind {
	/* A string: const char * at off (the last one given wins). */
	OPT_STRING,
	/* A switch without a value: int at off set to 1; in a config file a
	 * boolean (true/false, yes/no, on/off, 1/0). */
	OPT_BOOL,
	/* Given to the program's handler with id (lists, values checked at
	 * once); in a config file too unless no_config. */
	OPT_CALL,
};

struct opt_def {
	const char *name; /* long name without "--", and the config key */
	enum opt_kind kind;
	size_t off; /* OPT_STRING, OPT_BOOL: offsetof in the program's struct */
	int id; /* OPT_CALL: passed to the handler */
	bool no_config; /* command line only: not a config key */
};

/* Table entries: a string or a switch stored in field of struct type. */
#define OPT_STR(n, type, fld)                                               \
	{                                                                   \
		.name = (n), .kind = OPT_STRING, .off = offsetof(type, fld) \
	}
#define OPT_SWITCH(n, type, fld)                                          \
	{                                                                 \
		.name = (n), .kind = OPT_BOOL, .off = offsetof(type, fld) \
	}

/* A program's options. */
struct opt_prog {
	const char *name; /* "canopy-agent": the messages' prefix */
	const char *usage; /* printed for --help, a bad option or argument */
	const struct opt_def *defs; /* ends with a NULL name */
	/* An OPT_CALL option with its value: from the command line
	 * (from_config false, once per time given), or from the config file
	 * (from_config true) when the command line did not give it. 0 or a
	 * negative errno after printing why. */
	int (*handle)(void *base, int id, const char *val, bool from_config);
};

/* Parse argv into base (the program's option struct, as the offsets say),
 * then, when --config FILE was given, fill from FILE what the command
 * line did not set. 0; OPT_HELP after printing the usage on stdout;
 * -EINVAL (or the handler's error) after printing why: an unknown option,
 * a stray argument, a config file that does not load, an unknown key or a
 * bad boolean. The config file's strings live in *keep (the caller's to
 * config_free, after the last use of base; NULL when no file). */
CN_MUST_CHECK int opt_parse(const struct opt_prog *p, int argc, char **argv,
			    void *base, struct config **keep);

#endif
