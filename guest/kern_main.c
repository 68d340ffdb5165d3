/* Test guest: CPL0 set-up (start info, paging, TSS, IDT, syscalls) and traps. */
#include "guest/kern.h"
#include "guest/user.h"

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_SFMASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102
/* RFLAGS bits SYSCALL clears: TF, IF, DF, IOPL, NT, AC. */
#define SYSCALL_RFLAGS_MASK 0x47700ull

#define PTE_P 0x001ull
#define PTE_W 0x002ull
#define PTE_U 0x004ull
#define PTE_PS 0x080ull
#define PTE_TABLE (PTE_P | PTE_W | PTE_U)
#define PTE_USER_BIG (PTE_P | PTE_W | PTE_U | PTE_PS)
#define GIB (1ull << 30)
#define MIB (1ull << 20)

#define CPUID_HYPERVISOR_BIT 31 /* CPUID.1:ECX, a hypervisor is present */
#define CPUID_HV_BASE 0x40000000u
#define CPUID_HV_TSC_LEAF 0x40000010u /* EAX = TSC kHz (VMware, KVM) */

#define IDT_VECTORS 32
#define IDT_IST_VECTOR(v) ((v) == 2 || (v) == 8 || (v) == 18) /* NMI DF MC */
#define TSS_DESC_TYPE 0x89ull /* present, 64-bit TSS, available */
#define IDT_GATE_TYPE 0x8eull /* present, DPL 0, 64-bit interrupt gate */
#define IDT_GATE_DPL3 0x60ull /* added to the type: INT n allowed at CPL3 */
#define IDT_SYSCALL_VECTOR 3 /* the system call gate for PVM (see .S) */

/* The 64-bit TSS; only RSP0 and IST1 are used. */
struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3, iomap;
} __attribute__((packed));

struct idtr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/*
 * Kernel state. The kernel's .bss is stored in the image (see guest.ld), so
 * none of this needs zeroing at CPL0.
 */
static struct tss tss[GUEST_MAX_CPUS];
static struct kern_cpu cpus[GUEST_MAX_CPUS];
static uint64_t idt[2 * IDT_VECTORS] __attribute__((aligned(16)));
/* User buffers passed to SYS_WRITE and SYS_READ must lie in [GUEST_USER_BASE, this). */
static uint64_t user_limit;

static void assume_memory(struct guest_boot *b)
{
	b->mem[0] = (struct guest_mem){ 0, 16 * MIB, GUEST_MEM_RAM, 0 };
	b->nmem = 1;
	b->flags |= GUEST_BOOT_MEM_ASSUMED;
}

/* Physical [pa, pa + len) is not NULL and lies in the static map. */
static int low_range_ok(uint64_t pa, uint64_t len)
{
	return pa && pa < GUEST_LOW_MAP && len <= GUEST_LOW_MAP - pa;
}

static void copy_memmap(struct guest_boot *b, uint64_t pa, uint32_t n)
{
	const struct guest_mem *m = (const struct guest_mem *)pa;

	if (n > GUEST_MAX_MEM)
		n = GUEST_MAX_MEM;
	if (!low_range_ok(pa, (uint64_t)n * sizeof(*m)))
		return;
	for (uint32_t i = 0; i < n; i++)
		b->mem[i] = m[i];
	b->nmem = n;
}

static void copy_cmdline(struct guest_boot *b, uint64_t pa)
{
	const char *s = (const char *)pa;
	uint64_t max = GUEST_CMDLINE_MAX - 1, i;

	if (!pa || !low_range_ok(pa, 1))
		return;
	if (max > GUEST_LOW_MAP - pa)
		max = GUEST_LOW_MAP - pa;
	for (i = 0; i < max && s[i]; i++)
		b->cmdline[i] = s[i];
	b->cmdline[i] = 0;
	if (i == max && s[i - 1])
		b->flags |= GUEST_BOOT_CMDLINE_CUT;
}

