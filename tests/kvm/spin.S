/* Runs forever: counts in EBX, stores the count at 2 MiB and prints a dot
 * every 64Ki iterations. For pause, snapshot and dirty-log tests. */
#include "pvh_note.inc"
_start:
	xor %ebx, %ebx
1:	inc %ebx
	mov %ebx, 0x200000
	mov $0x10000, %ecx
2:	dec %ecx
	jnz 2b
	mov $0x3f8, %dx
	mov $'.', %al
	out %al, %dx
	jmp 1b
