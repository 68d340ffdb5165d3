/* Compiler attributes and small helpers shared by all of Canopy. */
#ifndef CANOPY_LIB_COMPILER_H
#define CANOPY_LIB_COMPILER_H

#include <stddef.h>

/* Fallible functions: the caller must look at the result. */
#define CN_MUST_CHECK __attribute__((warn_unused_result))
#define CN_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define CN_UNUSED __attribute__((unused))
#define CN_NORETURN __attribute__((noreturn))

#define CN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Pointer to the struct that contains member `m` at address `p`. */
#define CN_CONTAINER_OF(p, type, m) ((type *)((char *)(p)-offsetof(type, m)))

#endif
