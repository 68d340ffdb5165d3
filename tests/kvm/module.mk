# tests/kvm/: tiny PVH guests (32-bit assembly), each exercising one VMM
# behaviour; the pytest suite boots them with canopy-vmm.
KVM_GUESTS := $(patsubst tests/kvm/%.S,$(B)/tests/kvm/%.elf,$(wildcard tests/kvm/*.S))

$(B)/tests/kvm/%.elf: tests/kvm/%.S tests/kvm/pvh_note.inc tests/kvm/pvh.ld | $(DEPS_STAMP)
	$(call msg,GUEST,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -m32 -c -o $(@:.elf=.o) $<
	$(Q)ld -m elf_i386 -T tests/kvm/pvh.ld -o $@ $(@:.elf=.o)

EXTRA_TARGETS += $(KVM_GUESTS)
