/* The clustered datastore (docs/datastore-format.md): one shared file or
 * block device that every host opens with O_DIRECT and reads and writes only
 * in aligned sectors. No flock, no shared memory, no compare-and-swap: the
 * only shared thing is the medium, as with a raw disk shared by QEMU VMs.
 *
 * This header covers the volume (format, open, geometry), host heartbeats
 * and the Disk Paxos leases that lock files. */
#ifndef CANOPY_DATASTORE_DS_H
#define CANOPY_DATASTORE_DS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/compiler.h"

#define DS_MAGIC "CNPYDS\r\n" /* 8 bytes; \r\n catches text-mode mangling */
#define DS_VERSION 1
#define DS_MAX_HOSTS 64 /* host ids 1..64; see docs on growing */
#define DS_NAME_MAX 63
#define DS_DEFAULT_LOCKS 1024
#define DS_DEFAULT_SECTOR 512
#define DS_DEFAULT_BLOCK (1u << 20) /* file data allocation unit */
#define DS_DEFAULT_JOURNAL 128 /* sectors of journal per host */
#define DS_NAMESPACE_LOCK 0 /* lock 0 serialises metadata changes */
#define DS_FILE_NAME_MAX 127

/* Default heartbeat timing (ms); both are per-volume settings. */
#define DS_DEFAULT_HB_INTERVAL_MS 1000
#define DS_DEFAULT_HB_TIMEOUT_MS 10000

/* Geometry and identity, as read from the superblock. Offsets in bytes. */
struct ds_geom {
	uint32_t version;
	uint32_t sector; /* I/O unit and alignment */
	uint8_t uuid[16];
	char name[DS_NAME_MAX + 1];
	uint32_t max_hosts;
	uint32_t max_locks;
	uint32_t hb_interval_ms;
	uint32_t hb_timeout_ms;
	uint64_t size; /* of the volume as formatted */
	uint64_t created_ms; /* wall clock, informational */
	uint32_t block_size; /* data block, a multiple of the sector */
	uint32_t journal_sectors; /* per host */
	uint64_t hb_off; /* max_hosts sectors */
	uint64_t lock_off; /* max_locks * (1 + max_hosts) sectors */
	uint64_t journal_off; /* max_hosts * journal_sectors sectors */
	uint64_t inode_off; /* max_locks sectors: inode i is locked by lock i */
	uint64_t bitmap_off; /* one bit per data block, in records */
	uint64_t data_off; /* block aligned; nblocks blocks follow */
	uint64_t nblocks;
	uint64_t end_off; /* == data_off: the end of the metadata */
};

/* An open volume. */
struct ds {
	int fd;
	int direct; /* opened with O_DIRECT */
	char path[256];
	struct ds_geom g;
};

struct ds_format_opts {
	const char *name;
	uint64_t size; /* 0: the file's current size (a device's size) */
	uint32_t sector; /* 0: DS_DEFAULT_SECTOR */
	uint32_t max_locks; /* 0: DS_DEFAULT_LOCKS; also the most files */
	uint32_t block_size; /* 0: DS_DEFAULT_BLOCK */
	uint32_t hb_interval_ms, hb_timeout_ms; /* 0: defaults */
};

/* Write a new, empty datastore on path (created if it is a missing file).
 * Refuses to overwrite something that already is a datastore unless force.
 * err gets a one-line reason. */
CN_MUST_CHECK int ds_format(const char *path, const struct ds_format_opts *o,
			    int force, char *err, size_t errlen);

/* Open and validate. -ENOTRECOVERABLE-style reasons are spelt out in err:
 * not a datastore, newer format version, corrupt superblock, truncated. */
#define DS_RDONLY 0x1 /* inspection only: never written */
CN_MUST_CHECK int ds_open(struct ds *ds, const char *path, int flags, char *err,
			  size_t errlen);
void ds_close(struct ds *ds);

