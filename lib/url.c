/* URL scheme, redaction of credentials for logs, and download checks. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/url.h"

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_scheme_char(char c)
{
	return is_alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '.' ||
	       c == '-';
}

int cn_url_scheme(const char *url, char *out, size_t n)
{
	const char *sep = url ? strstr(url, "://") : NULL;
	size_t len, i;

	if (!sep || sep == url || !is_alpha(url[0]))
		return -EINVAL;
	len = (size_t)(sep - url);
	if (len >= n)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (!is_scheme_char(url[i]))
			return -EINVAL;
		out[i] = (url[i] >= 'A' && url[i] <= 'Z') ?
				 (char)(url[i] - 'A' + 'a') :
				 url[i];
	}
	out[len] = '\0';
	return 0;
}

/* The end of the authority part that starts at p. */
static const char *authority_end(const char *p)
{
	return p + strcspn(p, "/?#");
}

void cn_url_redact(const char *url, char *out, size_t n)
{
	const char *sep, *host, *end, *at = NULL, *q;

	if (!n)
		return;
	sep = url ? strstr(url, "://") : NULL;
	if (!sep) {
		snprintf(out, n, "%s", url ? url : "");
		return;
	}
	host = sep + 3;
	end = authority_end(host);
	for (q = host; q < end; q++)
		if (*q == '@')
			at = q; /* the last '@' ends the userinfo */
	if (!at) {
		snprintf(out, n, "%s", url);
		return;
	}
	snprintf(out, n, "%.*s***%s", (int)(host - url), url, at);
}

int cn_url_check(const char *url, int allow_http, char *why, size_t n)
{
	char scheme[16];
	const char *host, *end, *p;
	size_t len = url ? strlen(url) : 0;

	if (len == 0 || len > CN_URL_MAX) {
		snprintf(why, n, "the url must be 1..%d bytes", CN_URL_MAX);
		return -EINVAL;
	}
	for (p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			snprintf(why, n,
				 "the url contains a space or a control "
				 "character; percent-encode it");
			return -EINVAL;
		}
	if (cn_url_scheme(url, scheme, sizeof(scheme)) < 0) {
		snprintf(why, n,
			 "the url has no scheme; give https://HOST/PATH");
		return -EINVAL;
	}
	if (strcmp(scheme, "https") != 0 &&
	    !(allow_http && strcmp(scheme, "http") == 0)) {
		snprintf(why, n, "url scheme '%s' is not allowed; use https%s",
			 scheme,
			 allow_http ? " or http" :
				      " (http only when the manager runs with "
				      "--image-allow-http)");
		return -EINVAL;
	}
	host = strstr(url, "://") + 3;
	end = authority_end(host);
	p = memchr(host, '@', (size_t)(end - host));
	while (p && memchr(p + 1, '@', (size_t)(end - p - 1)))
		p = memchr(p + 1, '@', (size_t)(end - p - 1));
	if ((p ? p + 1 : host) == end) {
		snprintf(why, n, "the url has no host; give https://HOST/PATH");
		return -EINVAL;
	}
	return 0;
}
