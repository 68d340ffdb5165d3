/* etcd client: range reads between two keys at a fixed revision (snapshots). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/etcd_internal.h"
#include "lib/etcd_range_at.h"

static int check_args(struct etcd_client *c, const char *key, const char *end,
		      int64_t limit, int64_t rev)
{
	const char *why;

	if (etcd_key_check(key, &why)) {
		etcd_set_error(c, "range: %s", why);
		return -EINVAL;
	}
	if (end && strlen(end) > ETCD_MAX_KEY_LEN) {
		etcd_set_error(c, "range: end key longer than %d bytes",
			       ETCD_MAX_KEY_LEN);
		return -EINVAL;
	}
	if (limit <= 0) {
		etcd_set_error(c, "range: limit must be > 0");
		return -EINVAL;
	}
	if (rev < 0) {
		etcd_set_error(c, "range: revision must be >= 0");
		return -EINVAL;
	}
	return 0;
}

int etcd_kv_range_between_at(struct etcd_client *c, const char *key,
			     const char *end, int64_t limit, bool keys_only,
			     int64_t rev, struct etcd_kvs **out)
{
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
	static const char all[1] = { 0 };
	int rc;

	*out = NULL;
	etcd_clear_error(c);
	rc = check_args(c, key, end, limit, rev);
	if (rc)
		return rc;
	req.key.data = (uint8_t *)key;
	req.key.len = strlen(key);
	/* etcd: range_end "\0" means "every key >= key". */
	req.range_end.data = (uint8_t *)(end && *end ? end : all);
	req.range_end.len = end && *end ? strlen(end) : 1;
	req.limit = limit;
	req.keys_only = keys_only;
	req.revision = rev;
	return etcd_kv_range_run(c, &req, out);
}