static void read_start_info(struct guest_boot *b, uint32_t pa)
{
	const struct pvh_start_info *si = (const void *)(uint64_t)pa;

	if (!low_range_ok(pa, sizeof(*si)) || si->magic != PVH_START_MAGIC) {
		assume_memory(b);
		return;
	}
	b->flags |= GUEST_BOOT_START_INFO;
	b->rsdp = si->rsdp_paddr;
	if (si->version >= 1 && si->memmap_entries)
		copy_memmap(b, si->memmap_paddr, si->memmap_entries);
	if (!b->nmem)
		assume_memory(b);
	copy_cmdline(b, si->cmdline_paddr);
}

static uint64_t ram_top(const struct guest_boot *b)
{
	uint64_t top = 0;

	for (uint32_t i = 0; i < b->nmem; i++) {
		const struct guest_mem *m = &b->mem[i];

		if (m->type == GUEST_MEM_RAM && m->addr + m->size > top &&
		    m->addr + m->size >= m->addr)
			top = m->addr + m->size;
	}
	return top > GUEST_MAP_CAP ? GUEST_MAP_CAP : top;
}

static int has_1g_pages(void)
{
	uint32_t r[4];

	guest_cpuid(0x80000000, 0, r);
	if (r[0] < 0x80000001)
		return 0;
	guest_cpuid(0x80000001, 0, r);
	return (r[3] >> 26) & 1;
}

/* The hypervisor's TSC leaf, read here because CPL3 may see other leaves. */
static uint64_t cpuid_tsc_khz(void)
{
	uint32_t r[4];

	guest_cpuid(1, 0, r);
	if (!((r[2] >> CPUID_HYPERVISOR_BIT) & 1))
		return 0;
	guest_cpuid(CPUID_HV_BASE, 0, r);
	if (r[0] < CPUID_HV_TSC_LEAF || r[0] >= CPUID_HV_BASE + 0x100)
		return 0;
	guest_cpuid(CPUID_HV_TSC_LEAF, 0, r);
	return r[0];
}

/* Map RAM above 4 GiB: a few 1 GiB entries, or 2 MiB ones if we must. */
static void map_high_ram(struct guest_boot *b)
{
	uint64_t top = (ram_top(b) + GIB - 1) & ~(GIB - 1);
	int big = has_1g_pages();

	b->map_top = GUEST_LOW_MAP;
	if (top <= GUEST_LOW_MAP)
		return;
	for (uint64_t g = GUEST_LOW_MAP / GIB; g < top / GIB; g++) {
		uint64_t *pd = kern_high_pd[g - GUEST_LOW_MAP / GIB];

		if (big) {
			kern_pdpt[g] = g * GIB | PTE_USER_BIG;
			continue;
		}
		for (uint64_t i = 0; i < 512; i++)
			pd[i] = (g * GIB + (i << 21)) | PTE_USER_BIG;
		kern_pdpt[g] = (uint64_t)pd | PTE_TABLE;
	}
	if (big)
		b->flags |= GUEST_BOOT_1G_PAGES;
	b->map_top = top;
	__asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::
				 : "rax", "memory");
}

/* The end of the RAM entry holding the user image, within the map. */
static uint64_t find_user_limit(const struct guest_boot *b)
{
	for (uint32_t i = 0; i < b->nmem; i++) {
		const struct guest_mem *m = &b->mem[i];
		uint64_t end = m->addr + m->size;

		if (m->type != GUEST_MEM_RAM || m->addr > GUEST_USER_BASE ||
		    end <= GUEST_USER_BASE || end < m->addr)
			continue;
		return end < b->map_top ? end : b->map_top;
	}
	return (uint64_t)__user_end;
}

static void idt_set(uint64_t v, uint64_t h, uint64_t ist, uint64_t type)
{
	idt[2 * v] = (h & 0xffff) | (uint64_t)KERN_CS << 16 | ist << 32 |
		     type << 40 | ((h >> 16) & 0xffff) << 48;
	idt[2 * v + 1] = h >> 32;
}

