# Canopy — the one, non-recursive GNU Makefile.
#
#   make                 build everything into build/ (binaries in build/bin/)
#   make check           install deps, build, check formatting, run unit
#                        tests (cmocka) then integration tests (pytest)
#   make SAN=address,undefined check   sanitizer build in build-san/
#   make DEBUG=1         unoptimised build in build-debug/
#   make format-check    clang-format --dry-run over all our C
#   make fuzz            libFuzzer harnesses (tests/fuzz/) for FUZZ_SECS each,
#                        in build-fuzz/; `check` runs a 10 s smoke of each
#   make clean           remove every build directory
#   V=1                  show the commands
#
# Everything the compiler or pkg-config needs is installed by
# deploy/install-deps.sh through the $(DEPS_STAMP) target, so that a fresh
# Debian 12 machine needs no manual step. pkg-config is only consulted at
# recipe time (recursive '=' variables), after that stamp exists.

SAN ?=
DEBUG ?=
V ?= 0

# --- build directory -------------------------------------------------------
BSUFFIX :=
ifneq ($(SAN),)
BSUFFIX := $(BSUFFIX)-san
endif
ifeq ($(DEBUG),1)
BSUFFIX := $(BSUFFIX)-debug
endif
B := build$(BSUFFIX)

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-8s %s\n' $(1) $(2)
endif

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
PYTHON := /usr/bin/python3
PROTOC := protoc
PROTOC_C := protoc-c
CLANG_FORMAT := clang-format

# --- flags -----------------------------------------------------------------
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wmissing-declarations -Wpointer-arith \
	-Wformat=2 -Wformat-security -Wundef -Wwrite-strings -Wcast-align \
	-Wvla -Wimplicit-fallthrough -Wno-unused-parameter \
	-Wno-format-nonliteral -Wno-format-zero-length

ifeq ($(DEBUG),1)
OPT := -O0 -g3
else
OPT := -O2 -g
endif
ifneq ($(SAN),)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=$(SAN) \
	-fno-sanitize-recover=all
SANLD := -fsanitize=$(SAN)
endif

CPPFLAGS := -D_GNU_SOURCE -I. -I$(B)/gen
BASECFLAGS := -std=gnu11 $(OPT) -MMD -MP -fstack-protector-strong \
	-D_FORTIFY_SOURCE=$(if $(filter 1,$(DEBUG)),0,2)
CFLAGS_ALL := $(BASECFLAGS) $(WARN)
# protoc-c output is not ours to reformat; it builds warning-clean with -Wall.
CFLAGS_GEN := $(BASECFLAGS) -Wall -Werror
LDFLAGS_ALL := $(SANLD) -pthread

# Libraries, resolved lazily (after install-deps has run).
PC = $(shell pkg-config --cflags --libs $(1))
LIBS_PROTO = $(call PC,libprotobuf-c)
LIBS_CMOCKA = $(call PC,cmocka)

# --- dependencies ----------------------------------------------------------
DEPS_STAMP := $(B)/.deps-stamp
$(DEPS_STAMP): deploy/install-deps.sh
	$(Q)mkdir -p $(@D)
	$(Q)./deploy/install-deps.sh
	$(Q)touch $@

.PHONY: deps
deps: $(DEPS_STAMP)

