/* Live migration, source: pre-copy rounds, auto-converge, stop-and-copy,
 * commit. One migration thread; the I/O thread polls its progress. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "host/vmm/blk_ds.h"
#include "host/vmm/migrate.h"
#include "host/vmm/migrate_src.h"
#include "host/vmm/migrate_tls.h"
#include "host/vmm/vmm.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"
#include "proto/canopy_vmm.pb-c.h"

/* Defaults of a request that leaves them 0. */
#define MIG_DEFAULT_DOWNTIME_MS 100
#define MIG_DEFAULT_ROUNDS 30
#define MIG_DEFAULT_TIMEOUT_MS 120000
#define MIG_CONNECT_MS 5000
/* Auto-converge: first step and step of the vCPU throttle, its ceiling,
 * and the kick period the throttled vCPUs sleep in proportion to. */
#define MIG_THROTTLE_FIRST 20
#define MIG_THROTTLE_STEP 20
#define MIG_THROTTLE_MAX 99
#define MIG_THROTTLE_PERIOD_NS 10000000ull
/* Let this much time pass between a pre-copy dirty-log read and the
 * pause (µs): right after KVM_GET_DIRTY_LOG on a large VM (1 GiB: a few
 * ms, 64 MiB: well under 1) the vCPU answers the pause kick late, here in
 * nested KVM; the guest runs meanwhile, and a dirtying guest dirties more
 * for the final copy. 2 ms: the idle pause stays as short as with 5 ms,
 * and the final copy at 10k-50k pages/s is smaller (docs/performance.md). */
#define MIG_SETTLE_US 2000
/* An expected pause this short (ms) is not worth a pre-copy round that
 * shrinks the dirty set by less than half (worth_a_round). */
#define MIG_FINE_MS 2
/* Wait for the destination's STARTED after COMMIT (ms). */
#define MIG_STARTED_MS 10000

void migrate_src_phase_set(struct migrate *m, const char *phase)
{
	pthread_mutex_lock(&m->lock);
	snprintf(m->phase, sizeof(m->phase), "%s", phase);
	pthread_mutex_unlock(&m->lock);
}

/* Record why the migration failed; returns rc. */
static int fail(struct migrate *m, int rc, const char *fmt, ...)
	CN_PRINTF(3, 4);

