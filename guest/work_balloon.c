/* Test guest: the `balloon` workload: a polling virtio-balloon driver. */
#include "guest/user_virtio.h"

#define BAL_F_MUST_TELL_HOST (1ull << 0)
#define BAL_F_STATS_VQ (1ull << 1)
#define BAL_CFG_NUM_PAGES 0
#define BAL_CFG_ACTUAL 4
#define BAL_Q_INFLATE 0
#define BAL_Q_DEFLATE 1
#define BAL_Q_STATS 2
#define BAL_BATCH 256 /* page frame numbers per request */
#define BAL_POLL_MS 1 /* between reads of num_pages */
#define BAL_MAX_HOLD_MS ((uint64_t)86400000)
/* Statistics tags (virtio 1.x, 5.5.6.3). */
#define BAL_ST_MEMFREE 4
#define BAL_ST_MEMTOT 5
#define BAL_ST_AVAIL 6
#define BAL_NSTATS 3

struct bal_stat {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

/*
 * The balloon owns the top `actual` pages of the pool, the free RAM left
 * after our own allocations: inflating gives the next lower pages,
 * deflating returns the most recently given ones.
 */
struct balloon {
	struct user_ctx *u;
	struct user_pci pci;
	struct user_mem mem;
	struct user_virtio v;
	uint32_t *pfns; /* BAL_BATCH entries, one request */
	struct bal_stat *stats; /* BAL_NSTATS entries */
	uint64_t pool_lo, pool_hi; /* free RAM we may balloon */
	uint64_t pool_pages, ram_pages;
	uint32_t actual, target;
	int capped; /* target above pool_pages was reported */
};

static uint64_t page_at(const struct balloon *b, uint64_t i)
{
	return b->pool_hi - (i + 1) * GUEST_PAGE; /* i-th page given */
}

static void stats_fill(struct balloon *b)
{
	uint64_t free = (b->pool_pages - b->actual) * GUEST_PAGE;

	b->stats[0] = (struct bal_stat){ BAL_ST_MEMFREE, free };
	b->stats[1] =
		(struct bal_stat){ BAL_ST_MEMTOT, b->ram_pages * GUEST_PAGE };
	b->stats[2] = (struct bal_stat){ BAL_ST_AVAIL, free };
}

/* Gives the device a fresh statistics buffer. */
static int stats_push(struct balloon *b)
{
	struct user_virtio_buf buf = { (uint64_t)b->stats,
				       BAL_NSTATS * sizeof(*b->stats), 0 };
	uint16_t head;
	int r;

	stats_fill(b);
	r = user_virtio_add(&b->v, BAL_Q_STATS, &buf, 1, &head);
	if (!r)
		user_virtio_kick(&b->v, BAL_Q_STATS);
	return r;
}

/* The device took our statistics: send up-to-date ones back. */
static int stats_poll(struct balloon *b)
{
	uint16_t head;
	uint32_t len;
	int r;

	if (!(b->v.features & BAL_F_STATS_VQ))
		return 0;
	r = user_virtio_reap(&b->v, BAL_Q_STATS, &head, &len);
	return r <= 0 ? r : stats_push(b);
}

static int bal_open(struct balloon *b)
{
	int r = user_pci_init(&b->pci, b->u->boot);

	if (r) {
		user_printf("balloon: no PCI ECAM (ACPI MCFG) reachable\n");
		return r;
	}
	if (user_mem_init(&b->mem, b->u->boot)) {
		user_printf("balloon: no free RAM after the guest image\n");
		return -USER_ENOMEM;
	}
	r = user_virtio_open(&b->v, &b->pci, &b->mem, VIRTIO_ID_BALLOON, 0,
			     b->u->tsc_khz, "balloon");
	if (!r)
		r = user_virtio_negotiate(&b->v, BAL_F_MUST_TELL_HOST |
							 BAL_F_STATS_VQ);
	if (!r)
		r = user_virtio_queue(&b->v, BAL_Q_INFLATE, 4);
	if (!r)
		r = user_virtio_queue(&b->v, BAL_Q_DEFLATE, 4);
	if (!r && (b->v.features & BAL_F_STATS_VQ))
		r = user_virtio_queue(&b->v, BAL_Q_STATS, 2);
	if (r)
		return r;
	if (b->v.devcfg_len < 8) {
		user_printf("balloon: device config of %u bytes is too small\n",
			    b->v.devcfg_len);
		return -USER_ENOTSUP;
	}
	b->pfns = user_mem_alloc(&b->mem, BAL_BATCH * 4, GUEST_PAGE);
	b->stats = user_mem_alloc(&b->mem, BAL_NSTATS * sizeof(*b->stats), 16);
	if (!b->pfns || !b->stats) {
		user_printf("balloon: no free RAM for our buffers\n");
		return -USER_ENOMEM;
	}
	return user_virtio_start(&b->v);
}

/* What is left of free RAM becomes the pool; nothing else may use it. */
static void pool_init(struct balloon *b)
{
	const struct guest_boot *boot = b->u->boot;

	b->pool_lo = (b->mem.next + GUEST_PAGE - 1) & ~(GUEST_PAGE - 1);
	b->pool_hi = b->mem.end;
	b->pool_pages = b->pool_hi > b->pool_lo ?
				(b->pool_hi - b->pool_lo) / GUEST_PAGE :
				0;
	if (b->pool_pages > UINT32_MAX)
		b->pool_pages = UINT32_MAX;
	b->mem.end = b->mem.next;
	for (uint32_t i = 0; i < boot->nmem; i++)
		if (boot->mem[i].type == GUEST_MEM_RAM)
			b->ram_pages += boot->mem[i].size / GUEST_PAGE;
}

/* One request of n page frame numbers on queue qi, waited for. */
static int send_pfns(struct balloon *b, unsigned qi, uint32_t first, uint32_t n)
{
	struct user_virtio_buf buf = { (uint64_t)b->pfns, n * 4, 0 };
	uint16_t head;
	uint32_t len;
	int r;

	for (uint32_t i = 0; i < n; i++)
		b->pfns[i] = (uint32_t)(page_at(b, first + i) / GUEST_PAGE);
	r = user_virtio_add(&b->v, qi, &buf, 1, &head);
	if (r)
		return r;
	user_virtio_kick(&b->v, qi);
	return user_virtio_get(&b->v, qi, VIRTIO_TIMEOUT_MS, &head, &len);
}

/* Pages just deflated are ours again: prove it by writing them. */
static void touch(const struct balloon *b, uint32_t first, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		*(volatile uint64_t *)page_at(b, first + i) = first + i;
}

/* One batch towards the target; 1 if something moved, 0 when there. */
static int step(struct balloon *b)
{
	uint32_t goal = b->target, n;
	int r;

	if (goal > b->pool_pages) {
		if (!b->capped)
			user_printf("balloon: target %u pages is above the %lu "
				    "we can give\n",
				    goal, b->pool_pages);
		b->capped = 1;
		goal = (uint32_t)b->pool_pages;
	}
	if (goal == b->actual)
		return 0;
	if (goal > b->actual) {
		n = goal - b->actual < BAL_BATCH ? goal - b->actual : BAL_BATCH;
		r = send_pfns(b, BAL_Q_INFLATE, b->actual, n);
		if (r)
			return r;
		b->actual += n;
	} else {
		n = b->actual - goal < BAL_BATCH ? b->actual - goal : BAL_BATCH;
		r = send_pfns(b, BAL_Q_DEFLATE, b->actual - n, n);
		if (r)
			return r;
		b->actual -= n;
		touch(b, b->actual, n);
	}
	user_virtio_cfg_write32(&b->v, BAL_CFG_ACTUAL, b->actual);
	return 1;
}

static void wait_ms(const struct balloon *b, uint64_t ms)
{
	uint64_t t0 = guest_rdtsc();

	while (guest_rdtsc() - t0 < ms * b->u->tsc_khz)
		user_relax();
}

/* Follows num_pages until hold_ms have passed (0: for ever). */
static int follow(struct balloon *b, uint64_t hold_ms)
{
	uint64_t t0 = guest_rdtsc(), lim = hold_ms * b->u->tsc_khz;
	uint32_t shown_t = UINT32_MAX, shown_a = UINT32_MAX;

	while (!hold_ms || guest_rdtsc() - t0 < lim) {
		int r = stats_poll(b);

		if (r < 0)
			return r;
		b->target = user_virtio_cfg_read32(&b->v, BAL_CFG_NUM_PAGES);
		if (b->target < b->pool_pages)
			b->capped = 0;
		r = step(b);
		if (r < 0)
			return r;
		if (r)
			continue;
		if (b->target != shown_t || b->actual != shown_a) {
			user_printf("balloon: target %u pages actual %u\n",
				    b->target, b->actual);
			shown_t = b->target;
			shown_a = b->actual;
		}
		if (user_virtio_status(&b->v) & VIRTIO_S_NEEDS_RESET) {
			user_printf("balloon: device needs reset "
				    "(DEVICE_NEEDS_RESET)\n");
			return -USER_EIO;
		}
		wait_ms(b, BAL_POLL_MS);
	}
	return 0;
}

/*
 * `balloon[,hold=MS][,touch=1]`: follows the device's num_pages
 * (docs/test-guest.md), for MS ms (0, the default: for ever), then exits
 * 0; touch=1 first writes every page of the pool.
 */
int work_balloon(struct user_ctx *u)
{
	static const char *const keys[] = { "hold", "touch", NULL };
	struct balloon b;
	uint64_t hold, touch_all;

	memset(&b, 0, sizeof(b));
	b.u = u;
	if (user_args_check(u, keys, 0) || user_arg_u64(u, "hold", 0, &hold) ||
	    user_arg_u64(u, "touch", 0, &touch_all) || user_need_tsc(u))
		return GUEST_EXIT_USAGE;
	if (hold > BAL_MAX_HOLD_MS) {
		user_printf("canopy-testguest: workload 'balloon': hold=%lu is "
			    "above %lu ms\n",
			    hold, BAL_MAX_HOLD_MS);
		return GUEST_EXIT_USAGE;
	}
	if (bal_open(&b))
		return GUEST_EXIT_FAIL;
	pool_init(&b);
	if (touch_all) /* make the pool resident, so inflating shows */
		touch(&b, 0, (uint32_t)b.pool_pages);
	if ((b.v.features & BAL_F_STATS_VQ) && stats_push(&b))
		return GUEST_EXIT_FAIL;
	user_printf("balloon: ready pool %lu pages ram %lu pages stats %d\n",
		    b.pool_pages, b.ram_pages,
		    !!(b.v.features & BAL_F_STATS_VQ));
	if (follow(&b, hold))
		return GUEST_EXIT_FAIL;
	user_printf("balloon: done target %u actual %u\n", b.target, b.actual);
	return GUEST_EXIT_OK;
}
