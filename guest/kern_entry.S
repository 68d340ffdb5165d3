/* Test guest: PVH entry, long mode switch, static page tables, GDT,
 * exception stubs, the syscall entry and the drop to CPL3.
 *
 * Everything that can be computed at link time is data in the image, so
 * that the CPL0 part runs as few instructions as possible (CPL0 may be
 * emulated, thousands of times slower than CPL3). */
#include "guest/kern.h"

#define CR0_PE 0x00000001
#define CR0_MP 0x00000002
#define CR0_EM 0x00000004
#define CR0_TS 0x00000008
#define CR0_NE 0x00000020
#define CR0_NW 0x20000000
#define CR0_CD 0x40000000
#define CR0_PG 0x80000000
#define CR4_PAE 0x00000020
#define CR4_OSFXSR 0x00000200
#define CR4_OSXMMEXCPT 0x00000400
#define MSR_EFER 0xc0000080
#define EFER_SCE 0x001
#define EFER_LME 0x100

/* Page table entry bits. */
#define PTE_P 0x001
#define PTE_W 0x002
#define PTE_U 0x004
#define PTE_PWT 0x008
#define PTE_PCD 0x010
#define PTE_PS 0x080
#define PTE_TABLE (PTE_P | PTE_W | PTE_U)
#define PTE_USER_2M (PTE_P | PTE_W | PTE_U | PTE_PS)
#define PTE_MMIO_2M (PTE_USER_2M | PTE_PWT | PTE_PCD)

/* --- The PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) ----------------------- */
	.section .note.Xen, "a"
	.balign 4
	.long 4, 4, 18
	.asciz "Xen"
	.long pvh_start32

/* --- 32-bit entry --------------------------------------------------------- */
/* Entered in 32-bit protected mode, paging off, flat segments, interrupts
 * off, %ebx = physical address of the start info. No stack is needed. */
	.text
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	mov %ebx, %esi
	lgdt kern_gdt_ptr
	mov %cr4, %eax
	or $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
	mov %eax, %cr4
	mov $kern_pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $(EFER_LME | EFER_SCE), %eax
	wrmsr
	mov %cr0, %eax
	and $~(CR0_CD | CR0_NW | CR0_EM | CR0_TS), %eax
	or $(CR0_PG | CR0_PE | CR0_MP | CR0_NE), %eax
	mov %eax, %cr0
	ljmp $KERN_CS, $long_entry

	.code64
long_entry:
	mov $KERN_DS, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	lea kern_stacks + KERN_STACK_SIZE(%rip), %rsp
	mov %esi, %edi
	call kern_main
1:	cli
	hlt
	jmp 1b

/* --- Drop to CPL3: kern_enter_user(rip, rsp), interrupts stay off -------- */
	.globl kern_enter_user
kern_enter_user:
	push $USER_DS
	push %rsi
	push $0x2
	push $USER_CS
	push %rdi
	iretq

/* --- System calls --------------------------------------------------------- */
/* ABI: `syscall` with rax = number, rdi/rsi/rdx = arguments; returns rax.
 * rcx, r8-r11 and the argument registers are clobbered.
 *
 * LSTAR points at kern_syscall_lstar, which lives in a *user* page (.utext)
 * because it is reached two ways:
 *  - real SYSCALL (hardware, VT-x/SVM guests): at CPL0; it jumps on to
 *    kern_syscall_entry (CPL0 may run user pages: SMEP is off);
 *  - PVM hosts (kvm_pvm, as on our development machines) emulate SYSCALL
 *    from CPL3 of a non-PVM guest by jumping to LSTAR *without* leaving
 *    CPL3. There the stub makes the call again with `int $3`, the only
 *    software interrupt PVM delivers from CPL3 (other vectors raise #UD),
 *    through a DPL3 gate, then returns itself like SYSRET would. */
	.section .utext, "ax"
	.globl kern_syscall_lstar
kern_syscall_lstar:
	mov %cs, %r10d
	test $3, %r10b
	jz kern_syscall_entry
	int $3
	push %r11
	popfq
	jmp *%rcx

	.text
/* Real SYSCALL, at CPL0. The user's GS base is 0; the kernel's
 * (KERNEL_GS_BASE) points at its struct kern_cpu. */
