/* libFuzzer harness for the vMotion stream decoder (vmotion/stream.c): the
 * input is a stream as a destination VMM would receive it; every record is
 * decoded and validated as the receiver does, and the header check runs
 * against a fixed local VM. A crash, a read past the input (ASan) or an
 * accepted page run outside RAM is a bug. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vmotion/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_PAGES 4096u /* a 16 MiB guest */

static void check_one(const uint8_t *p, size_t n)
{
	static struct mig_header h, local;
	struct mig_cpuid sup[1] = { { .function = 1, .ecx = ~0u } };
	struct mig_pages pg;
	struct mig_rec r;
	char why[256];

	if (mig_rec_head_decode(p, n, &r) < 0 || n - MIG_REC_HEAD < r.len)
		return;
	if (r.type == MIG_REC_HEADER && mig_header_decode(&r, &h) == 0) {
		local = h;
		local.devices = "platform,serial0";
		(void)!mig_header_check(&h, &local, sup, 1, why, sizeof(why));
	}
	if (r.type == MIG_REC_PAGES &&
	    mig_pages_decode(&r, RAM_PAGES, &pg) == 0) {
		if (pg.first + pg.count > RAM_PAGES)
			abort(); /* the decoder let a run past RAM through */
		if (pg.data && pg.data + (size_t)pg.count * MIG_PAGE_SIZE !=
				       r.body + r.len)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0, used;

	while (off < size) {
		int rc =
			mig_rec_check(data + off, size - off, RAM_PAGES, &used);

		check_one(data + off, size - off);
		if (rc < 0)
			break;
		off += used;
	}
	return 0;
}
