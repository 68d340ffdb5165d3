/* canopy-managerd: the audit log: every change and every denied call, in etcd and a hash-chained file. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/support/alloc.h>

#include "lib/json_esc.h"
#include "lib/log.h"
#include "lib/sys.h"
#include "manager/api_internal.h"
#include "manager/auth_mgr.h"
#include "manager/manager.h"

/* The file: verify what is there, then append after it. A damaged file
 * is moved aside (never appended to, never deleted) and a new one begun. */
int mgr_audit_open(struct manager *m)
{
	struct mgr_auth *a = m->auth;
	char aside[4096];
	int fd, rc;

	rc = mgr_seq_load(m, MGR_KEY_AUDIT_SEQ, &a->audit_seq);
	if (rc)
		return rc;
	if (!m->opt.audit_file)
		return 0;
	fd = open(m->opt.audit_file, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		rc = -errno;
		log_error("manager", "cannot open the audit file",
			  "file=%s err=\"%s\"", m->opt.audit_file,
			  cn_strerror(rc));
		return rc;
	}
	rc = audit_chain_verify_fd(fd, &a->audit);
	if (rc == -EBADMSG) {
		close(fd);
		snprintf(aside, sizeof(aside), "%s.damaged-%" PRIu64,
			 m->opt.audit_file, mgr_unix_ms());
		log_error("manager",
			  "the audit file fails its hash chain; "
			  "moved aside, a new one begins",
			  "file=%s bad_line=%" PRIu64 " aside=%s",
			  m->opt.audit_file, a->audit.bad_line, aside);
		if (rename(m->opt.audit_file, aside))
			return -errno;
		return mgr_audit_open(m);
	}
	if (rc) {
		close(fd);
		return rc;
	}
	a->audit_fd = fd;
	return 0;
}

void mgr_audit_close(struct manager *m)
{
	if (m->auth && m->auth->audit_fd >= 0) {
		(void)fdatasync(m->auth->audit_fd);
		close(m->auth->audit_fd);
		m->auth->audit_fd = -1;
	}
}

static void put_str(FILE *f, const char *key, const char *v, bool comma)
{
	fprintf(f, "%s\"%s\":", comma ? "," : "", key);
	cn_json_escape(f, v ? v : "", v ? strlen(v) : 0);
}

/* The record as one JSON line (malloc'd), or NULL. */
static char *payload(const Canopy__V1__AuditRecord *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, "{\"seq\":%" PRIu64 ",\"time_ms\":%" PRId64, r->seq,
		r->time_ms);
	put_str(f, "user", r->user, true);
	put_str(f, "source", r->source, true);
	put_str(f, "method", r->method, true);
	put_str(f, "object", r->object, true);
	put_str(f, "result", r->result, true);
	put_str(f, "message", r->message, true);
	put_str(f, "manager", r->manager, true);
	fputc('}', f);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Append r to the file: the chain head moves on. The file is synced at
 * most once per MGR_AUDIT_SYNC_MS (and at close), not per record: a sync
 * costs milliseconds on the loop thread, and every record is in etcd
 * (durable) before it is in the file. */
static int file_append(struct mgr_auth *a, const Canopy__V1__AuditRecord *r)
{
	char line[AUDIT_LINE_MAX + 1];
	uint8_t next[AUDIT_HASH_LEN];
	char *p = payload(r);
	ssize_t w;
	int len;

	if (!p)
		return -ENOMEM;
	len = audit_chain_line(a->audit.head, p, line, sizeof(line), next);
	free(p);
	if (len < 0)
		return len;
	w = write(a->audit_fd, line, (size_t)len);
	if (w != len)
		return w < 0 ? -errno : -EIO;
	if (sys_mono_ms() - a->audit_synced_ms >= MGR_AUDIT_SYNC_MS) {
		if (fdatasync(a->audit_fd))
			return -errno;
		a->audit_synced_ms = sys_mono_ms();
	}
	memcpy(a->audit.head, next, AUDIT_HASH_LEN);
	a->audit.lines++;
	return 0;
}

static void record(struct manager *m, Canopy__V1__AuditRecord *r)
{
	struct mgr_auth *a = m->auth;
	int rc;

	r->seq = a->audit_seq + 1;
	rc = mgr_seq_put(m, MGR_KEY_AUDIT_SEQ, MGR_PREFIX_AUDIT, a->audit_seq,
			 &r->base);
	if (rc == -ESTALE &&
	    mgr_seq_load(m, MGR_KEY_AUDIT_SEQ, &a->audit_seq) == 0) {
		r->seq = a->audit_seq + 1;
		rc = mgr_seq_put(m, MGR_KEY_AUDIT_SEQ, MGR_PREFIX_AUDIT,
				 a->audit_seq, &r->base);
	}
	if (!rc)
		a->audit_seq = r->seq;
	else
		log_error("manager", "audit record not stored in etcd",
			  "method=%s user=%s err=\"%s\"", r->method, r->user,
			  cn_strerror(rc));
	if (a->audit_fd >= 0 && (rc = file_append(a, r)))
		log_error("manager", "audit record not written to the file",
			  "file=%s err=\"%s\"", m->opt.audit_file,
			  cn_strerror(rc));
}

void mgr_audit_call_end(void *arg, struct api_call *c, int code,
			const char *msg)
{
	Canopy__V1__AuditRecord r = CANOPY__V1__AUDIT_RECORD__INIT;
	struct manager *m = arg;
	const char *method = strrchr(c->method, '.');
	char *peer;

	if (!m->leader || !m->auth || !m->auth->loaded)
		return;
	if (!c->auth.denied && !(c->auth.rule && c->auth.rule->mutates))
		return;
	peer = c->call ? grpc_call_get_peer(c->call) : NULL;
	r.time_ms = (int64_t)mgr_unix_ms();
	r.user = c->auth.user[0] ? c->auth.user : (char *)"-";
	r.source = peer ? peer : (char *)"";
	r.method = (char *)(method ? method + 1 : c->method);
	r.object = c->auth.object[0] ? c->auth.object : (char *)"cluster";
	r.result = (char *)cn_code_name((enum cn_code)code);
	r.message = (char *)(msg ? msg : "");
	r.manager = m->opt.id;
	record(m, &r);
	if (peer)
		gpr_free(peer);
}
