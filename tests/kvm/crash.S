/* Loads an empty IDT and raises an exception: a triple fault. */
#include "pvh_note.inc"
_start:
	lidt idt0
	int3
idt0:	.word 0
	.long 0
