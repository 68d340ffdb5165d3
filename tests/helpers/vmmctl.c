/* Test helper: one request to a canopy-vmm control socket, from shell
 * scripts (inside QEMU nodes there is no Python).
 *
 *   vmmctl SOCKET status
 *   vmmctl SOCKET balloon TARGET_MIB
 *   vmmctl SOCKET migrate tcp:HOST:PORT   (prints downtime and total)
 *
 * Prints the reply as `key value` lines (status) or `ok`; on an error
 * reply prints `error CODE MESSAGE` and exits 1; exit 2 on bad usage or
 * when the socket cannot be reached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/frame.h"
#include "lib/sys.h"
#include "proto/canopy_vmm.pb-c.h"

#define REPLY_MAX (1u << 20)
#define TIMEOUT_MS 10000
#define MIGRATE_TIMEOUT_MS 600000 /* the reply comes when it is over */

static void print_status(const Canopy__V1__VmmStatus *st)
{
	printf("name %s\nstate %d\nrss_bytes %llu\nmemory_mib %llu\n"
	       "balloon_mib %llu\nballoon_target_mib %llu\n",
	       st->name, st->state, (unsigned long long)st->rss_bytes,
	       (unsigned long long)st->memory_mib,
	       (unsigned long long)st->balloon_mib,
	       (unsigned long long)st->balloon_target_mib);
	printf("uptime_ms %llu\n", (unsigned long long)st->uptime_ms);
	for (size_t i = 0; i < st->n_exits; i++)
		printf("exits_%s %llu\n", st->exits[i]->reason,
		       (unsigned long long)st->exits[i]->count);
	if (st->guest_memory)
		printf("guest_used_bytes %llu\nguest_total_bytes %llu\n",
		       (unsigned long long)st->guest_memory->used_bytes,
		       (unsigned long long)st->guest_memory->total_bytes);
}

static int call(int fd, Canopy__V1__VmmRequest *rq, uint32_t timeout_ms)
{
	Canopy__V1__VmmReply *rep;
	uint8_t *body;
	uint32_t len;
	int rc;

	rq->id = 1;
	if (frame_send_pb(fd, &rq->base) < 0 ||
	    frame_recv(fd, REPLY_MAX, timeout_ms, &body, &len) < 0) {
		fprintf(stderr, "vmmctl: no reply from the VMM\n");
		return 2;
	}
	rep = canopy__v1__vmm_reply__unpack(NULL, len, body);
	free(body);
	if (!rep) {
		fprintf(stderr, "vmmctl: undecodable reply\n");
		return 2;
	}
	rc = 0;
	if (rep->status && rep->status->code) {
		printf("error %d %s\n", rep->status->code,
		       rep->status->message);
		rc = 1;
	} else if (rep->result_case ==
		   CANOPY__V1__VMM_REPLY__RESULT_VM_STATUS) {
		print_status(rep->vm_status);
	} else if (rep->result_case == CANOPY__V1__VMM_REPLY__RESULT_MIGRATED) {
		printf("migrated downtime_ms %llu total_ms %llu\n",
		       (unsigned long long)rep->migrated->downtime_ms,
		       (unsigned long long)rep->migrated->total_ms);
	} else {
		printf("ok\n");
	}
	canopy__v1__vmm_reply__free_unpacked(rep, NULL);
	return rc;
}

int main(int argc, char **argv)
{
	Canopy__V1__VmmRequest rq = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmStatusRequest st = CANOPY__V1__VMM_STATUS_REQUEST__INIT;
	Canopy__V1__VmmBalloonRequest b = CANOPY__V1__VMM_BALLOON_REQUEST__INIT;
	Canopy__V1__VmmMigrateSendRequest ms =
		CANOPY__V1__VMM_MIGRATE_SEND_REQUEST__INIT;
	uint32_t timeout_ms = TIMEOUT_MS;
	int fd, rc;

	if (argc == 3 && strcmp(argv[2], "status") == 0) {
		rq.op_case = CANOPY__V1__VMM_REQUEST__OP_STATUS;
		rq.status = &st;
	} else if (argc == 4 && strcmp(argv[2], "balloon") == 0) {
		rq.op_case = CANOPY__V1__VMM_REQUEST__OP_BALLOON;
		b.target_mib = strtoull(argv[3], NULL, 10);
		rq.balloon = &b;
	} else if (argc == 4 && strcmp(argv[2], "migrate") == 0) {
		rq.op_case = CANOPY__V1__VMM_REQUEST__OP_MIGRATE_SEND;
		ms.address = argv[3];
		rq.migrate_send = &ms;
		timeout_ms = MIGRATE_TIMEOUT_MS;
	} else {
		fprintf(stderr, "usage: vmmctl SOCKET status | balloon MIB | "
				"migrate tcp:HOST:PORT\n");
		return 2;
	}
	fd = sys_unix_connect(argv[1]);
	if (fd < 0) {
		fprintf(stderr, "vmmctl: %s: %s\n", argv[1], strerror(-fd));
		return 2;
	}
	rc = call(fd, &rq, timeout_ms);
	sys_close(fd);
	return rc;
}
