/* Platform devices: ACPI PM1 (power off, power button), PM timer, i8042
 * reset line, PCI reset port, CMOS RTC and the POST port. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host/vmm/le.h"
#include "host/vmm/vmm.h"
#include "lib/sys.h"

/* PM1 bits. */
#define PM1_STS_TMR 0x0001
#define PM1_STS_PWRBTN 0x0100
#define PM1_CNT_SCI_EN 0x0001
#define PM1_CNT_SLP_EN 0x2000
#define PM1_CNT_SLP_TYP(v) (((v) >> 10) & 7)
#define PM1_SLP_TYP_S5 5 /* matches the DSDT's _S5 package */
#define PM_TMR_HZ 3579545ull
/* i8042 command that pulses the reset line; PCI reset control values. */
#define I8042_CMD_RESET 0xfe
#define PORT_I8042_DATA 0x60
#define PORT_I8042_CMD 0x64
#define PORT_RESET_CTL 0xcf9
#define PORT_CMOS 0x70
#define PORT_POST 0x80
#define PLATFORM_STATE_VERSION 1

struct platform_regs {
	uint16_t pm1_sts, pm1_en, pm1_cnt;
	uint8_t cmos_index, sci_level;
	uint8_t cmos[128];
};

struct platform {
	struct vm *vm;
	pthread_mutex_t lock;
	struct platform_regs r;
};

static void update_sci(struct platform *p)
{
	uint8_t level = (p->r.pm1_sts & p->r.pm1_en) ? 1 : 0;

	if (level != p->r.sci_level) {
		p->r.sci_level = level;
		vm_irq_line(p->vm, VMM_IRQ_SCI, level);
	}
}

static void pm_read(void *dev, uint64_t off, void *data, uint32_t len)
{
	struct platform *p = dev;
	uint64_t v;

	pthread_mutex_lock(&p->lock);
	if (off >= 8) { /* PM timer: 24 bits at 3.58 MHz */
		v = (sys_mono_ns() / 1000 * PM_TMR_HZ / 1000000) & 0xffffff;
	} else if (off >= 4) {
		v = p->r.pm1_cnt | PM1_CNT_SCI_EN;
		v >>= (off - 4) * 8;
	} else {
		v = (uint64_t)p->r.pm1_sts | (uint64_t)p->r.pm1_en << 16;
		v >>= off * 8;
	}
	pthread_mutex_unlock(&p->lock);
	put_le(data, len, v);
}

static void pm_write(void *dev, uint64_t off, const void *data, uint32_t len)
{
	struct platform *p = dev;
	uint64_t v = get_le(data, len);
	int poweroff = 0;

	pthread_mutex_lock(&p->lock);
	if (off == 0 || off == 1) { /* status: write 1 to clear */
		v <<= off * 8;
		p->r.pm1_sts &= (uint16_t)~v;
		if (len == 4 && off == 0)
			p->r.pm1_en = (uint16_t)(v >> 16);
	} else if (off == 2 || off == 3) {
		p->r.pm1_en = off == 2 ? (uint16_t)v :
					 (uint16_t)((p->r.pm1_en & 0xff) |
						    (v & 0xff) << 8);
	} else if (off == 4 || off == 5) {
		if (off == 5)
			v = (p->r.pm1_cnt & 0xff) | (v & 0xff) << 8;
		p->r.pm1_cnt = (uint16_t)(v & ~PM1_CNT_SLP_EN);
		poweroff = (v & PM1_CNT_SLP_EN) &&
			   PM1_CNT_SLP_TYP(v) == PM1_SLP_TYP_S5;
	}
	update_sci(p);
	pthread_mutex_unlock(&p->lock);
	if (poweroff)
		vm_request(p->vm, VM_REQ_POWEROFF,
			   "guest powered off (ACPI S5)");
}

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t cmos_read(struct platform *p)
{
	time_t now = time(NULL);
	struct tm tm;
	uint8_t i = p->r.cmos_index & 0x7f;

	gmtime_r(&now, &tm);
	switch (i) {
	case 0x00:
		return bcd(tm.tm_sec);
	case 0x02:
		return bcd(tm.tm_min);
	case 0x04:
		return bcd(tm.tm_hour);
	case 0x06:
		return bcd(tm.tm_wday + 1);
	case 0x07:
		return bcd(tm.tm_mday);
	case 0x08:
		return bcd(tm.tm_mon + 1);
	case 0x09:
		return bcd(tm.tm_year % 100);
	case 0x32:
		return bcd((tm.tm_year + 1900) / 100);
	case 0x0a:
		return 0x26; /* no update in progress, 32 kHz */
	case 0x0b:
		return 0x02; /* 24 hour, BCD */
	case 0x0c:
		return 0x00;
	case 0x0d:
		return 0x80; /* battery good */
	default:
		return p->r.cmos[i];
	}
}

static void legacy_read(void *dev, uint64_t port, void *data, uint32_t len)
{
	struct platform *p = dev;
	uint8_t v = 0xff;

	pthread_mutex_lock(&p->lock);
	if (port == PORT_CMOS + 1)
		v = cmos_read(p);
	else if (port == PORT_CMOS)
		v = p->r.cmos_index;
	else if (port == PORT_I8042_CMD || port == PORT_I8042_DATA)
		v = 0; /* no data, input buffer empty */
	pthread_mutex_unlock(&p->lock);
	memset(data, 0xff, len);
	*(uint8_t *)data = v;
}

