/* etcd client input checks: endpoint lists, keys, prefix ranges, statuses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/etcd_internal.h"

/* Is c allowed in a host name or address ("[::1]" included)? */
static bool host_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ||
	       c == ':' || c == '[' || c == ']';
}

/* Check "host:port" (s, len) and copy it into out. */
static int parse_one(const char *s, size_t len, char *out, const char **why)
{
	const char *colon;
	size_t host_len, i;
	unsigned long port = 0;

	if (len >= 7 && strncmp(s, "http://", 7) == 0) {
		s += 7;
		len -= 7;
	} else if (len >= 8 && strncmp(s, "https://", 8) == 0) {
		*why = "https:// endpoints are not written as URLs: give "
		       "host:port and the etcd CA (canopy-managerd "
		       "--etcd-cacert) for TLS";
		return -EPROTONOSUPPORT;
	}
	if (len == 0) {
		*why = "empty endpoint in the list";
		return -EINVAL;
	}
	if (len >= ETCD_ENDPOINT_MAX) {
		*why = "endpoint longer than 255 characters";
		return -EINVAL;
	}
	colon = memrchr(s, ':', len);
	if (!colon || colon == s || (size_t)(colon - s) == len - 1) {
		*why = "endpoint must be host:port (e.g. 127.0.0.1:2379)";
		return -EINVAL;
	}
	host_len = (size_t)(colon - s);
	for (i = 0; i < host_len; i++) {
		if (!host_char_ok(s[i])) {
			*why = "endpoint host has an invalid character";
			return -EINVAL;
		}
	}
	for (i = host_len + 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || port > 65535) {
			*why = "endpoint port must be a number 1..65535";
			return -EINVAL;
		}
		port = port * 10 + (unsigned long)(s[i] - '0');
	}
	if (port == 0 || port > 65535) {
		*why = "endpoint port must be a number 1..65535";
		return -EINVAL;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

int etcd_endpoints_parse(const char *list, struct etcd_endpoints *eps,
			 const char **why)
{
	const char *p, *comma;
	size_t len;
	int rc;

	*why = "";
	eps->n = 0;
	if (!list || !*list) {
		*why = "no etcd endpoint given";
		return -EINVAL;
	}
	for (p = list;; p = comma + 1) {
		comma = strchr(p, ',');
		len = comma ? (size_t)(comma - p) : strlen(p);
		if (eps->n == ETCD_MAX_ENDPOINTS) {
			*why = "more than 16 etcd endpoints";
			return -EINVAL;
		}
		rc = parse_one(p, len, eps->host_port[eps->n], why);
		if (rc)
			return rc;
		eps->n++;
		if (!comma)
			break;
	}
	return 0;
}

int etcd_key_check(const char *key, const char **why)
{
	size_t len;

	if (!key || !*key) {
		*why = "empty key (etcd keys must be at least one byte)";
		return -EINVAL;
	}
	len = strnlen(key, ETCD_MAX_KEY_LEN + 1);
	if (len > ETCD_MAX_KEY_LEN) {
		*why = "key longer than 4096 bytes";
		return -EINVAL;
	}
	*why = "";
	return 0;
}

void etcd_prefix_end(const char *prefix, size_t len, char *buf, size_t *end_len)
{
	size_t n = len;

	memcpy(buf, prefix, len);
	while (n > 0) {
		unsigned char last = (unsigned char)buf[n - 1];

		if (last < 0xff) {
			buf[n - 1] = (char)(last + 1);
			*end_len = n;
			return;
		}
		n--;
	}
	/* Only 0xff bytes: the range runs to the end of the keyspace. */
	buf[0] = '\0';
	*end_len = 1;
}

int etcd_status_errno(int grpc_status)
{
	if (grpc_status < 0 || grpc_status >= CN_CODE_COUNT)
		return -EIO;
	return cn_code_to_errno((enum cn_code)grpc_status);
}