static int fail(struct migrate *m, int rc, const char *fmt, ...)
{
	va_list ap;
	int n;

	pthread_mutex_lock(&m->lock);
	va_start(ap, fmt);
	n = vsnprintf(m->error, sizeof(m->error), fmt, ap);
	va_end(ap);
	/* Name the phase it failed in. */
	if (n >= 0 && (size_t)n < sizeof(m->error))
		snprintf(m->error + n, sizeof(m->error) - (size_t)n,
			 " (phase %s)", m->phase);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static int page_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;

	for (unsigned i = 0; i < MIG_PAGE_SIZE / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

static int bit(const uint64_t *bm, uint64_t i)
{
	return (int)(bm[i / 64] >> (i % 64) & 1);
}

/* Send one run of count pages from first (all zero or all data). */
static int send_run(struct migrate *m, uint64_t first, uint32_t count, int zero)
{
	uint8_t h[MIG_REC_HEAD + 16];
	struct buf b;
	int rc;

	buf_init(&b, 0);
	rc = mig_pages_put(&b, first, count, zero);
	if (rc == 0)
		memcpy(h, buf_ptr(&b), sizeof(h));
	buf_free(&b);
	if (rc < 0)
		return rc;
	/* Queued: the write buffer takes the copy the checksum covers (the
	 * guest may write the page while it is on the wire). */
	rc = mig_conn_put(&m->conn, h, sizeof(h));
	if (rc == 0 && !zero)
		rc = mig_conn_put(&m->conn, m->vm->ram + first * MIG_PAGE_SIZE,
				  (size_t)count * MIG_PAGE_SIZE);
	return rc;
}

/* Where guest RAM has backing pages: [from, to) is the data extent at or
 * after the last page asked about; pages before `from` are holes of the
 * memfd, zero without reading them (a read would allocate them). */
struct extent {
	uint64_t from, to;
};

static int is_zero(struct migrate *m, struct extent *x, uint64_t i)
{
	if (i >= x->to) {
		off_t d = lseek(m->vm->mem_fd, (off_t)(i * MIG_PAGE_SIZE),
				SEEK_DATA);
		off_t h = d < 0 ? -1 : lseek(m->vm->mem_fd, d, SEEK_HOLE);

		x->from = d < 0 ? m->pages : (uint64_t)d / MIG_PAGE_SIZE;
		x->to = h < 0 ? m->pages :
				(uint64_t)(h + MIG_PAGE_SIZE - 1) /
					MIG_PAGE_SIZE;
		if (x->to <= i) /* no answer we can use: read the page */
			x->from = 0, x->to = m->pages;
	}
	return i < x->from || page_zero(m->vm->ram + i * MIG_PAGE_SIZE);
}

/* Send every page set in bm; counts in *sent and *zeros. Only the first
 * pass over all of RAM (first = 1) asks the memfd for its holes: a page
 * dirtied since was written, so has backing, and one SEEK_HOLE over a
 * large data extent costs about a millisecond (a walk of its page cache),
 * which in the final copy is downtime. */
static int send_pages(struct migrate *m, const uint64_t *bm, int first_pass,
		      uint64_t *sent, uint64_t *zeros)
{
	struct extent x = { 0, first_pass ? 0 : m->pages };
	uint64_t i = 0;
	int rc = 0;

	*sent = *zeros = 0;
	while (i < m->pages && rc == 0) {
		uint64_t first;
		uint32_t n = 0;
		int zero;

		if (!bm[i / 64]) {
			i = (i / 64 + 1) * 64;
			continue;
		}
		if (!bit(bm, i)) {
			i++;
			continue;
		}
		first = i;
		zero = is_zero(m, &x, i);
		while (i < m->pages && n < MIG_MAX_RUN && bit(bm, i) &&
		       is_zero(m, &x, i) == zero) {
			i++;
			n++;
		}
		rc = send_run(m, first, n, zero);
		*sent += n;
		*zeros += zero ? n : 0;
		if (atomic_load(&m->cancel))
			rc = -ECANCELED;
	}
	return rc;
}

static uint64_t popcount_bm(const uint64_t *bm, uint64_t pages)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < (pages + 63) / 64; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	return n;
}

static void *throttler(void *arg)
{
	struct migrate *m = arg;

	while (!atomic_load(&m->stop_throttler)) {
		unsigned t = atomic_load(&m->vm->throttle_pct);
		uint64_t ns = MIG_THROTTLE_PERIOD_NS * 100 / (100 - (t % 100));
		uint64_t until = sys_mono_ns() + ns;
		struct timespec ts = { 0, (long)MIG_THROTTLE_PERIOD_NS / 2 };

		vm_kick_all(m->vm);
		/* The period reaches 1 s at 99 %: stop promptly all the same. */
		while (sys_mono_ns() < until &&
		       !atomic_load(&m->stop_throttler))
			nanosleep(&ts, NULL);
	}
	return NULL;
}

/* Auto-converge: take more vCPU time away. */
static void throttle_up(struct migrate *m)
{
	unsigned t = atomic_load(&m->vm->throttle_pct);

	t = t ? t + MIG_THROTTLE_STEP : MIG_THROTTLE_FIRST;
	if (t > MIG_THROTTLE_MAX)
		t = MIG_THROTTLE_MAX;
	atomic_store(&m->vm->throttle_pct, t);
	m->throttle_max = t;
	if (!m->throttler_on)
		m->throttler_on =
			pthread_create(&m->throttler, NULL, throttler, m) == 0;
	log_info("vmm", "migration auto-converge", "vm=%s throttle_pct=%u",
		 m->vm->cfg.name, t);
}

static void throttle_off(struct migrate *m)
{
	atomic_store(&m->vm->throttle_pct, 0);
	if (m->throttler_on) {
		atomic_store(&m->stop_throttler, 1);
		pthread_join(m->throttler, NULL);
		m->throttler_on = 0;
	}
}

/* One round's figures into the progress; 1 if the rest fits the target. */
static int round_done(struct migrate *m, uint32_t round, uint64_t sent,
		      uint64_t zeros, uint64_t dirty, uint64_t round_ns,
		      uint64_t bytes_total, uint64_t ns_total)
{
	struct mig_round rd = { .round = round,
				.pages = sent,
				.zero_pages = zeros,
				.bytes = 0,
				.duration_us = round_ns / 1000,
				.dirty_pages = dirty };
	uint64_t bw = ns_total ? bytes_total * 1000000000ull / ns_total : 0;
	uint64_t remaining = dirty * MIG_PAGE_SIZE;
	struct buf b;
	int rc;

	pthread_mutex_lock(&m->lock);
	m->round = round;
	m->remaining = remaining;
	m->bw_bps = bw;
	m->dirty_rate_bps = round_ns ? remaining * 1000000000ull / round_ns : 0;
	m->expect_ms = bw ? remaining * 1000 / bw : ~0ull;
	rd.bytes = m->conn.bytes;
	pthread_mutex_unlock(&m->lock);
	buf_init(&b, 0);
	rc = mig_round_encode(&b, &rd) ?: mig_conn_send_buf(&m->conn, &b);
	buf_free(&b);
	log_info("vmm", "migration round",
		 "vm=%s round=%u pages=%llu "
		 "zero=%llu dirty=%llu bw_mib_s=%llu expect_ms=%llu",
		 m->vm->cfg.name, round, (unsigned long long)sent,
		 (unsigned long long)zeros, (unsigned long long)dirty,
		 (unsigned long long)(bw >> 20),
		 (unsigned long long)m->expect_ms);
	if (rc < 0)
		return rc;
	return m->expect_ms <= m->target_ms;
}

/* Within the target: is one more round worth it for a shorter pause?
 * While rounds halve what is dirty, yes. While they only shrink it by a
 * quarter or more, yes until the pause is expected under MIG_FINE_MS: a
 * round shrinks the final copy by about the same ratio, and at 50k
 * pages/s over TLS a stop at "no longer halves" left 2,700 pages (13 ms)
 * where three more rounds (~50 ms of pre-copy) leave about 250. */
static int worth_a_round(const struct migrate *m, uint64_t sent, uint64_t dirty)
{
	if (dirty == 0)
		return 0;
	if (dirty * 2 <= sent)
		return 1;
	return dirty * 4 <= sent * 3 && m->expect_ms >= MIG_FINE_MS;
}

/* Pre-copy: round 1 sends all of RAM, each next round what was dirtied
 * meanwhile, until the rest fits the downtime target. On return *bm holds
 * the pages still to send. */
static int precopy(struct migrate *m, uint64_t **bm)
{
	uint64_t words = (m->pages + 63) / 64, t_start = sys_mono_ns();
	uint64_t bytes0 = m->conn.bytes, sent, zeros, pages, *next;
	int rc;

	*bm = calloc(words + 1, sizeof(uint64_t));
	if (!*bm)
		return -ENOMEM;
	memset(*bm, 0xff, m->pages / 64 * sizeof(uint64_t));
	if (m->pages % 64)
		(*bm)[m->pages / 64] = (1ull << (m->pages % 64)) - 1;
	migrate_src_phase_set(m, "precopy");
	mig_test_pause("src-precopy");
	for (uint32_t round = 1;; round++) {
		uint64_t t = sys_mono_ns(), dirty, now;

		/* Written out (and paced) before the dirty log is read: a
		 * bandwidth limit's sleep after the read would let the guest
		 * dirty more than the estimate counts. */
		rc = send_pages(m, *bm, round == 1, &sent, &zeros) ?:
			     mig_conn_flush(&m->conn);
		if (rc == -ECANCELED)
			return fail(m, rc,
				    "cancelled: the guest requested a "
				    "reset or power-off (%s)",
				    m->vm->reason);
		if (rc < 0)
			return fail(m, rc, "sending round %u: %s", round,
				    strerror(-rc));
		rc = dirty_log_get(m->vm, &next, &pages);
		if (rc < 0)
			return fail(m, rc, "dirty log: %s", strerror(-rc));
		m->t_fetch = sys_mono_ns();
		free(*bm);
		*bm = next;
		dirty = popcount_bm(next, pages);
		now = sys_mono_ns();
		rc = round_done(m, round, sent, zeros, dirty, now - t,
				m->conn.bytes - bytes0, now - t_start);
		if (rc < 0)
			return fail(m, rc, "stream: %s", strerror(-rc));
		/* The rest fits the target: one more round while that makes
		 * the pause shorter, and it is still worth it. */
		if (rc == 1 &&
		    (round >= m->max_rounds || !worth_a_round(m, sent, dirty)))
			return 0;
		if (rc == 1)
			continue;
		if (round >= m->max_rounds ||
		    (now - t_start) / 1000000 >= m->timeout_ms)
			return fail(m, -ETIMEDOUT,
				    "did not converge: %llu MiB still dirty "
				    "after %u rounds, expected downtime %llu "
				    "ms > %llu ms target (vCPU throttle %u%%)",
				    (unsigned long long)(m->remaining >> 20),
				    round, (unsigned long long)m->expect_ms,
				    (unsigned long long)m->target_ms,
				    atomic_load(&m->vm->throttle_pct));
		/* Dirtied faster than half of what a round sends. */
		if (round >= 2 && dirty * 2 > sent)
			throttle_up(m);
	}
}

int migrate_src_request_pending(struct vm *vm)
{
	int r;

	pthread_mutex_lock(&vm->lock);
	r = vm->req != VM_REQ_NONE;
	pthread_mutex_unlock(&vm->lock);
	return r;
}

void migrate_src_resume_guest(struct vm *vm)
{
	migrate_src_state_set(vm, VM_RUNNING);
	/* A guest request keeps the vCPUs parked for the I/O thread (on_done
	 * hands it over); devices run. */
	if (migrate_src_request_pending(vm)) {
		for (unsigned i = 0; i < vm->ndevs; i++)
			if (vm->devs[i].ops->resume)
				vm->devs[i].ops->resume(vm->devs[i].dev);
	} else {
		vm_resume_all(vm);
	}
}

void migrate_src_state_set(struct vm *vm, enum vm_state s)
{
	pthread_mutex_lock(&vm->lock);
	vm->state = s;
	pthread_mutex_unlock(&vm->lock);
}

/* Wait out what is left of MIG_SETTLE_US since the last dirty-log read.
 * Not under auto-converge: a throttled vCPU sleeps outside KVM_RUN and
 * parks at once, and a clock-paced guest woken in the wait would catch
 * up in a burst of writes that all land in the final copy. */
static void settle(struct migrate *m)
{
	uint64_t due = m->t_fetch + MIG_SETTLE_US * 1000ull,
		 now = sys_mono_ns();
	struct timespec ts;

	if (now >= due || atomic_load(&m->vm->throttle_pct))
		return;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)(due - now);
	nanosleep(&ts, NULL);
}

