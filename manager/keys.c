/* canopy-managerd: building and checking etcd keys and the leader value. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "manager/keys.h"

static int char_ok(enum mgr_name_kind kind, char ch)
{
	switch (kind) {
	case MGR_NAME_HOST:
		return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		       (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		       ch == '-';
	case MGR_NAME_VM:
		return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		       ch == '-';
	case MGR_NAME_TASK:
		return (ch >= 'a' && ch <= 'f') || (ch >= '0' && ch <= '9') ||
		       ch == '-';
	}
	return 0;
}

static size_t name_max(enum mgr_name_kind kind)
{
	switch (kind) {
	case MGR_NAME_HOST:
		return 64;
	case MGR_NAME_VM:
		return 63;
	case MGR_NAME_TASK:
		return 32;
	}
	return 0;
}

int mgr_name_valid(enum mgr_name_kind kind, const char *s)
{
	size_t i;

	if (!s || !*s || strlen(s) > name_max(kind))
		return 0;
	for (i = 0; s[i]; i++)
		if (!char_ok(kind, s[i]))
			return 0;
	return 1;
}

int mgr_key_join(char *buf, size_t n, const char *prefix,
		 enum mgr_name_kind kind, const char *name)
{
	int len;

	if (!mgr_name_valid(kind, name))
		return -EINVAL;
	len = snprintf(buf, n, "%s%s", prefix, name);
	if (len < 0 || (size_t)len >= n)
		return -ENAMETOOLONG;
	return 0;
}

int mgr_key_event(char *buf, size_t n, uint64_t seq)
{
	int len = snprintf(buf, n, "%s%020" PRIu64, MGR_PREFIX_EVENTS, seq);

	if (len < 0 || (size_t)len >= n)
		return -ENAMETOOLONG;
	return 0;
}

int mgr_key_placement(char *buf, size_t n, const char *host, const char *vm)
{
	int len;

	if (!mgr_name_valid(MGR_NAME_HOST, host) ||
	    (vm && !mgr_name_valid(MGR_NAME_VM, vm)))
		return -EINVAL;
	len = snprintf(buf, n, "%s%s/%s", MGR_PREFIX_PLACEMENT, host,
		       vm ? vm : "");
	if (len < 0 || (size_t)len >= n)
		return -ENAMETOOLONG;
	return 0;
}

const char *mgr_key_name(const char *key, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(key, prefix, n) != 0)
		return NULL;
	return key + n;
}

int mgr_leader_format(char *buf, size_t n, const struct mgr_leader_info *info)
{
	int len = snprintf(buf, n, "id=%s api=%s bus=%s", info->id, info->api,
			   info->bus);

	if (len < 0 || (size_t)len >= n)
		return -ENAMETOOLONG;
	return 0;
}

/* Parse "name=value" at *p (value up to a space or end) into dst. */
static int field(const char **p, const char *end, const char *name, char *dst,
		 size_t size)
{
	size_t nl = strlen(name), vl = 0;
	const char *v;

	if ((size_t)(end - *p) < nl + 1 || memcmp(*p, name, nl) != 0 ||
	    (*p)[nl] != '=')
		return -EINVAL;
	v = *p + nl + 1;
	while (v + vl < end && v[vl] != ' ')
		vl++;
	if (vl == 0 || vl >= size)
		return -EINVAL;
	memcpy(dst, v, vl);
	dst[vl] = '\0';
	*p = v + vl;
	if (*p < end) {
		(*p)++; /* the space before the next field */
		if (*p == end)
			return -EINVAL; /* a trailing space */
	}
	return 0;
}

int mgr_leader_parse(const char *s, size_t len, struct mgr_leader_info *out)
{
	const char *p = s, *end = s + len;

	memset(out, 0, sizeof(*out));
	if (field(&p, end, "id", out->id, sizeof(out->id)) ||
	    field(&p, end, "api", out->api, sizeof(out->api)) ||
	    field(&p, end, "bus", out->bus, sizeof(out->bus)) || p != end)
		return -EINVAL;
	return 0;
}
