/* etcd client transactions: txn, create-if-absent and compare-and-swap. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/etcd_internal.h"

/* Most compares, and most ops per branch, in one transaction. */
#define ETCD_TXN_MAX 64

/* The request being built; heap-allocated (prefix ends are large). */
struct txn_req {
	Etcdserverpb__TxnRequest req;
	Etcdserverpb__Compare cmp[ETCD_TXN_MAX];
	Etcdserverpb__Compare *cmpp[ETCD_TXN_MAX];
	Etcdserverpb__RequestOp op[2][ETCD_TXN_MAX];
	Etcdserverpb__RequestOp *opp[2][ETCD_TXN_MAX];
	Etcdserverpb__RangeRequest rr[2][ETCD_TXN_MAX];
	Etcdserverpb__PutRequest pr[2][ETCD_TXN_MAX];
	Etcdserverpb__DeleteRangeRequest dr[2][ETCD_TXN_MAX];
	char end[2][ETCD_TXN_MAX][ETCD_MAX_KEY_LEN + 1];
};

static int cmp_fill(struct etcd_client *c, const struct etcd_cmp *in,
		    Etcdserverpb__Compare *out)
{
	const char *why;

	etcdserverpb__compare__init(out);
	if (etcd_key_check(in->key, &why)) {
		etcd_set_error(c, "txn compare: %s", why);
		return -EINVAL;
	}
	if ((unsigned)in->target > ETCD_CMP_LEASE ||
	    (unsigned)in->result > ETCD_CMP_NOT_EQUAL ||
	    (in->target == ETCD_CMP_VALUE && !in->value && in->value_len)) {
		etcd_set_error(c,
			       "txn compare on %.200s: bad target, result "
			       "or value",
			       in->key);
		return -EINVAL;
	}
	out->key.data = (uint8_t *)in->key;
	out->key.len = strlen(in->key);
	out->result = (Etcdserverpb__Compare__CompareResult)in->result;
	out->target = (Etcdserverpb__Compare__CompareTarget)in->target;
	/* The oneof case numbers are the proto field numbers 4..8. */
	switch (in->target) {
	case ETCD_CMP_VERSION:
		out->target_union_case =
			ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		out->version = in->number;
		break;
	case ETCD_CMP_CREATE:
		out->target_union_case =
			ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
		out->create_revision = in->number;
		break;
	case ETCD_CMP_MOD:
		out->target_union_case =
			ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		out->mod_revision = in->number;
		break;
	case ETCD_CMP_VALUE:
		out->target_union_case =
			ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
		out->value.data = (uint8_t *)in->value;
		out->value.len = in->value_len;
		break;
	case ETCD_CMP_LEASE:
		out->target_union_case =
			ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
		out->lease = in->number;
		break;
	}
	return 0;
}

/* Fill op i of branch b from in. */
static int op_fill(struct etcd_client *c, struct txn_req *t, int b, size_t i,
		   const struct etcd_op *in)
{
	Etcdserverpb__RequestOp *op = &t->op[b][i];
	const char *why;
	size_t end_len = 0;

	etcdserverpb__request_op__init(op);
	if (etcd_key_check(in->key, &why)) {
		etcd_set_error(c, "txn op: %s", why);
		return -EINVAL;
	}
	if (in->prefix)
		etcd_prefix_end(in->key, strlen(in->key), t->end[b][i],
				&end_len);
	switch (in->type) {
	case ETCD_OP_RANGE:
		etcdserverpb__range_request__init(&t->rr[b][i]);
		t->rr[b][i].key.data = (uint8_t *)in->key;
		t->rr[b][i].key.len = strlen(in->key);
		t->rr[b][i].range_end.data = (uint8_t *)t->end[b][i];
		t->rr[b][i].range_end.len = end_len;
		op->request_case =
			ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
		op->request_range = &t->rr[b][i];
		return 0;
	case ETCD_OP_PUT:
		if (in->prefix || (!in->value && in->value_len))
			break;
		etcdserverpb__put_request__init(&t->pr[b][i]);
		t->pr[b][i].key.data = (uint8_t *)in->key;
		t->pr[b][i].key.len = strlen(in->key);
		t->pr[b][i].value.data = (uint8_t *)in->value;
		t->pr[b][i].value.len = in->value_len;
		t->pr[b][i].lease = in->lease;
		op->request_case =
			ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		op->request_put = &t->pr[b][i];
		return 0;
	case ETCD_OP_DELETE:
		etcdserverpb__delete_range_request__init(&t->dr[b][i]);
		t->dr[b][i].key.data = (uint8_t *)in->key;
		t->dr[b][i].key.len = strlen(in->key);
		t->dr[b][i].range_end.data = (uint8_t *)t->end[b][i];
		t->dr[b][i].range_end.len = end_len;
		op->request_case =
			ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
		op->request_delete_range = &t->dr[b][i];
		return 0;
	}
	etcd_set_error(c, "txn op on %.200s: bad type, prefix or value",
		       in->key);
	return -EINVAL;
}