/* Pause, the last pages, the state, END; each step on the timeline. */
static int final_copy(struct migrate *m, uint64_t *bm)
{
	uint64_t *last, pages, zeros;
	char why[256];
	int rc;

	migrate_src_phase_set(m, "stop-and-copy");
	settle(m);
	mig_tl_start(&m->tl);
	m->pause_ns = m->tl.t0;
	m->paused = m->vm->state == VM_RUNNING; /* resume on failure */
	vm_pause_all(m->vm);
	migrate_src_state_set(m->vm, VM_PAUSED);
	mig_tl_mark(&m->tl, "pause");
	mig_test_pause("src-paused");
	/* The guest asked for a reset or a power-off before it stopped:
	 * that is for this VMM to carry out, not to migrate. */
	if (atomic_load(&m->cancel) || migrate_src_request_pending(m->vm))
		return fail(m, -ECANCELED,
			    "cancelled: the guest requested a "
			    "reset or power-off (%s)",
			    m->vm->reason);
	/* Devices paused: every disk request is complete and durable. The
	 * locks go before END so the destination can take them before its
	 * ACK (blk_ds.h). */
	rc = blk_ds_handover_release(why, sizeof(why));
	if (rc < 0)
		return fail(m, rc, "%s", why);
	mig_tl_mark(&m->tl, "release");
	rc = dirty_log_get(m->vm, &last, &pages);
	if (rc < 0)
		return fail(m, rc, "dirty log: %s", strerror(-rc));
	for (uint64_t i = 0; i < (pages + 63) / 64; i++)
		last[i] |= bm[i];
	mig_tl_mark(&m->tl, "dirty-log");
	/* State first (KVM ioctls and device savers, no I/O), then the last
	 * pages, then the state records and END in one write. */
	rc = mig_state_save(m->vm, &m->final, &m->tl);
	if (rc == 0) {
		rc = send_pages(m, last, 0, &m->final_pages, &zeros);
		mig_tl_mark(&m->tl, "pages");
	}
	free(last);
	if (rc == 0)
		rc = mig_final_send(&m->conn, &m->final);
	m->t_end = sys_mono_ns();
	mig_tl_mark(&m->tl, "send");
	if (rc < 0)
		return fail(m, rc, "sending the final state: %s",
			    strerror(-rc));
	return 0;
}

