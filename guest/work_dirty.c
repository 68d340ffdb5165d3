/* Test guest: the `dirty` workload: rewrite RAM at a rate, verify every page. */
#include "guest/user.h"

#define DIRTY_WORDS 512 /* 64-bit words in a 4 KiB page */
#define DIRTY_TAG 0xc4a9000000000000ull /* top of word 0, beside the index */
#define DIRTY_TAG_MASK 0xffff000000000000ull
#define DIRTY_GOLDEN 0x9e3779b97f4a7c15ull /* the Weyl step of the pattern */
#define DIRTY_SUM_SEED 0x243f6a8885a308d3ull /* so a zero page fails */
#define DIRTY_BURST 64 /* pages between clock reads at full speed */
#define DIRTY_MAX_REPORTS 10 /* CORRUPT lines per round */
#define DIRTY_DEFAULT_VERIFY_MS 500
#define DIRTY_MAX_RATE 1000000000ull /* pages/s; keeps rate * ticks < 2^64 */
#define DIRTY_MAX_VERIFY_MS 86400000ull
#define PAGES_PER_MIB 256

/* A run of contiguous pages; page i of the set is at base + (i - first). */
struct span {
	uint64_t base, pages, first;
};

struct dirty {
	struct span span[GUEST_MAX_MEM];
	unsigned nspan;
	uint64_t pages; /* in the set */
	uint32_t *gen; /* generation last written to each page */
	uint64_t rate, verify_ms, limit;
	uint64_t writes, rounds, bad_rounds;
	unsigned cur_span; /* the round-robin writer's position */
	uint64_t cur_off;
};

/* Word 511 of a page: a position-dependent sum of words 0..510. */
static uint64_t page_sum(const uint64_t *w)
{
	uint64_t a = DIRTY_SUM_SEED, b = 0;

	for (unsigned i = 0; i < DIRTY_WORDS - 1; i++) {
		a += w[i];
		b += a;
	}
	return a ^ (b << 32 | b >> 32);
}

/* Word 0: tag and index; word 1: generation; 2..510: a Weyl sequence. */
static void page_fill(uint64_t *w, uint64_t idx, uint32_t gen)
{
	uint64_t s = idx * DIRTY_GOLDEN ^ ((uint64_t)gen << 32 | gen);

	w[0] = DIRTY_TAG | idx;
	w[1] = gen;
	for (unsigned i = 2; i < DIRTY_WORDS - 1; i++) {
		s += DIRTY_GOLDEN;
		w[i] = s ^ (s >> 29);
	}
	w[DIRTY_WORDS - 1] = page_sum(w);
}

/* RAM of the memory map between the end of the user image and map_top. */
static uint64_t free_spans(const struct guest_boot *b, struct span *s,
			   unsigned *ns)
{
	uint64_t lo = (b->user_end + GUEST_PAGE - 1) & ~(GUEST_PAGE - 1);
	uint64_t total = 0;

	*ns = 0;
	for (uint32_t i = 0; i < b->nmem; i++) {
		const struct guest_mem *m = &b->mem[i];
		uint64_t start = m->addr > lo ? m->addr : lo;
		uint64_t end = m->addr + m->size;

		if (m->type != GUEST_MEM_RAM || end < m->addr)
			continue;
		start = (start + GUEST_PAGE - 1) & ~(GUEST_PAGE - 1);
		end = (end < b->map_top ? end : b->map_top) & ~(GUEST_PAGE - 1);
		if (end <= start)
			continue;
		s[*ns] = (struct span){ start, (end - start) / GUEST_PAGE, 0 };
		total += s[(*ns)++].pages;
	}
	return total;
}

/* The generation table in the first span with room, then the pages. */
static int dirty_alloc(struct dirty *d, const struct guest_boot *b,
		       uint64_t mib)
{
	struct span fr[GUEST_MAX_MEM];
	uint64_t want = mib * PAGES_PER_MIB;
	uint64_t gpages =
		(want * sizeof(uint32_t) + GUEST_PAGE - 1) / GUEST_PAGE;
	uint64_t avail = free_spans(b, fr, &d->nspan);
	unsigned i, n = d->nspan;

	for (i = 0; i < n && fr[i].pages < gpages; i++)
		;
	if (i == n || avail - gpages < want) {
		avail = i == n || avail < gpages ? 0 : avail - gpages;
		user_printf(
			"canopy-testguest: dirty=%lu MiB does not fit: "
			"%lu MiB of RAM free above the guest image (0x%lx)\n",
			mib, avail / PAGES_PER_MIB, b->user_end);
		return -1;
	}
	d->gen = (uint32_t *)fr[i].base;
	fr[i].base += gpages * GUEST_PAGE;
	fr[i].pages -= gpages;
	d->nspan = 0;
	for (i = 0; i < n && d->pages < want; i++) {
		uint64_t take = want - d->pages;

		if (take > fr[i].pages)
			take = fr[i].pages;
		if (!take)
			continue;
		d->span[d->nspan++] =
			(struct span){ fr[i].base, take, d->pages };
		d->pages += take;
	}
	return 0;
}

