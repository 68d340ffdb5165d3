/* Test guest: the `blk` workload: virtio-blk pattern checks and benchmarks. */
#include "guest/user_virtio.h"

#define BLK_SECTOR ((uint64_t)512)
#define BLK_MIB ((uint64_t)1 << 20)
#define BLK_QD_MAX 16
#define BLK_BS_MAX ((uint64_t)1 << 20)
#define BLK_ID_LEN 20 /* VIRTIO_BLK_ID_BYTES */
#define BLK_DEFAULT_MIB 8
#define BLK_DEFAULT_SECS 5
#define BLK_MAX_SECS 86400
#define BLK_SEED_SHIFT 40 /* word at offset o = (seed << 40) ^ o */

/* Feature bits and config offsets (virtio 1.x, 5.2). */
#define BLK_F_SIZE_MAX (1ull << 1)
#define BLK_F_RO (1ull << 5)
#define BLK_F_FLUSH (1ull << 9)
#define BLK_CFG_CAPACITY 0
#define BLK_CFG_SIZE_MAX 8
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2

enum blk_mode { M_VERIFY, M_WRITE, M_READ, M_RANDREAD, M_SEQREAD, M_SEQWRITE };

static const char *const mode_names[] = { "verify",   "write",	 "read",
					  "randread", "seqread", "seqwrite" };

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

/* One request slot: header, status byte and data buffer of bs bytes. */
struct blk_slot {
	struct blk_hdr *hdr;
	uint8_t *status;
	uint8_t *data;
	uint64_t off, len, t0;
	int busy;
};

struct blk {
	struct user_ctx *u;
	struct user_pci pci;
	struct user_mem mem;
	struct user_virtio v;
	enum blk_mode mode;
	uint64_t capacity, region, bs, secs, seed, qd, dev;
	struct blk_slot slot[BLK_QD_MAX];
	uint8_t head_slot[VIRTIO_QUEUE_MAX];
	unsigned inflight;
	int check; /* verify data of completed reads */
	uint64_t next_off, rng; /* sequential cursor, xorshift state */
	uint64_t ops, bytes, lat; /* lat: TSC ticks summed */
	uint64_t bad, bad_off, bad_exp, bad_got; /* first bad word */
};

static uint64_t pattern(const struct blk *b, uint64_t off)
{
	return (b->seed << BLK_SEED_SHIFT) ^ off;
}

static int parse_mode(struct user_ctx *u, enum blk_mode *m)
{
	for (unsigned i = 0; i < u->args.nparams; i++) {
		const struct user_param *p = &u->args.p[i];

		if (!user_streq(p->key, p->klen, "mode"))
			continue;
		for (unsigned k = 0;
		     k < sizeof(mode_names) / sizeof(*mode_names); k++)
			if (user_streq(p->val, p->vlen, mode_names[k])) {
				*m = (enum blk_mode)k;
				return 0;
			}
		user_printf("canopy-testguest: workload 'blk': unknown mode "
			    "'%.*s'\n",
			    (int)p->vlen, p->val);
		return -1;
	}
	*m = M_VERIFY;
	return 0;
}