/* The destination's ACK (still stop-and-copy until it is here). */
static int wait_ack(struct migrate *m)
{
	struct mig_verdict v;
	struct mig_rec r;
	int rc;

	rc = mig_conn_recv(&m->conn, &r, m->io_ms);
	if (rc == 0)
		rc = r.type == MIG_REC_ACK ? mig_verdict_decode(&r, &v) :
					     -EPROTO;
	if (rc < 0)
		return fail(m, rc,
			    "no acknowledgement from the destination: %s",
			    strerror(-rc));
	if (!v.ok)
		return fail(m, -EPROTO,
			    "the destination rejected the stream: %s",
			    v.reason);
	mig_tl_mark(&m->tl, "ack");
	migrate_src_phase_set(m, "commit");
	mig_test_pause("src-ack");
	/* Nothing may come from a destination between its ACK and our
	 * COMMIT: readable means it closed (died) or broke the protocol.
	 * Not committing then keeps the VM here. */
	rc = mig_conn_readable(&m->conn);
	if (rc != 0)
		return fail(m, rc < 0 ? rc : -ECONNRESET,
			    "the destination went away after its ACK");
	return 0;
}

static void log_switchover(struct migrate *m, uint64_t dst_us)
{
	char steps[1024];

	mig_tl_format(&m->tl, steps, sizeof(steps));
	log_info("vmm", "migration switchover",
		 "vm=%s final_pages=%llu pause_to_end_us=%llu "
		 "pause_to_started_us=%llu dst_end_to_run_us=%llu steps=\"%s\"",
		 m->vm->cfg.name, (unsigned long long)m->final_pages,
		 (unsigned long long)mig_tl_at_us(&m->tl, "send"),
		 (unsigned long long)mig_tl_at_us(&m->tl, "started"),
		 (unsigned long long)dst_us, steps);
}

