/* Test guest: definitions shared by its CPL0 kernel and CPL3 workloads. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#ifndef __ASSEMBLER__
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#endif

/*
 * Memory layout (identity mapped, see kern_entry.S):
 *   [0, 1 MiB)        low memory: start info, ACPI, BIOS area; CPL3 may
 *                     read it, except page 0 (supervisor only)
 *   [1 MiB, 2 MiB)    the CPL0 kernel: code, data, page tables, stacks
 *                     (supervisor only)
 *   [2 MiB, ...)      the CPL3 part (code, data, stack), then free RAM
 *   [3 GiB, 4 GiB)    MMIO hole, mapped uncached
 */
#define GUEST_KERNEL_BASE 0x100000ull /* where the PVH loader puts us */
#define GUEST_USER_BASE 0x200000ull /* first byte of user memory */
#define GUEST_LOW_MAP (4ull << 30) /* mapped statically by the image */
#define GUEST_MAP_CAP (64ull << 30) /* RAM above this is not mapped */
#define GUEST_PAGE 4096ull /* the unit of the dirty workload */
#define GUEST_MAX_MEM 32 /* memory map entries kept */
#define GUEST_CMDLINE_MAX 4096 /* bytes of command line kept, with NUL */
#define GUEST_MAX_CPUS 16 /* per-CPU slots (GDT, TSS, stacks) */

#ifndef __ASSEMBLER__
/* PVH start info, as the loader leaves it (Xen's struct hvm_start_info). */
#define PVH_START_MAGIC 0x336ec578u
struct pvh_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

/* A memory map entry (PVH and e820 share the layout). Type 1 is RAM. */
#define GUEST_MEM_RAM 1
struct guest_mem {
	uint64_t addr, size;
	uint32_t type, reserved;
};

/* What the kernel learnt at boot, copied into user memory for CPL3. */
#define GUEST_BOOT_START_INFO 0x1 /* a valid start info was found */
#define GUEST_BOOT_MEM_ASSUMED 0x2 /* no memory map: 16 MiB assumed */
#define GUEST_BOOT_CMDLINE_CUT 0x4 /* command line was truncated */
#define GUEST_BOOT_1G_PAGES 0x8 /* RAM above 4 GiB mapped with 1 GiB pages */
struct guest_boot {
	uint32_t flags; /* GUEST_BOOT_* */
	uint32_t nmem; /* entries in mem[] */
	uint64_t rsdp; /* start info rsdp_paddr, 0 if none */
	uint64_t map_top; /* identity map covers [0, map_top) */
	uint64_t user_end; /* end of the CPL3 image: free RAM above */
	/* CPUID 0x40000010 EAX read at CPL0, 0 if absent. On PVM hosts CPUID
	 * at CPL3 is not intercepted and shows the host's leaves, not ours. */
	uint64_t cpuid_tsc_khz;
	struct guest_mem mem[GUEST_MAX_MEM];
	char cmdline[GUEST_CMDLINE_MAX];
};

/* Defined in user memory (user_main.c); filled by the kernel before CPL3. */
extern struct guest_boot guest_boot;

#endif /* __ASSEMBLER__ */

/* System calls: number in rax, arguments in rdi, rsi, rdx; result in rax. */
#define SYS_WRITE 0 /* (buf, len): COM1; returns len or -EFAULT */
#define SYS_EXIT 1 /* (code): prints the exit line, powers off */
#define SYS_PIT_TSC 2 /* (): TSC kHz measured against PIT channel 2 */
#define SYS_READ 3 /* (buf, len): COM1 input waiting; bytes read (0: none) */
#define SYS_NR 4

#define GUEST_EFAULT 14 /* returned negated for a bad user buffer */
#define GUEST_ENOSYS 38 /* returned negated for an unknown call */

/* Exit codes (printed as "canopy-testguest: exit N" before power-off). */
#define GUEST_EXIT_OK 0
#define GUEST_EXIT_FAIL 1 /* a workload found a problem (corruption) */
#define GUEST_EXIT_USAGE 2 /* bad command line or it does not fit */
#define GUEST_EXIT_EXCEPTION 99 /* unexpected CPU exception */

#ifndef __ASSEMBLER__
/* Linker-script symbols. */
extern char __kernel_start[], __kernel_end[], __user_start[], __user_end[];

static inline uint64_t guest_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void guest_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

/* String helpers (user_lib.c); callable from both privilege levels. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif /* __ASSEMBLER__ */
#endif
