/*
 * The audit log's hash chain: one record per line,
 *   PAYLOAD \t HASH
 * where HASH = hex(SHA-256(PREV || PAYLOAD)), PREV the previous line's
 * hash as 32 raw bytes (32 zero bytes before the first line). Editing,
 * inserting or deleting a line breaks the chain at that line or the next;
 * cutting lines off the end is caught by comparing the last hash with the
 * head kept elsewhere (the manager keeps it in etcd). PAYLOAD is one line
 * of text without tab or newline (the manager writes a JSON object).
 *
 * Shared by canopy-managerd (writes) and the canopy CLI (verifies a copy
 * of the file offline). Pure; callers own the buffers; any thread.
 */
#ifndef CANOPY_LIB_AUDIT_CHAIN_H
#define CANOPY_LIB_AUDIT_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"

#define AUDIT_HASH_LEN 32
/* Longest line accepted, newline included. */
#define AUDIT_LINE_MAX 8192

/*
 * Writes "PAYLOAD\tHASH\n" and a NUL to out[0..n) and the new hash to
 * next (which may alias prev). Returns the line's length (without the
 * NUL), -EINVAL (payload holds a tab or newline, or is empty), -ENOSPC,
 * -EIO (OpenSSL).
 */
int audit_chain_line(const uint8_t prev[AUDIT_HASH_LEN], const char *payload,
		     char *out, size_t n,
		     uint8_t next[AUDIT_HASH_LEN]) CN_MUST_CHECK;

struct audit_verify {
	uint64_t lines; /* lines that verified */
	uint64_t bad_line; /* 1-based first bad line, 0 when none */
	uint8_t head[AUDIT_HASH_LEN]; /* hash of the last good line */
};

/*
 * Reads the chain from fd to its end and checks every line. Returns 0 when
 * all lines verify, -EBADMSG at the first line that does not (malformed,
 * over AUDIT_LINE_MAX, no final newline, or a wrong hash; v->bad_line says
 * which), or a negative errno from read.
 */
int audit_chain_verify_fd(int fd, struct audit_verify *v) CN_MUST_CHECK;

#endif