static int txn_build(struct etcd_client *c, const struct etcd_txn *in,
		     struct txn_req *t)
{
	const struct etcd_op *ops[2] = { in->then_ops, in->else_ops };
	size_t n[2] = { in->n_then, in->n_else }, i;
	int b, rc;

	if (in->n_cmps > ETCD_TXN_MAX || n[0] > ETCD_TXN_MAX ||
	    n[1] > ETCD_TXN_MAX || (in->n_cmps && !in->cmps) ||
	    (n[0] && !ops[0]) || (n[1] && !ops[1])) {
		etcd_set_error(c, "txn: at most 64 compares and 64 ops per "
				  "branch, each array given");
		return -EINVAL;
	}
	etcdserverpb__txn_request__init(&t->req);
	for (i = 0; i < in->n_cmps; i++) {
		rc = cmp_fill(c, &in->cmps[i], &t->cmp[i]);
		if (rc)
			return rc;
		t->cmpp[i] = &t->cmp[i];
	}
	for (b = 0; b < 2; b++) {
		for (i = 0; i < n[b]; i++) {
			rc = op_fill(c, t, b, i, &ops[b][i]);
			if (rc)
				return rc;
			t->opp[b][i] = &t->op[b][i];
		}
	}
	t->req.n_compare = in->n_cmps;
	t->req.compare = t->cmpp;
	t->req.n_success = n[0];
	t->req.success = t->opp[0];
	t->req.n_failure = n[1];
	t->req.failure = t->opp[1];
	return 0;
}

void etcd_txn_result_free(struct etcd_txn_result *r)
{
	size_t i, j;

	if (!r)
		return;
	for (i = 0; i < r->n_results; i++) {
		for (j = 0; j < r->results[i].n_kvs; j++)
			etcd_kv_clear(&r->results[i].kvs[j]);
		free(r->results[i].kvs);
	}
	free(r->results);
	free(r);
}

static int txn_convert(struct etcd_client *c, Etcdserverpb__TxnResponse *resp,
		       struct etcd_txn_result *r)
{
	size_t i;
	int rc;

	if (!resp->header) {
		etcd_set_error(c, "txn: response without a header");
		return -EBADMSG;
	}
	r->revision = resp->header->revision;
	r->succeeded = resp->succeeded;
	if (resp->n_responses) {
		r->results = calloc(resp->n_responses, sizeof(*r->results));
		if (!r->results)
			return -ENOMEM;
	}
	for (i = 0; i < resp->n_responses; i++, r->n_results++) {
		Etcdserverpb__ResponseOp *op = resp->responses[i];
		struct etcd_op_result *o = &r->results[i];

		if (op->response_case ==
			    ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE &&
		    op->response_range) {
			o->type = ETCD_OP_RANGE;
			rc = etcd_kvs_copy(&o->kvs, op->response_range->kvs,
					   op->response_range->n_kvs);
			if (rc)
				return rc;
			o->n_kvs = op->response_range->n_kvs;
		} else if (op->response_case ==
				   ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE &&
			   op->response_delete_range) {
			o->type = ETCD_OP_DELETE;
			o->deleted = op->response_delete_range->deleted;
		} else {
			o->type = ETCD_OP_PUT;
		}
	}
	return 0;
}