static int parse_args(struct blk *b)
{
	static const char *const keys[] = { "mode", "mib", "bs", "secs",
					    "seed", "dev", "qd", NULL };
	struct user_ctx *u = b->u;

	if (user_args_check(u, keys, 0) || parse_mode(u, &b->mode) ||
	    user_arg_u64(u, "mib", BLK_DEFAULT_MIB, &b->region) ||
	    user_arg_u64(u, "bs", 4096, &b->bs) ||
	    user_arg_u64(u, "secs", BLK_DEFAULT_SECS, &b->secs) ||
	    user_arg_u64(u, "seed", 1, &b->seed) ||
	    user_arg_u64(u, "dev", 0, &b->dev) ||
	    user_arg_u64(u, "qd", 1, &b->qd) || user_need_tsc(u))
		return -1;
	if (b->bs < BLK_SECTOR || b->bs > BLK_BS_MAX || b->bs % BLK_SECTOR) {
		user_printf("canopy-testguest: workload 'blk': bs=%lu is not a "
			    "multiple of 512 in 512..%lu\n",
			    b->bs, BLK_BS_MAX);
		return -1;
	}
	if (!b->qd || b->qd > BLK_QD_MAX || !b->secs ||
	    b->secs > BLK_MAX_SECS || b->region > (1ull << 20) ||
	    b->dev > 255) {
		user_printf(
			"canopy-testguest: workload 'blk': need qd in "
			"1..%d, secs in 1..%d, mib up to 1048576, dev up to "
			"255\n",
			BLK_QD_MAX, BLK_MAX_SECS);
		return -1;
	}
	b->region *= BLK_MIB;
	return 0;
}

/* Slots: header, status and data of each in free RAM. */
static int slots_alloc(struct blk *b)
{
	for (unsigned i = 0; i < b->qd; i++) {
		struct blk_slot *s = &b->slot[i];

		s->hdr = user_mem_alloc(&b->mem, sizeof(*s->hdr), 16);
		s->status = user_mem_alloc(&b->mem, 1, 1);
		s->data = user_mem_alloc(&b->mem, b->bs, GUEST_PAGE);
		if (!s->hdr || !s->status || !s->data) {
			user_printf("blk: no free RAM for %lu buffers of %lu "
				    "bytes\n",
				    b->qd, b->bs);
			return -USER_ENOMEM;
		}
	}
	return 0;
}

/* Queues request s (not yet notified): header, data if any, status. */
static int slot_submit(struct blk *b, unsigned si, uint32_t type, uint64_t off,
		       uint64_t len)
{
	struct blk_slot *s = &b->slot[si];
	struct user_virtio_buf bufs[3];
	unsigned n = 0;
	uint16_t head;
	int r;

	s->hdr->type = type;
	s->hdr->reserved = 0;
	s->hdr->sector = off / BLK_SECTOR;
	*s->status = 0xff;
	s->off = off;
	s->len = len;
	bufs[n++] = (struct user_virtio_buf){ (uint64_t)s->hdr, sizeof(*s->hdr),
					      0 };
	if (len)
		bufs[n++] = (struct user_virtio_buf){ (uint64_t)s->data,
						      (uint32_t)len,
						      type != BLK_T_OUT };
	bufs[n++] = (struct user_virtio_buf){ (uint64_t)s->status, 1, 1 };
	r = user_virtio_add(&b->v, 0, bufs, n, &head);
	if (r)
		return r;
	b->head_slot[head] = (uint8_t)si;
	s->busy = 1;
	s->t0 = guest_rdtsc();
	b->inflight++;
	return 0;
}

static const char *status_name(uint8_t st)
{
	return st == BLK_S_IOERR  ? "IOERR" :
	       st == BLK_S_UNSUPP ? "UNSUPP" :
				    "unknown";
}

/* Waits for one request to complete; *si is its slot. -USER_EIO when its
 * status is not OK (print_ioerr tells). */
static int slot_wait(struct blk *b, unsigned *si)
{
	uint16_t head;
	uint32_t len;
	struct blk_slot *s;
	int r = user_virtio_get(&b->v, 0, VIRTIO_TIMEOUT_MS, &head, &len);

	if (r)
		return r;
	*si = b->head_slot[head];
	s = &b->slot[*si];
	s->busy = 0;
	b->inflight--;
	return *s->status == BLK_S_OK ? 0 : -USER_EIO;
}

static void print_ioerr(const struct blk *b, unsigned si)
{
	const struct blk_slot *s = &b->slot[si];
	uint32_t t = s->hdr->type;

	user_printf("blk: I/O error: status %u (%s) for %s of %lu bytes at "
		    "sector %lu\n",
		    *s->status, status_name(*s->status),
		    t == BLK_T_OUT   ? "write" :
		    t == BLK_T_IN    ? "read" :
		    t == BLK_T_FLUSH ? "flush" :
				       "get-id",
		    s->len, s->off / BLK_SECTOR);
}

