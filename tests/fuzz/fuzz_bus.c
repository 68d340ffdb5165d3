/* libFuzzer harness for the agent bus's receive path: the input is one
 * ZeroMQ message as a ROUTER or DEALER socket hands it over (the routing
 * id frame and the Envelope frame). It goes through the bus's decode and
 * validate steps (lib/bus.c: bus_host_from_id, bus_decode, bus_validate),
 * then, when accepted, through the agent's pure checks of what it is asked
 * to run (host/agent/spec.c: agent_vm_id_check, agent_spec_check,
 * agent_ds_path_split; host/agent/vmm_argv.c: the canopy-vmm command line
 * of an accepted spec), as canopy-agent does before it acts. A crash, a
 * leak, a read past the input, or an accepted input that breaks a checked
 * promise is a bug.
 *
 * The same input, as text, is also a join token an operator pastes into
 * canopy-agent --join (lib/bus_enrol.c: bus_token_parse); a token that
 * parses must format back to the same text.
 *
 * Input: u8 k, then k % 72 bytes of routing id, then the Envelope body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "host/agent/spec.h"
#include "lib/bus_enrol.h"
#include "lib/bus_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An accepted spec becomes a command line; every disk on a datastore gets
 * a made-up volume. */
static void spec_run(const Canopy__V1__VmSpec *spec)
{
	struct agent_ds_disk ds[AGENT_DISKS_MAX];
	struct agent_argv a = { 0 };
	char name[64], msg[512];
	const char *file;

	if (agent_spec_check(spec, msg, sizeof(msg)) < 0) {
		if (!msg[0])
			abort(); /* a refusal must say why */
		return;
	}
	if (!spec || spec->n_disks > AGENT_DISKS_MAX)
		abort(); /* the check let a spec through it promised not to */
	for (size_t i = 0; i < spec->n_disks; i++) {
		ds[i] = (struct agent_ds_disk){ .dev = "/dev/null", .slot = 1 };
		if (agent_ds_path_split(spec->disks[i]->path, name,
					sizeof(name), &file) == 1 &&
		    (strlen(name) >= sizeof(name) || !file))
			abort();
	}
	if (agent_vmm_argv_build("canopy-vmm", "/run/canopy/vms/x", "x", spec,
				 ds, &a) == 0 &&
	    (!a.v || a.n < 2 || a.v[a.n] != NULL))
		abort();
	agent_argv_free(&a);
}

/* What canopy-agent checks of an accepted envelope before it acts. */
static void agent_side(const Canopy__V1__Envelope *env)
{
	char msg[512];

	switch (env->body_case) {
	case CANOPY__V1__ENVELOPE__BODY_VM_COMMAND:
		if (agent_vm_id_check(env->vm_command->vm_id, msg,
				      sizeof(msg)) < 0)
			return;
		if (env->vm_command->action ==
		    CANOPY__V1__VM_ACTION__VM_ACTION_CREATE)
			spec_run(env->vm_command->spec);
		break;
	case CANOPY__V1__ENVELOPE__BODY_MIGRATE_INCOMING:
		if (agent_vm_id_check(env->migrate_incoming->vm_id, msg,
				      sizeof(msg)) == 0)
			spec_run(env->migrate_incoming->spec);
		break;
	default:
		break;
	}
}

/* The input as a join token: refused with a reason, or round-trips. */
static void token_side(const uint8_t *data, size_t size)
{
	char text[BUS_TOKEN_MAX + 8], again[BUS_TOKEN_MAX], err[256] = "";
	char host[BUS_HOST_ID_MAX + 1], sec[BUS_CURVE_KEY_LEN + 1];
	char srv[BUS_CURVE_KEY_LEN + 1];
	size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;

	memcpy(text, data, n);
	text[n] = '\0';
	if (bus_token_parse(text, host, sec, srv, err, sizeof(err)) < 0) {
		if (!err[0])
			abort(); /* a refusal must say why */
		return;
	}
	if (bus_token_format(host, sec, srv, again, sizeof(again)) != 0 ||
	    strcasecmp(again, text) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char host[BUS_HOST_ID_MAX + 1];
	Canopy__V1__Envelope *env;
	enum bus_reject why = BUS_REJECT_COUNT;
	size_t idlen;

	token_side(data, size);
	if (size < 1)
		return 0;
	idlen = data[0] % 72;
	if (idlen > size - 1)
		idlen = size - 1;
	bus_host_from_id(host, data + 1, idlen);
	if (host[0] && (strlen(host) != idlen || !bus_host_id_valid(host)))
		abort();
	if (bus_decode(data + 1 + idlen, size - 1 - idlen, &env, &why) < 0) {
		if (env || why >= BUS_REJECT_COUNT)
			abort();
		return 0;
	}
	if (bus_validate(env, data + 1, idlen, &why) == 0) {
		if (!host[0] || strcmp(env->host_id, host) != 0)
			abort(); /* accepted from a sender it does not name */
		agent_side(env);
	}
	canopy__v1__envelope__free_unpacked(env, NULL);
	return 0;
}
