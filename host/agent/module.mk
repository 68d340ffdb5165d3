# canopy-agent (host/agent/): the host agent on the agent bus.
AGENT_SRCS := $(wildcard host/agent/*.c)
AGENT_OBJS := $(patsubst %.c,$(B)/%.o,$(AGENT_SRCS))
# Everything but main.o, for unit tests of the agent's pure parts.
AGENT_LIB := $(B)/host/agent/libagent.a

$(AGENT_LIB): $(filter-out $(B)/host/agent/main.o,$(AGENT_OBJS))
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

# libvmotion.a: the host's CPU feature registers it registers with.
$(B)/bin/canopy-agent: $(B)/host/agent/main.o $(AGENT_LIB) $(VMOTION_LIB) $(DS_LIB) $(LIBCANOPY)
	$(call link,$@,$^,$(LIBS_ZMQ) $(LIBS_PROTO) $(LIBS_IMAGE))

BINS += $(B)/bin/canopy-agent
# Image import (image_fetch.c): libcurl and libcrypto (SHA-256).
LIBS_IMAGE = $(call PC,libcurl) $(call PC,libcrypto)

# Unit tests of the agent link its archive.
$(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test_agent_*.c)): $(AGENT_LIB) $(VMOTION_LIB)