/* ACK, COMMIT, STARTED. */
static int commit(struct migrate *m)
{
	struct mig_rec r;
	struct buf b;
	uint64_t rs = 0;
	int rc;

	rc = wait_ack(m);
	if (rc < 0)
		return rc;
	buf_init(&b, 0);
	rc = mig_commit_encode(&b) ?: mig_conn_send_buf(&m->conn, &b);
	buf_free(&b);
	if (rc < 0)
		return fail(m, rc, "cannot send COMMIT: %s", strerror(-rc));
	/* From here the destination owns the VM: never resume here. */
	m->committed = 1;
	mig_tl_mark(&m->tl, "commit");
	mig_test_pause("src-committed");
	rc = mig_conn_recv(&m->conn, &r,
			   m->io_ms < MIG_STARTED_MS ? m->io_ms :
						       MIG_STARTED_MS);
	if (rc == 0 && r.type != MIG_REC_STARTED)
		rc = -EPROTO;
	if (rc == 0)
		rc = mig_started_decode(&r, &rs);
	if (rc == 0) {
		mig_tl_mark(&m->tl, "started");
		m->downtime_ms =
			(sys_mono_ns() - m->pause_ns + 999999) / 1000000;
	} else {
		/* It may run the VM or may never: the VM stays paused here
		 * until migrate_resolve says which (migrate_doubt.c). */
		m->in_doubt = 1;
		snprintf(m->doubt, sizeof(m->doubt),
			 "COMMIT was sent but the destination %s did not "
			 "confirm it runs the VM: %s",
			 m->address, strerror(-rc));
		log_warn("vmm",
			 "migration: the destination did not confirm "
			 "it runs the VM",
			 "vm=%s why=\"%s\"", m->vm->cfg.name, strerror(-rc));
	}
	log_switchover(m, rs);
	return 0;
}

