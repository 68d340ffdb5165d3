/* The virtio-pci transport and virtio-rng end to end without KVM: a fake VM
 * (guard-paged RAM from vq_fake.h, no vm fd) with the real PCI bus, the
 * test acting as the guest's driver through ECAM and BAR0 accesses, the
 * device's worker thread answering. Hostile register sequences must end in
 * a refusal or DEVICE_NEEDS_RESET, and a reset must bring the device back. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "host/vmm/pci.h"
#include "host/vmm/virtio_blk.h"
#include "host/vmm/virtio_pci.h"
#include "host/vmm/virtio_rng.h"
#include "host/vmm/vmm.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "tests/unit/vq_fake.h"

#define D VQF_DATA
#define W VIRTQ_DESC_F_WRITE
/* Common configuration registers (virtio 1.x, 4.1.4.3). */
#define R_GFEAT_SEL 0x08
#define R_GFEAT 0x0c
#define R_NUMQ 0x12
#define R_STATUS 0x14
#define R_QSEL 0x16
#define R_QSIZE 0x18
#define R_QMSIX 0x1a
#define R_QENABLE 0x1c
#define R_QDESC 0x20
#define R_QDRIVER 0x28
#define R_QDEVICE 0x30
#define R_ISR 0x100
#define R_NOTIFY 0x1000
#define S_ACK_DRIVER (VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER)
/* 64 KiB chunks of the test disk. */
#define BLK_CHUNKS 32
/* How long the worker may take to answer a kick. */
#define WAIT_MS 3000

struct tx {
	struct vm *vm;
	struct vqf f; /* guest RAM and the driver's view of queue 0 */
	struct virtio_dev *vd;
	unsigned slot;
	uint64_t bar;
	uint16_t qsize; /* entries the driver sets up */
	char disk[64]; /* virtio-blk's backing file, "" for virtio-rng */
};

static uint64_t ecam(const struct tx *t, unsigned reg)
{
	return PCI_ECAM_BASE + ((uint64_t)t->slot << 15) + reg;
}

static uint32_t cfg_r(struct tx *t, unsigned reg, uint32_t len)
{
	uint32_t v = 0;

	io_bus_access(&t->vm->mmio, ecam(t, reg), &v, len, 0);
	return v;
}

static void cfg_w(struct tx *t, unsigned reg, uint32_t v, uint32_t len)
{
	io_bus_access(&t->vm->mmio, ecam(t, reg), &v, len, 1);
}

static uint64_t reg_r(struct tx *t, uint64_t off, uint32_t len)
{
	uint64_t v = 0;

	io_bus_access(&t->vm->mmio, t->bar + off, &v, len, 0);
	return v;
}

static void reg_w(struct tx *t, uint64_t off, uint64_t v, uint32_t len)
{
	io_bus_access(&t->vm->mmio, t->bar + off, &v, len, 1);
}

/* A virtio-blk disk over a sparse temporary file, 64 KiB chunk i filled
 * with the byte i + 1; O_DIRECT, so that reads run on the I/O threads. */
static int add_disk(struct tx *t, char *err, size_t errlen)
{
	struct blk_spec spec;
	struct blk_backend *b;
	static uint8_t chunk[64 << 10];
	char opt[96];
	int fd;

	snprintf(t->disk, sizeof(t->disk), "/tmp/canopy-vq-disk-XXXXXX");
	fd = mkstemp(t->disk);
	if (fd < 0)
		return -errno;
	for (unsigned i = 0; i < BLK_CHUNKS; i++) {
		memset(chunk, (int)(i + 1), sizeof(chunk));
		if (pwrite(fd, chunk, sizeof(chunk),
			   (off_t)i * sizeof(chunk)) != (ssize_t)sizeof(chunk))
			return -EIO;
	}
	close(fd);
	snprintf(opt, sizeof(opt), "path=%s,direct", t->disk);
	if (blk_spec_parse(opt, &spec, err, errlen) < 0 ||
	    blk_file_open(&spec, &b, err, errlen) < 0)
		return -EINVAL;
	assert_true(b->parallel);
	return virtio_blk_add(t->vm, t->vm->pci, b, "vq-disk", err, errlen);
}

/* The fake VM with one virtio device (kind: VIRTIO_ID_RNG or
 * VIRTIO_ID_BLOCK), its worker running, BAR0 decoding. */
