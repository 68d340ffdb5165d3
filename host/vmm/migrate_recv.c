/* Live migration, destination: --incoming tcp:HOST:PORT receives a VM. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/vmm/blk_ds.h"
#include "host/vmm/migrate.h"
#include "host/vmm/migrate_tls.h"
#include "host/vmm/snapshot.h"
#include "host/vmm/virtio_net.h"
#include "host/vmm/vmm.h"
#include "lib/log.h"
#include "lib/sys.h"

/* The destination between COMMIT and its vCPUs running. */
struct mig_in {
	struct mig_conn conn;
	uint64_t end_ns; /* END received */
	int io_ms; /* wait for the source's next record */
	/* From the first STATE record (the switchover) to running. */
	struct mig_timeline tl;
};

/* Wait for a source at most this long (ms); an agent normally connects
 * within a second of starting the destination. */
#define MIG_ACCEPT_TIMEOUT_MS 600000
/* Made in the VM's directory after COMMIT, before any vCPU runs: the
 * agent tells a receiver killed before it from one that may have run
 * the VM (docs/migration-protocol.md, "In doubt"). */
#define MIG_RAN_FILE "migrate-ran"

static int listen_accept(struct vm *vm, char *err, size_t errlen)
{
	char host[64];
	uint16_t port;
	int lfd, fd, rc;

	if (mig_address_parse(vm->cfg.incoming, host, sizeof(host), &port) <
	    0) {
		snprintf(
			err, errlen,
			"--incoming %s: expected tcp:HOST:PORT (PORT may be 0)",
			vm->cfg.incoming);
		return -EINVAL;
	}
	lfd = sys_tcp_listen(host, port, 1);
	if (lfd < 0) {
		snprintf(err, errlen, "--incoming %s: %s", vm->cfg.incoming,
			 strerror(-lfd));
		return lfd;
	}
	log_info("vmm", "waiting for an incoming migration",
		 "vm=%s listen=%s:%d", vm->cfg.name, host, sys_sock_port(lfd));
	rc = sys_wait_fd(lfd, POLLIN, MIG_ACCEPT_TIMEOUT_MS);
	fd = rc > 0 ? sys_accept(lfd, 0) : rc == 0 ? -ETIMEDOUT : rc;
	sys_close(lfd);
	if (fd < 0)
		snprintf(err, errlen, "incoming migration: no source: %s",
			 strerror(-fd));
	return fd;
}

/* Refuse the source in plain text (HEADER_REPLY) and say why in err. */
static int refuse_plain(struct mig_conn *c, int rc, const char *why, char *err,
			size_t errlen)
{
	struct buf out;

	buf_init(&out, 0);
	if (mig_verdict_encode(&out, MIG_REC_HEADER_REPLY, 0, why) == 0)
		(void)!mig_conn_send_buf(c, &out);
	buf_free(&out);
	snprintf(err, errlen, "incoming migration refused: %s (phase header)",
		 why);
	return rc;
}

/* Read and drop what the source sent so far (its ClientHello), so that
 * closing does not reset the connection before it reads our answer. */
static void drain(int fd)
{
	char junk[4096];

	while (sys_wait_fd(fd, POLLIN, 100) > 0 &&
	       sys_read(fd, junk, sizeof(junk)) > 0)
		;
}

/* The first bytes decide: a TLS ClientHello or a plain HEADER. With
 * credentials only TLS goes on (mutual: the source's certificate must
 * chain to our CA); without, only plain text. */
