/*
 * CRC-32C (Castagnoli), as used by iSCSI, ext4 and btrfs: the checksum of
 * Canopy's snapshots, migration stream and datastore metadata. Uses the
 * SSE4.2 crc32 instruction when the CPU has it, a table otherwise; both give
 * the same result. Thread-safe.
 */
#ifndef CANOPY_LIB_CRC32C_H
#define CANOPY_LIB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: crc32c(0, p, n) for a fresh one; crc32c(crc32c(0, a, n),
 * b, m) equals the CRC of a followed by b. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);
/* The table-driven path alone (for tests and CPUs without SSE4.2). */
uint32_t crc32c_portable(uint32_t crc, const void *p, size_t n);

#endif