/* One synchronous request through slot 0. */
static int blk_sync(struct blk *b, uint32_t type, uint64_t len)
{
	unsigned si;
	int r = slot_submit(b, 0, type, 0, len);

	if (r)
		return r;
	user_virtio_kick(&b->v, 0);
	return slot_wait(b, &si);
}

static void fill(const struct blk *b, const struct blk_slot *s)
{
	uint64_t *w = (uint64_t *)s->data;

	for (uint64_t i = 0; i < s->len / 8; i++)
		w[i] = pattern(b, s->off + 8 * i);
}

/* Compares a completed read with the pattern; notes the first bad word. */
static void check(struct blk *b, const struct blk_slot *s)
{
	const uint64_t *w = (const uint64_t *)s->data;

	for (uint64_t sec = 0; sec < s->len / BLK_SECTOR; sec++) {
		uint64_t base = s->off + sec * BLK_SECTOR;
		const uint64_t *sw = w + sec * (BLK_SECTOR / 8);

		for (uint64_t i = 0; i < BLK_SECTOR / 8; i++) {
			uint64_t exp = pattern(b, base + 8 * i);

			if (sw[i] == exp)
				continue;
			if (!b->bad || base + 8 * i < b->bad_off) {
				b->bad_off = base + 8 * i;
				b->bad_exp = exp;
				b->bad_got = sw[i];
			}
			b->bad++;
			break;
		}
	}
}

/* The next offset for the mode (random modes: aligned to bs). */
static uint64_t next_offset(struct blk *b)
{
	uint64_t off;

	if (b->mode == M_RANDREAD) {
		b->rng ^= b->rng << 13;
		b->rng ^= b->rng >> 7;
		b->rng ^= b->rng << 17;
		return (b->rng % (b->region / b->bs)) * b->bs;
	}
	off = b->next_off;
	if (off + b->bs > b->region)
		off = 0; /* timed modes wrap; passes stop before */
	b->next_off = off + b->bs;
	return off;
}

/* Prints "blk: <what> ops N bytes N secs S.s iops X mbps Y lat_avg_us Z". */
static void report(const struct blk *b, const char *what, uint64_t ticks)
{
	uint64_t k = b->u->tsc_khz, t = ticks ? ticks : 1;
	uint64_t tenths = t / (k * 100), mb10 = b->bytes * k / (t * 100);

	user_printf("blk: %s ops %lu bytes %lu secs %lu.%lu iops %lu mbps "
		    "%lu.%lu lat_avg_us %lu\n",
		    what, b->ops, b->bytes, tenths / 10, tenths % 10,
		    b->ops * k * 1000 / t, mb10 / 10, mb10 % 10,
		    b->ops ? b->lat * 1000 / (k * b->ops) : 0);
}

/* Fills every free slot with a request while `more` says so. */
static int refill(struct blk *b, uint32_t type, int timed, uint64_t end)
{
	int queued = 0;

	for (unsigned si = 0; si < b->qd; si++) {
		uint64_t off, len;
		int r;

		if (b->slot[si].busy)
			continue;
		if (timed && guest_rdtsc() >= end)
			break;
		if (!timed && b->next_off >= b->region)
			break;
		off = timed ? next_offset(b) : b->next_off;
		len = timed ? b->bs : b->region - off;
		if (len > b->bs)
			len = b->bs;
		if (!timed)
			b->next_off = off + len;
		b->slot[si].off = off;
		b->slot[si].len = len;
		if (type == BLK_T_OUT)
			fill(b, &b->slot[si]);
		r = slot_submit(b, si, type, off, len);
		if (r)
			return r;
		queued = 1;
	}
	if (queued)
		user_virtio_kick(&b->v, 0);
	return 0;
}

