/* canopy-managerd: etcd values (protobuf), fenced writes, small helpers. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/etcd.h"
#include "lib/log.h"
#include "manager/manager.h"

uint64_t mgr_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

char *mgr_strdup(const char *s)
{
	return strdup(s ? s : "");
}

int mgr_set_str(char **field, const char *s)
{
	char *copy = mgr_strdup(s);

	if (!copy)
		return -ENOMEM;
	if (*field && *field != protobuf_c_empty_string)
		free(*field);
	*field = copy;
	return 0;
}

size_t mgr_page_size(uint32_t asked)
{
	if (asked == 0)
		return MGR_PAGE_DEFAULT;
	return asked > MGR_PAGE_MAX ? MGR_PAGE_MAX : asked;
}

int mgr_get_msg(struct manager *m, const char *key,
		const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	return mgr_get_msg_rev(m, key, desc, out, NULL);
}

int mgr_get_msg_rev(struct manager *m, const char *key,
		    const ProtobufCMessageDescriptor *desc,
		    ProtobufCMessage **out, int64_t *rev)
{
	struct etcd_kvs *r = NULL;
	int rc;

	*out = NULL;
	rc = etcd_kv_get(m->etcd, key, &r);
	if (rc)
		return rc;
	if (rev)
		*rev = r->revision;
	*out = protobuf_c_message_unpack(desc, NULL, r->kvs[0].value_len,
					 (const uint8_t *)r->kvs[0].value);
	etcd_kvs_free(r);
	if (!*out) {
		log_error("manager", "stored record does not decode", "key=%s",
			  key);
		return -EBADMSG;
	}
	return 0;
}

/* Run a txn guarded by our leader lease (plus cmp when not NULL). */
static int fenced(struct manager *m, const struct etcd_cmp *cmp,
		  const struct etcd_op *ops, size_t n_ops)
{
	struct etcd_cmp cmps[2] = {
		{ .key = MGR_KEY_LEADER,
		  .target = ETCD_CMP_LEASE,
		  .result = ETCD_CMP_EQUAL,
		  .number = m->lease },
	};
	struct etcd_op check = { .type = ETCD_OP_RANGE, .key = MGR_KEY_LEADER };
	struct etcd_txn t = { cmps, 1, ops, n_ops, &check, 1 };
	struct etcd_txn_result *r = NULL;
	int rc;

	if (!m->leader)
		return -EPERM;
	if (cmp) {
		cmps[1] = *cmp;
		t.n_cmps = 2;
	}
	rc = etcd_kv_txn(m->etcd, &t, &r);
	if (rc)
		return rc;
	if (r->succeeded)
		rc = 0;
	else if (cmp && r->n_results == 1 && r->results[0].n_kvs == 1 &&
		 r->results[0].kvs[0].lease == m->lease)
		rc = -ESTALE;
	else
		rc = -EPERM;
	etcd_txn_result_free(r);
	if (rc == -EPERM)
		mgr_leader_step_down(m, "a write found another leader");
	return rc;
}

int mgr_load_prefix(struct manager *m, const char *prefix,
		    const ProtobufCMessageDescriptor *desc, mgr_load_fn cache)
{
	struct etcd_range_opts o = { .prefix = true };
	struct etcd_kvs *r = NULL;
	ProtobufCMessage *msg;
	size_t i, plen = strlen(prefix);
	int rc;

	rc = etcd_kv_range(m->etcd, prefix, &o, &r);
	if (rc)
		return rc;
	for (i = 0; i < r->n_kvs && !rc; i++) {
		msg = protobuf_c_message_unpack(
			desc, NULL, r->kvs[i].value_len,
			(const uint8_t *)r->kvs[i].value);
		rc = msg ? cache(m, r->kvs[i].key + plen, msg) : -EINVAL;
		if (rc == -EINVAL) { /* one bad record does not stop the rest */
			log_error("manager", "stored record does not decode",
				  "key=%.*s", (int)r->kvs[i].key_len,
				  r->kvs[i].key);
			rc = 0;
		}
		if (msg)
			protobuf_c_message_free_unpacked(msg, NULL);
	}
	etcd_kvs_free(r);
	return rc;
}

#define MGR_EXTRA_MAX 4

int mgr_put_msg(struct manager *m, const char *key, const ProtobufCMessage *msg,
		const struct etcd_cmp *cmp, const struct etcd_op *extra,
		size_t n_extra)
{
	struct etcd_op ops[1 + MGR_EXTRA_MAX];
	size_t len = protobuf_c_message_get_packed_size(msg), i;
	uint8_t *buf;
	int rc;

	if (n_extra > MGR_EXTRA_MAX)
		return -EINVAL;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	memset(ops, 0, sizeof(ops));
	ops[0].type = ETCD_OP_PUT;
	ops[0].key = key;
	ops[0].value = buf;
	ops[0].value_len = len;
	for (i = 0; i < n_extra; i++)
		ops[1 + i] = extra[i];
	rc = fenced(m, cmp, ops, 1 + n_extra);
	free(buf);
	return rc;
}

int mgr_delete(struct manager *m, const char *key, const struct etcd_op *extra,
	       size_t n_extra)
{
	struct etcd_op ops[1 + MGR_EXTRA_MAX];
	size_t i;

	if (n_extra > MGR_EXTRA_MAX)
		return -EINVAL;
	memset(ops, 0, sizeof(ops));
	ops[0].type = ETCD_OP_DELETE;
	ops[0].key = key;
	for (i = 0; i < n_extra; i++)
		ops[1 + i] = extra[i];
	return fenced(m, NULL, ops, 1 + n_extra);
}

