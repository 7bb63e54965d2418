/* button: the compact, versioned callback_data carried by inline buttons.
 * Telegram allows 1..64 bytes, so a button never carries its flow id or value
 * raw: it carries a fingerprint of what it means ("start flow X", "the value
 * V", "choice V of the ask K in flow F"). The spec indexes the fingerprints of
 * all its buttons; a press whose fingerprint the current spec does not know
 * came from a button of an older spec and is handled as stale, never routed
 * to a different meaning. Pure, no I/O. */
#ifndef BOTFACTORY_BUTTON_H
#define BOTFACTORY_BUTTON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "1" (encoding version) + 16 characters of base64url (96 bits). */
#define BUTTON_CODE_LEN 17
#define BUTTON_CODE_VERSION '1'
/* Telegram's bound on callback_data, in bytes. */
#define BUTTON_CALLBACK_MAX 64

/* 64-bit FNV-1a of n fields, each followed by a 0 byte, seeded by `seed`. */
uint64_t button_hash(uint64_t seed, const char *const *fields, size_t n);

/* Writes the NUL-terminated callback code for the meaning given by n fields
 * (e.g. {"f", flow_id}) into out[BUTTON_CODE_LEN + 1]. */
void button_code(char out[BUTTON_CODE_LEN + 1], const char *const *fields,
		 size_t n);

/* Classifies callback data received from Telegram. */
enum button_data_kind {
	BUTTON_DATA_CURRENT, /* our format, current version: look it up */
	BUTTON_DATA_OLD_VERSION, /* ours, an older encoding: stale */
	BUTTON_DATA_FOREIGN, /* not made by botfactory */
};
enum button_data_kind button_classify(const char *data);

#endif