static int stream_start(struct vm *vm, struct mig_conn *c, int io_ms, char *err,
			size_t errlen)
{
	char why[MIG_MAX_REASON], desc[96];
	unsigned char first[2] = { 0, 0 };
	struct mig_tls_conn *tls = NULL;
	struct mig_rec r;
	ssize_t n = 0;
	int rc = sys_wait_fd(c->fd, POLLIN, io_ms);

	if (rc > 0)
		n = recv(c->fd, first, sizeof(first), MSG_PEEK);
	if (rc <= 0 || n <= 0) {
		snprintf(err, errlen,
			 "incoming migration: the source sent nothing (%s) "
			 "(phase header)",
			 rc == 0 ? "timed out" : "connection closed");
		return rc < 0 ? rc : rc == 0 ? -ETIMEDOUT : -ECONNRESET;
	}
	if (!vm->mig_tls) {
		log_warn("vmm", "migration stream is not encrypted",
			 "vm=%s why=\"canopy-vmm was started without "
			 "--tls-ca/--tls-cert/--tls-key\"",
			 vm->cfg.name);
		if (!mig_tls_looks_like_hello(first, (size_t)n))
			return 0;
		drain(c->fd);
		return refuse_plain(c, -EPROTONOSUPPORT,
				    "the source speaks TLS but this "
				    "destination canopy-vmm has no "
				    "--tls-ca/--tls-cert/--tls-key",
				    err, errlen);
	}
	if (!mig_tls_looks_like_hello(first, (size_t)n)) {
		/* Take its HEADER first: it then reads our answer. */
		(void)!mig_conn_recv(c, &r, io_ms);
		return refuse_plain(c, -EPROTONOSUPPORT,
				    "this destination requires an encrypted "
				    "(TLS) stream and the source sent plain "
				    "text: start the source canopy-vmm with "
				    "--tls-ca/--tls-cert/--tls-key",
				    err, errlen);
	}
	rc = mig_tls_accept(vm->mig_tls, c->fd, &tls, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen,
			 "incoming migration refused: %s (phase header)", why);
		return rc;
	}
	mig_tls_describe(tls, desc, sizeof(desc));
	c->tls = tls; /* the conn owns it from now on */
	log_info("vmm", "migration stream encrypted", "vm=%s tls=\"%s\"",
		 vm->cfg.name, desc);
	return 0;
}

/* The HEADER: decode, compare with this VM, answer. */
static int take_header(struct vm *vm, struct mig_conn *c, char *err,
		       size_t errlen)
{
	static struct mig_header src, local; /* large; main thread only */
	char devices[MIG_MAX_DEVICES], why[MIG_MAX_REASON] = "";
	struct mig_rec r;
	struct buf out;
	int rc = mig_conn_recv(c, &r, mig_io_timeout_ms());

	if (rc == 0)
		rc = r.type == MIG_REC_HEADER ? mig_header_decode(&r, &src) :
						-EPROTO;
	if (rc < 0)
		snprintf(why, sizeof(why),
			 "not a canopy migration stream "
			 "of version %d (%s)",
			 MIG_VERSION, strerror(-rc));
	else
		rc = mig_header_local(vm, &local, devices, sizeof(devices)) ?:
			     mig_header_check(&src, &local, local.cpuid,
					      local.ncpuid, why, sizeof(why));
	buf_init(&out, 0);
	if (mig_verdict_encode(&out, MIG_REC_HEADER_REPLY, rc == 0, why) == 0)
		(void)!mig_conn_send_buf(c, &out);
	buf_free(&out);
	if (rc < 0)
		snprintf(err, errlen, "incoming migration refused: %s", why);
	else
		log_info("vmm", "migration header accepted",
			 "vm=%s mem_mib=%llu cpus=%u", vm->cfg.name,
			 (unsigned long long)(src.mem_bytes >> 20), src.cpus);
	return rc;
}

static int take_pages(struct vm *vm, const struct mig_rec *r)
{
	struct mig_pages pg;
	uint64_t off, len;
	int rc = mig_pages_decode(r, vm->ram_size / MIG_PAGE_SIZE, &pg);

	if (rc < 0)
		return rc;
	off = pg.first * MIG_PAGE_SIZE;
	len = (uint64_t)pg.count * MIG_PAGE_SIZE;
	if (!pg.zero) {
		memcpy(vm->ram + off, pg.data, len);
		return 0;
	}
	/* Zero pages: give the memory back rather than write zeros. */
	if (fallocate(vm->mem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) < 0)
		memset(vm->ram + off, 0, len);
	return 0;
}

/* Act on one record of the stream; 1 after a good END. Each state
 * section's load goes on in->tl. */