int mgr_delete_many(struct manager *m, const char *const *keys, size_t n)
{
	struct etcd_op ops[64];
	size_t i;

	if (n > CN_ARRAY_SIZE(ops))
		return -EINVAL;
	memset(ops, 0, sizeof(ops));
	for (i = 0; i < n; i++) {
		ops[i].type = ETCD_OP_DELETE;
		ops[i].key = keys[i];
	}
	return fenced(m, NULL, ops, n);
}

/* The index ops of vm: placement and running keys (keys in bufs). */
int mgr_vm_index_ops(const Canopy__V1__Vm *vm, bool removing,
		     struct etcd_op *ops, size_t *n, char *place, char *run)
{
	int running = vm->state ==
		      CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING;
	int rc;

	*n = 0;
	rc = mgr_key_join(run, MGR_KEY_MAX, MGR_PREFIX_RUNNING, MGR_NAME_VM,
			  vm->id);
	if (rc)
		return rc;
	memset(ops, 0, 2 * sizeof(*ops));
	ops[0].key = run;
	ops[0].type = running && !removing ? ETCD_OP_PUT : ETCD_OP_DELETE;
	ops[0].value = "";
	*n = 1;
	if (!vm->host || !*vm->host)
		return 0;
	rc = mgr_key_placement(place, MGR_KEY_MAX, vm->host, vm->id);
	if (rc)
		return rc;
	ops[1].key = place;
	ops[1].type = removing ? ETCD_OP_DELETE : ETCD_OP_PUT;
	ops[1].value = "";
	*n = 2;
	return 0;
}

int mgr_vm_save(struct manager *m, const Canopy__V1__Vm *vm,
		const struct etcd_cmp *cmp)
{
	char key[MGR_KEY_MAX], place[MGR_KEY_MAX], run[MGR_KEY_MAX];
	struct etcd_op ops[2];
	size_t n;
	int rc;

	rc = mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM,
			  vm->id);
	if (!rc)
		rc = mgr_vm_index_ops(vm, false, ops, &n, place, run);
	if (rc)
		return rc;
	return mgr_put_msg(m, key, &vm->base, cmp, ops, n);
}

int mgr_vm_remove(struct manager *m, const Canopy__V1__Vm *vm)
{
	char key[MGR_KEY_MAX], place[MGR_KEY_MAX], run[MGR_KEY_MAX];
	struct etcd_op ops[2];
	size_t n;
	int rc;

	rc = mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM,
			  vm->id);
	if (!rc)
		rc = mgr_vm_index_ops(vm, true, ops, &n, place, run);
	if (rc)
		return rc;
	return mgr_delete(m, key, ops, n);
}

void mgr_fail_store(struct manager *m, struct api_call *c, int rc,
		    const char *what)
{
	switch (rc) {
	case -EPERM:
		api_fail(c, CN_UNAVAILABLE,
			 "this manager is no longer the leader; retry "
			 "against the new leader");
		break;
	case -ECONNREFUSED:
	case -ETIMEDOUT:
		api_fail(c, CN_UNAVAILABLE,
			 "etcd is unavailable while %s (%s); retry when etcd "
			 "is back",
			 what, etcd_client_last_error(m->etcd));
		break;
	case -EBADMSG:
		api_fail(c, CN_DATA_LOSS,
			 "a stored record is corrupt while %s; see the "
			 "manager log",
			 what);
		break;
	default:
		api_fail(c, cn_code_from_errno(rc), "%s failed: %s", what,
			 cn_strerror(rc));
	}
}

int mgr_fail_agent(struct api_call *c, const char *host,
		   const Canopy__V1__Envelope *env)
{
	const Canopy__V1__Status *st;

	if (env->body_case != CANOPY__V1__ENVELOPE__BODY_RESULT)
		return 0;
	st = env->result->status;
	if (!st || st->code <= CN_CANCELLED || st->code >= CN_CODE_COUNT)
		return 0;
	api_fail(c, (enum cn_code)st->code, "host %s: %.900s", host,
		 st->message ? st->message : "");
	return 1;
}

int mgr_seq_load(struct manager *m, const char *key, uint64_t *seq)
{
	struct etcd_kvs *r = NULL;
	char buf[24];
	char *end;
	size_t n;
	int rc;

	*seq = 0;
	rc = etcd_kv_get(m->etcd, key, &r);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	n = r->kvs[0].value_len;
	if (n == 0 || n >= sizeof(buf)) {
		etcd_kvs_free(r);
		return -EBADMSG;
	}
	memcpy(buf, r->kvs[0].value, n);
	buf[n] = '\0';
	etcd_kvs_free(r);
	errno = 0;
	*seq = strtoull(buf, &end, 10);
	return *end || errno ? -EBADMSG : 0;
}

int mgr_seq_put(struct manager *m, const char *seq_key, const char *prefix,
		uint64_t cur, const ProtobufCMessage *msg)
{
	char key[MGR_KEY_MAX], was[24], next[24];
	struct etcd_cmp cmp = { .key = seq_key };
	struct etcd_op op = { .type = ETCD_OP_PUT, .key = seq_key };
	int len;

	snprintf(was, sizeof(was), "%" PRIu64, cur);
	snprintf(next, sizeof(next), "%" PRIu64, cur + 1);
	if (cur == 0) {
		cmp.target = ETCD_CMP_VERSION; /* absent */
	} else {
		cmp.target = ETCD_CMP_VALUE;
		cmp.value = was;
		cmp.value_len = strlen(was);
	}
	op.value = next;
	op.value_len = strlen(next);
	len = snprintf(key, sizeof(key), "%s%020" PRIu64, prefix, cur + 1);
	if (len < 0 || (size_t)len >= sizeof(key))
		return -ENAMETOOLONG;
	return mgr_put_msg(m, key, msg, &cmp, &op, 1);
}
