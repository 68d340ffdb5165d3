/* Test guest: CPL0 port I/O: COM1 console, ACPI power-off, PIT calibration. */
#include "guest/kern.h"

#define COM1 0x3f8
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LCR_DLAB 0x80
#define UART_LCR_8N1 0x03
#define UART_FCR_ENABLE_CLEAR 0x07
#define UART_MCR_DTR_RTS 0x03
#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20
#define UART_FIFO 16 /* bytes a 16550A takes once THRE is set */
#define UART_THRE_POLLS 4096 /* then write anyway (a stuck UART) */

#define PM1A_CNT 0x604 /* ACPI PM1a control block */
#define PM1_S5_SLP_EN 0x3400 /* SLP_TYP = 5, SLP_EN */
#define PM1_QEMU_S5_SLP_EN 0x2000 /* SLP_TYP = 0, SLP_EN: QEMU's _S5 */

#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PIT_PORT_B 0x61 /* bit 0 gate 2, bit 1 speaker, bit 5 out 2 */
#define PIT_HZ 1193182ull
#define PIT_LATCH 11932u /* about 10 ms */
#define PIT_MAX_POLLS 200000 /* give up: no PIT */
#define PIT_MIN_KHZ 1000 /* anything slower is not a real TSC */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* 115200 8N1, FIFO on, no interrupts: seven port writes. */
void kern_uart_init(void)
{
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, UART_LCR_DLAB);
	outb(COM1 + 0, 1);
	outb(COM1 + 1, 0);
	outb(COM1 + UART_LCR, UART_LCR_8N1);
	outb(COM1 + UART_FCR, UART_FCR_ENABLE_CLEAR);
	outb(COM1 + UART_MCR, UART_MCR_DTR_RTS);
}

/*
 * Whole buffer in FIFO-sized bursts: wait for THRE (bounded, so a UART that
 * never reports ready cannot hang us), then one `rep outsb` of up to 16
 * bytes, which a VMM sees as one I/O exit.
 */
void kern_uart_write(const char *buf, uint64_t len)
{
	while (len) {
		uint64_t n = len < UART_FIFO ? len : UART_FIFO, left = n;

		for (unsigned i = 0; i < UART_THRE_POLLS; i++)
			if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
				break;
		__asm__ volatile("rep outsb"
				 : "+S"(buf), "+c"(left)
				 : "d"((uint16_t)COM1)
				 : "memory");
		len -= n;
	}
}

/* One LSR read and one RBR read per byte, while LSR says data ready. */
uint64_t kern_uart_read(char *buf, uint64_t len)
{
	uint64_t n = 0;

	while (n < len && (inb(COM1 + UART_LSR) & UART_LSR_DR))
		buf[n++] = (char)inb(COM1);
	return n;
}

void kern_puts(const char *s)
{
	uint64_t n = 0;

	while (s[n])
		n++;
	kern_uart_write(s, n);
}

void kern_put_hex(uint64_t v)
{
	char b[18];
	int i = sizeof(b);

	do {
		b[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	b[--i] = 'x';
	b[--i] = '0';
	kern_uart_write(b + i, sizeof(b) - (uint64_t)i);
}

void kern_put_dec(uint64_t v)
{
	char b[20];
	int i = sizeof(b);

	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	kern_uart_write(b + i, sizeof(b) - (uint64_t)i);
}

/*
 * ACPI S5 through PM1a control: canopy-vmm's SLP_TYP (5), then QEMU's (0;
 * port 0x604 on q35), which canopy-vmm never sees as it stopped at the
 * first. A VMM with neither leaves us halted.
 */
void kern_poweroff(unsigned code)
{
	(void)code;
	outw(PM1A_CNT, PM1_S5_SLP_EN);
	outw(PM1A_CNT, PM1_QEMU_S5_SLP_EN);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/*
 * Count TSC ticks while PIT channel 2 counts PIT_LATCH down in mode 0 (its
 * output, bit 5 of port 0x61, rises at zero). 0 if there is no PIT.
 */
uint64_t kern_pit_tsc_khz(void)
{
	uint64_t t0, t1, khz;
	unsigned polls = 0;

	outb(PIT_PORT_B, (uint8_t)((inb(PIT_PORT_B) & ~0x02) | 0x01));
	outb(PIT_CMD, 0xb0); /* channel 2, lobyte/hibyte, mode 0, binary */
	outb(PIT_CH2, PIT_LATCH & 0xff);
	outb(PIT_CH2, PIT_LATCH >> 8);
	t0 = guest_rdtsc();
	if (inb(PIT_PORT_B) & 0x20)
		return 0; /* OUT2 must start low: no PIT or no port 0x61 */
	while (!(inb(PIT_PORT_B) & 0x20))
		if (++polls > PIT_MAX_POLLS)
			return 0;
	t1 = guest_rdtsc();
	khz = (t1 - t0) * PIT_HZ / ((uint64_t)PIT_LATCH * 1000);
	return khz < PIT_MIN_KHZ ? 0 : khz;
}
