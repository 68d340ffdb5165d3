/*
 * Little-endian stores and loads into byte buffers (firmware tables,
 * configuration spaces, device registers). x86 hosts only, so a memcpy of
 * the native value; the names say what the guest sees.
 */
#ifndef CANOPY_VMM_LE_H
#define CANOPY_VMM_LE_H

#include <stdint.h>
#include <string.h>

static inline void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

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

/* An access of len (1, 2, 4 or 8) bytes: the value in data / into data. */
static inline uint64_t get_le(const void *data, uint32_t len)
{
	uint64_t v = 0;

	memcpy(&v, data, len < 8 ? len : 8);
	return v;
}

static inline void put_le(void *data, uint32_t len, uint64_t v)
{
	memset(data, 0, len);
	memcpy(data, &v, len < 8 ? len : 8);
}

#endif