static int header(struct migrate *m)
{
	struct mig_verdict v;
	struct mig_rec r;
	struct buf b;
	int rc;

	migrate_src_phase_set(m, "header");
	mig_test_pause("src-header");
	rc = mig_header_local(m->vm, &m->hdr, m->devices, sizeof(m->devices));
	buf_init(&b, 0);
	if (rc == 0)
		rc = mig_header_encode(&b, &m->hdr) ?:
			     mig_conn_send_buf(&m->conn, &b);
	buf_free(&b);
	if (rc == 0)
		rc = mig_conn_recv(&m->conn, &r, m->io_ms);
	if (rc == 0)
		rc = r.type == MIG_REC_HEADER_REPLY ?
			     mig_verdict_decode(&r, &v) :
			     -EPROTO;
	if (rc < 0)
		return fail(m, rc, "header exchange with %s: %s", m->address,
			    strerror(-rc));
	if (!v.ok)
		return fail(m, -EPERM, "the destination refused the VM: %s",
			    v.reason);
	return 0;
}

/* TLS first when this VMM has credentials (part of the header phase,
 * before pre-copy); else a warning, once per migration. */
static int secure(struct migrate *m)
{
	struct mig_tls_conn *tls = NULL;
	char why[256], desc[96];
	int rc;

	migrate_src_phase_set(m, "header");
	if (!m->vm->mig_tls) {
		log_warn("vmm", "migration stream is not encrypted",
			 "vm=%s to=%s why=\"canopy-vmm was started without "
			 "--tls-ca/--tls-cert/--tls-key\"",
			 m->vm->cfg.name, m->address);
		return 0;
	}
	rc = mig_tls_connect(m->vm->mig_tls, m->conn.fd,
			     m->tls_name[0] ? m->tls_name : NULL, &tls, why,
			     sizeof(why));
	if (rc < 0)
		return fail(m, rc, "destination %s: %s", m->address, why);
	mig_tls_describe(tls, desc, sizeof(desc));
	m->conn.tls = tls; /* the conn owns it from now on */
	log_info("vmm", "migration stream encrypted",
		 "vm=%s to=%s tls=\"%s\" name=%s", m->vm->cfg.name, m->address,
		 desc, m->tls_name[0] ? m->tls_name : "(not checked)");
	return 0;
}

static int run(struct migrate *m)
{
	uint64_t *bm = NULL;
	int fd, rc;

	migrate_src_phase_set(m, "connecting");
	fd = mig_connect(m->address, MIG_CONNECT_MS);
	if (fd < 0)
		return fail(m, fd, "cannot connect to %s: %s", m->address,
			    strerror(-fd));
	mig_conn_init(&m->conn, fd);
	m->conn.limit_bps = m->limit_bps;
	mig_conn_set_timeout(&m->conn, m->io_ms);
	rc = secure(m) ?: header(m);
	if (rc < 0)
		return rc;
	m->conn.crc = 0; /* the checksum covers what follows the header */
	m->conn.bytes = 0;
	rc = dirty_log_start(m->vm);
	if (rc < 0)
		return fail(m, rc, "dirty log: %s", strerror(-rc));
	rc = precopy(m, &bm);
	/* The throttle stays until the vCPUs are paused: a guest that fell
	 * behind its own schedule would catch up in a burst of writes. */
	if (rc == 0)
		rc = final_copy(m, bm);
	throttle_off(m);
	if (rc == 0)
		rc = commit(m);
	free(bm);
	return rc;
}