static void legacy_write(void *dev, uint64_t port, const void *data,
			 uint32_t len)
{
	struct platform *p = dev;
	uint8_t v = *(const uint8_t *)data;

	if ((port == PORT_I8042_CMD && v == I8042_CMD_RESET) ||
	    (port == PORT_RESET_CTL && (v & 0x04))) {
		vm_request(p->vm, VM_REQ_RESET, "guest requested a reboot");
		return;
	}
	pthread_mutex_lock(&p->lock);
	if (port == PORT_CMOS)
		p->r.cmos_index = v;
	else if (port == PORT_CMOS + 1 && (p->r.cmos_index & 0x7f) >= 0x0e)
		p->r.cmos[p->r.cmos_index & 0x7f] = v;
	pthread_mutex_unlock(&p->lock);
}

/* The legacy ports are scattered: each range adds its base back. */
struct legacy_port {
	struct platform *p;
	uint16_t base;
};

static void legacy_port_read(void *dev, uint64_t off, void *data, uint32_t len)
{
	struct legacy_port *lp = dev;

	legacy_read(lp->p, lp->base + off, data, len);
}

static void legacy_port_write(void *dev, uint64_t off, const void *data,
			      uint32_t len)
{
	struct legacy_port *lp = dev;

	legacy_write(lp->p, lp->base + off, data, len);
}

static const struct io_ops pm_io = {
	.name = "acpi-pm",
	.read = pm_read,
	.write = pm_write,
};

static const struct io_ops legacy_io = {
	.name = "legacy",
	.read = legacy_port_read,
	.write = legacy_port_write,
};

static int platform_save(void *dev, struct buf *out)
{
	struct platform *p = dev;
	uint32_t ver = PLATFORM_STATE_VERSION;
	int rc;

	pthread_mutex_lock(&p->lock);
	rc = buf_append(out, &ver, sizeof(ver));
	if (rc == 0)
		rc = buf_append(out, &p->r, sizeof(p->r));
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static int platform_load(void *dev, const void *data, size_t len)
{
	struct platform *p = dev;
	uint32_t ver;

	if (len != sizeof(ver) + sizeof(p->r))
		return -EINVAL;
	memcpy(&ver, data, sizeof(ver));
	if (ver != PLATFORM_STATE_VERSION)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	memcpy(&p->r, (const uint8_t *)data + sizeof(ver), sizeof(p->r));
	p->r.sci_level = !((p->r.pm1_sts & p->r.pm1_en) ? 1 : 0);
	update_sci(p);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void platform_reset(void *dev)
{
	struct platform *p = dev;

	pthread_mutex_lock(&p->lock);
	p->r.pm1_sts = p->r.pm1_en = p->r.pm1_cnt = 0;
	update_sci(p);
	pthread_mutex_unlock(&p->lock);
}

static const struct dev_ops platform_dev = {
	.name = "platform",
	.save = platform_save,
	.load = platform_load,
	.reset = platform_reset,
};

/* Port ranges of the legacy devices. */
static const struct {
	uint16_t base, len;
} legacy_ranges[] = {
	{ PORT_I8042_DATA, 1 }, { PORT_I8042_CMD, 1 }, { PORT_CMOS, 2 },
	{ PORT_POST, 1 },	{ PORT_RESET_CTL, 1 },
};

static struct platform *the_platform(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevs; i++)
		if (vm->devs[i].ops == &platform_dev)
			return vm->devs[i].dev;
	return NULL;
}

int platform_create(struct vm *vm)
{
	size_t n = CN_ARRAY_SIZE(legacy_ranges);
	struct platform *p =
		calloc(1, sizeof(*p) + n * sizeof(struct legacy_port));
	struct legacy_port *lp = (struct legacy_port *)(p + 1);
	int rc;

	if (!p)
		return -ENOMEM;
	p->vm = vm;
	pthread_mutex_init(&p->lock, NULL);
	rc = vm_dev_register(vm, &platform_dev, p);
	if (rc < 0) {
		free(p);
		return rc;
	}
	rc = io_bus_add(&vm->pio, VMM_PORT_PM1A_EVT, 12, &pm_io, p);
	for (size_t i = 0; i < n && rc == 0; i++) {
		lp[i] = (struct legacy_port){ p, legacy_ranges[i].base };
		rc = io_bus_add(&vm->pio, legacy_ranges[i].base,
				legacy_ranges[i].len, &legacy_io, &lp[i]);
	}
	return rc;
}

void platform_destroy(struct vm *vm)
{
	struct platform *p = the_platform(vm);

	if (p) {
		pthread_mutex_destroy(&p->lock);
		free(p);
	}
}

void platform_power_button(struct vm *vm)
{
	struct platform *p = the_platform(vm);

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->r.pm1_sts |= PM1_STS_PWRBTN;
	update_sci(p);
	pthread_mutex_unlock(&p->lock);
}
