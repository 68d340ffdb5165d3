/* 16550A UART (COM1): guest console to stdio, a file or nowhere. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/vmm/vmm.h"
#include "lib/sys.h"

/* Register bits. */
#define UART_IER_RDI 0x01
#define UART_IER_THRI 0x02
#define UART_IIR_NO_INT 0x01
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04
#define UART_IIR_FIFO 0xc0
#define UART_LCR_DLAB 0x80
#define UART_MCR_LOOP 0x10
#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_MSR_IDLE 0xb0 /* DCD, DSR, CTS */
#define UART_FIFO 64
/* Output is written in lines or in chunks of this size. */
#define SERIAL_OUT_BUF 512
/* Input waiting for room in the RX FIFO (console_input, stdin). */
#define SERIAL_INPUT_QUEUE_MAX (64u << 10)
/* Version of the saved state layout. */
#define SERIAL_STATE_VERSION 1

struct serial_regs {
	uint8_t ier, iir_thri, lcr, mcr, scr, dll, dlm, fcr;
	uint8_t rx[UART_FIFO];
	uint32_t rx_len;
};

struct serial {
	struct vm *vm;
	pthread_mutex_t lock;
	struct serial_regs r;
	int irq_level;
	int out_fd; /* -1 = discard */
	int own_fd;
	char out[SERIAL_OUT_BUF];
	size_t out_len;
	uint8_t *inq; /* ring of SERIAL_INPUT_QUEUE_MAX, NULL until used */
	size_t inq_head, inq_len;
};

static void flush_locked(struct serial *s)
{
	if (s->out_fd >= 0 && s->out_len)
		(void)!sys_write_full(s->out_fd, s->out, s->out_len);
	s->out_len = 0;
}

void serial_flush(struct vm *vm)
{
	struct serial *s = vm->serial;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	flush_locked(s);
	pthread_mutex_unlock(&s->lock);
}

/* Move queued input into the RX FIFO while it has room. */
static void refill(struct serial *s)
{
	while (s->inq_len && s->r.rx_len < UART_FIFO) {
		s->r.rx[s->r.rx_len++] = s->inq[s->inq_head];
		s->inq_head = (s->inq_head + 1) % SERIAL_INPUT_QUEUE_MAX;
		s->inq_len--;
	}
}

/* Recompute the interrupt line from the registers. */
static void update_irq(struct serial *s)
{
	int level = ((s->r.ier & UART_IER_RDI) && s->r.rx_len) ||
		    ((s->r.ier & UART_IER_THRI) && s->r.iir_thri);

	if (level != s->irq_level) {
		s->irq_level = level;
		vm_irq_line(s->vm, VMM_IRQ_COM1, level);
	}
}

static uint8_t read_iir(struct serial *s)
{
	if ((s->r.ier & UART_IER_RDI) && s->r.rx_len)
		return UART_IIR_FIFO | UART_IIR_RDI;
	if ((s->r.ier & UART_IER_THRI) && s->r.iir_thri) {
		s->r.iir_thri = 0; /* reading IIR clears THRE */
		return UART_IIR_FIFO | UART_IIR_THRI;
	}
	return UART_IIR_FIFO | UART_IIR_NO_INT;
}

static uint8_t read_reg(struct serial *s, uint64_t off)
{
	int dlab = s->r.lcr & UART_LCR_DLAB;
	uint8_t v = 0;

	switch (off) {
	case 0:
		if (dlab)
			return s->r.dll;
		if (s->r.rx_len) {
			v = s->r.rx[0];
			memmove(s->r.rx, s->r.rx + 1, --s->r.rx_len);
		}
		return v;
	case 1:
		return dlab ? s->r.dlm : s->r.ier;
	case 2:
		return read_iir(s);
	case 3:
		return s->r.lcr;
	case 4:
		return s->r.mcr;
	case 5:
		return UART_LSR_THRE | UART_LSR_TEMT |
		       (s->r.rx_len ? UART_LSR_DR : 0);
	case 6:
		return (s->r.mcr & UART_MCR_LOOP) ? 0 : UART_MSR_IDLE;
	default:
		return s->r.scr;
	}
}

static void put_char(struct serial *s, uint8_t ch)
{
	if (s->r.mcr & UART_MCR_LOOP) {
		if (s->r.rx_len < UART_FIFO)
			s->r.rx[s->r.rx_len++] = ch;
		return;
	}
	s->out[s->out_len++] = (char)ch;
	if (ch == '\n' || s->out_len == sizeof(s->out))
		flush_locked(s);
}

static void write_reg(struct serial *s, uint64_t off, uint8_t v)
{
	int dlab = s->r.lcr & UART_LCR_DLAB;

	switch (off) {
	case 0:
		if (dlab) {
			s->r.dll = v;
		} else {
			put_char(s, v);
			s->r.iir_thri = 1; /* sent at once: THR empty again */
		}
		break;
	case 1:
		if (dlab) {
			s->r.dlm = v;
		} else {
			if (!(s->r.ier & UART_IER_THRI) && (v & UART_IER_THRI))
				s->r.iir_thri = 1;
			s->r.ier = v & 0x0f;
		}
		break;
	case 2:
		s->r.fcr = v;
		if (v & 0x02)
			s->r.rx_len = 0;
		break;
	case 3:
		s->r.lcr = v;
		break;
	case 4:
		s->r.mcr = v & 0x1f;
		break;
	case 7:
		s->r.scr = v;
		break;
	default:
		break;
	}
}