/* Aligned sector I/O on the volume. buf must come from ds_alloc. */
void *ds_alloc(const struct ds *ds, size_t len);
void ds_free(void *p);
CN_MUST_CHECK int ds_read(const struct ds *ds, uint64_t off, void *buf,
			  size_t len);
CN_MUST_CHECK int ds_write(const struct ds *ds, uint64_t off, const void *buf,
			   size_t len);

/* --- heartbeats (ds_hb.c) ------------------------------------------------ */

/* One host's slot as stored. */
struct ds_hb_slot {
	uint32_t host_id; /* 0: never used */
	uint32_t flags; /* DS_HB_* */
	uint64_t generation; /* bumped at every join */
	uint64_t counter; /* bumped at every renewal */
	uint64_t wall_ms; /* writer's wall clock, informational */
	uint32_t interval_ms;
	char host_name[DS_NAME_MAX + 1];
	uint64_t nonce; /* random per incarnation: two joiners tell apart */
};
#define DS_HB_LIVE 0x1 /* joined and renewing */
#define DS_HB_LEFT 0x2 /* left cleanly: holds no locks */

/* The local host's membership. */
struct ds_host {
	struct ds *ds;
	uint32_t id;
	uint64_t generation;
	uint64_t counter;
	uint64_t nonce;
	char name[DS_NAME_MAX + 1];
	/* Monotonic time (ns) at which the last successful renewal was
	 * issued; fencing is measured from it. */
	uint64_t last_ok_issue_ns;
	int left; /* ds_hb_leave was called: renewals are refused */
};

CN_MUST_CHECK int ds_hb_read(const struct ds *ds, uint32_t host_id,
			     struct ds_hb_slot *out);
/* Join as host_id (1..max_hosts). Watches the slot for the heartbeat
 * timeout first unless it says the previous holder left cleanly: a slot
 * that keeps advancing means another live process uses this id (-EBUSY). */
CN_MUST_CHECK int ds_hb_join(struct ds_host *h, struct ds *ds, uint32_t host_id,
			     const char *name, char *err, size_t errlen);
/* Renew now; 0 or -errno (-ESHUTDOWN after ds_hb_leave, so a late renewal
 * cannot undo the leave; -EEXIST when another process has written our
 * slot since: it uses our id, and we must fence). Call every
 * hb_interval_ms. */
CN_MUST_CHECK int ds_hb_renew(struct ds_host *h);
/* Mark the slot as cleanly left (the caller has released its locks). */
CN_MUST_CHECK int ds_hb_leave(struct ds_host *h);
/* The self-fence rule: 1 when the last successful renewal was issued
 * (hb_timeout - fence margin) ago or more; the host must stop all I/O to
 * files it has locked. */
int ds_hb_must_fence(const struct ds_host *h, uint64_t now_ns);
/* The fence margin: a quarter of the timeout. */
uint64_t ds_hb_margin_ms(const struct ds_geom *g);
/* -ETIMEDOUT when h must fence now; the library calls it before every
 * write it makes under a lease (the user's own writes should too). */
CN_MUST_CHECK int ds_hb_check(const struct ds_host *h);

/* What an observer knows of other hosts, on its own monotonic clock. */
struct ds_hb_watch {
	struct {
		uint64_t generation, counter;
		uint64_t changed_ns; /* when this observer saw it change */
		uint32_t flags;
		int seen;
	} h[DS_MAX_HOSTS + 1];
};
enum ds_liveness {
	DS_HOST_UNKNOWN, /* not observed yet: poll first */
	DS_HOST_UNUSED, /* slot never written */
	DS_HOST_LEFT, /* left cleanly */
	DS_HOST_ALIVE, /* advanced within the timeout */
	DS_HOST_SUSPECT, /* not advanced for the timeout: presumed dead */
	DS_HOST_DEAD, /* not advanced for timeout + margin: locks breakable */
};
void ds_hb_watch_init(struct ds_hb_watch *w);
/* Read every slot and update w; now_ns is the observer's monotonic time,
 * 0 to take it after the read (what everything but tests should do). */
