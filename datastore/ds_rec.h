/* Datastore internals: the 512-byte on-disk record (every metadata sector
 * starts with one) and little-endian field access. */
#ifndef CANOPY_DATASTORE_DS_REC_H
#define CANOPY_DATASTORE_DS_REC_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "datastore/ds.h"
#include "lib/crc32c.h"

#define DS_REC_SIZE 512
#define DS_REC_CRC (DS_REC_SIZE - 4) /* CRC-32C of the bytes before it */

/* Sectors one journal transaction may stage (its header holds the
 * targets): a journal area must hold them plus the header. */
#define DS_TXN_MAX 60
#define DS_MAX_HB_INTERVAL_MS 60000u

/* Bitmap record: u32 magic, u32 index of the record, then bits. */
#define DS_BITMAP_MAGIC 0x50414d42u /* "BMAP" */
#define DS_BITMAP_HDR 8
#define DS_BITMAP_BYTES 480
#define DS_BITMAP_BITS (DS_BITMAP_BYTES * 8)

static inline void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static inline uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline void ds_rec_seal(uint8_t *r)
{
	put32(r + DS_REC_CRC, crc32c(0, r, DS_REC_CRC));
}

/* 0 valid, 1 never written (all zero), -EBADMSG corrupt. */
static inline int ds_rec_check(const uint8_t *r)
{
	size_t i;

	if (get32(r + DS_REC_CRC) == crc32c(0, r, DS_REC_CRC))
		return 0;
	for (i = 0; i < DS_REC_SIZE && !r[i]; i++)
		;
	return i == DS_REC_SIZE ? 1 : -EBADMSG;
}

/* ds_vol.c, for tests: decode and validate a superblock record. */
int ds_sb_decode(const uint8_t *b, struct ds_geom *g, char *err, size_t errlen);

#endif
