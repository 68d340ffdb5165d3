/* Error codes: errno <-> cn_code <-> gRPC status and CLI exit status. */
#include <stdarg.h>
#include <stdio.h>

#include "lib/err.h"

#include <errno.h>
#include <string.h>

struct code_info {
	const char *name;
	const char *desc;
	int exit_status;
	int errno_val; /* positive errno that best represents the code */
};

static const struct code_info codes[CN_CODE_COUNT] = {
	[CN_OK] = { "OK", "success", 0, 0 },
	[CN_CANCELLED] = { "CANCELLED", "the operation was cancelled", 1,
			   ECANCELED },
	[CN_UNKNOWN] = { "UNKNOWN", "an unknown error occurred", 1, EIO },
	[CN_INVALID_ARGUMENT] = { "INVALID_ARGUMENT",
				  "a request argument is invalid", 2, EINVAL },
	[CN_DEADLINE_EXCEEDED] = { "DEADLINE_EXCEEDED",
				   "the operation timed out", 7, ETIMEDOUT },
	[CN_NOT_FOUND] = { "NOT_FOUND", "the object does not exist", 3,
			   ENOENT },
	[CN_ALREADY_EXISTS] = { "ALREADY_EXISTS", "the object already exists",
				4, EEXIST },
	[CN_PERMISSION_DENIED] = { "PERMISSION_DENIED", "permission denied", 6,
				   EACCES },
	[CN_RESOURCE_EXHAUSTED] = { "RESOURCE_EXHAUSTED",
				    "a resource or quota is exhausted", 1,
				    ENOSPC },
	[CN_FAILED_PRECONDITION] = { "FAILED_PRECONDITION",
				     "the object is not in a state that allows this",
				     5, EBUSY },
	[CN_ABORTED] = { "ABORTED",
			 "the operation was aborted by a conflict; retry it", 1,
			 EAGAIN },
	[CN_OUT_OF_RANGE] = { "OUT_OF_RANGE", "a value is out of range", 2,
			      ERANGE },
	[CN_UNIMPLEMENTED] = { "UNIMPLEMENTED",
			       "the peer does not support this request", 1,
			       EOPNOTSUPP },
	[CN_INTERNAL] = { "INTERNAL", "an internal error occurred", 1, EIO },
	[CN_UNAVAILABLE] = { "UNAVAILABLE",
			     "the service is unavailable; retry later", 7,
			     ECONNREFUSED },
	[CN_DATA_LOSS] = { "DATA_LOSS", "data is lost or corrupt", 1, EBADMSG },
	[CN_UNAUTHENTICATED] = { "UNAUTHENTICATED",
				 "valid credentials are required", 6, EPERM },
};

enum cn_code cn_code_from_errno(int neg_errno)
{
	switch (-neg_errno) {
	case 0:
		return CN_OK;
	case EINVAL:
	case E2BIG:
	case ENAMETOOLONG:
	case EDOM:
		return CN_INVALID_ARGUMENT;
	case ENOENT:
	case ESRCH:
	case ENODEV:
	case ENXIO:
		return CN_NOT_FOUND;
	case EEXIST:
		return CN_ALREADY_EXISTS;
	case EACCES:
		return CN_PERMISSION_DENIED;
	case EPERM:
		return CN_UNAUTHENTICATED;
	case ENOSPC:
	case ENOMEM:
	case EMFILE:
	case ENFILE:
	case EDQUOT:
	case EMSGSIZE:
	case EFBIG:
		return CN_RESOURCE_EXHAUSTED;
	case EBUSY:
	case ENOTEMPTY:
	case EROFS:
	case EISCONN:
	case ENOTCONN:
	case EALREADY:
		return CN_FAILED_PRECONDITION;
	case ETIMEDOUT:
	case ETIME:
		return CN_DEADLINE_EXCEEDED;
	case ECANCELED:
	case EINTR:
		return CN_CANCELLED;
	case EAGAIN:
	case EDEADLK:
		return CN_ABORTED;
	case ERANGE:
	case EOVERFLOW:
		return CN_OUT_OF_RANGE;
	case EOPNOTSUPP:
	case ENOSYS:
	case EPROTONOSUPPORT:
		return CN_UNIMPLEMENTED;
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ENETDOWN:
	case EPIPE:
	case ESHUTDOWN:
		return CN_UNAVAILABLE;
	case EBADMSG:
	case EILSEQ:
	case EPROTO:
		return CN_DATA_LOSS;
	default:
		return CN_INTERNAL;
	}
}

static int valid(enum cn_code code)
{
	return (int)code >= 0 && (int)code < CN_CODE_COUNT;
}

int cn_code_to_errno(enum cn_code code)
{
	return valid(code) ? -codes[code].errno_val : -EIO;
}

const char *cn_code_name(enum cn_code code)
{
	return valid(code) ? codes[code].name : codes[CN_UNKNOWN].name;
}

int cn_code_parse(const char *name, enum cn_code *out)
{
	for (int i = 0; i < CN_CODE_COUNT; i++) {
		if (strcmp(name, codes[i].name) == 0) {
			*out = (enum cn_code)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *cn_code_desc(enum cn_code code)
{
	return valid(code) ? codes[code].desc : codes[CN_UNKNOWN].desc;
}

int cn_code_grpc(enum cn_code code)
{
	return valid(code) ? (int)code : (int)CN_UNKNOWN;
}

int cn_code_exit(enum cn_code code)
{
	return valid(code) ? codes[code].exit_status : 1;
}

const char *cn_strerror(int neg_errno)
{
	const char *s;

	if (neg_errno == 0)
		return "success";
	/* strerrordesc_np returns static strings (glibc >= 2.32). */
	s = strerrordesc_np(neg_errno < 0 ? -neg_errno : neg_errno);
	return s ? s : "unknown error";
}

int cn_errf(int rc, char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (buf && len) {
		va_start(ap, fmt);
		vsnprintf(buf, len, fmt, ap);
		va_end(ap);
	}
	return rc;
}