/* Exceptions go to the stubs; vector 3 is the int $3 system call gate. */
static void idt_init(void)
{
	for (uint64_t v = 0; v < IDT_VECTORS; v++)
		idt_set(v, (uint64_t)kern_isr_stubs + 16 * v,
			IDT_IST_VECTOR(v) ? 1 : 0, IDT_GATE_TYPE);
	idt_set(IDT_SYSCALL_VECTOR, (uint64_t)kern_syscall_int3, 0,
		IDT_GATE_TYPE | IDT_GATE_DPL3);
}

/* Per-CPU set-up: TSS (RSP0, IST1), IDT, syscall MSRs, kernel GS base. */
static void cpu_init(unsigned id)
{
	struct kern_cpu *c = &cpus[id];
	struct tss *t = &tss[id];
	uint64_t base = (uint64_t)t;
	uint64_t *d = &kern_gdt[KERN_TSS(id) / 8];
	struct idtr idtr = { sizeof(idt) - 1, (uint64_t)idt };

	c->id = id;
	c->kstack_top = (uint64_t)kern_stacks + (id + 1) * KERN_STACK_SIZE;
	t->rsp[0] = c->kstack_top;
	t->ist[0] = (uint64_t)kern_ist_stacks + (id + 1) * KERN_IST_SIZE;
	t->iomap = sizeof(*t);
	d[0] = (sizeof(*t) - 1) | (base & 0xffffff) << 16 |
	       TSS_DESC_TYPE << 40 | ((base >> 24) & 0xff) << 56;
	d[1] = base >> 32;
	__asm__ volatile("ltr %w0" ::"r"(KERN_TSS(id)));
	__asm__ volatile("lidt %0" ::"m"(idtr));
	kern_wrmsr(MSR_STAR,
		   (uint64_t)KERN_STAR_USER << 48 | (uint64_t)KERN_CS << 32);
	kern_wrmsr(MSR_LSTAR, (uint64_t)kern_syscall_lstar);
	kern_wrmsr(MSR_SFMASK, SYSCALL_RFLAGS_MASK);
	kern_wrmsr(MSR_KERNEL_GS_BASE, (uint64_t)c);
}

void kern_main(uint32_t start_info)
{
	struct guest_boot *b = &guest_boot;

	kern_uart_init();
	read_start_info(b, start_info);
	map_high_ram(b);
	b->user_end = (uint64_t)__user_end;
	b->cpuid_tsc_khz = cpuid_tsc_khz();
	user_limit = find_user_limit(b);
	idt_init();
	cpu_init(0);
	kern_enter_user((uint64_t)user_main,
			(uint64_t)guest_user_stack + USER_STACK_SIZE);
}

__attribute__((noreturn)) static void kern_exit(uint64_t code)
{
	kern_puts("canopy-testguest: exit ");
	kern_put_dec(code);
	kern_puts("\n");
	kern_poweroff((unsigned)code);
}

long kern_syscall(long nr, long a1, long a2, long a3)
{
	uint64_t buf = (uint64_t)a1, len = (uint64_t)a2;

	switch (nr) {
	case SYS_WRITE:
		if (buf < GUEST_USER_BASE || buf > user_limit ||
		    len > user_limit - buf)
			return -GUEST_EFAULT;
		kern_uart_write((const char *)buf, len);
		return (long)len;
	case SYS_EXIT:
		kern_exit((uint64_t)a1 & 0xff);
	case SYS_PIT_TSC:
		return (long)kern_pit_tsc_khz();
	case SYS_READ:
		if (buf < GUEST_USER_BASE || buf > user_limit ||
		    len > user_limit - buf)
			return -GUEST_EFAULT;
		return (long)kern_uart_read((char *)buf, len);
	}
	return -GUEST_ENOSYS;
}

void kern_exception(const struct kern_trap *t)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	kern_puts("canopy-testguest: exception ");
	kern_put_dec(t->vector);
	kern_puts(" at RIP=");
	kern_put_hex(t->rip);
	kern_puts(" err=");
	kern_put_hex(t->err);
	if (t->vector == 14) {
		kern_puts(" cr2=");
		kern_put_hex(cr2);
	}
	kern_puts((t->cs & 3) ? " cpl=3\n" : " cpl=0\n");
	kern_exit(GUEST_EXIT_EXCEPTION);
}