static void serial_read(void *dev, uint64_t off, void *data, uint32_t len)
{
	struct serial *s = dev;

	memset(data, 0, len);
	pthread_mutex_lock(&s->lock);
	*(uint8_t *)data = read_reg(s, off);
	refill(s);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_write(void *dev, uint64_t off, const void *data,
			 uint32_t len)
{
	struct serial *s = dev;

	pthread_mutex_lock(&s->lock);
	write_reg(s, off, *(const uint8_t *)data);
	refill(s);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

int serial_input_queue(struct vm *vm, const void *p, size_t n)
{
	struct serial *s = vm->serial;
	const uint8_t *b = p;
	int rc = 0;

	if (!s)
		return -ENODEV;
	pthread_mutex_lock(&s->lock);
	if (!s->inq)
		s->inq = malloc(SERIAL_INPUT_QUEUE_MAX);
	if (!s->inq) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	if (n > SERIAL_INPUT_QUEUE_MAX - s->inq_len) {
		rc = -ENOSPC;
		goto out_unlock;
	}
	for (size_t i = 0; i < n; i++)
		s->inq[(s->inq_head + s->inq_len++) % SERIAL_INPUT_QUEUE_MAX] =
			b[i];
	refill(s);
	update_irq(s);
out_unlock:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void serial_input(struct vm *vm, const void *p, size_t n)
{
	(void)!serial_input_queue(vm, p, n);
}

static int serial_save(void *dev, struct buf *out)
{
	struct serial *s = dev;
	uint32_t ver = SERIAL_STATE_VERSION;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = buf_append(out, &ver, sizeof(ver));
	if (rc == 0)
		rc = buf_append(out, &s->r, sizeof(s->r));
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int serial_load(void *dev, const void *p, size_t len)
{
	struct serial *s = dev;
	struct serial_regs r;
	uint32_t ver;

	if (len != sizeof(ver) + sizeof(r))
		return -EINVAL;
	memcpy(&ver, p, sizeof(ver));
	memcpy(&r, (const uint8_t *)p + sizeof(ver), sizeof(r));
	if (ver != SERIAL_STATE_VERSION || r.rx_len > UART_FIFO)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	s->r = r;
	s->irq_level = -1; /* force the line to be driven again */
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void serial_reset(void *dev)
{
	struct serial *s = dev;

	pthread_mutex_lock(&s->lock);
	flush_locked(s);
	memset(&s->r, 0, sizeof(s->r));
	s->inq_head = s->inq_len = 0;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static const struct io_ops serial_io = {
	.name = "com1",
	.read = serial_read,
	.write = serial_write,
};

static const struct dev_ops serial_dev = {
	.name = "serial0",
	.save = serial_save,
	.load = serial_load,
	.reset = serial_reset,
};

static int open_sink(const char *sink, int *fd, int *own, char *err,
		     size_t errlen)
{
	*own = 0;
	if (!sink || strcmp(sink, "stdio") == 0) {
		*fd = STDOUT_FILENO;
	} else if (strcmp(sink, "none") == 0) {
		*fd = -1;
	} else if (strncmp(sink, "file:", 5) == 0 && sink[5]) {
		*fd = sys_open(sink + 5, O_WRONLY | O_CREAT | O_APPEND, 0640);
		if (*fd < 0) {
			snprintf(err, errlen, "serial file %s: %s", sink + 5,
				 strerror(-*fd));
			return *fd;
		}
		*own = 1;
	} else {
		snprintf(err, errlen,
			 "--serial %s: expected stdio, none or file:PATH",
			 sink);
		return -EINVAL;
	}
	return 0;
}

int serial_create(struct vm *vm, const char *sink, char *err, size_t errlen)
{
	struct serial *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	rc = open_sink(sink, &s->out_fd, &s->own_fd, err, errlen);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s->vm = vm;
	pthread_mutex_init(&s->lock, NULL);
	vm->serial = s;
	rc = io_bus_add(&vm->pio, VMM_PORT_COM1, 8, &serial_io, s);
	if (rc == 0)
		rc = vm_dev_register(vm, &serial_dev, s);
	if (rc < 0)
		snprintf(err, errlen, "serial: %s", strerror(-rc));
	return rc;
}

void serial_destroy(struct vm *vm)
{
	struct serial *s = vm->serial;

	if (!s)
		return;
	flush_locked(s);
	if (s->own_fd)
		sys_close(s->out_fd);
	pthread_mutex_destroy(&s->lock);
	free(s->inq);
	free(s);
	vm->serial = NULL;
}