CN_MUST_CHECK int ds_hb_watch_poll(const struct ds *ds, struct ds_hb_watch *w,
				   uint64_t now_ns);
enum ds_liveness ds_hb_liveness(const struct ds *ds,
				const struct ds_hb_watch *w, uint32_t host_id,
				uint64_t now_ns);
const char *ds_liveness_name(enum ds_liveness l);
/* How long ago this observer saw the host's heartbeat change (0 if never
 * observed). */
uint64_t ds_hb_age_ms(const struct ds_hb_watch *w, uint32_t host_id,
		      uint64_t now_ns);

/* --- leases (ds_lock.c) ------------------------------------------------- */

/* The lease record of a lock, as stored in its leader sector. */
struct ds_lease {
	uint32_t lock; /* index */
	uint32_t owner; /* host id, 0 when free */
	uint64_t owner_generation; /* the owner's heartbeat generation */
	uint64_t lver; /* Paxos instance that granted the current owner */
	uint64_t wall_ms; /* informational */
};

CN_MUST_CHECK int ds_lease_read(const struct ds *ds, uint32_t lock,
				struct ds_lease *out);
/* Acquire lock for h. 0 when held; -EBUSY when another live host holds it
 * or won the race (err says who and its heartbeat age); -EAGAIN when the
 * holder is presumed dead but the break wait (timeout + margin since its
 * heartbeat stopped, on w's clock) has not passed yet. w must be polled
 * recently by the caller. A lease held by h's own id from an older
 * generation (h crashed and came back) is taken over at once. */
CN_MUST_CHECK int ds_lock_acquire(struct ds_host *h, struct ds_hb_watch *w,
				  uint32_t lock, char *err, size_t errlen);
/* Release a lock h holds; -EPERM if the lease says someone else has it. */
CN_MUST_CHECK int ds_lock_release(struct ds_host *h, uint32_t lock);
/* With the shared (read-only) mode: exclusive acquisition also fails
 * (-EBUSY) while another live host holds the lock shared; shared
 * acquisition takes the lease briefly, marks this host's Paxos block as a
 * shared holder and lets the lease go, so any number of hosts can share. */
CN_MUST_CHECK int ds_lock_acquire_mode(struct ds_host *h, struct ds_hb_watch *w,
				       uint32_t lock, int shared, char *err,
				       size_t errlen);
CN_MUST_CHECK int ds_lock_release_shared(struct ds_host *h, uint32_t lock);

/* --- files (ds_file.c) --------------------------------------------------- */

/* Names: 1..DS_FILE_NAME_MAX bytes of [A-Za-z0-9._-] in '/'-separated parts
 * (flat per-VM directories: "web1/disk0"), no empty, "." or ".." part. */
struct ds_inode {
	uint32_t index; /* 1..max_locks-1; lock `index` guards the file */
	uint32_t flags; /* DS_INODE_* */
	uint64_t generation; /* bumped when the slot is reused */
	uint64_t size; /* bytes, fixed at creation */
	uint64_t map_block; /* data block + 1 holding the block map; 0 none */
	uint64_t ctime_ms, mtime_ms;
	char name[DS_FILE_NAME_MAX + 1];
};
#define DS_INODE_USED 0x1

/* An open file: its lock is held exclusively until ds_file_close. */
struct ds_file {
	struct ds_host *h;
	struct ds_hb_watch *w;
	struct ds_inode ino;
	int shared; /* opened read-only, lock held shared */
	/* The block map (data block + 1 per file block, 0 = hole), read at
	 * open: only the lock holder changes it, so it stays true. */
	uint32_t *map;
	uint64_t nmap;
};

CN_MUST_CHECK int ds_name_check(const char *name, char *err, size_t errlen);
/* 0 and *out when `index` is a file, 1 when free, -errno. */
CN_MUST_CHECK int ds_inode_read(const struct ds *ds, uint32_t index,
				struct ds_inode *out);