static int take_record(struct vm *vm, struct mig_in *in,
		       const struct mig_rec *r, char *why, size_t whylen)
{
	struct mig_conn *c = &in->conn;
	struct mig_round rd;
	const char *name = "?";
	const uint8_t *body;
	uint32_t len, crc;
	uint64_t bytes;
	int rc;

	switch (r->type) {
	case MIG_REC_PAGES:
		return take_pages(vm, r);
	case MIG_REC_ROUND_END:
		rc = mig_round_decode(r, &rd);
		if (rc == 0)
			log_debug("vmm", "migration round received",
				  "round=%u pages=%llu", rd.round,
				  (unsigned long long)rd.pages);
		return rc;
	case MIG_REC_STATE:
		rc = mig_state_decode(r, &name, &body, &len);
		if (in->tl.n == 0)
			mig_tl_mark(&in->tl, "recv");
		if (rc == 0)
			rc = snap_section_load(vm, name, body, len);
		if (rc == 0)
			mig_tl_mark(&in->tl, name);
		if (rc < 0)
			snprintf(why, whylen, "state section '%.24s': %s", name,
				 rc == -ENOENT ? "unknown section" :
						 "invalid contents");
		return rc;
	case MIG_REC_END:
		rc = mig_end_verify(r, c->crc, c->bytes);
		if (rc == -EBADMSG && mig_end_decode(r, &crc, &bytes) == 0)
			snprintf(why, whylen,
				 "checksum mismatch: the stream is corrupt "
				 "(%llu bytes, crc %08x, expected %08x)",
				 (unsigned long long)c->bytes, c->crc, crc);
		return rc == 0 ? 1 : rc;
	default:
		return -EPROTO;
	}
}

/* Every record up to END; END's checksum checked. */
static int take_stream(struct vm *vm, struct mig_in *in, char *why,
		       size_t whylen)
{
	struct mig_rec r;
	int rc;

	for (;;) {
		rc = mig_conn_recv(&in->conn, &r, in->io_ms);
		/* The switchover's timeline starts with the first record
		 * after the last ROUND_END. */
		if (rc == 0 && r.type == MIG_REC_ROUND_END)
			mig_tl_start(&in->tl);
		if (rc < 0) {
			snprintf(why, whylen, "stream broken: %s",
				 rc == -ECONNRESET ? "the source closed it "
						     "(truncated stream)" :
						     strerror(-rc));
			return rc;
		}
		why[0] = 0;
		rc = take_record(vm, in, &r, why, whylen);
		if (rc == 1)
			return 0;
		if (rc < 0) {
			if (!why[0])
				snprintf(why, whylen, "bad %s record: %s",
					 mig_rec_name(r.type), strerror(-rc));
			return rc;
		}
	}
}

/* After END: ACK, then the source's COMMIT. */
static int ack_and_commit(struct mig_in *in, char *why, size_t whylen)
{
	struct mig_conn *c = &in->conn;
	struct mig_rec r;
	struct buf out;
	int rc;

	buf_init(&out, 0);
	rc = mig_verdict_encode(&out, MIG_REC_ACK, 1, NULL) ?:
		     mig_conn_send_buf(c, &out);
	buf_free(&out);
	if (rc < 0) {
		snprintf(why, whylen, "cannot send the ACK: %s", strerror(-rc));
		return rc;
	}
	mig_tl_mark(&in->tl, "ack");
	mig_test_pause("dst-ack");
	rc = mig_conn_recv(c, &r, in->io_ms);
	if (rc == 0 && r.type != MIG_REC_COMMIT)
		rc = -EPROTO;
	if (rc < 0)
		snprintf(why, whylen, "no COMMIT from the source (%s)",
			 strerror(-rc));
	else
		mig_tl_mark(&in->tl, "commit");
	return rc;
}

/*
 * The run marker, in the VM's directory (--jail-dir, else the control
 * socket's; none without either: no agent watches this VMM). No fsync: it
 * is read by the agent of this host after a process exit; a host crash is
 * HA's case, not this one. One left by an earlier VMM of another uid (the
 * sticky directory lets us neither truncate nor remove it) is there all
 * the same: what matters is that no vCPU runs without one (the agent
 * removes stale ones before it starts a receiver). 0, or -errno with why:
 * the VM must not run.
 */