static int setup_dev(void **state, uint16_t kind)
{
	struct tx *t = calloc(1, sizeof(*t));
	char err[256];

	if (!t || !(t->vm = calloc(1, sizeof(*t->vm))))
		return -1;
	log_set_level(LOG_ERROR); /* no KVM: every INTx change would warn */
	t->vm->vm_fd = t->vm->kvm_fd = -1;
	t->qsize = 8;
	vqf_mem_init(&t->f, VQF_LOW, VQF_HIGH);
	t->vm->gmem = t->f.m;
	if (pci_create(t->vm, &t->vm->pci) < 0 ||
	    (kind == VIRTIO_ID_RNG ?
		     virtio_rng_add(t->vm, t->vm->pci, err, sizeof(err)) :
		     add_disk(t, err, sizeof(err))) < 0)
		return -1;
	t->vd = t->vm->virtio[0];
	t->vd->dev_ops.resume(t->vd); /* as vmm_run does: the VM runs */
	for (t->slot = 1; t->slot < PCI_SLOTS; t->slot++)
		if (cfg_r(t, 0, 4) == ((0x1040u + kind) << 16 | 0x1af4))
			break;
	assert_true(t->slot < PCI_SLOTS);
	cfg_w(t, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER, 2);
	t->bar = cfg_r(t, PCI_BAR0, 4) & ~0xfu;
	assert_true(t->bar >= PCI_MMIO_BASE);
	*state = t;
	return 0;
}

static int setup(void **state)
{
	return setup_dev(state, VIRTIO_ID_RNG);
}

static int setup_blk(void **state)
{
	return setup_dev(state, VIRTIO_ID_BLOCK);
}

static int teardown(void **state)
{
	struct tx *t = *state;

	/* As devices_destroy (devices.c would pull every device in). */
	while (t->vm->nvirtio)
		virtio_pci_destroy(t->vm->virtio[--t->vm->nvirtio]);
	pci_destroy(t->vm->pci);
	if (t->disk[0])
		unlink(t->disk);
	vqf_mem_free(&t->f);
	free(t->vm);
	free(t);
	return 0;
}

static uint8_t status(struct tx *t)
{
	return (uint8_t)reg_r(t, R_STATUS, 1);
}

/* Reset, ACKNOWLEDGE | DRIVER, the features (high word) and FEATURES_OK;
 * the status the device kept. */
