/*
 * canopy-vmm: the datastore lock hand-over of a live migration
 * (docs/migration-protocol.md, "Datastore lock hand-over"). The lock of
 * each datastore disk passes exactly once from the source VMM to the
 * destination: the destination opens its disks without their locks (no
 * I/O possible), the source releases them in stop-and-copy once its
 * devices are paused (every request complete, writes durable: the volume
 * is O_DSYNC) and before END, and the destination acquires them after
 * verifying END and before its ACK. A source whose migration fails before
 * COMMIT takes its locks back before the VM resumes.
 *
 * The VMM's datastore disks are kept in a registration table (one VM per
 * process). The functions run on the migration thread (source) or the
 * main thread before the VM runs (destination) while no device does I/O.
 */
#ifndef CANOPY_HOST_VMM_BLK_DS_H
#define CANOPY_HOST_VMM_BLK_DS_H

#include <stddef.h>

#include "lib/compiler.h"

/* Most datastore disks one VMM hands over. */
#define BLK_DS_MAX 16
/* How long the destination retries a lock the source has not released
 * yet, and how long a failed source retries taking its locks back (the
 * destination may have died holding them: its lease is broken only after
 * its heartbeat times out). */
#define BLK_DS_ACQUIRE_MS 3000
#define BLK_DS_RECLAIM_MS 60000

/* Source: release the lock of every datastore disk. 0, or the first
 * -errno (err says which disk); disks released stay released (reclaim). */
CN_MUST_CHECK int blk_ds_handover_release(char *err, size_t errlen);
/* Destination: acquire the locks deferred at open (BLK_DS_ACQUIRE_MS at
 * most). 0 or -errno with err; then the disks do I/O. */
CN_MUST_CHECK int blk_ds_handover_acquire(char *err, size_t errlen);
/* Source after a failure before COMMIT: take back the locks released
 * (BLK_DS_RECLAIM_MS at most). 0, or -errno: those disks are fenced (I/O
 * fails) and err says why. No-op when nothing was released. */
CN_MUST_CHECK int blk_ds_handover_reclaim(char *err, size_t errlen);
/* Number of datastore disks registered (tests, logs). */
size_t blk_ds_count(void);

#endif
