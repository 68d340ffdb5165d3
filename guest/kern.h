/* Test guest: the CPL0 kernel's private definitions (C and assembly). */
#ifndef GUEST_KERN_H
#define GUEST_KERN_H

#include "guest/guest.h"

/* GDT selectors. SYSRET loads CS = STAR[63:48] + 16, SS = STAR[63:48] + 8. */
#define KERN_CS 0x08 /* 64-bit kernel code */
#define KERN_DS 0x10 /* kernel data */
#define KERN_STAR_USER 0x18 /* base of the user selectors for SYSRET */
#define USER_DS 0x23 /* user data, RPL 3 */
#define USER_CS 0x2b /* 64-bit user code, RPL 3 */
#define KERN_TSS(cpu) (0x30 + 16 * (cpu)) /* 16-byte TSS descriptors */
#define KERN_GDT_SLOTS (6 + 2 * GUEST_MAX_CPUS) /* 8-byte GDT slots */

#define KERN_STACK_SIZE 16384 /* per-CPU kernel stack (syscalls, traps) */
#define KERN_IST_SIZE 4096 /* per-CPU stack for #DF, NMI and #MC */
#define KERN_HIGH_PDS 60 /* 2 MiB page directories for 4..64 GiB */

/* Offsets in struct kern_cpu used by the syscall entry. */
#define KCPU_KSTACK 0
#define KCPU_USER_RSP 8

#ifndef __ASSEMBLER__
/* Per-CPU state; the kernel's GS base points at it during a syscall. */
struct kern_cpu {
	uint64_t kstack_top; /* KCPU_KSTACK */
	uint64_t user_rsp; /* KCPU_USER_RSP */
	uint32_t id;
	uint32_t apic_id;
};

/* The frame built by the exception stubs in kern_entry.S. */
struct kern_trap {
	uint64_t vector, err, rip, cs, rflags, rsp, ss;
};

/* kern_entry.S */
extern uint64_t kern_gdt[KERN_GDT_SLOTS];
extern uint64_t kern_pdpt[512];
extern uint64_t kern_high_pd[KERN_HIGH_PDS][512];
extern char kern_isr_stubs[], kern_stacks[], kern_ist_stacks[];
void kern_syscall_lstar(void);
void kern_syscall_int3(void);
__attribute__((noreturn)) void kern_enter_user(uint64_t rip, uint64_t rsp);

/* kern_main.c */
__attribute__((noreturn)) void kern_main(uint32_t start_info);
long kern_syscall(long nr, long a1, long a2, long a3);
__attribute__((noreturn)) void kern_exception(const struct kern_trap *t);

/* kern_io.c: COM1, power-off and the PIT, all by port I/O at CPL0. */
void kern_uart_init(void);
void kern_uart_write(const char *buf, uint64_t len);
/* Bytes waiting in the RX FIFO, at most len, without waiting; their count. */
uint64_t kern_uart_read(char *buf, uint64_t len);
void kern_puts(const char *s);
void kern_put_hex(uint64_t v);
void kern_put_dec(uint64_t v);
__attribute__((noreturn)) void kern_poweroff(unsigned code);
uint64_t kern_pit_tsc_khz(void);

static inline void kern_wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v),
			 "d"((uint32_t)(v >> 32)));
}
#endif /* __ASSEMBLER__ */

#endif
