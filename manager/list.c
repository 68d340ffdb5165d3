/* canopy-managerd: paged listings, batched reads and counts on etcd. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/etcd_range.h"
#include "manager/list.h"

/* Keys read per transaction by mgr_get_many (etcd's txn op limit). */
#define MGR_GET_BATCH 64

int mgr_list_page(struct manager *m, const char *prefix,
		  enum mgr_name_kind kind, const char *token, size_t page,
		  bool keys_only, struct etcd_kvs **out, size_t *n, char *next)
{
	char from[MGR_KEY_MAX], end[MGR_KEY_MAX];
	struct etcd_kvs *r = NULL;
	const char *name;
	size_t len = strlen(prefix);
	int rc;

	*out = NULL;
	*n = 0;
	next[0] = '\0';
	if (token && *token)
		rc = mgr_key_join(from, sizeof(from), prefix, kind, token);
	else
		rc = snprintf(from, sizeof(from), "%s", prefix) < 0 ? -EINVAL :
								      0;
	if (rc || len == 0 || len >= sizeof(end))
		return -EINVAL;
	memcpy(end, prefix, len + 1);
	end[len - 1]++; /* every prefix of ours ends in '/' */
	rc = etcd_kv_range_between(m->etcd, from, end, (int64_t)page + 1,
				   keys_only, &r);
	if (rc)
		return rc;
	if (r->n_kvs > page) {
		name = mgr_key_name(r->kvs[page].key, prefix);
		snprintf(next, MGR_KEY_MAX, "%s", name ? name : "");
	}
	*n = r->n_kvs > page ? page : r->n_kvs;
	*out = r;
	return 0;
}

static int get_batch(struct manager *m, const char *prefix,
		     const char *const *names, size_t n,
		     const ProtobufCMessageDescriptor *desc,
		     ProtobufCMessage **out)
{
	char keys[MGR_GET_BATCH][MGR_KEY_MAX];
	struct etcd_op ops[MGR_GET_BATCH];
	struct etcd_txn t = { NULL, 0, ops, n, NULL, 0 };
	struct etcd_txn_result *r = NULL;
	struct etcd_kv *kv;
	size_t i;
	int rc;

	memset(ops, 0, sizeof(ops));
	for (i = 0; i < n; i++) {
		snprintf(keys[i], MGR_KEY_MAX, "%s%s", prefix, names[i]);
		ops[i].type = ETCD_OP_RANGE;
		ops[i].key = keys[i];
	}
	rc = etcd_kv_txn(m->etcd, &t, &r);
	if (rc)
		return rc;
	for (i = 0; i < n && i < r->n_results; i++) {
		if (r->results[i].n_kvs != 1)
			continue;
		kv = &r->results[i].kvs[0];
		out[i] = protobuf_c_message_unpack(desc, NULL, kv->value_len,
						   (uint8_t *)kv->value);
	}
	etcd_txn_result_free(r);
	return 0;
}

int mgr_get_many(struct manager *m, const char *prefix,
		 const char *const *names, size_t n,
		 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	size_t i, k;
	int rc;

	for (i = 0; i < n; i++)
		out[i] = NULL;
	for (i = 0; i < n; i += k) {
		k = n - i < MGR_GET_BATCH ? n - i : MGR_GET_BATCH;
		rc = get_batch(m, prefix, names + i, k, desc, out + i);
		if (rc)
			return rc;
	}
	return 0;
}

int mgr_count(struct manager *m, const char *prefix, int64_t *count)
{
	struct etcd_range_opts o = { .prefix = true,
				     .limit = 1,
				     .keys_only = true };
	struct etcd_kvs *r = NULL;
	int rc;

	*count = 0;
	rc = etcd_kv_range(m->etcd, prefix, &o, &r);
	if (rc)
		return rc;
	*count = r->count;
	etcd_kvs_free(r);
	return 0;
}

void mgr_fail_token(struct api_call *c)
{
	api_fail(c, CN_INVALID_ARGUMENT,
		 "page_token is not valid; pass the next_page_token of the "
		 "previous page, or none for the first page");
}