static uint8_t negotiate(struct tx *t, uint32_t hi)
{
	reg_w(t, R_STATUS, 0, 1);
	assert_int_equal(status(t), 0);
	reg_w(t, R_STATUS, S_ACK_DRIVER, 1);
	reg_w(t, R_GFEAT_SEL, 1, 4);
	reg_w(t, R_GFEAT, hi, 4);
	reg_w(t, R_STATUS, S_ACK_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
	return status(t);
}

/* Queue 0 with t->qsize entries at desc/avail/used, enabled; then
 * DRIVER_OK. */
static void queue_up(struct tx *t, uint64_t desc, uint64_t avail, uint64_t used)
{
	const uint64_t n = t->qsize;
	const uint64_t at[3][2] = { { desc, 16 * n },
				    { avail, 6 + 2 * n },
				    { used, 6 + 8 * n } };

	/* Fresh, zeroed rings, as a driver allocates them. */
	for (unsigned i = 0; i < 3; i++) {
		void *p = gmem_ptr(&t->f.m, at[i][0], at[i][1]);

		if (p)
			memset(p, 0, at[i][1]);
	}
	vqf_rings(&t->f, t->qsize, desc, avail, used);
	reg_w(t, R_QSEL, 0, 2);
	reg_w(t, R_QSIZE, t->qsize, 2);
	reg_w(t, R_QDESC, desc, 8);
	reg_w(t, R_QDRIVER, avail, 8);
	reg_w(t, R_QDEVICE, used, 8);
	reg_w(t, R_QENABLE, 1, 2);
	reg_w(t, R_STATUS,
	      S_ACK_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		      VIRTIO_STATUS_DRIVER_OK,
	      1);
}

/* A working device with queue 0 at the default place. */
static void bring_up(struct tx *t)
{
	assert_true(negotiate(t, 1) & VIRTIO_STATUS_FEATURES_OK);
	queue_up(t, VQF_DESC, 0x2000, 0x3000);
	assert_int_equal(status(t) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait until pred holds (the worker answered) or WAIT_MS pass. */
static int wait_for(struct tx *t, int (*pred)(struct tx *t, uint16_t v),
		    uint16_t v)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (!pred(t, v)) {
		if (now_ms() > end)
			return 0;
		usleep(1000);
	}
	return 1;
}

static int used_is(struct tx *t, uint16_t v)
{
	return vqf_used_idx(&t->f) == v;
}

static int needs_reset(struct tx *t, uint16_t v)
{
	return (status(t) & VIRTIO_STATUS_NEEDS_RESET) != 0;
}

/* Offer one buffer (desc 0: addr, len, flags) and kick. */
static void offer(struct tx *t, uint64_t addr, uint32_t len, uint16_t flags)
{
	vqf_desc(&t->f, 0, addr, len, flags, 0);
	vqf_avail(&t->f, 0);
	reg_w(t, R_NOTIFY, 0, 2);
}

static void test_rng_over_the_transport(void **state)
{
	struct tx *t = *state;
	uint32_t id, len;

	assert_int_equal(reg_r(t, R_NUMQ, 2), 1);
	bring_up(t);
	memset(vqf_ptr(&t->f, D, 4096), 0, 4096);
	offer(t, D, 4096, W);
	assert_true(wait_for(t, used_is, 1));
	vqf_used_elem(&t->f, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 4096);
	assert_memory_not_equal(vqf_ptr(&t->f, D, 64),
				vqf_ptr(&t->f, D + 64, 64), 64);
	/* No MSI-X: the queue interrupt shows in the ISR, cleared on read. */
	assert_int_equal(reg_r(t, R_ISR, 1) & 1, 1);
	assert_int_equal(reg_r(t, R_ISR, 1), 0);
	offer(t, D, 16, W);
	assert_true(wait_for(t, used_is, 2));
}

static void test_features_not_offered_are_refused(void **state)
{
	struct tx *t = *state;

	/* Bit 40 is nothing we offer; without VERSION_1 (bit 32) there is
	 * no modern device. Both: FEATURES_OK does not stick. */
	assert_false(negotiate(t, 1 | 1u << 8) & VIRTIO_STATUS_FEATURES_OK);
	assert_false(negotiate(t, 0) & VIRTIO_STATUS_FEATURES_OK);
	assert_true(negotiate(t, 1) & VIRTIO_STATUS_FEATURES_OK);
	/* Once FEATURES_OK is set the features are fixed. */
	reg_w(t, R_GFEAT_SEL, 1, 4);
	reg_w(t, R_GFEAT, 0, 4);
	assert_int_equal(reg_r(t, R_GFEAT, 4), 1);
}

static void test_driver_ok_without_features_ok_needs_reset(void **state)
{
	struct tx *t = *state;

	reg_w(t, R_STATUS, 0, 1);
	reg_w(t, R_STATUS, S_ACK_DRIVER | VIRTIO_STATUS_DRIVER_OK, 1);
	assert_true(status(t) & VIRTIO_STATUS_NEEDS_RESET);
	bring_up(t); /* a reset brings it back */
	offer(t, D, 8, W);
	assert_true(wait_for(t, used_is, 1));
}

static void test_bad_rings_need_reset(void **state)
{
	struct tx *t = *state;
	const uint64_t end = GMEM_HIGH_START + VQF_HIGH;
	const uint64_t bad[][3] = {
		{ VQF_LOW - 64, 0x2000, 0x3000 }, /* desc across the gap */
		{ VQF_DESC, end - 8, 0x3000 }, /* avail past RAM's end */
		{ VQF_DESC, 0x2000, 0x3002 }, /* used misaligned */
		{ UINT64_MAX & ~15ull, 0x2000, 0x3000 },
	};

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(negotiate(t, 1) & VIRTIO_STATUS_FEATURES_OK);
		queue_up(t, bad[i][0], bad[i][1], bad[i][2]);
		assert_true(status(t) & VIRTIO_STATUS_NEEDS_RESET);
		/* A kick now reaches nothing. */
		reg_w(t, R_NOTIFY, 0, 2);
	}
	bring_up(t);
	offer(t, D, 8, W);
	assert_true(wait_for(t, used_is, 1));
}

static void test_bad_chain_needs_reset_reset_recovers(void **state)
{
	struct tx *t = *state;

	bring_up(t);
	offer(t, D, 64, 0); /* device-readable: not for an rng */
	assert_true(wait_for(t, needs_reset, 0));
	assert_int_equal(vqf_used_idx(&t->f), 0);
	assert_true(t->vd->needs_reset_count == 1);
	offer(t, D, 64, W); /* ignored until a reset */
	usleep(50 * 1000);
	assert_int_equal(vqf_used_idx(&t->f), 0);
	bring_up(t);
	offer(t, VQF_LOW - 4, 8, W); /* across the gap: refused too */
	assert_true(wait_for(t, needs_reset, 0));
	assert_int_equal(vqf_used_idx(&t->f), 0);
	assert_int_equal(t->vd->needs_reset_count, 2);
	bring_up(t);
	offer(t, D, 8, W);
	assert_true(wait_for(t, used_is, 1));
}

static void test_queue_registers_refuse_nonsense(void **state)
{
	struct tx *t = *state;

	reg_w(t, R_STATUS, 0, 1);
	reg_w(t, R_QSEL, 5, 2); /* no such queue: reads 0, writes go nowhere */
	reg_w(t, R_QSIZE, 8, 2);
	reg_w(t, R_QENABLE, 1, 2);
	assert_int_equal(reg_r(t, R_QSIZE, 2), 0);
	assert_int_equal(reg_r(t, R_QENABLE, 2), 0);
	reg_w(t, R_QSEL, 0, 2);
	assert_int_equal(reg_r(t, R_QSIZE, 2), 64); /* the maximum */
	reg_w(t, R_QSIZE, 3, 2); /* not a power of two */
	reg_w(t, R_QSIZE, 128, 2); /* above the maximum */
	reg_w(t, R_QSIZE, 0, 2);
	assert_int_equal(reg_r(t, R_QSIZE, 2), 64);
	reg_w(t, R_QMSIX, 7, 2); /* no such vector */
	assert_int_equal(reg_r(t, R_QMSIX, 2), VIRTIO_MSI_NO_VECTOR);
	reg_w(t, R_QDESC, 0x1000, 8);
	reg_w(t, R_QENABLE, 1, 2);
	reg_w(t, R_QDESC, 0x5000, 8); /* fixed once enabled */
	reg_w(t, R_QSIZE, 16, 2);
	assert_int_equal(reg_r(t, R_QDESC, 8), 0x1000);
	assert_int_equal(reg_r(t, R_QSIZE, 2), 64);
	/* Past the common configuration, in the gaps, a device
	 * configuration of 0 bytes, a notify of a queue we do not have,
	 * straddling accesses: zeros, and nothing happens. */
	assert_int_equal(reg_r(t, 0x38, 4), 0);
	assert_int_equal(reg_r(t, 0x36, 4), 0);
	assert_int_equal(reg_r(t, 0x200, 8), 0);
	assert_int_equal(reg_r(t, 0xffc, 4), 0);
	reg_w(t, R_NOTIFY + 4, 0, 2);
	reg_w(t, 0x37, 0xff, 2);
	assert_int_equal(reg_r(t, R_NOTIFY, 4), 0);
	assert_int_equal(status(t), 0);
}

/* Once a reset (status 0) returns, the device writes nothing more into
 * guest RAM, even with the queue full of large requests when it came. */
static void test_reset_stops_device_writes(void **state)
{
	struct tx *t = *state;
	static uint8_t before[VIRTIO_RNG_MAX_REQ];
	uint16_t used;

	for (unsigned round = 0; round < 20; round++) {
		bring_up(t);
		for (uint16_t i = 0; i < 8; i++) {
			vqf_desc(&t->f, i, D, VIRTIO_RNG_MAX_REQ, W, 0);
			vqf_avail(&t->f, i);
		}
		reg_w(t, R_NOTIFY, 0, 2);
		usleep(round * 100);
		reg_w(t, R_STATUS, 0, 1);
		assert_int_equal(status(t), 0);
		used = vqf_used_idx(&t->f);
		memcpy(before, vqf_ptr(&t->f, D, sizeof(before)),
		       sizeof(before));
		usleep(5000);
		assert_int_equal(vqf_used_idx(&t->f), used);
		assert_memory_equal(before, vqf_ptr(&t->f, D, sizeof(before)),
				    sizeof(before));
	}
}

/* The PCI configuration access capability: a window onto BAR0 through
 * configuration space; only whole, aligned 1/2/4-byte accesses inside
 * BAR0 go through. */
static void test_pci_cfg_window(void **state)
{
	struct tx *t = *state;
	unsigned cap = cfg_r(t, PCI_CAP_PTR, 1);

	while (cap && !(cfg_r(t, cap, 1) == 0x09 && cfg_r(t, cap + 3, 1) == 5))
		cap = cfg_r(t, cap + 1, 1);
	assert_true(cap != 0);
	reg_w(t, R_STATUS, S_ACK_DRIVER, 1);
	cfg_w(t, cap + 4, 0, 1); /* BAR 0 */
	cfg_w(t, cap + 8, R_STATUS, 4);
	cfg_w(t, cap + 12, 1, 4);
	assert_int_equal(cfg_r(t, cap + 16, 4) & 0xff, S_ACK_DRIVER);
	cfg_w(t, cap + 16, 0, 4); /* a write: reset through the window */
	assert_int_equal(status(t), 0);
	reg_w(t, R_STATUS, S_ACK_DRIVER, 1);
	cfg_w(t, cap + 12, 3, 4); /* not 1, 2 or 4 bytes */
	cfg_w(t, cap + 16, 0, 4);
	cfg_w(t, cap + 12, 2, 4); /* misaligned for 2 bytes */
	cfg_w(t, cap + 8, R_STATUS + 1, 4);
	cfg_w(t, cap + 16, 0, 4);
	cfg_w(t, cap + 12, 4, 4); /* past BAR0 */
	cfg_w(t, cap + 8, 0x4000 - 2, 4);
	cfg_w(t, cap + 16, 0, 4);
	cfg_w(t, cap + 8, UINT32_MAX & ~3u, 4);
	cfg_w(t, cap + 16, 0, 4);
	cfg_w(t, cap + 4, 1, 1); /* another BAR */
	cfg_w(t, cap + 8, R_STATUS, 4);
	cfg_w(t, cap + 12, 1, 4);
	cfg_w(t, cap + 16, 0, 4);
	assert_int_equal(status(t), S_ACK_DRIVER); /* none of them reset it */
}

static uint64_t rnd_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* One random access: mostly BAR0 registers, some configuration space,
 * values often small or plausible addresses in guest RAM; or random bytes
 * written over the rings and a kick. */
static void random_access(struct tx *t, uint64_t *s)
{
	static const uint32_t lens[] = { 1, 2, 4, 8 };
	uint64_t r = rnd_next(s), v = rnd_next(s);
	uint32_t len = lens[r & 3];
	unsigned where = (unsigned)(r >> 2) % 16;
	uint64_t off;

	if (where == 15) { /* the guest scribbles on its rings, kicks */
		memcpy(vqf_ptr(&t->f, VQF_DESC + (r >> 8) % 0x3000, 8), &v, 8);
		reg_w(t, R_NOTIFY, 0, 2);
		return;
	}
	if (where < 2) { /* configuration space, 256 bytes */
		off = (r >> 8) % 256;
		if (len == 8)
			len = 4;
		cfg_w(t, (unsigned)off, (uint32_t)v, len);
		return;
	}
	if (where < 10) /* common configuration */
		off = (r >> 8) % 0x40;
	else if (where < 12) /* notify, ISR */
		off = (r >> 8) & 1 ? R_NOTIFY + (r >> 9) % 8 : R_ISR;
	else /* anywhere in BAR0 and a little past it */
		off = (r >> 8) % 0x4100;
	if ((r >> 20) & 1)
		v = (r >> 21) & 1 ? v % 16 : VQF_DESC + (v % 0x3000);
	if ((r >> 22) & 1)
		reg_r(t, off, len);
	else
		reg_w(t, off, v, len);
}

/* Put BAR0 and the command register back where setup had them. */
static void restore_bar(struct tx *t)
{
	cfg_w(t, PCI_BAR0, (uint32_t)t->bar, 4);
	cfg_w(t, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER, 2);
}

/* Seeded random register traffic (the seed is printed): nothing crashes
 * or touches memory outside guest RAM, and a reset brings the device
 * back afterwards. */
static void test_random_register_traffic(void **state)
{
	struct tx *t = *state;
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20), s;
	const char *e = getenv("CANOPY_VQ_SEED");
	unsigned ok = 0;

	if (e)
		seed = strtoull(e, NULL, 0);
	s = seed;
	print_message("virtio-pci random: seed %llu (CANOPY_VQ_SEED)\n",
		      (unsigned long long)seed);
	for (unsigned i = 0; i < 20000; i++) {
		if (i % 2000 == 0) { /* now and then, a working device */
			restore_bar(t);
			bring_up(t);
		}
		random_access(t, &s);
		if (i % 16 == 0)
			ok += (status(t) & VIRTIO_STATUS_DRIVER_OK) != 0;
	}
	print_message("virtio-pci random: running at %u of 1250 looks, "
		      "needed a reset %llu times\n",
		      ok, (unsigned long long)t->vd->needs_reset_count);
	restore_bar(t);
	bring_up(t);
	offer(t, D, 8, W);
	assert_true(wait_for(t, used_is, 1));
}

