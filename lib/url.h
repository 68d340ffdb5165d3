/*
 * URL helpers for image downloads: the scheme, a copy safe to log (the
 * userinfo, which may hold a password, replaced) and the checks the
 * manager and the agent both make. Pure functions; any thread.
 */
#ifndef CANOPY_LIB_URL_H
#define CANOPY_LIB_URL_H

#include <stddef.h>

#include "lib/compiler.h"

/* Longest URL accepted. */
#define CN_URL_MAX 4096

/* Copy url's scheme (before "://"), lower-cased, into out (size n).
 * 0, or -EINVAL when there is no "scheme://" or the scheme is not
 * [A-Za-z][A-Za-z0-9+.-]* of fewer than n bytes. */
CN_MUST_CHECK int cn_url_scheme(const char *url, char *out, size_t n);

/* Copy url into out (size n, truncated) with any userinfo ("user:pass@"
 * between "://" and the host) replaced by "***@", so the copy can be
 * logged or stored. A url without "://" is copied as is. */
void cn_url_redact(const char *url, char *out, size_t n);

/* Whether url may be downloaded: 1..CN_URL_MAX bytes, no control
 * characters or spaces, scheme https (or http when allow_http), a
 * non-empty host. 0, or -EINVAL with a sentence in why (size n). */
CN_MUST_CHECK int cn_url_check(const char *url, int allow_http, char *why,
			       size_t n);

#endif
