/* The PVH entry note every tiny guest carries (XEN_ELFNOTE_PHYS32_ENTRY). */
	.section .note.Xen, "a"
	.balign 4
	.long 4, 4, 18
	.asciz "Xen"
	.long _start
	.text
	.code32
	.globl _start