/* Find a file by name: 0, or -ENOENT. */
CN_MUST_CHECK int ds_lookup(const struct ds *ds, const char *name,
			    struct ds_inode *out);
/* Blocks allocated to a file (thin files have fewer than size needs). */
CN_MUST_CHECK int ds_file_blocks(const struct ds *ds,
				 const struct ds_inode *ino, uint64_t *out);
/* Free data blocks according to the bitmap. */
CN_MUST_CHECK int ds_free_blocks(const struct ds *ds, uint64_t *out);

/* Metadata changes take the namespace lock, replay any journal a dead
 * host left unfinished, and commit through this host's journal. */
CN_MUST_CHECK int ds_file_create(struct ds_host *h, struct ds_hb_watch *w,
				 const char *name, uint64_t size, int thick,
				 char *err, size_t errlen);
/* Refused while another host has the file open (locked). */
CN_MUST_CHECK int ds_file_remove(struct ds_host *h, struct ds_hb_watch *w,
				 const char *name, char *err, size_t errlen);
/* Rename, or grow (thin: the new part is a hole), a file nobody has open. */
CN_MUST_CHECK int ds_file_rename(struct ds_host *h, struct ds_hb_watch *w,
				 const char *name, const char *new_name,
				 char *err, size_t errlen);
CN_MUST_CHECK int ds_file_extend(struct ds_host *h, struct ds_hb_watch *w,
				 const char *name, uint64_t size, char *err,
				 size_t errlen);
CN_MUST_CHECK int ds_file_open(struct ds_file *f, struct ds_host *h,
			       struct ds_hb_watch *w, const char *name,
			       char *err, size_t errlen);
/* shared: read-only, the lock held shared (many hosts may read at once,
 * nobody may open it exclusively meanwhile). */
CN_MUST_CHECK int ds_file_open_mode(struct ds_file *f, struct ds_host *h,
				    struct ds_hb_watch *w, const char *name,
				    int shared, char *err, size_t errlen);
/* Sector-aligned offset and length, buffer from ds_alloc. Reading a hole
 * gives zeros; writing one allocates (zeroed) blocks first. */
CN_MUST_CHECK int ds_file_pread(struct ds_file *f, void *buf, size_t len,
				uint64_t off);
CN_MUST_CHECK int ds_file_pwrite(struct ds_file *f, const void *buf, size_t len,
				 uint64_t off, char *err, size_t errlen);
void ds_file_close(struct ds_file *f);
/* Take the namespace lock and replay unfinished journals (mount-time
 * recovery); also done by every metadata change. */
CN_MUST_CHECK int ds_recover(struct ds_host *h, struct ds_hb_watch *w,
			     char *err, size_t errlen);

/* --- fsck (ds_fsck.c, repair in ds_file.c) ------------------------------ */

struct ds_fsck {
	FILE *report; /* one line per problem; NULL for none */
	uint64_t problems, files;
	uint64_t orphans; /* allocated, used by no file */
	uint64_t unmarked; /* used by a file, free in the bitmap */
	uint64_t shared; /* used by two files */
	uint64_t pending; /* unfinished journal transactions */
	uint64_t stale_locks; /* held by a host incarnation that is gone */
	uint64_t unreadable; /* inodes or block maps that could not be read:
			      * their blocks are unknown, so repair frees
			      * nothing */
};

/* Read-only check. With refs_out and bitmap_out, hands back the block
 * reference counts (calloc) and the bitmap records (ds_alloc). */
CN_MUST_CHECK int ds_fsck(const struct ds *ds, struct ds_fsck *r,
			  uint8_t **refs_out, uint8_t **bitmap_out);
/* Under the namespace lock: replay journals, free orphan blocks, mark used
 * blocks as used. Shared blocks and corrupt records are left for a human;
 * the check after a repair says what remains. */
CN_MUST_CHECK int ds_fsck_repair(struct ds_host *h, struct ds_hb_watch *w,
				 struct ds_fsck *r, char *err, size_t errlen);

#endif
