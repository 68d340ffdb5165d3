/* Fake guest RAM with guard pages and a tiny split-ring driver for the
 * virtqueue and virtio device-model unit tests (see vq_fake.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/vq_fake.h"

void vqf_mem_init(struct vqf *f, uint64_t low, uint64_t high)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t ram = (size_t)(low + high);

	memset(f, 0, sizeof(*f));
	assert_true(ram % pg == 0 && low % pg == 0);
	f->map_len = ram + 2 * pg;
	f->map = mmap(NULL, f->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	assert_true(f->map != MAP_FAILED);
	assert_int_equal(mprotect(f->map + pg, ram, PROT_READ | PROT_WRITE), 0);
	f->m.ram = f->map + pg;
	f->m.ram_size = ram;
	f->m.low_size = low;
}

void vqf_mem_free(struct vqf *f)
{
	if (f->map)
		munmap(f->map, f->map_len);
	f->map = NULL;
}

void vqf_rings(struct vqf *f, uint16_t size, uint64_t desc, uint64_t avail,
	       uint64_t used)
{
	memset(&f->q, 0, sizeof(f->q));
	f->q.mem = &f->m;
	f->q.size = size;
	f->q.desc_gpa = desc;
	f->q.avail_gpa = avail;
	f->q.used_gpa = used;
	f->avail_idx = 0;
}

void vqf_init(struct vqf *f, uint16_t size)
{
	uint64_t avail = VQF_DESC + 16ull * size;
	uint64_t used = (avail + 6 + 2ull * size + 4095) & ~4095ull;

	vqf_mem_init(f, VQF_LOW, VQF_HIGH);
	vqf_rings(f, size, VQF_DESC, avail, used);
}

void *vqf_ptr(struct vqf *f, uint64_t gpa, uint64_t len)
{
	void *p = gmem_ptr(&f->m, gpa, len);

	assert_non_null(p);
	return p;
}

void vqf_desc_at(struct vqf *f, uint64_t table, uint16_t i, uint64_t addr,
		 uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	memcpy(vqf_ptr(f, table + 16ull * i, 16), &d, 16);
}

void vqf_desc(struct vqf *f, uint16_t i, uint64_t addr, uint32_t len,
	      uint16_t flags, uint16_t next)
{
	vqf_desc_at(f, f->q.desc_gpa, i, addr, len, flags, next);
}

static void put16(struct vqf *f, uint64_t gpa, uint16_t v)
{
	memcpy(vqf_ptr(f, gpa, 2), &v, 2);
}

static uint16_t get16(struct vqf *f, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, vqf_ptr(f, gpa, 2), 2);
	return v;
}

void vqf_avail(struct vqf *f, uint16_t head)
{
	uint16_t slot = f->avail_idx & (uint16_t)(f->q.size - 1);

	put16(f, f->q.avail_gpa + 4 + 2ull * slot, head);
	vqf_avail_idx(f, (uint16_t)(f->avail_idx + 1));
}

void vqf_avail_idx(struct vqf *f, uint16_t idx)
{
	f->avail_idx = idx;
	put16(f, f->q.avail_gpa + 2, idx);
}

void vqf_avail_flags(struct vqf *f, uint16_t flags)
{
	put16(f, f->q.avail_gpa, flags);
}

void vqf_used_event(struct vqf *f, uint16_t v)
{
	put16(f, f->q.avail_gpa + 4 + 2ull * f->q.size, v);
}

uint16_t vqf_used_idx(struct vqf *f)
{
	return get16(f, f->q.used_gpa + 2);
}

void vqf_used_elem(struct vqf *f, uint16_t slot, uint32_t *id, uint32_t *len)
{
	uint8_t *e = vqf_ptr(f, f->q.used_gpa + 4 + 8ull * slot, 8);

	memcpy(id, e, 4);
	memcpy(len, e + 4, 4);
}

uint16_t vqf_avail_event(struct vqf *f)
{
	return get16(f, f->q.used_gpa + 4 + 8ull * f->q.size);
}

int vqf_inside(const struct vqf *f, const void *p, size_t len)
{
	const uint8_t *b = p;

	return b >= f->m.ram && b <= f->m.ram + f->m.ram_size &&
	       len <= (size_t)(f->m.ram + f->m.ram_size - b);
}