/* Capability with id `id` in configuration space (0 if none). */
static unsigned find_cap(struct tx *t, unsigned id)
{
	unsigned cap = cfg_r(t, PCI_CAP_PTR, 1);

	for (unsigned n = 0; cap && n < 48; n++) {
		if (cfg_r(t, cap, 1) == id)
			return cap;
		cap = cfg_r(t, cap + 1, 1);
	}
	return 0;
}

/* With MSI-X on and every vector masked, interrupts show as pending bits:
 * the queue's on its vector, configuration changes (needs reset) on the
 * configuration vector, none for a vector the device does not have. */
static void test_msix_vectors(void **state)
{
	struct tx *t = *state;
	unsigned cap = find_cap(t, PCI_CAP_MSIX);

	assert_true(cap != 0);
	assert_int_equal(cfg_r(t, cap + 2, 2) & 0x7ff, 1); /* 2 vectors */
	cfg_w(t, cap + 2, PCI_MSIX_ENABLE, 2);
	for (unsigned v = 0; v < 2; v++)
		reg_w(t, 0x2000 + 16 * v + 12, 1, 4); /* masked */
	assert_true(negotiate(t, 1) & VIRTIO_STATUS_FEATURES_OK);
	reg_w(t, 0x10, 9, 2); /* no such vector */
	assert_int_equal(reg_r(t, 0x10, 2), VIRTIO_MSI_NO_VECTOR);
	reg_w(t, 0x10, 0, 2);
	reg_w(t, R_QSEL, 0, 2);
	reg_w(t, R_QMSIX, 1, 2);
	queue_up(t, VQF_DESC, 0x2000, 0x3000);
	offer(t, D, 8, W);
	assert_true(wait_for(t, used_is, 1));
	assert_int_equal(reg_r(t, 0x3000, 4), 2); /* vector 1 pending */
	offer(t, D, 8, 0); /* readable: needs reset, config interrupt */
	assert_true(wait_for(t, needs_reset, 0));
	assert_int_equal(reg_r(t, 0x3000, 4), 3);
	/* Unmasked, the pending ones go out; masked again, a queue without
	 * a vector raises nothing. */
	for (unsigned v = 0; v < 2; v++)
		reg_w(t, 0x2000 + 16 * v + 12, 0, 4);
	assert_int_equal(reg_r(t, 0x3000, 4), 0);
	for (unsigned v = 0; v < 2; v++)
		reg_w(t, 0x2000 + 16 * v + 12, 1, 4);
	assert_true(negotiate(t, 1) & VIRTIO_STATUS_FEATURES_OK);
	reg_w(t, R_QSEL, 0, 2);
	reg_w(t, R_QMSIX, VIRTIO_MSI_NO_VECTOR, 2);
	queue_up(t, VQF_DESC, 0x2000, 0x3000);
	offer(t, D, 8, W);
	assert_true(wait_for(t, used_is, 1));
	assert_int_equal(reg_r(t, 0x3000, 4), 0);
}

