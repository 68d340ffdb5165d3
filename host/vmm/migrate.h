/*
 * Live migration endpoints of canopy-vmm (docs/migration-protocol.md): the
 * connection both sides share (migrate_io.c), the source (migrate_send.c:
 * a migration thread driven by the control request migrate_send) and the
 * destination (migrate_recv.c: --incoming tcp:HOST:PORT, before the VM
 * runs). Stream records are vmotion/stream.h.
 */
#ifndef CANOPY_VMM_MIGRATE_H
#define CANOPY_VMM_MIGRATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/compiler.h"
#include "vmotion/stream.h"

struct vm;
struct mig_tls_conn;
struct Canopy__V1__VmmMigrateSendRequest;
struct Canopy__V1__MigrationProgress;
struct Canopy__V1__VmmMigrateResult;

/* Wait this long for any record from the peer (ms). */
#define MIG_IO_TIMEOUT_MS 30000
/* The stream's write and read buffers (bytes each): 16 TLS records. */
#define MIG_CONN_BUF (256u * 1024u)

/* Switchover timeline: named monotonic marks (docs/performance.md reads
 * them from the log). One thread. */
#define MIG_TL_MAX 40
struct mig_timeline {
	unsigned n;
	uint64_t t0;
	uint64_t ns[MIG_TL_MAX];
	char name[MIG_TL_MAX][MIG_NAME_LEN];
};

/* Start at now; mark: the step `name` ended now (dropped past MIG_TL_MAX). */
void mig_tl_start(struct mig_timeline *tl);
void mig_tl_mark(struct mig_timeline *tl, const char *name);
/* "name=US name=US ..." (each step's own duration in µs) into out. */
void mig_tl_format(const struct mig_timeline *tl, char *out, size_t outlen);
/* µs from the start to the end of the step named, or 0 if absent. */
uint64_t mig_tl_at_us(const struct mig_timeline *tl, const char *name);

/* Test-only pause points (docs/migration-protocol.md): with the environment
 * variable CANOPY_MIG_TEST_PAUSE=POINT:MS, read at start, the VMM sleeps MS
 * ms when it reaches POINT (one of the names in migrate_io.c). No effect
 * when unset. */
void mig_test_pause(const char *point);
/* How long to wait for the peer's next record (ms): MIG_IO_TIMEOUT_MS, or
 * CANOPY_MIG_TEST_IO_TIMEOUT_MS (test only: broken-link tests end in
 * seconds) when set. */
int mig_io_timeout_ms(void);

/* One end of a migration stream: the socket (and its TLS session when
 * the stream is encrypted: migrate_tls.h), the CRC-32C and byte count of
 * what was sent (source) or received (destination) since the header, and
 * an optional bandwidth limit. Owned by one thread. */
struct mig_conn {
	int fd;
	struct mig_tls_conn *tls; /* NULL: plain TCP; set once, owned */
	uint8_t *wbuf; /* MIG_CONN_BUF: what is put, not yet written */
	size_t wlen;
	uint8_t *rbuf; /* MIG_CONN_BUF: read, not yet taken [rpos, rlen) */
	size_t rpos, rlen;
	uint32_t crc;
	uint64_t bytes; /* put or received, this thread's count */
	_Atomic uint64_t written; /* bytes written out: for other threads */
	uint64_t limit_bps; /* bytes/s, 0 = unlimited */
	uint64_t t0_ns, sent_since_t0; /* for the limit */
	struct buf in; /* the last record received (head + body) */
};

void mig_conn_init(struct mig_conn *c, int fd);
/* Free the TLS session (if any) and close the socket. */
void mig_conn_close(struct mig_conn *c);
/* A write (and a TLS read inside a record) blocked longer than ms fails
 * (-ETIMEDOUT). */
void mig_conn_set_timeout(struct mig_conn *c, int ms);
/* Is anything readable now (socket or decrypted bytes)? 1, 0 or -errno. */
CN_MUST_CHECK int mig_conn_readable(struct mig_conn *c);
/* Queue n bytes to send: copied into the write buffer now (counted in crc
 * and bytes), written when the buffer is full or at mig_conn_flush. A run
 * of pages costs one write per MIG_CONN_BUF, not one per page. 0 or
 * -errno (-ENOMEM, or a write's error). */
CN_MUST_CHECK int mig_conn_put(struct mig_conn *c, const void *p, size_t n);
/* Write what is queued; sleeps to keep the bandwidth limit. 0 or -errno. */
CN_MUST_CHECK int mig_conn_flush(struct mig_conn *c);
/* Queue two pieces (n2 may be 0) and flush: sent when it returns. */
CN_MUST_CHECK int mig_conn_send(struct mig_conn *c, const void *p1, size_t n1,
				const void *p2, size_t n2);