static void on_done(void *arg)
{
	struct migrate *m = arg;
	Canopy__V1__VmmMigrateResult res = CANOPY__V1__VMM_MIGRATE_RESULT__INIT;
	struct vm *vm = m->vm;

	pthread_join(m->thread, NULL);
	m->running = 0;
	/* A guest request that came meanwhile waited for us (run.c). */
	if (!m->committed && migrate_src_request_pending(vm) &&
	    eventfd_write(vm->event_fd, 1) < 0)
		log_error("vmm", "eventfd write failed", "vm=%s", vm->cfg.name);
	mig_conn_close(&m->conn);
	buf_free(&m->final);
	m->total_ms = (sys_mono_ns() - m->t0_ns) / 1000000;
	if (!m->committed) {
		migrate_src_phase_set(m, "failed");
		log_error("vmm", "migration failed", "vm=%s to=%s why=\"%s\"",
			  vm->cfg.name, m->address, m->error);
		control_migrate_done(vm, m->rc, m->error, NULL);
		return;
	}
	res.downtime_ms = m->downtime_ms;
	res.total_ms = m->total_ms;
	res.bytes = m->conn.bytes;
	res.rounds = m->round;
	res.throttle_pct = m->throttle_max;
	res.final_pages = m->final_pages;
	res.pause_to_end_us = (m->t_end - m->pause_ns) / 1000;
	if (m->in_doubt) {
		migrate_doubt_enter(m, &res);
		return;
	}
	migrate_src_phase_set(m, "completed");
	log_info("vmm", "migrated",
		 "vm=%s to=%s downtime_ms=%llu total_ms=%llu", vm->cfg.name,
		 m->address, (unsigned long long)m->downtime_ms,
		 (unsigned long long)m->total_ms);
	control_migrate_done(vm, 0, "", &res);
	vmm_finish(vm, VMM_EXIT_OK, "migrated");
}

static void *thread_main(void *arg)
{
	struct migrate *m = arg;
	struct vm *vm = m->vm;
	char why[256];

	m->rc = run(m);
	throttle_off(m);
	if (!m->committed) {
		(void)!dirty_log_stop(vm);
		/* The guest must not write before its disks are ours again. */
		if (blk_ds_handover_reclaim(why, sizeof(why)) < 0)
			log_error("vmm",
				  "datastore disk fenced after a failed "
				  "migration",
				  "vm=%s why=\"%s\"", vm->cfg.name, why);
		if (m->paused) {
			migrate_src_resume_guest(vm);
			m->paused = 0;
		}
		if (m->rc == 0)
			m->rc = -EIO;
	}
	if (loop_post(vm->loop, on_done, m) < 0)
		log_error("vmm", "migration result lost", "vm=%s",
			  vm->cfg.name);
	return NULL;
}

static void migrate_free(struct migrate *m)
{
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* A name a certificate may carry: 1..253 of A-Z a-z 0-9 . - _. */
static int tls_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
		      s[i] == '-' || s[i] == '_'))
			return 0;
	return 1;
}

/* The request's address and destination name; -EINVAL with msg. */
static int request_check(struct vm *vm,
			 const Canopy__V1__VmmMigrateSendRequest *rq, char *msg,
			 size_t msglen)
{
	char host[64];
	uint16_t port;

	if (!rq->address ||
	    mig_address_parse(rq->address, host, sizeof(host), &port) < 0 ||
	    port == 0 ||
	    strlen(rq->address) >= sizeof(((struct migrate *)0)->address)) {
		snprintf(msg, msglen,
			 "migrate_send: address '%.64s': expected "
			 "tcp:IPV4:PORT",
			 rq->address ? rq->address : "");
		return -EINVAL;
	}
	if (rq->tls_name && *rq->tls_name && !tls_name_ok(rq->tls_name)) {
		snprintf(msg, msglen,
			 "migrate_send: tls_name '%.64s': expected a host "
			 "name (A-Z a-z 0-9 . - _, at most 253)",
			 rq->tls_name);
		return -EINVAL;
	}
	if (rq->tls_name && *rq->tls_name && !vm->mig_tls) {
		snprintf(msg, msglen,
			 "migrate_send: tls_name given but this canopy-vmm "
			 "has no TLS credentials (start it with --tls-ca, "
			 "--tls-cert and --tls-key)");
		return -EINVAL;
	}
	return 0;
}

