/* Prints a line on COM1 and powers off through ACPI S5. */
#include "pvh_note.inc"
_start:
	mov $msg, %esi
1:	lodsb
	test %al, %al
	jz 2f
	mov $0x3f8, %dx
	out %al, %dx
	jmp 1b
2:	mov $0x604, %dx
	mov $0x3400, %ax
	out %ax, %dx
3:	hlt
	jmp 3b
msg:	.asciz "tiny-guest: hello\n"
