/*
 * Error codes across process boundaries. Inside a process functions return
 * 0 or a negative errno; when an error leaves the process (a gRPC status, a
 * CLI exit code, a reply on the agent bus or the VMM control socket) it is
 * mapped to a `cn_code`. Each code has a stable name, the gRPC status
 * number, the CLI exit status and a human description.
 */
#ifndef CANOPY_LIB_ERR_H
#define CANOPY_LIB_ERR_H

#include "lib/compiler.h"

/* Values equal gRPC's status codes so they can travel unchanged. */
enum cn_code {
	CN_OK = 0,
	CN_CANCELLED = 1,
	CN_UNKNOWN = 2,
	CN_INVALID_ARGUMENT = 3,
	CN_DEADLINE_EXCEEDED = 4,
	CN_NOT_FOUND = 5,
	CN_ALREADY_EXISTS = 6,
	CN_PERMISSION_DENIED = 7,
	CN_RESOURCE_EXHAUSTED = 8,
	CN_FAILED_PRECONDITION = 9,
	CN_ABORTED = 10,
	CN_OUT_OF_RANGE = 11,
	CN_UNIMPLEMENTED = 12,
	CN_INTERNAL = 13,
	CN_UNAVAILABLE = 14,
	CN_DATA_LOSS = 15,
	CN_UNAUTHENTICATED = 16,
};
#define CN_CODE_COUNT 17

/* Map a negative errno (or 0) to the code it means at an API boundary,
 * e.g. -ENOENT -> CN_NOT_FOUND, -EEXIST -> CN_ALREADY_EXISTS,
 * -ETIMEDOUT -> CN_DEADLINE_EXCEEDED. Unknown errnos map to CN_INTERNAL. */
enum cn_code cn_code_from_errno(int neg_errno);
/* The reverse, for codes received from another process: a negative errno
 * that best represents the code (CN_OK -> 0). */
int cn_code_to_errno(enum cn_code code);
/* "NOT_FOUND", ...; "UNKNOWN" for out-of-range values. */
const char *cn_code_name(enum cn_code code);
/* Parse a name as printed by cn_code_name; -EINVAL if unknown. */
CN_MUST_CHECK int cn_code_parse(const char *name, enum cn_code *out);
/* A short human description: "the object does not exist". */
const char *cn_code_desc(enum cn_code code);
/* gRPC status number (identical to the code, kept explicit for readers). */
int cn_code_grpc(enum cn_code code);
/* Exit status of the `canopy` CLI for this code: 0 OK, 2 invalid usage or
 * argument, 3 not found, 4 already exists, 5 failed precondition, 6 permission
 * or authentication, 7 unavailable or deadline, 1 anything else. */
int cn_code_exit(enum cn_code code);

/* strerror for negative errnos, thread-safe (static strings). */
const char *cn_strerror(int neg_errno);

/* Write the sentence fmt into buf (len bytes; NULL/0: none) and return
 * rc: for functions that return an error code with its explanation. */
int cn_errf(int rc, char *buf, size_t len, const char *fmt, ...)
	CN_PRINTF(4, 5);

#endif
