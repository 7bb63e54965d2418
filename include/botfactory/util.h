/* util: the two small things several modules need: the project's one
 * non-cryptographic hash (64-bit FNV-1a) and a millisecond clock reading. */
#ifndef BOTFACTORY_UTIL_H
#define BOTFACTORY_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define UTIL_FNV_OFFSET 0xcbf29ce484222325ULL

/* Continues the 64-bit FNV-1a hash h (start with UTIL_FNV_OFFSET) over
 * data[0..len). Returns the new hash. */
uint64_t util_fnv1a(uint64_t h, const void *data, size_t len);

/* The clock `id` (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME) in
 * milliseconds. */
int64_t util_clock_ms(clockid_t id);

#endif
