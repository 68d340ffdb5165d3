/* Prints "B" and the byte at 3 MiB (0 on fresh RAM), sets it, then asks
 * the i8042 for a reset: every boot must print "B0". */
#include "pvh_note.inc"
_start:
	mov $'B', %al
	mov $0x3f8, %dx
	out %al, %dx
	mov 0x300000, %eax
	add $'0', %al
	out %al, %dx
	mov $'\n', %al
	out %al, %dx
	movl $1, 0x300000
	mov $0xfe, %al
	out %al, $0x64
1:	hlt
	jmp 1b