static void test_snapshot_state_is_checked(void **state)
{
	struct tx *t = *state;
	struct buf b, bad;
	uint8_t *p;

	bring_up(t);
	buf_init(&b, 1 << 20);
	buf_init(&bad, 1 << 20);
	assert_int_equal(t->vd->dev_ops.save(t->vd, &b), 0);
	assert_int_equal(t->vd->dev_ops.load(t->vd, buf_ptr(&b), buf_len(&b)),
			 0);
	offer(t, D, 8, W); /* still working after a load */
	assert_true(wait_for(t, used_is, 1));
	/* Short, long, a bad version (first word), a bad rng version (last
	 * word): refused. */
	assert_int_equal(t->vd->dev_ops.load(t->vd, buf_ptr(&b), 3), -EINVAL);
	assert_int_equal(t->vd->dev_ops.load(t->vd, buf_ptr(&b),
					     buf_len(&b) - 1),
			 -EINVAL);
	assert_int_equal(buf_append(&bad, buf_ptr(&b), buf_len(&b)), 0);
	assert_int_equal(buf_append(&bad, "x", 1), 0);
	assert_int_equal(t->vd->dev_ops.load(t->vd, buf_ptr(&bad),
					     buf_len(&bad)),
			 -EINVAL);
	p = (uint8_t *)buf_ptr(&bad);
	p[0] ^= 0xff;
	assert_int_equal(t->vd->dev_ops.load(t->vd, p, buf_len(&b)), -EINVAL);
	p[0] ^= 0xff;
	p[buf_len(&b) - 4] ^= 0xff;
	assert_int_equal(t->vd->dev_ops.load(t->vd, p, buf_len(&b)), -EINVAL);
	buf_free(&b);
	buf_free(&bad);
}

