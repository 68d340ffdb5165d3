/* libFuzzer harness for canopy-vmm's split virtqueues: the input is guest
 * RAM plus one queue's configuration (fuzz_common.h); every chain
 * virtq_pop accepts must lie inside guest RAM and within the limits, and
 * is then read, written and completed as a device would. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct virtq_req req;

static void check(const struct fuzz_guest *g)
{
	uint64_t sum = 0;

	if (req.head >= g->q.size || req.nr + req.nw > VIRTQ_MAX_SEGS)
		abort();
	for (unsigned i = 0; i < req.nr + req.nw; i++) {
		if (!req.iov[i].iov_len ||
		    !fuzz_inside(g, req.iov[i].iov_base, req.iov[i].iov_len))
			abort();
		sum += req.iov[i].iov_len;
	}
	if (sum != req.rlen + req.wlen || sum > VIRTQ_MAX_BYTES)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_guest g;
	uint8_t buf[256];

	if (fuzz_guest_init(&g, data, size) < 0)
		return 0;
	if (virtq_start(&g.q) == 0) {
		for (unsigned k = 0; k <= g.q.size; k++) {
			if (virtq_pop(&g.q, &req) <= 0)
				break;
			check(&g);
			(void)virtq_req_read(&req, k, buf, sizeof(buf));
			(void)virtq_req_write(&req, k, buf, sizeof(buf));
			virtq_push(&g.q, req.head, (uint32_t)req.wlen);
			(void)virtq_should_signal(&g.q);
		}
	}
	free(g.m.ram);
	return 0;
}