static void dirty_init(struct dirty *d, uint64_t khz)
{
	uint64_t t0 = guest_rdtsc();

	for (unsigned s = 0; s < d->nspan; s++) {
		const struct span *sp = &d->span[s];

		for (uint64_t p = 0; p < sp->pages; p++) {
			d->gen[sp->first + p] = 1;
			page_fill((uint64_t *)(sp->base + p * GUEST_PAGE),
				  sp->first + p, 1);
		}
	}
	user_printf("dirty: init pages %lu from 0x%lx in %lu ms\n", d->pages,
		    d->span[0].base, (guest_rdtsc() - t0) / khz);
}

static void write_pages(struct dirty *d, uint64_t n)
{
	while (n--) {
		const struct span *s = &d->span[d->cur_span];
		uint64_t idx = s->first + d->cur_off;

		page_fill((uint64_t *)(s->base + d->cur_off * GUEST_PAGE), idx,
			  ++d->gen[idx]);
		d->writes++;
		if (++d->cur_off == s->pages) {
			d->cur_off = 0;
			d->cur_span = (d->cur_span + 1) % d->nspan;
		}
	}
}

static void report(uint64_t idx, const uint64_t *w, uint32_t gen)
{
	int64_t found = (w[0] & DIRTY_TAG_MASK) == DIRTY_TAG ?
				(int64_t)(w[0] & ~DIRTY_TAG_MASK) :
				-1;

	user_printf("dirty: CORRUPT page %lu expected gen %u found gen %lu "
		    "index %ld checksum %s at 0x%lx\n",
		    idx, gen, w[1], found,
		    page_sum(w) == w[DIRTY_WORDS - 1] ? "ok" : "bad",
		    (uint64_t)w);
}

static void verify_round(struct dirty *d)
{
	uint64_t bad = 0;

	d->rounds++;
	for (unsigned s = 0; s < d->nspan; s++) {
		const struct span *sp = &d->span[s];

		for (uint64_t p = 0; p < sp->pages; p++) {
			const uint64_t *w =
				(const uint64_t *)(sp->base + p * GUEST_PAGE);
			uint64_t idx = sp->first + p;

			if (w[0] == (DIRTY_TAG | idx) && w[1] == d->gen[idx] &&
			    w[DIRTY_WORDS - 1] == page_sum(w))
				continue;
			if (bad++ < DIRTY_MAX_REPORTS)
				report(idx, w, d->gen[idx]);
		}
	}
	if (!bad) {
		user_printf("dirty: round %lu pages %lu writes %lu ok\n",
			    d->rounds, d->pages, d->writes);
		return;
	}
	d->bad_rounds++;
	user_printf("dirty: round %lu pages %lu writes %lu corrupt %lu\n",
		    d->rounds, d->pages, d->writes, bad);
}

static int dirty_loop(struct dirty *d, uint64_t khz)
{
	uint64_t hz = khz * 1000, vticks = d->verify_ms * khz, credit = 0;
	uint64_t last = guest_rdtsc(), next_verify = last + vticks;

	for (;;) {
		uint64_t now = guest_rdtsc(), n = DIRTY_BURST;

		if (d->rate) {
			uint64_t dt = now - last;

			credit += (dt > hz ? hz : dt) * d->rate;
			n = credit / hz;
			credit -= n * hz;
			last = now;
		}
		write_pages(d, n);
		if (now >= next_verify) {
			verify_round(d);
			if (d->limit && d->rounds >= d->limit)
				return d->bad_rounds ? GUEST_EXIT_FAIL :
						       GUEST_EXIT_OK;
			next_verify += vticks;
			now = guest_rdtsc();
			if (now >= next_verify)
				next_verify = now + vticks;
		}
		if (!n)
			user_relax();
	}
}

/* `dirty=MiB[,rate=P][,verify=MS][,limit=K]`. */
int work_dirty(struct user_ctx *u)
{
	static const char *const keys[] = { "rate", "verify", "limit", NULL };
	static struct dirty d;
	uint64_t mib;

	if (user_args_check(u, keys, 1) || user_arg_primary(u, 0, &mib) ||
	    user_arg_u64(u, "rate", 0, &d.rate) ||
	    user_arg_u64(u, "verify", DIRTY_DEFAULT_VERIFY_MS, &d.verify_ms) ||
	    user_arg_u64(u, "limit", 0, &d.limit) || user_need_tsc(u))
		return GUEST_EXIT_USAGE;
	if (!mib || mib > GUEST_MAP_CAP >> 20 || d.rate > DIRTY_MAX_RATE ||
	    !d.verify_ms || d.verify_ms > DIRTY_MAX_VERIFY_MS) {
		user_printf("canopy-testguest: workload 'dirty': need MiB in "
			    "1..%lu, rate in 0..%lu, verify in 1..%lu\n",
			    (uint64_t)(GUEST_MAP_CAP >> 20),
			    (uint64_t)DIRTY_MAX_RATE,
			    (uint64_t)DIRTY_MAX_VERIFY_MS);
		return GUEST_EXIT_USAGE;
	}
	if (dirty_alloc(&d, u->boot, mib) < 0)
		return GUEST_EXIT_USAGE;
	dirty_init(&d, u->tsc_khz);
	return dirty_loop(&d, u->tsc_khz);
}
