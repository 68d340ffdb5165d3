/* etcd client KV calls: range, get, put, delete and result conversion. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/etcd_internal.h"

/* Copy len bytes into a new NUL-terminated buffer. */
static char *dup_bytes(const void *p, size_t len)
{
	char *s = malloc(len + 1);

	if (!s)
		return NULL;
	if (len)
		memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

int etcd_kv_copy(struct etcd_kv *dst, const Etcdserverpb__KeyValue *src)
{
	memset(dst, 0, sizeof(*dst));
	if (!src)
		return -EBADMSG;
	dst->key = dup_bytes(src->key.data, src->key.len);
	dst->value = dup_bytes(src->value.data, src->value.len);
	if (!dst->key || !dst->value) {
		etcd_kv_clear(dst);
		return -ENOMEM;
	}
	dst->key_len = src->key.len;
	dst->value_len = src->value.len;
	dst->create_revision = src->create_revision;
	dst->mod_revision = src->mod_revision;
	dst->version = src->version;
	dst->lease = src->lease;
	return 0;
}

void etcd_kv_clear(struct etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

void etcd_kv_free(struct etcd_kv *kv)
{
	if (!kv)
		return;
	etcd_kv_clear(kv);
	free(kv);
}

int etcd_kvs_copy(struct etcd_kv **out, Etcdserverpb__KeyValue *const *src,
		  size_t n)
{
	struct etcd_kv *kvs;
	size_t i;
	int rc;

	*out = NULL;
	if (n == 0)
		return 0;
	kvs = calloc(n, sizeof(*kvs));
	if (!kvs)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		rc = etcd_kv_copy(&kvs[i], src[i]);
		if (rc) {
			while (i-- > 0)
				etcd_kv_clear(&kvs[i]);
			free(kvs);
			return rc;
		}
	}
	*out = kvs;
	return 0;
}

void etcd_kvs_free(struct etcd_kvs *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->n_kvs; i++)
		etcd_kv_clear(&r->kvs[i]);
	free(r->kvs);
	free(r);
}

/* Check key and fill the key (and, for a prefix, range_end) fields. buf
 * must hold ETCD_MAX_KEY_LEN + 1 bytes. */
static int key_fields(struct etcd_client *c, const char *key, bool prefix,
		      ProtobufCBinaryData *k, ProtobufCBinaryData *end,
		      char *buf)
{
	const char *why;
	size_t end_len = 0;

	if (etcd_key_check(key, &why)) {
		etcd_set_error(c, "%s", why);
		return -EINVAL;
	}
	k->data = (uint8_t *)key;
	k->len = strlen(key);
	if (prefix) {
		etcd_prefix_end(key, k->len, buf, &end_len);
		end->data = (uint8_t *)buf;
		end->len = end_len;
	}
	return 0;
}

/* Header revision of a response; -EBADMSG when the header is missing. */
static int header_rev(struct etcd_client *c, const char *what,
		      const Etcdserverpb__ResponseHeader *h, int64_t *rev)
{
	if (!h) {
		etcd_set_error(c, "%s: response without a header", what);
		return -EBADMSG;
	}
	*rev = h->revision;
	return 0;
}

int etcd_kv_range_run(struct etcd_client *c,
		      const Etcdserverpb__RangeRequest *req,
		      struct etcd_kvs **out)
{
	Etcdserverpb__RangeResponse *resp = NULL;
	struct etcd_kvs *r = NULL;
	int rc;

	*out = NULL;
	rc = etcd_call_unary(c, "/etcdserverpb.KV/Range", &req->base,
			     &etcdserverpb__range_response__descriptor,
			     (ProtobufCMessage **)&resp);
	if (rc)
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r) {
		rc = -ENOMEM;
		goto out_resp;
	}
	rc = header_rev(c, "range", resp->header, &r->revision);
	if (rc)
		goto out_r;
	rc = etcd_kvs_copy(&r->kvs, resp->kvs, resp->n_kvs);
	if (rc)
		goto out_r;
	r->n_kvs = resp->n_kvs;
	r->more = resp->more;
	r->count = resp->count;
	*out = r;
	r = NULL;
