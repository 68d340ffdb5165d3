# lib/: extra link flags for programs that use the etcd client
# (lib/etcd*.c, on the gRPC C core). lib/*.c itself is built by the main
# Makefile into libcanopy.a; a program that references etcd_* symbols must
# add $(LIBS_GRPC) to its link line. Programs that do not use etcd keep
# linking without gRPC (the static archive only pulls the objects used).
LIBS_GRPC = $(call PC,grpc)

# The etcd client test CLI (tests/helpers/etcd_tool.c): an explicit rule
# so that its link line has gRPC.
$(B)/tests/helpers/etcd_tool: $(B)/tests/helpers/etcd_tool.o $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_PROTO) $(LIBS_GRPC))

# The agent bus (lib/bus*.c, on ZeroMQ): a program that references bus_*
# symbols adds $(LIBS_ZMQ) to its link line, as with gRPC above.
LIBS_ZMQ = $(call PC,libzmq)

# The bus unit tests share a fixture (tests/unit/bus_fixture.c) and link
# ZeroMQ.
BUS_TESTS := $(B)/tests/unit/test_bus $(B)/tests/unit/test_bus_input
$(BUS_TESTS): $(B)/tests/unit/%: $(B)/tests/unit/%.o \
		$(B)/tests/unit/bus_fixture.o $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_CMOCKA) $(LIBS_PROTO) $(LIBS_ZMQ))

# The gRPC call helpers' unit test (lib/grpc_call.c) links gRPC.
$(B)/tests/unit/test_grpc_call: $(B)/tests/unit/test_grpc_call.o $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_CMOCKA) $(LIBS_PROTO) $(LIBS_GRPC))

# The cluster PKI (lib/pki*.c) and TLS probes use OpenSSL: a program that
# references pki_* symbols adds $(LIBS_SSL) to its link line.
LIBS_SSL = $(call PC,libssl libcrypto)

# The PKI unit test links OpenSSL.
$(B)/tests/unit/test_pki: $(B)/tests/unit/test_pki.o $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_CMOCKA) $(LIBS_SSL))

# The audit hash chain (lib/audit_chain.c) uses libcrypto (SHA-256): a
# program that references audit_chain_* adds $(LIBS_CRYPTO).
LIBS_CRYPTO = $(call PC,libcrypto)
$(B)/tests/unit/test_audit_chain: $(B)/tests/unit/test_audit_chain.o $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_CMOCKA) $(LIBS_CRYPTO))
