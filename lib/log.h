/*
 * Structured logging: one line per event,
 *   2026-11-24T09:12:22.123Z level=info comp=vmm msg="vm started" vm=web1
 * to stderr (default) or to a file opened in append mode. The caller passes a
 * message and a printf-style list of key=value fields. Before it is written
 * the line is made safe: control characters (a guest or peer may have put
 * newlines in a name) are escaped as \xNN, and the value of any field whose
 * key contains a secret word (password, passwd, secret, token, credential,
 * privkey, private_key, api_key, apikey, authorization, cookie; any case) is
 * replaced by "<redacted>".
 *
 * The level and sink are process-wide (the one mutable global the
 * conventions allow). Thread-safe: each line is written with one write(2).
 */
#ifndef CANOPY_LIB_LOG_H
#define CANOPY_LIB_LOG_H

#include <stdarg.h>

#include "lib/compiler.h"

enum log_level {
	LOG_DEBUG = 0,
	LOG_INFO = 1,
	LOG_WARN = 2,
	LOG_ERROR = 3,
	LOG_OFF = 4,
};

/* Longest line written; longer lines are cut and end in "...". */
#define LOG_LINE_MAX 4096

/* Lines below level are dropped. Default LOG_INFO. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "debug", "info", "warn", "error", "off"; -EINVAL otherwise. */
CN_MUST_CHECK int log_level_parse(const char *s, enum log_level *out);
/* Send lines to path (created 0600, appended) instead of stderr; NULL
 * returns to stderr. 0 or -errno (the old sink stays on error). */
CN_MUST_CHECK int log_open_file(const char *path);
/* Send lines to an already open fd (not closed by the logger); tests use it. */
void log_set_fd(int fd);
/* Whether lines of this level are written (to skip expensive arguments). */
int log_enabled(enum log_level level);

/* Write one line. comp: short component name ("vmm", "agent"); msg: the
 * human message (quoted and escaped); kvfmt: NULL or a printf format that
 * yields space-separated key=value fields. */
void log_write(enum log_level level, const char *comp, const char *msg,
	       const char *kvfmt, ...) CN_PRINTF(4, 5);
void log_vwrite(enum log_level level, const char *comp, const char *msg,
		const char *kvfmt, va_list ap) CN_PRINTF(4, 0);

/* Format a line into out (size n >= 64) without writing it: the same text
 * log_write would write, minus the timestamp when with_time is 0. Returns the
 * length written. Exposed for tests and for sinks of our own. */
int log_format(char *out, int n, int with_time, enum log_level level,
	       const char *comp, const char *msg, const char *kvfmt, va_list ap)
	CN_PRINTF(7, 0);

/* The field format must be a string literal (or absent): that keeps guest-
 * or peer-controlled text out of format strings. Examples:
 *   log_info("vmm", "vm started");
 *   log_warn("agent", "vmm exited", "vm=%s status=%d", name, st);    */
#define log_debug(comp, msg, ...) \
	log_write(LOG_DEBUG, comp, msg, "" __VA_ARGS__)
#define log_info(comp, msg, ...) log_write(LOG_INFO, comp, msg, "" __VA_ARGS__)
#define log_warn(comp, msg, ...) log_write(LOG_WARN, comp, msg, "" __VA_ARGS__)
#define log_error(comp, msg, ...) \
	log_write(LOG_ERROR, comp, msg, "" __VA_ARGS__)

/* Print "PROG: message" to stderr and exit(1). Only for a process's start-up
 * before anything runs (conventions: a daemon survives any bad request). */
CN_NORETURN void die(const char *fmt, ...) CN_PRINTF(1, 2);

#endif