/* ---- virtio-blk over the transport ------------------------------------ */

#define BLK_HDRS 0x4000ull /* request headers, 16 bytes each */
#define BLK_STATUS 0x5000ull /* status bytes */

/* Request i (descriptors 3i..3i+2): read len bytes at sector into data;
 * with status_too 0, a chain with nothing the device may write (no room
 * for the data nor the status byte). */
static void blk_read(struct tx *t, uint16_t i, uint64_t sector, uint64_t data,
		     uint32_t len, int status_too)
{
	uint32_t hdr[4] = { 0, 0, (uint32_t)sector, (uint32_t)(sector >> 32) };
	uint16_t d = (uint16_t)(3 * i);

	memcpy(vqf_ptr(&t->f, BLK_HDRS + 16 * i, 16), hdr, 16);
	*(uint8_t *)vqf_ptr(&t->f, BLK_STATUS + i, 1) = 0xee;
	vqf_desc(&t->f, d, BLK_HDRS + 16 * i, 16, VIRTQ_DESC_F_NEXT,
		 (uint16_t)(d + 1));
	vqf_desc(&t->f, (uint16_t)(d + 1), data, len,
		 status_too ? W | VIRTQ_DESC_F_NEXT : 0, (uint16_t)(d + 2));
	vqf_desc(&t->f, (uint16_t)(d + 2), BLK_STATUS + i, 1, W, 0);
	vqf_avail(&t->f, d);
}

