# The clustered datastore (datastore/): libds.a for the agent, the VMM and
# the tool, and the tool itself, canopy-ds.
DS_SRCS := $(wildcard datastore/ds_*.c)
DS_OBJS := $(patsubst %.c,$(B)/%.o,$(DS_SRCS))
DS_LIB := $(B)/datastore/libds.a

$(DS_LIB): $(DS_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(B)/bin/canopy-ds: $(B)/datastore/canopy_ds.o $(DS_LIB) $(LIBCANOPY)
	$(call link,$@,$^,)


BINS += $(B)/bin/canopy-ds

# Unit tests of the datastore and the helpers that act as hosts link it.
$(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test_ds_*.c)): $(DS_LIB)
$(B)/tests/helpers/ds_host: $(DS_LIB)
$(B)/tests/helpers/ds_io: $(DS_LIB)