/* Runs requests of one type: over the region once, or for b->secs. */
static int run_io(struct blk *b, uint32_t type, int timed, const char *what)
{
	uint64_t t0 = guest_rdtsc(), sec = b->u->tsc_khz * 1000;
	uint64_t end = t0 + b->secs * sec, tick = t0 + sec, n = 0, ops0 = 0;

	b->next_off = 0;
	b->ops = b->bytes = b->lat = 0;
	for (;;) {
		unsigned si;
		uint64_t now;
		int r = refill(b, type, timed, end);

		if (r)
			return r;
		if (!b->inflight)
			break;
		r = slot_wait(b, &si);
		if (r == -USER_EIO)
			print_ioerr(b, si);
		if (r)
			return r;
		now = guest_rdtsc();
		b->ops++;
		b->bytes += b->slot[si].len;
		b->lat += now - b->slot[si].t0;
		if (b->check)
			check(b, &b->slot[si]);
		if (timed && now >= tick) {
			user_printf("blk: %s second %lu iops %lu\n", what, ++n,
				    b->ops - ops0);
			ops0 = b->ops;
			tick += sec;
		}
	}
	report(b, what, guest_rdtsc() - t0);
	return 0;
}

/* PCI, the device, its queue and our buffers; prints what went wrong. */
static int blk_open(struct blk *b)
{
	const struct guest_boot *boot = b->u->boot;
	struct user_virtq *q = &b->v.q[0];
	int r;

	r = user_pci_init(&b->pci, boot);
	if (r) {
		user_printf("blk: no PCI ECAM (ACPI MCFG) reachable\n");
		return r;
	}
	r = user_mem_init(&b->mem, boot);
	if (r) {
		user_printf("blk: no free RAM after the guest image\n");
		return r;
	}
	r = user_virtio_open(&b->v, &b->pci, &b->mem, VIRTIO_ID_BLOCK,
			     (unsigned)b->dev, b->u->tsc_khz, "blk");
	if (!r)
		r = user_virtio_negotiate(&b->v, BLK_F_RO | BLK_F_FLUSH |
							 BLK_F_SIZE_MAX);
	if (!r)
		r = user_virtio_queue(&b->v, 0, (uint16_t)(3 * b->qd));
	if (r)
		return r;
	if (q->size < 3 || b->v.devcfg_len < 8) {
		user_printf("blk: queue of %u entries or config of %u bytes "
			    "is too small\n",
			    q->size, b->v.devcfg_len);
		return -USER_ENOTSUP;
	}
	if (b->qd > q->size / 3u) {
		b->qd = q->size / 3u;
		user_printf("blk: queue has %u entries: qd lowered to %lu\n",
			    q->size, b->qd);
	}
	r = user_virtio_start(&b->v);
	return r ? r : slots_alloc(b);
}

/* Prints capacity, serial (GET_ID), read-only flag and features. */
static int identify(struct blk *b)
{
	char id[BLK_ID_LEN + 1];
	unsigned i;
	int r;

	b->capacity = user_virtio_cfg_read64(&b->v, BLK_CFG_CAPACITY);
	r = blk_sync(b, BLK_T_GET_ID, BLK_ID_LEN);
	if (r && r != -USER_EIO)
		return r;
	if (r && *b->slot[0].status != BLK_S_UNSUPP) {
		print_ioerr(b, 0);
		return r;
	}
	for (i = 0; !r && i < BLK_ID_LEN && b->slot[0].data[i]; i++) {
		char c = (char)b->slot[0].data[i];

		id[i] = c >= 0x20 && c < 0x7f && c != '"' ? c : '?';
	}
	id[i] = 0;
	user_printf("blk: capacity %lu serial \"%s\" ro %d features 0x%lx\n",
		    b->capacity, id, !!(b->v.dev_features & BLK_F_RO),
		    b->v.dev_features);
	return 0;
}