kern_syscall_entry:
	swapgs
	mov %rsp, %gs:KCPU_USER_RSP
	mov %gs:KCPU_KSTACK, %rsp
	push %rcx
	push %r11
	mov %rdx, %rcx
	mov %rsi, %rdx
	mov %rdi, %rsi
	mov %rax, %rdi
	call kern_syscall
	pop %r11
	pop %rcx
	xor %edi, %edi
	xor %esi, %esi
	xor %edx, %edx
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	mov %gs:KCPU_USER_RSP, %rsp
	swapgs
	sysretq

/* The same call through the vector 3 gate (DPL3): keeps every register
 * but rax, so the stub above can return with rcx and r11. */
	.globl kern_syscall_int3
kern_syscall_int3:
	push %rdi
	push %rsi
	push %rdx
	push %rcx
	push %r8
	push %r9
	push %r10
	push %r11
	push %rax
	mov %rdx, %rcx
	mov %rsi, %rdx
	mov %rdi, %rsi
	mov %rax, %rdi
	call kern_syscall
	add $8, %rsp
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rcx
	pop %rdx
	pop %rsi
	pop %rdi
	iretq

/* --- Exception stubs: 16 bytes each, vector v at kern_isr_stubs + 16 * v - */
	.altmacro
.macro isr vec
	.balign 16
	.if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	push $0
	.endif
	push $\vec
	jmp isr_common
.endm

	.balign 16
	.globl kern_isr_stubs
kern_isr_stubs:
	.set vec, 0
	.rept 32
	isr %vec
	.set vec, vec + 1
	.endr

isr_common:
	mov %rsp, %rdi
	and $-16, %rsp
	call kern_exception
1:	cli
	hlt
	jmp 1b

/* --- GDT ------------------------------------------------------------------ */
	.data
	.balign 16
	.globl kern_gdt
kern_gdt:
	.quad 0				/* null */
	.quad 0x00af9a000000ffff	/* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00cffa000000ffff	/* 0x18 user code, 32-bit (unused) */
	.quad 0x00cff2000000ffff	/* 0x20 user data */
	.quad 0x00affa000000ffff	/* 0x28 user code, 64-bit */
	.fill 2 * GUEST_MAX_CPUS, 8, 0	/* 0x30 TSS descriptors, per CPU */
kern_gdt_end:

	.balign 8
	.globl kern_gdt_ptr
kern_gdt_ptr:
	.word kern_gdt_end - kern_gdt - 1
	.quad kern_gdt

/* --- Page tables: identity map of 0..4 GiB -------------------------------- */
/* Page 0 supervisor only (so that a user NULL dereference faults, while
 * QEMU's pc start info may still put its memory map there); the rest of
 * low memory user read-only (start info, ACPI);
 * 1..2 MiB (this kernel) supervisor only; 2 MiB..3 GiB user RAM in 2 MiB
 * pages; 3..4 GiB (the MMIO hole) uncached. RAM above 4 GiB is mapped by
 * kern_main into kern_pdpt (1 GiB pages) or kern_high_pd (2 MiB pages). */
	.section .kpagetables, "aw"
	.balign 4096
kern_pml4:
	.quad kern_pdpt + PTE_TABLE
	.fill 511, 8, 0
	.globl kern_pdpt
kern_pdpt:
	.quad kern_pd + PTE_TABLE
	.quad kern_pd + 4096 + PTE_TABLE
	.quad kern_pd + 8192 + PTE_TABLE
	.quad kern_pd + 12288 + PTE_TABLE
	.fill 508, 8, 0
kern_pd:
	.quad kern_pt0 + PTE_TABLE
	.set i, 1
	.rept 1535
	.quad (i << 21) + PTE_USER_2M
	.set i, i + 1
	.endr
	.rept 512
	.quad (i << 21) + PTE_MMIO_2M
	.set i, i + 1
	.endr
kern_pt0:
	.quad PTE_P + PTE_W
	.set i, 1
	.rept 255
	.quad (i << 12) + PTE_P + PTE_U
	.set i, i + 1
	.endr
	.rept 256
	.quad (i << 12) + PTE_P + PTE_W
	.set i, i + 1
	.endr

/* --- Stacks and spare page directories: not in the file, not zeroed ------ */
	.section .knoinit, "aw", @nobits
	.balign 4096
	.globl kern_high_pd
kern_high_pd:
	.skip KERN_HIGH_PDS * 4096
	.globl kern_stacks
kern_stacks:
	.skip GUEST_MAX_CPUS * KERN_STACK_SIZE
	.globl kern_ist_stacks
kern_ist_stacks:
	.skip GUEST_MAX_CPUS * KERN_IST_SIZE

	.section .note.GNU-stack, "", @progbits
