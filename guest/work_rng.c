/* Test guest: the `rng` workload: reads entropy from a virtio-rng device. */
#include "guest/user_virtio.h"

#define RNG_ID 4 /* virtio device ID of an entropy source */
#define RNG_DEFAULT_BYTES 4096
#define RNG_MAX_BYTES ((uint64_t)4 << 30)
#define RNG_CHUNK 4096 /* bytes asked for per request */
#define RNG_EMPTY_MAX 16 /* completions with no bytes before we give up */

struct rng {
	struct user_ctx *u;
	struct user_pci pci;
	struct user_mem mem;
	struct user_virtio v;
	uint8_t *buf; /* RNG_CHUNK bytes */
	uint8_t seen[256]; /* byte values met */
};

static int rng_open(struct rng *g)
{
	int r = user_pci_init(&g->pci, g->u->boot);

	if (r) {
		user_printf("rng: no PCI ECAM (ACPI MCFG) reachable\n");
		return r;
	}
	if (user_mem_init(&g->mem, g->u->boot)) {
		user_printf("rng: no free RAM after the guest image\n");
		return -USER_ENOMEM;
	}
	r = user_virtio_open(&g->v, &g->pci, &g->mem, RNG_ID, 0, g->u->tsc_khz,
			     "rng");
	if (!r)
		r = user_virtio_negotiate(&g->v, 0);
	if (!r)
		r = user_virtio_queue(&g->v, 0, 4);
	if (r)
		return r;
	g->buf = user_mem_alloc(&g->mem, RNG_CHUNK, GUEST_PAGE);
	if (!g->buf) {
		user_printf("rng: no free RAM for our buffer\n");
		return -USER_ENOMEM;
	}
	return user_virtio_start(&g->v);
}

/* One request for up to want bytes; *got is what the device filled. */
static int rng_read(struct rng *g, uint32_t want, uint32_t *got)
{
	struct user_virtio_buf b = { (uint64_t)g->buf, want, 1 };
	uint16_t head;
	int r;

	for (uint32_t i = 0; i < want; i++)
		g->buf[i] = 0;
	r = user_virtio_add(&g->v, 0, &b, 1, &head);
	if (r)
		return r;
	user_virtio_kick(&g->v, 0);
	r = user_virtio_get(&g->v, 0, VIRTIO_TIMEOUT_MS, &head, got);
	if (r)
		return r;
	if (*got > want) {
		user_printf("rng: device says it wrote %u bytes into %u\n",
			    *got, want);
		return -USER_EPROTO;
	}
	for (uint32_t i = 0; i < *got; i++)
		g->seen[g->buf[i]] = 1;
	return 0;
}

/*
 * A device-readable buffer breaks the rules of virtio-rng: the device must
 * refuse it and ask for a reset. 0 when it did, -USER_EPROTO otherwise.
 */
static int rng_readable(struct rng *g)
{
	struct user_virtio_buf b = { (uint64_t)g->buf, 64, 0 };
	uint16_t head;
	uint32_t len;
	int r = user_virtio_add(&g->v, 0, &b, 1, &head);

	if (r)
		return r;
	user_virtio_kick(&g->v, 0);
	r = user_virtio_get(&g->v, 0, VIRTIO_TIMEOUT_MS, &head, &len);
	if (r == -USER_EIO &&
	    (user_virtio_status(&g->v) & VIRTIO_S_NEEDS_RESET)) {
		user_printf("rng: readable buffer refused: device needs "
			    "reset\n");
		return 0;
	}
	user_printf("rng: readable buffer was %s\n",
		    r ? "not answered" : "accepted");
	return -USER_EPROTO;
}

/*
 * `rng[,bytes=N][,readable=1]`: reads N bytes (default 4096) from the first virtio-rng
 * device, RNG_CHUNK at a time, and prints `rng: got N bytes distinct B`,
 * B the number of distinct byte values among them. readable=1 instead
 * offers one device-readable buffer, which the device must refuse.
 */
int work_rng(struct user_ctx *u)
{
	static const char *const keys[] = { "bytes", "readable", NULL };
	static struct rng g;
	uint64_t want, readable, total = 0;
	unsigned empty = 0, distinct = 0;

	memset(&g, 0, sizeof(g));
	g.u = u;
	if (user_args_check(u, keys, 0) ||
	    user_arg_u64(u, "bytes", RNG_DEFAULT_BYTES, &want) ||
	    user_arg_u64(u, "readable", 0, &readable) || user_need_tsc(u))
		return GUEST_EXIT_USAGE;
	if (want == 0 || want > RNG_MAX_BYTES) {
		user_printf("canopy-testguest: workload 'rng': bytes=%lu is "
			    "not in 1..%lu\n",
			    want, RNG_MAX_BYTES);
		return GUEST_EXIT_USAGE;
	}
	if (rng_open(&g))
		return GUEST_EXIT_FAIL;
	if (readable)
		return rng_readable(&g) ? GUEST_EXIT_FAIL : GUEST_EXIT_OK;
	while (total < want) {
		uint32_t n = want - total < RNG_CHUNK ?
				     (uint32_t)(want - total) :
				     RNG_CHUNK;
		uint32_t got;

		if (rng_read(&g, n, &got))
			return GUEST_EXIT_FAIL;
		if (got == 0 && ++empty >= RNG_EMPTY_MAX) {
			user_printf("rng: %u requests in a row came back "
				    "empty\n",
				    empty);
			return GUEST_EXIT_FAIL;
		}
		empty = got ? 0 : empty;
		total += got;
	}
	for (unsigned i = 0; i < 256; i++)
		distinct += g.seen[i];
	user_printf("rng: got %lu bytes distinct %u\n", total, distinct);
	return GUEST_EXIT_OK;
}