int migrate_send_start(struct vm *vm,
		       const Canopy__V1__VmmMigrateSendRequest *rq, char *msg,
		       size_t msglen)
{
	struct migrate *m;
	int rc;

	if (migrate_busy(vm))
		return -EBUSY;
	/* The destination runs what arrives: a paused VM would not stay so. */
	if (vm->state != VM_RUNNING) {
		snprintf(msg, msglen,
			 "migrate_send: the VM is %s; only a running VM "
			 "migrates (resume it first)",
			 vm_state_name(vm->state));
		return -EBUSY;
	}
	rc = request_check(vm, rq, msg, msglen);
	if (rc < 0)
		return rc;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->vm = vm;
	pthread_mutex_init(&m->lock, NULL);
	snprintf(m->address, sizeof(m->address), "%s", rq->address);
	snprintf(m->tls_name, sizeof(m->tls_name), "%s",
		 rq->tls_name ? rq->tls_name : "");
	m->target_ms = rq->max_downtime_ms ?: MIG_DEFAULT_DOWNTIME_MS;
	m->limit_bps = rq->bandwidth_limit_mib_s << 20;
	m->max_rounds = rq->max_rounds ?: MIG_DEFAULT_ROUNDS;
	m->timeout_ms = rq->timeout_ms ?: MIG_DEFAULT_TIMEOUT_MS;
	m->pages = vm->ram_size / MIG_PAGE_SIZE;
	m->t0_ns = sys_mono_ns();
	m->conn.fd = -1;
	m->io_ms = mig_io_timeout_ms();
	buf_init(&m->final, 0);
	snprintf(m->phase, sizeof(m->phase), "connecting");
	rc = -pthread_create(&m->thread, NULL, thread_main, m);
	if (rc < 0) {
		buf_free(&m->final);
		migrate_free(m);
		snprintf(msg, msglen, "migrate_send: %s", strerror(-rc));
		return rc;
	}
	m->running = 1;
	if (vm->mig)
		migrate_free(vm->mig);
	vm->mig = m;
	log_info("vmm", "migration started", "vm=%s to=%s max_downtime_ms=%llu",
		 vm->cfg.name, m->address, (unsigned long long)m->target_ms);
	return 0;
}

int migrate_busy(struct vm *vm)
{
	return vm->mig && (vm->mig->running || vm->mig->in_doubt);
}

int migrate_progress(struct vm *vm, Canopy__V1__MigrationProgress *p)
{
	struct migrate *m = vm->mig;

	if (!m)
		return 0;
	pthread_mutex_lock(&m->lock);
	p->phase = m->phase;
	p->round = m->round;
	p->remaining_mib = m->remaining >> 20;
	p->dirty_rate_mib_s = m->dirty_rate_bps >> 20;
	p->bandwidth_mib_s = m->bw_bps >> 20;
	p->expected_downtime_ms = m->expect_ms == ~0ull ? 0 : m->expect_ms;
	p->throttle_pct = atomic_load(&vm->throttle_pct);
	/* Written by the migration thread: its published count. */
	p->transferred_mib =
		atomic_load_explicit(&m->conn.written, memory_order_relaxed) >>
		20;
	p->error = m->error;
	pthread_mutex_unlock(&m->lock);
	return 1;
}

void migrate_send_cancel(struct vm *vm)
{
	struct migrate *m = vm->mig;

	if (!m || !m->running)
		return;
	atomic_store(&m->cancel, 1);
	log_info("vmm", "migration cancelled", "vm=%s why=\"%s\"", vm->cfg.name,
		 vm->reason);
}

void migrate_send_abort(struct vm *vm)
{
	struct migrate *m = vm->mig;

	if (!m)
		return;
	migrate_doubt_join(vm);
	if (m->running) {
		atomic_store(&m->cancel, 1);
		/* A blocked send or receive ends with the connection. */
		if (m->conn.fd >= 0)
			shutdown(m->conn.fd, SHUT_RDWR);
		pthread_join(m->thread, NULL);
		mig_conn_close(&m->conn);
		buf_free(&m->final);
	}
	migrate_free(m);
	vm->mig = NULL;
}
