/* Randomized hostile rings for canopy-vmm's split virtqueues: many rounds of
 * random descriptor tables, indirect tables, rings and indices (seeded; the
 * seed is printed, CANOPY_VQ_SEED=N replays it). virtq_pop must never crash
 * or touch memory outside guest RAM (guard pages), never hand out a segment
 * outside guest RAM, keep its limits, and always terminate (an alarm). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/compiler.h"
#include "tests/unit/vq_fake.h"

#define HI GMEM_HIGH_START
/* Rounds per run, and the most seconds the whole run may take. */
#define RAND_ROUNDS 150000u
#define RAND_ALARM_S 30u
/* Where random indirect tables go. */
#define RAND_TABLES 0x30000ull
#define RAND_TABLES_LEN 0x8000u

struct rnd {
	uint64_t s;
};

/* What the rounds produced, to show the generator reaches every path. */
struct rand_stats {
	unsigned started, refused_start, popped, refused, multi, writable;
};

static struct virtq_req req;
static uint64_t seed;

static uint64_t next(struct rnd *r)
{
	/* splitmix64 */
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t below(struct rnd *r, uint64_t n)
{
	return n ? next(r) % n : 0;
}

/* An address: mostly inside RAM, often near an edge, sometimes wild. */
static uint64_t rand_addr(struct rnd *r)
{
	uint64_t k = below(r, 64);

	switch (below(r, 8)) {
	case 0:
	case 1:
	case 2:
		return below(r, VQF_LOW);
	case 3:
		return HI + below(r, VQF_HIGH);
	case 4:
		return VQF_LOW - k;
	case 5:
		return HI + VQF_HIGH - k;
	case 6:
		return RAND_TABLES + 16 * below(r, RAND_TABLES_LEN / 16);
	}
	return next(r) >> below(r, 64);
}

static uint32_t rand_len(struct rnd *r)
{
	switch (below(r, 6)) {
	case 0:
		return 0;
	case 1:
		return (uint32_t)next(r);
	case 2:
		return (uint32_t)below(r, VQF_LOW + 1);
	}
	return (uint32_t)below(r, 4097);
}

static void rand_desc(struct rnd *r, struct vqf *f, uint64_t table, uint16_t i,
		      uint16_t n)
{
	uint16_t flags = (uint16_t)below(r, 8);
	uint16_t nx = below(r, 8) ? (uint16_t)below(r, n) : (uint16_t)next(r);
	uint32_t len = rand_len(r);
	uint64_t addr = rand_addr(r);

	if (flags & VIRTQ_DESC_F_INDIRECT && below(r, 2)) {
		/* Point it at a random table, of a sensible size or not. */
		addr = RAND_TABLES + 16 * below(r, RAND_TABLES_LEN / 16);
		len = below(r, 4) ? 16 * (uint32_t)below(r, 9) : len;
	}
	if (below(r, 32) == 0)
		flags |= (uint16_t)next(r); /* unknown bits */
	vqf_desc_at(f, table, i, addr, len, flags, nx);
}

/* Fill the queue's rings and the indirect tables' area with noise. */
static void rand_rings(struct rnd *r, struct vqf *f)
{
	uint16_t n = f->q.size;

	for (uint16_t i = 0; i < n; i++)
		rand_desc(r, f, f->q.desc_gpa, i, n);
	for (uint16_t i = 0; i < 64; i++)
		rand_desc(r, f, RAND_TABLES, (uint16_t)below(r, 2048), 8);
	for (uint16_t i = 0; i < n; i++) {
		f->avail_idx = (uint16_t)(f->q.last_avail + i);
		vqf_avail(f, below(r, 8) ? (uint16_t)below(r, n) :
					   (uint16_t)next(r));
	}
	vqf_avail_flags(f, (uint16_t)below(r, 4));
	vqf_used_event(f, (uint16_t)next(r));
	vqf_avail_idx(f, below(r, 8) ? (uint16_t)(f->q.last_avail +
						  below(r, n + 2u)) :
				       (uint16_t)next(r));
}

/* A buffer that fits in RAM: low or high, 1 .. 4096 bytes. */
static void good_buf(struct rnd *r, uint64_t *addr, uint32_t *len)
{
	*len = 1 + (uint32_t)below(r, 4096);
	*addr = below(r, 4) ? below(r, VQF_LOW - *len) :
			      HI + below(r, VQF_HIGH - *len);
}

/* A driver's chain of n descriptors taken from table (free indices in
 * idx), readable ones first; its head index. */
static uint16_t good_chain(struct rnd *r, struct vqf *f, uint64_t table,
			   const uint16_t *idx, uint16_t n)
{
	uint16_t nr = (uint16_t)below(r, n + 1u);

	for (uint16_t k = 0; k < n; k++) {
		uint16_t fl = (uint16_t)((k + 1 < n ? VIRTQ_DESC_F_NEXT : 0) |
					 (k >= nr ? VIRTQ_DESC_F_WRITE : 0));
		uint64_t addr;
		uint32_t len;

		good_buf(r, &addr, &len);
		vqf_desc_at(f, table, idx[k], addr, len, fl,
			    k + 1 < n ? idx[k + 1] : 0);
	}
	return idx[0];
}

/* Rings as a correct driver fills them: distinct descriptors per chain,
 * some chains through an indirect table. */
static void good_rings(struct rnd *r, struct vqf *f)
{
	uint16_t size = f->q.size, idx[256], used = 0, tab[8];
	uint64_t table = RAND_TABLES;

	for (uint16_t i = 0; i < size; i++)
		idx[i] = i;
	for (uint16_t i = size; i > 1; i--) { /* shuffle */
		uint16_t j = (uint16_t)below(r, i), t = idx[i - 1];

		idx[i - 1] = idx[j];
		idx[j] = t;
	}
	f->avail_idx = f->q.last_avail;
	while (used < size) {
		uint16_t n = (uint16_t)(1 + below(r, CN_MIN(size - used, 6)));

		if (f->q.indirect && below(r, 4) == 0 &&
		    table + 128 <= RAND_TABLES + RAND_TABLES_LEN) {
			uint16_t m = (uint16_t)(1 + below(r, 8));

			for (uint16_t k = 0; k < m; k++)
				tab[k] = (uint16_t)((k + 3) % m);
			good_chain(r, f, table, tab, m);
			vqf_desc(f, idx[used], table, 16u * m,
				 VIRTQ_DESC_F_INDIRECT, 0);
			vqf_avail(f, idx[used]);
			table += 128;
			used++;
			continue;
		}
		vqf_avail(f, good_chain(r, f, f->q.desc_gpa, idx + used, n));
		used = (uint16_t)(used + n);
	}
}

/* Flip a few random bytes of the rings or the tables. */
static void corrupt(struct rnd *r, struct vqf *f)
{
	unsigned n = (unsigned)below(r, 4);
	const uint64_t where[3][2] = {
		{ f->q.desc_gpa, 16ull * f->q.size },
		{ f->q.avail_gpa, 6 + 2ull * f->q.size },
		{ RAND_TABLES, RAND_TABLES_LEN },
	};

	for (unsigned i = 0; i < n; i++) {
		unsigned w = (unsigned)below(r, 3);
		uint8_t *p = vqf_ptr(f, where[w][0] + below(r, where[w][1]), 1);

		*p ^= (uint8_t)(1u << below(r, 8));
		if (below(r, 4) == 0)
			*p = (uint8_t)next(r);
	}
}

/* Everything a popped request says must be true and inside RAM. */
static void check_req(struct vqf *f, struct rand_stats *st)
{
	uint64_t sum = 0;

	assert_true(req.head < f->q.size);
	assert_true(req.nr + req.nw <= VIRTQ_MAX_SEGS);
	for (unsigned i = 0; i < req.nr + req.nw; i++) {
		assert_true(req.iov[i].iov_len > 0);
		assert_true(
			vqf_inside(f, req.iov[i].iov_base, req.iov[i].iov_len));
		sum += req.iov[i].iov_len;
	}
	assert_true(req.rlen + req.wlen == sum);
	assert_true(sum <= VIRTQ_MAX_BYTES);
	st->popped++;
	st->multi += req.nr + req.nw > 1;
	st->writable += req.nw > 0;
}

/* Use the request as a device would: read, write, complete. */
static void use_req(struct rnd *r, struct vqf *f)
{
	uint8_t buf[512];
	uint64_t off = below(r, 2) ? below(r, 4096) : next(r);
	size_t len = (size_t)below(r, sizeof(buf) + 1);

	memset(buf, 0xa5, sizeof(buf));
	assert_true(virtq_req_read(&req, off, buf, len) <= len);
	assert_true(virtq_req_write(&req, off, buf, len) <= len);
	virtq_push(&f->q, req.head, (uint32_t)next(r));
	(void)virtq_should_signal(&f->q);
}

/* One round: a random queue; pop until empty, an error or a bound. */
static void round_one(struct rnd *r, struct vqf *f, struct rand_stats *st)
{
	uint16_t size = (uint16_t)(1u << below(r, 9)); /* 1 .. 256 */
	uint64_t avail = VQF_DESC + 16ull * size;
	uint64_t used = (avail + 6 + 2ull * size + 4095) & ~4095ull;
	int rc = 0;

	if (below(r, 8) == 0) /* rings anywhere: virtq_start may refuse */
		vqf_rings(f, size, rand_addr(r) & ~15ull, rand_addr(r),
			  rand_addr(r));
	else
		vqf_rings(f, size, VQF_DESC, avail, used);
	f->q.indirect = (int)below(r, 2);
	f->q.event_idx = (int)below(r, 2);
	f->q.last_avail = f->q.used_idx = (uint16_t)next(r);
	if (virtq_start(&f->q) < 0) {
		st->refused_start++;
		return;
	}
	st->started++;
	if (below(r, 2)) {
		good_rings(r, f);
		corrupt(r, f);
	} else {
		rand_rings(r, f);
	}
	for (unsigned k = 0; k <= size + 1u; k++) {
		rc = virtq_pop(&f->q, &req);
		if (rc <= 0)
			break;
		check_req(f, st);
		use_req(r, f);
	}
	assert_true(rc == 0 || rc == -EINVAL || rc == 1);
	st->refused += rc == -EINVAL;
}

static void on_alarm(int sig)
{
	static const char msg[] = "virtq random: a round did not terminate\n";

	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(3);
}

static void test_random_rings(void **state)
{
	struct vqf *f = *state;
	struct rnd r = { seed };
	struct rand_stats st = { 0 };

	vqf_mem_init(f, VQF_LOW, VQF_HIGH);
	signal(SIGALRM, on_alarm);
	alarm(RAND_ALARM_S);
	for (unsigned i = 0; i < RAND_ROUNDS; i++)
		round_one(&r, f, &st);
	alarm(0);
	print_message("virtq random: %u rounds: %u queues refused at start, "
		      "%u chains taken (%u with several segments, %u with "
		      "writable ones), %u bad chains refused\n",
		      RAND_ROUNDS, st.refused_start, st.popped, st.multi,
		      st.writable, st.refused);
	/* The generator must reach both the good and the bad paths. */
	assert_true(st.refused_start > 0 && st.started > 0);
	assert_true(st.multi > RAND_ROUNDS / 100);
	assert_true(st.refused > RAND_ROUNDS / 10);
}

static int setup(void **state)
{
	*state = calloc(1, sizeof(struct vqf));
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	vqf_mem_free(*state);
	free(*state);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random_rings, setup,
						teardown),
	};
	const char *s = getenv("CANOPY_VQ_SEED");

	seed = s ? strtoull(s, NULL, 0) :
		   (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	printf("virtq random: seed %llu (CANOPY_VQ_SEED=%llu replays it)\n",
	       (unsigned long long)seed, (unsigned long long)seed);
	fflush(stdout);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
