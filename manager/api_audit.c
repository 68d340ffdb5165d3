/* canopy-managerd: ListAudit (paged, filtered) and VerifyAudit (the file's hash chain). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/etcd.h"
#include "manager/api_internal.h"
#include "manager/auth_mgr.h"
#include "manager/list.h"
#include "manager/manager.h"

static bool keep(const Canopy__V1__AuditRecord *a,
		 const Canopy__V1__ListAuditRequest *req)
{
	if (req->user && req->user[0] && strcmp(a->user, req->user) != 0)
		return false;
	return a->time_ms >= req->since_ms;
}

void api_list_audit(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__ListAuditRequest *req = (const void *)r;
	Canopy__V1__ListAuditResponse resp =
		CANOPY__V1__LIST_AUDIT_RESPONSE__INIT;
	Canopy__V1__AuditRecord **recs = NULL, *a;
	struct manager *m = arg;
	struct etcd_kvs *kvs = NULL;
	char next[MGR_KEY_MAX];
	size_t i, n = 0, got = 0;
	int rc;

	rc = mgr_list_page(m, MGR_PREFIX_AUDIT, MGR_NAME_TASK,
			   req->page_token ? req->page_token : "",
			   mgr_page_size(req->page_size), false, &kvs, &n,
			   next);
	if (rc == -EINVAL) {
		mgr_fail_token(c);
		return;
	}
	if (rc) {
		mgr_fail_store(m, c, rc, "reading the audit log");
		return;
	}
	recs = calloc(n ? n : 1, sizeof(*recs));
	if (!recs) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		a = canopy__v1__audit_record__unpack(
			NULL, kvs->kvs[i].value_len,
			(const uint8_t *)kvs->kvs[i].value);
		if (!a)
			continue;
		if (keep(a, req))
			recs[got++] = a;
		else
			canopy__v1__audit_record__free_unpacked(a, NULL);
	}
	resp.n_records = got;
	resp.records = recs;
	resp.next_page_token = next;
	api_reply(c, &resp.base);
out:
	for (i = 0; i < got; i++)
		canopy__v1__audit_record__free_unpacked(recs[i], NULL);
	free(recs);
	etcd_kvs_free(kvs);
}

void api_verify_audit(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	Canopy__V1__VerifyAuditResponse resp =
		CANOPY__V1__VERIFY_AUDIT_RESPONSE__INIT;
	struct manager *m = arg;
	struct audit_verify v;
	char msg[256];
	int fd, rc;

	(void)r;
	if (!m->opt.audit_file) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "this manager keeps no audit file (--audit-file)");
		return;
	}
	fd = open(m->opt.audit_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "cannot open the audit file %s: %s", m->opt.audit_file,
			 strerror(errno));
		return;
	}
	rc = audit_chain_verify_fd(fd, &v);
	close(fd);
	resp.file = (char *)m->opt.audit_file;
	resp.lines = v.lines;
	resp.bad_line = v.bad_line;
	if (rc == -EBADMSG)
		snprintf(msg, sizeof(msg),
			 "line %llu breaks the hash chain: the file was "
			 "edited, or lines were removed or reordered",
			 (unsigned long long)v.bad_line);
	else if (rc)
		snprintf(msg, sizeof(msg), "cannot read the file: %s",
			 strerror(-rc));
	else if (v.lines < m->auth->audit.lines ||
		 memcmp(v.head, m->auth->audit.head, AUDIT_HASH_LEN) != 0)
		snprintf(msg, sizeof(msg),
			 "the chain holds, but the file does not end at the "
			 "last record this manager wrote (%llu lines in the "
			 "file, %llu written): lines were cut or replaced",
			 (unsigned long long)v.lines,
			 (unsigned long long)m->auth->audit.lines);
	else
		snprintf(msg, sizeof(msg), "all %llu lines verify",
			 (unsigned long long)v.lines);
	resp.ok = rc == 0 && v.lines >= m->auth->audit.lines &&
		  memcmp(v.head, m->auth->audit.head, AUDIT_HASH_LEN) == 0;
	resp.message = msg;
	api_reply(c, &resp.base);
}