/* Send a buffer's contents and empty it. */
CN_MUST_CHECK int mig_conn_send_buf(struct mig_conn *c, struct buf *b);
/* Receive one whole record into c->in (head validated: type known, length
 * within its limit), r pointing into it; counted in crc and bytes unless
 * it is an END record. -ECONNRESET on EOF, -ETIMEDOUT after timeout_ms,
 * -EPROTO / -EMSGSIZE for a bad head. */
CN_MUST_CHECK int mig_conn_recv(struct mig_conn *c, struct mig_rec *r,
				int timeout_ms);
/* Connect to "tcp:HOST:PORT" or "HOST:PORT" (numeric IPv4; callable under
 * the seccomp filter). fd or -errno. */
CN_MUST_CHECK int mig_connect(const char *address, int timeout_ms);
/* Split "tcp:HOST:PORT" into host (NUL-terminated, hostlen) and port. */
CN_MUST_CHECK int mig_address_parse(const char *address, char *host,
				    size_t hostlen, uint16_t *port);

/* This VM's header: memory, vCPUs, the device list and the CPUID set it
 * shows (KVM's supported set). The receiver's supported set for the check
 * comes from the same call. I/O or migration thread. */
CN_MUST_CHECK int mig_header_local(struct vm *vm, struct mig_header *h,
				   char *devices, size_t devlen);
/* Save every vCPU, the irqchip/PIT/clock and every device's state
 * (snapshot savers) as STATE records into out (heads included), marking
 * each save in tl (may be NULL). VM paused. */
CN_MUST_CHECK int mig_state_save(struct vm *vm, struct buf *out,
				 struct mig_timeline *tl);
/* Send the saved records in recs and the END that covers them, in one
 * write (one SSL_write over TLS): END is appended to recs. */
CN_MUST_CHECK int mig_final_send(struct mig_conn *c, struct buf *recs);

/* Source (migrate_send.c). Start the migration thread for rq; the reply
 * comes through control_migrate_done. -EBUSY if one runs, -EINVAL with
 * msg for a bad request. I/O thread. */
CN_MUST_CHECK int
migrate_send_start(struct vm *vm,
		   const struct Canopy__V1__VmmMigrateSendRequest *rq,
		   char *msg, size_t msglen);
/* Is an outgoing migration running (other lifecycle requests wait)? */
int migrate_busy(struct vm *vm);
/* Progress for status (NULL-safe; strings live in vm's migration). */
int migrate_progress(struct vm *vm, struct Canopy__V1__MigrationProgress *p);
/* A guest request (reset, power-off, failure) came during a migration:
 * it ends before commit, at the next page run or at the pause, and the
 * request is acted on after (on_done signals vm->event_fd again). I/O
 * thread. */
void migrate_send_cancel(struct vm *vm);
/* Stop and join a running migration (teardown); the VM resumes if it was
 * paused for it and nothing was committed. */
void migrate_send_abort(struct vm *vm);

/* In doubt (migrate_doubt.c): COMMIT was written and the destination's
 * STARTED did not come (timeout or broken connection), so it may or may
 * not run the VM. The source keeps its vCPUs and devices paused, answers
 * migrate_send with VmmMigrateResult.in_doubt (status UNKNOWN) and waits
 * for migrate_resolve. Is this VM's migration in doubt? I/O thread. */
int migrate_in_doubt(struct vm *vm);
/* migrate_resolve: resume != 0 takes the datastore locks back and runs
 * the VM here (on a resolver thread); power_off != 0 stops this VMM as
 * "powered off" (the VM is off here, its locks stay released: a later
 * start takes them); both 0 stop it as "migrated". 0: the reply comes
 * through control_migrate_done (res NULL); -EINVAL with msg for both
 * set, -EBUSY with msg when nothing is in doubt (nothing changes),
 * -EALREADY while one is carried out. A failed lock reclaim keeps the VM
 * paused and in doubt. I/O thread. */
CN_MUST_CHECK int migrate_resolve_start(struct vm *vm, int resume,
					int power_off, char *msg,
					size_t msglen);
/* Teardown: join a resolver thread still running (before freeing). */
void migrate_doubt_join(struct vm *vm);

/* Destination (migrate_recv.c). Listen on cfg.incoming, take one source,
 * receive its stream into this (not yet running) VM, send the ACK and wait
 * for COMMIT. -errno with the reason in err: the VM must not run. */
CN_MUST_CHECK int migrate_recv(struct vm *vm, char *err, size_t errlen);
/* The vCPUs run: tell the source (STARTED), announce the NICs' MACs. */
void migrate_recv_started(struct vm *vm);

/* control.c: the reply to the pending migrate_send or migrate_resolve
 * request: the error code and message (rc < 0), and/or the result (res,
 * may be NULL; an in-doubt result makes the status UNKNOWN). I/O thread. */
void control_migrate_done(struct vm *vm, int rc, const char *msg,
			  const struct Canopy__V1__VmmMigrateResult *res);

#endif