static int flush(struct blk *b)
{
	int r;

	if (!(b->v.features & BLK_F_FLUSH))
		return 0;
	r = blk_sync(b, BLK_T_FLUSH, 0);
	if (r == -USER_EIO)
		print_ioerr(b, 0);
	if (!r)
		user_printf("blk: flush ok\n");
	return r;
}

/* Sizes against the disk; writes refused on a read-only one. */
static int fit(struct blk *b)
{
	uint64_t disk = b->capacity * BLK_SECTOR;
	int writes = b->mode == M_VERIFY || b->mode == M_WRITE ||
		     b->mode == M_SEQWRITE;

	if (!b->region)
		b->region = disk;
	if (b->region > disk || b->region < b->bs) {
		user_printf("blk: %lu bytes with bs=%lu do not fit in the disk "
			    "(%lu bytes)\n",
			    b->region, b->bs, disk);
		return GUEST_EXIT_USAGE;
	}
	if (writes && (b->v.dev_features & BLK_F_RO)) {
		user_printf("blk: the disk is read-only (VIRTIO_BLK_F_RO); "
			    "refusing mode=%s\n",
			    mode_names[b->mode]);
		return GUEST_EXIT_FAIL;
	}
	return GUEST_EXIT_OK;
}

static int read_verdict(const struct blk *b)
{
	if (!b->bad) {
		user_printf("blk: read ok sectors %lu\n",
			    b->region / BLK_SECTOR);
		return GUEST_EXIT_OK;
	}
	user_printf("blk: read corrupt first sector %lu offset 0x%lx expected "
		    "0x%lx found 0x%lx bad_sectors %lu\n",
		    b->bad_off / BLK_SECTOR, b->bad_off, b->bad_exp, b->bad_got,
		    b->bad);
	return GUEST_EXIT_FAIL;
}

static int run_mode(struct blk *b)
{
	const char *name = mode_names[b->mode];
	int r = 0;

	switch (b->mode) {
	case M_VERIFY:
	case M_WRITE:
		r = run_io(b, BLK_T_OUT, 0, "write");
		if (!r)
			r = flush(b);
		if (r || b->mode == M_WRITE)
			break;
		/* fall through */
	case M_READ:
		b->check = 1;
		r = run_io(b, BLK_T_IN, 0, "read");
		if (!r)
			return read_verdict(b);
		break;
	case M_SEQWRITE:
		r = run_io(b, BLK_T_OUT, 1, name);
		if (!r)
			r = flush(b);
		break;
	case M_SEQREAD:
	case M_RANDREAD:
		r = run_io(b, BLK_T_IN, 1, name);
		break;
	}
	return r ? GUEST_EXIT_FAIL : GUEST_EXIT_OK;
}

/*
 * `blk[,mode=M][,mib=N][,bs=B][,secs=S][,seed=X][,dev=I][,qd=Q]` (see
 * docs/test-guest.md): the 8-byte word at disk offset o is written as
 * (seed << 40) ^ o.
 */
int work_blk(struct user_ctx *u)
{
	struct blk b;
	int r;

	memset(&b, 0, sizeof(b));
	b.u = u;
	if (parse_args(&b))
		return GUEST_EXIT_USAGE;
	b.rng = (b.seed * 0x9e3779b97f4a7c15ull) | 1;
	if (blk_open(&b) || identify(&b))
		return GUEST_EXIT_FAIL;
	r = fit(&b);
	if (r != GUEST_EXIT_OK)
		return r;
	if (b.v.features & BLK_F_SIZE_MAX) {
		uint32_t max = user_virtio_cfg_read32(&b.v, BLK_CFG_SIZE_MAX);

		if (max && b.bs > max) {
			user_printf("blk: bs=%lu is above the device's "
				    "size_max %u\n",
				    b.bs, max);
			return GUEST_EXIT_USAGE;
		}
	}
	return run_mode(&b);
}