out_r:
	free(r);
out_resp:
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return rc;
}

int etcd_kv_range(struct etcd_client *c, const char *key,
		  const struct etcd_range_opts *opts, struct etcd_kvs **out)
{
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
	char end[ETCD_MAX_KEY_LEN + 1];
	int rc;

	*out = NULL;
	etcd_clear_error(c);
	rc = key_fields(c, key, opts && opts->prefix, &req.key, &req.range_end,
			end);
	if (rc)
		return rc;
	if (opts && (opts->limit < 0 || opts->revision < 0)) {
		etcd_set_error(c, "range: limit and revision must be >= 0");
		return -EINVAL;
	}
	if (opts) {
		req.limit = opts->limit;
		req.keys_only = opts->keys_only;
		req.revision = opts->revision;
	}
	return etcd_kv_range_run(c, &req, out);
}

int etcd_kv_get(struct etcd_client *c, const char *key, struct etcd_kvs **out)
{
	int rc = etcd_kv_range(c, key, NULL, out);

	if (rc)
		return rc;
	if ((*out)->n_kvs == 0) {
		etcd_kvs_free(*out);
		*out = NULL;
		etcd_set_error(c, "key %.200s does not exist", key);
		return -ENOENT;
	}
	return 0;
}

int etcd_kv_put(struct etcd_client *c, const char *key, const void *value,
		size_t value_len, int64_t lease, int64_t *revision,
		struct etcd_kv **prev)
{
	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__PutResponse *resp = NULL;
	struct etcd_kv *p = NULL;
	int64_t rev = 0;
	int rc;

	if (prev)
		*prev = NULL;
	etcd_clear_error(c);
	rc = key_fields(c, key, false, &req.key, NULL, NULL);
	if (rc)
		return rc;
	if (!value && value_len) {
		etcd_set_error(c, "put: NULL value with a length");
		return -EINVAL;
	}
	req.value.data = (uint8_t *)value;
	req.value.len = value_len;
	req.lease = lease;
	req.prev_kv = prev != NULL;
	rc = etcd_call_unary(c, "/etcdserverpb.KV/Put", &req.base,
			     &etcdserverpb__put_response__descriptor,
			     (ProtobufCMessage **)&resp);
	if (rc)
		return rc;
	rc = header_rev(c, "put", resp->header, &rev);
	if (rc)
		goto out_resp;
	if (prev && resp->prev_kv) {
		p = malloc(sizeof(*p));
		rc = p ? etcd_kv_copy(p, resp->prev_kv) : -ENOMEM;
		if (rc) {
			free(p);
			goto out_resp;
		}
		*prev = p;
	}
	if (revision)
		*revision = rev;
out_resp:
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return rc;
}

int etcd_kv_delete(struct etcd_client *c, const char *key, bool prefix,
		   int64_t *deleted, int64_t *revision)
{
	Etcdserverpb__DeleteRangeRequest req =
		ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Etcdserverpb__DeleteRangeResponse *resp = NULL;
	char end[ETCD_MAX_KEY_LEN + 1];
	int64_t rev = 0;
	int rc;

	etcd_clear_error(c);
	rc = key_fields(c, key, prefix, &req.key, &req.range_end, end);
	if (rc)
		return rc;
	rc = etcd_call_unary(c, "/etcdserverpb.KV/DeleteRange", &req.base,
			     &etcdserverpb__delete_range_response__descriptor,
			     (ProtobufCMessage **)&resp);
	if (rc)
		return rc;
	rc = header_rev(c, "delete", resp->header, &rev);
	if (rc == 0) {
		if (deleted)
			*deleted = resp->deleted;
		if (revision)
			*revision = rev;
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return rc;
}