static void test_blk_reads_over_the_transport(void **state)
{
	struct tx *t = *state;
	uint32_t id, len;

	t->qsize = 32;
	bring_up(t);
	blk_read(t, 0, 3 * 128, D, 4096, 1); /* chunk 3: bytes of 4 */
	blk_read(t, 1, BLK_CHUNKS * 128, D + 4096, 512, 1); /* past the end */
	reg_w(t, R_NOTIFY, 0, 2);
	assert_true(wait_for(t, used_is, 2));
	for (uint16_t k = 0; k < 2; k++) {
		vqf_used_elem(&t->f, k, &id, &len);
		if (id == 0) {
			assert_int_equal(len, 4097);
			assert_int_equal(
				*(uint8_t *)vqf_ptr(&t->f, BLK_STATUS, 1), 0);
		} else {
			assert_int_equal(id, 3);
			assert_int_equal(len, 1); /* IOERR, no data */
			assert_int_equal(*(uint8_t *)vqf_ptr(&t->f,
							     BLK_STATUS + 1, 1),
					 1);
		}
	}
	for (unsigned k = 0; k < 4096; k++)
		assert_int_equal(*(uint8_t *)vqf_ptr(&t->f, D + k, 1), 4);
	/* Nowhere to put the status: the device needs a reset; a reset
	 * recovers. */
	blk_read(t, 2, 0, D, 512, 0);
	reg_w(t, R_NOTIFY, 0, 2);
	assert_true(wait_for(t, needs_reset, 0));
	bring_up(t);
	blk_read(t, 0, 0, D, 512, 1);
	reg_w(t, R_NOTIFY, 0, 2);
	assert_true(wait_for(t, used_is, 1));
}

/* Reads on the I/O threads are in flight when the driver resets: once the
 * reset returns, nothing more lands in guest RAM. Each request reads
 * another chunk into the same buffer, so a late one would show. */
static void spin_us(unsigned us)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1000000 +
		       (b.tv_nsec - a.tv_nsec) / 1000 <
	       us);
}

static void test_blk_reset_waits_for_in_flight_reads(void **state)
{
	struct tx *t = *state;
	static uint8_t before[128 << 10];
	uint16_t used;

	t->qsize = 64;
	for (unsigned round = 0; round < 48; round++) {
		bring_up(t);
		for (uint16_t i = 0; i < 20; i++)
			blk_read(t, i, (uint64_t)(i + round % 8) * 128, D,
				 sizeof(before), 1);
		reg_w(t, R_NOTIFY, 0, 2);
		spin_us((round % 8) * 25);
		reg_w(t, R_STATUS, 0, 1);
		assert_int_equal(status(t), 0);
		used = vqf_used_idx(&t->f);
		memcpy(before, vqf_ptr(&t->f, D, sizeof(before)),
		       sizeof(before));
		usleep(3000);
		assert_int_equal(vqf_used_idx(&t->f), used);
		assert_memory_equal(before, vqf_ptr(&t->f, D, sizeof(before)),
				    sizeof(before));
	}
}

/* One request of type (IN or OUT) at sector over segments seg[0..n)
 * (guest address, length), waited for; its status byte. */
static uint8_t blk_rw(struct tx *t, uint32_t type, uint64_t sector,
		      const uint64_t (*seg)[2], unsigned n)
{
	uint32_t hdr[4] = { type, 0, (uint32_t)sector,
			    (uint32_t)(sector >> 32) };
	uint16_t want = (uint16_t)(vqf_used_idx(&t->f) + 1);
	uint16_t dflag = type == 0 ? W : 0;

	memcpy(vqf_ptr(&t->f, BLK_HDRS, 16), hdr, 16);
	*(uint8_t *)vqf_ptr(&t->f, BLK_STATUS, 1) = 0xee;
	vqf_desc(&t->f, 0, BLK_HDRS, 16, VIRTQ_DESC_F_NEXT, 1);
	for (uint16_t i = 0; i < n; i++)
		vqf_desc(&t->f, (uint16_t)(i + 1), seg[i][0],
			 (uint32_t)seg[i][1], dflag | VIRTQ_DESC_F_NEXT,
			 (uint16_t)(i + 2));
	vqf_desc(&t->f, (uint16_t)(n + 1), BLK_STATUS, 1, W, 0);
	vqf_avail(&t->f, 0);
	reg_w(t, R_NOTIFY, 0, 2);
	assert_true(wait_for(t, used_is, want));
	return *(uint8_t *)vqf_ptr(&t->f, BLK_STATUS, 1);
}

/* Split len bytes into 1..3 segments at odd places in [D, D + 192 KiB),
 * not overlapping. */
static unsigned split(uint64_t *s, uint32_t len, uint64_t (*seg)[2])
{
	unsigned n = 1 + (unsigned)(rnd_next(s) % 3);
	uint64_t at = D + rnd_next(s) % 61;
	uint32_t left = len;

	for (unsigned i = 0; i < n; i++) {
		uint32_t l = i + 1 < n ? (uint32_t)(rnd_next(s) % (left + 1)) :
					 left;

		seg[i][0] = at;
		seg[i][1] = l;
		at += l + 1 + rnd_next(s) % 61;
		left -= l;
	}
	return n;
}