static int mark_ran(const struct vm *vm, char *why, size_t whylen)
{
	const char *dir = vm->cfg.jail_dir, *slash;
	char path[4096];
	struct stat st;
	int fd;

	if (dir)
		snprintf(path, sizeof(path), "%s/%s", dir, MIG_RAN_FILE);
	else if (vm->cfg.control && (slash = strrchr(vm->cfg.control, '/')))
		snprintf(path, sizeof(path), "%.*s/%s",
			 (int)(slash - vm->cfg.control), vm->cfg.control,
			 MIG_RAN_FILE);
	else if (vm->cfg.control)
		snprintf(path, sizeof(path), "%s", MIG_RAN_FILE);
	else
		return 0;
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EACCES && lstat(path, &st) == 0 &&
	    S_ISREG(st.st_mode)) {
		log_info("vmm", "migration run marker already there",
			 "vm=%s path=%s", vm->cfg.name, path);
		return 0;
	}
	if (fd < 0) {
		fd = -errno;
		snprintf(why, whylen,
			 "cannot create the run marker %.120s (%s): the VM "
			 "does not run here",
			 path, strerror(-fd));
		log_error("vmm", "migration run marker not made",
			  "vm=%s path=%s err=\"%s\"", vm->cfg.name, path,
			  strerror(-fd));
		return fd;
	}
	sys_close(fd);
	return 0;
}

int migrate_recv(struct vm *vm, char *err, size_t errlen)
{
	struct mig_in *in = calloc(1, sizeof(*in));
	char why[MIG_MAX_REASON] = "";
	struct buf out;
	int fd, rc;

	if (!in)
		return -ENOMEM;
	fd = listen_accept(vm, err, errlen);
	if (fd < 0) {
		free(in);
		return fd;
	}
	mig_conn_init(&in->conn, fd);
	in->io_ms = mig_io_timeout_ms();
	mig_conn_set_timeout(&in->conn, in->io_ms);
	rc = stream_start(vm, &in->conn, in->io_ms, err, errlen);
	if (rc < 0)
		goto fail;
	rc = take_header(vm, &in->conn, err, errlen);
	if (rc < 0)
		goto fail;
	in->conn.crc = 0; /* the checksum covers what follows the header */
	in->conn.bytes = 0;
	rc = take_stream(vm, in, why, sizeof(why));
	in->end_ns = sys_mono_ns();
	mig_tl_mark(&in->tl, "end");
	/* END verified: the source released its disks' locks; take them
	 * before the ACK, or refuse (blk_ds.h). */
	if (rc == 0)
		rc = blk_ds_handover_acquire(why, sizeof(why));
	mig_tl_mark(&in->tl, "locks");
	if (rc < 0) {
		/* Tell the source (it resumes); nothing runs here. */
		buf_init(&out, 0);
		if (mig_verdict_encode(&out, MIG_REC_ACK, 0, why) == 0)
			(void)!mig_conn_send_buf(&in->conn, &out);
		buf_free(&out);
	} else {
		rc = ack_and_commit(in, why, sizeof(why));
		rc = rc ?: mark_ran(vm, why, sizeof(why));
		if (rc == 0)
			mig_test_pause("dst-marked");
	}
	if (rc < 0) {
		snprintf(err, errlen, "incoming migration failed: %s", why);
		goto fail;
	}
	log_info("vmm", "migration committed", "vm=%s bytes=%llu", vm->cfg.name,
		 (unsigned long long)in->conn.bytes);
	vm->mig_in = in;
	return 0;
fail:
	mig_conn_close(&in->conn);
	free(in);
	return rc;
}

void migrate_recv_started(struct vm *vm)
{
	struct mig_in *in = vm->mig_in;
	char steps[1024];
	struct buf out;
	uint64_t us;

	if (!in)
		return;
	us = (sys_mono_ns() - in->end_ns) / 1000;
	mig_tl_mark(&in->tl, "run");
	buf_init(&out, 0);
	if (mig_started_encode(&out, us) == 0)
		(void)!mig_conn_send_buf(&in->conn, &out);
	buf_free(&out);
	mig_tl_format(&in->tl, steps, sizeof(steps));
	log_info("vmm", "migrated VM running",
		 "vm=%s end_to_run_us=%llu announced_nics=%u steps=\"%s\"",
		 vm->cfg.name, (unsigned long long)us, virtio_net_announce(vm),
		 steps);
	mig_conn_close(&in->conn);
	free(in);
	vm->mig_in = NULL;
}