# --- protocols (proto/) ----------------------------------------------------
PROTOS := $(wildcard proto/*.proto)
PROTO_C := $(patsubst %.proto,$(B)/gen/%.pb-c.c,$(PROTOS))
PROTO_H := $(PROTO_C:.c=.h)
PROTO_O := $(patsubst %.c,%.o,$(PROTO_C))
PROTO_PY := $(patsubst proto/%.proto,$(B)/py/proto/%_pb2.py,$(PROTOS))

$(B)/gen/proto/%.pb-c.c $(B)/gen/proto/%.pb-c.h: proto/%.proto | $(DEPS_STAMP)
	$(call msg,PROTOC-C,$<)
	$(Q)mkdir -p $(B)/gen
	$(Q)$(PROTOC_C) --c_out=$(B)/gen $<

$(B)/py/proto/%_pb2.py: proto/%.proto | $(DEPS_STAMP)
	$(call msg,PROTOC,$<)
	$(Q)mkdir -p $(B)/py/proto
	$(Q)$(PROTOC) --python_out=$(B)/py $<
	$(Q)touch $(B)/py/proto/__init__.py

$(B)/gen/%.pb-c.o: $(B)/gen/%.pb-c.c
	$(call msg,CC,$<)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_GEN) $(shell pkg-config --cflags libprotobuf-c) -c -o $@ $<

# --- lib/ ------------------------------------------------------------------
LIB_SRCS := $(wildcard lib/*.c)
LIB_OBJS := $(patsubst %.c,$(B)/%.o,$(LIB_SRCS))
LIBCANOPY := $(B)/lib/libcanopy.a
# vmotion/module.mk builds it; named here for the fragments before it.
VMOTION_LIB := $(B)/vmotion/libvmotion.a

$(LIBCANOPY): $(LIB_OBJS) $(PROTO_O)
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

# --- our objects ------------------------------------------------------------
# Every object of ours sees the generated headers (order-only: -MMD records
# the real dependencies after the first build).
$(B)/%.o: %.c | $(PROTO_H) $(DEPS_STAMP)
	$(call msg,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ALL) -c -o $@ $<

# link(OUTPUT, OBJECTS, LIBS)
define link
	$(call msg,LD,$(1))
	$(Q)mkdir -p $(dir $(1))
	$(Q)$(CC) $(LDFLAGS_ALL) -o $(1) $(2) $(3)
endef

# --- test helpers (tests/helpers/) ------------------------------------------
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(patsubst tests/helpers/%.c,$(B)/tests/helpers/%,$(HELPER_SRCS))

$(B)/tests/helpers/%: $(B)/tests/helpers/%.o $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_PROTO))

# --- unit tests (tests/unit/, cmocka) ---------------------------------------
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(UNIT_SRCS))

# A component's fragment may add its own archive as a prerequisite of its
# tests (e.g. `$(B)/tests/unit/test_ds_lock: $(DS_LIB)`); archives are linked
# before libcanopy, which every component archive may use.
unit_objs = $(filter %.o,$(1)) $(filter-out $(LIBCANOPY),$(filter %.a,$(1))) $(LIBCANOPY)
$(B)/tests/unit/%: $(B)/tests/unit/%.o $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_CMOCKA) $(LIBS_PROTO))

# --- components ----------------------------------------------------------------
# Each component folder describes its own targets in a module.mk fragment that
# this Makefile includes (still one make, one dependency graph). A fragment
# appends its programs to BINS (installed in $(B)/bin/), other outputs to
# EXTRA_TARGETS, its unit-test binaries to UNIT_BINS and their extra objects
# through per-target prerequisites; it may use $(B), $(LIBCANOPY), $(call
# link,...), $(call msg,...) and $(Q).
BINS :=
EXTRA_TARGETS :=
include $(sort $(wildcard */module.mk */*/module.mk))

# --- top-level targets -------------------------------------------------------
# Keep generated sources and objects that pattern chains would delete.
.SECONDARY:

.DEFAULT_GOAL := all
.PHONY: all unit integration check format format-check clean lab lab-stop lab-down

all: $(LIBCANOPY) $(BINS) $(EXTRA_TARGETS) $(HELPER_BINS) $(UNIT_BINS) $(PROTO_PY)

unit: $(UNIT_BINS)
	$(Q)tests/unit/run.sh $(UNIT_BINS)

# pytest runs after the unit tests so that a `make check` reads top-down.
integration: all unit
	$(Q)CANOPY_BUILD=$(abspath $(B)) $(PYTHON) -m pytest -rs -p no:cacheprovider tests/integration

check: format-check integration check-fuzz-smoke

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
format-check: | $(DEPS_STAMP)
	$(Q)$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_SRCS)
	@echo "format-check: $(words $(FORMAT_SRCS)) files clean"

format: | $(DEPS_STAMP)
	$(Q)$(CLANG_FORMAT) -i $(FORMAT_SRCS)

# The lab (deploy/lab.sh, docs/cli.md): etcd, canopy-managerd, three
# canopy-agent hosts and two test-guest VMs on this machine, as root; running
# it again replaces the old lab. `make lab-down` (= lab-stop) ends everything
# it started and removes its namespaces, bridge and directory.
lab: $(BINS) $(EXTRA_TARGETS) | $(DEPS_STAMP)
	$(Q)CANOPY_BUILD=$(abspath $(B)) ./deploy/lab.sh start

lab-stop:
	$(Q)CANOPY_BUILD=$(abspath $(B)) ./deploy/lab.sh stop

lab-down: lab-stop

clean:
	rm -rf build build-san build-debug build-san-debug build-fuzz

-include $(shell find $(B) -name '*.d' 2>/dev/null)