/* O_DIRECT with guest buffers at odd addresses and of odd lengths (the
 * bounce path): what is written is in the file and reads back the same,
 * whatever the split. Seeded like the other random tests. */
static void test_blk_direct_unaligned_data_integrity(void **state)
{
	struct tx *t = *state;
	uint64_t s = (uint64_t)time(NULL), seg[3][2];
	const char *e = getenv("CANOPY_VQ_SEED");
	static uint8_t want[4096], got[4096];
	int fd = open(t->disk, O_RDONLY);

	if (e)
		s = strtoull(e, NULL, 0);
	print_message("virtio-blk random: seed %llu (CANOPY_VQ_SEED)\n",
		      (unsigned long long)s);
	assert_true(fd >= 0);
	bring_up(t);
	for (unsigned round = 0; round < 200; round++) {
		uint32_t len = 512 * (1 + (uint32_t)(rnd_next(&s) % 8));
		uint64_t sector = rnd_next(&s) % (BLK_CHUNKS * 128 - 8);
		unsigned n = split(&s, len, seg);
		uint32_t pos = 0;

		for (uint32_t k = 0; k < len; k++)
			want[k] = (uint8_t)(rnd_next(&s) >> 56);
		for (unsigned i = 0; i < n; pos += (uint32_t)seg[i][1], i++)
			memcpy(vqf_ptr(&t->f, seg[i][0], seg[i][1]), want + pos,
			       seg[i][1]);
		assert_int_equal(blk_rw(t, 1, sector, seg, n), 0);
		assert_int_equal(pread(fd, got, len, (off_t)sector * 512), len);
		assert_memory_equal(got, want, len);
		n = split(&s, len, seg);
		for (unsigned i = 0; i < n; i++)
			memset(vqf_ptr(&t->f, seg[i][0], seg[i][1]), 0xcc,
			       seg[i][1]);
		assert_int_equal(blk_rw(t, 0, sector, seg, n), 0);
		pos = 0;
		for (unsigned i = 0; i < n; pos += (uint32_t)seg[i][1], i++)
			assert_memory_equal(vqf_ptr(&t->f, seg[i][0],
						    seg[i][1]),
					    want + pos, seg[i][1]);
	}
	close(fd);
}

/* CPU time the device's worker thread has used, in ms. */
static uint64_t worker_cpu_ms(struct tx *t)
{
	clockid_t cid;
	struct timespec ts;

	assert_int_equal(pthread_getcpuclockid(t->vd->worker, &cid), 0);
	assert_int_equal(clock_gettime(cid, &ts), 0);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A bad chain right behind reads handed to the I/O threads: the device
 * needs a reset, the reads finish later, and until the driver resets the
 * worker must sleep (not spin on the completion fd it no longer reaps). */
static void test_blk_needs_reset_with_reads_in_flight_idles(void **state)
{
	struct tx *t = *state;
	uint64_t cpu;

	t->qsize = 64;
	bring_up(t);
	for (uint16_t i = 0; i < 10; i++)
		blk_read(t, i, (uint64_t)i * 128, D, 64 << 10, 1);
	blk_read(t, 10, 0, D, 512, 0); /* nowhere to write: bad */
	reg_w(t, R_NOTIFY, 0, 2);
	assert_true(wait_for(t, needs_reset, 0));
	usleep(50 * 1000); /* the reads are done by now */
	cpu = worker_cpu_ms(t);
	usleep(200 * 1000);
	assert_true(worker_cpu_ms(t) - cpu < 50);
	bring_up(t);
	blk_read(t, 0, 0, D, 512, 1);
	reg_w(t, R_NOTIFY, 0, 2);
	assert_true(wait_for(t, used_is, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_rng_over_the_transport),
		T(test_features_not_offered_are_refused),
		T(test_driver_ok_without_features_ok_needs_reset),
		T(test_bad_rings_need_reset),
		T(test_bad_chain_needs_reset_reset_recovers),
		T(test_queue_registers_refuse_nonsense),
		T(test_reset_stops_device_writes),
		T(test_pci_cfg_window),
		T(test_msix_vectors),
		T(test_snapshot_state_is_checked),
		T(test_random_register_traffic),
		cmocka_unit_test_setup_teardown(
			test_blk_reads_over_the_transport, setup_blk, teardown),
		cmocka_unit_test_setup_teardown(
			test_blk_reset_waits_for_in_flight_reads, setup_blk,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_blk_needs_reset_with_reads_in_flight_idles,
			setup_blk, teardown),
		cmocka_unit_test_setup_teardown(
			test_blk_direct_unaligned_data_integrity, setup_blk,
			teardown),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