int etcd_kv_txn(struct etcd_client *c, const struct etcd_txn *t,
		struct etcd_txn_result **out)
{
	Etcdserverpb__TxnResponse *resp = NULL;
	struct etcd_txn_result *r = NULL;
	struct txn_req *req;
	int rc;

	*out = NULL;
	etcd_clear_error(c);
	req = calloc(1, sizeof(*req));
	if (!req)
		return -ENOMEM;
	rc = txn_build(c, t, req);
	if (rc)
		goto out_req;
	rc = etcd_call_unary(c, "/etcdserverpb.KV/Txn", &req->req.base,
			     &etcdserverpb__txn_response__descriptor,
			     (ProtobufCMessage **)&resp);
	if (rc)
		goto out_req;
	r = calloc(1, sizeof(*r));
	rc = r ? txn_convert(c, resp, r) : -ENOMEM;
	if (rc) {
		etcd_txn_result_free(r);
		goto out_resp;
	}
	*out = r;
out_resp:
	protobuf_c_message_free_unpacked(&resp->base, NULL);
out_req:
	free(req);
	return rc;
}

int etcd_kv_create(struct etcd_client *c, const char *key, const void *value,
		   size_t value_len, int64_t lease, int64_t *revision)
{
	struct etcd_cmp cmp = { .key = key,
				.target = ETCD_CMP_CREATE,
				.result = ETCD_CMP_EQUAL,
				.number = 0 };
	struct etcd_op put = { .type = ETCD_OP_PUT,
			       .key = key,
			       .value = value,
			       .value_len = value_len,
			       .lease = lease };
	struct etcd_txn t = {
		.cmps = &cmp, .n_cmps = 1, .then_ops = &put, .n_then = 1
	};
	struct etcd_txn_result *r;
	int rc = etcd_kv_txn(c, &t, &r);

	if (rc)
		return rc;
	if (revision)
		*revision = r->revision;
	rc = r->succeeded ? 0 : -EEXIST;
	if (rc)
		etcd_set_error(c, "key %.200s already exists", key);
	etcd_txn_result_free(r);
	return rc;
}

int etcd_kv_cas(struct etcd_client *c, const char *key, const void *old_value,
		size_t old_len, const void *new_value, size_t new_len,
		int64_t *revision)
{
	struct etcd_cmp cmp = { .key = key,
				.target = ETCD_CMP_VALUE,
				.result = ETCD_CMP_EQUAL,
				.value = old_value,
				.value_len = old_len };
	struct etcd_op put = { .type = ETCD_OP_PUT,
			       .key = key,
			       .value = new_value,
			       .value_len = new_len };
	struct etcd_op get = { .type = ETCD_OP_RANGE, .key = key };
	struct etcd_txn t = { .cmps = &cmp,
			      .n_cmps = 1,
			      .then_ops = &put,
			      .n_then = 1,
			      .else_ops = &get,
			      .n_else = 1 };
	struct etcd_txn_result *r;
	int rc = etcd_kv_txn(c, &t, &r);

	if (rc)
		return rc;
	if (revision)
		*revision = r->revision;
	if (r->succeeded) {
		rc = 0;
	} else if (r->n_results == 1 && r->results[0].n_kvs == 0) {
		rc = -ENOENT;
		etcd_set_error(c, "key %.200s does not exist", key);
	} else {
		rc = -ESTALE;
		etcd_set_error(c, "key %.200s does not hold the expected value",
			       key);
	}
	etcd_txn_result_free(r);
	return rc;
}
