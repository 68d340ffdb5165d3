/* Touches every page of low RAM above 2 MiB with a pattern naming the page,
 * prints "filled", then verifies the pattern again and again, printing "v"
 * for a good round and "BAD\n" for a bad one. Used by the snapshot tests
 * and benchmarks: a restored VM must keep printing "v". */
#include "pvh_note.inc"
_start:
	mov $0x90000, %esp		/* PVH gives no stack */
	/* End of RAM below 4 GiB: the highest end of a RAM entry (type 1)
	 * of the start info's memory map. */
	mov 40(%ebx), %esi		/* memmap_paddr */
	mov 48(%ebx), %ecx		/* memmap_entries */
	xor %ebp, %ebp
6:	test %ecx, %ecx
	jz 7f
	cmpl $1, 16(%esi)		/* type: RAM */
	jne 8f
	cmpl $0, 4(%esi)		/* starts above 4 GiB */
	jne 8f
	mov (%esi), %edi
	add 8(%esi), %edi
	cmp %ebp, %edi
	jbe 8f
	mov %edi, %ebp
8:	add $24, %esi
	dec %ecx
	jmp 6b
7:
	mov $0x200000, %eax
1:	mov %eax, %edx
	xor $0x5a5a5a5a, %edx
	mov %edx, (%eax)
	add $4096, %eax
	cmp %ebp, %eax
	jb 1b
	mov $msg, %esi
	call puts
2:	mov $0x200000, %eax
	mov $'v', %cl
3:	mov %eax, %edx
	xor $0x5a5a5a5a, %edx
	cmp %edx, (%eax)
	je 4f
	mov $'X', %cl
4:	add $4096, %eax
	cmp %ebp, %eax
	jb 3b
	mov %cl, %al
	mov $0x3f8, %dx
	out %al, %dx
	jmp 2b

puts:	lodsb
	test %al, %al
	jz 5f
	mov $0x3f8, %dx
	out %al, %dx
	jmp puts
5:	ret
msg:	.asciz "filled\n"
