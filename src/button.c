/* button: fingerprints for inline-button callback data (see button.h). */
#include "botfactory/button.h"

#include <string.h>

#include "botfactory/util.h"

uint64_t button_hash(uint64_t seed, const char *const *fields, size_t n)
{
	uint64_t h = UTIL_FNV_OFFSET ^ seed;
	for (size_t i = 0; i < n; i++) /* each field with its NUL: a separator */
		h = util_fnv1a(h, fields[i], strlen(fields[i]) + 1);
	/* final avalanche (from MurmurHash3's fmix64) */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void button_code(char out[BUTTON_CODE_LEN + 1], const char *const *fields,
		 size_t n)
{
	uint64_t a = button_hash(0, fields, n);
	uint64_t b = button_hash(0x9e3779b97f4a7c15ULL, fields, n);
	out[0] = BUTTON_CODE_VERSION;
	/* 10 chars from a (60 bits), 6 chars from b (36 bits) */
	for (int i = 0; i < 10; i++)
		out[1 + i] = b64url[(a >> (6 * i)) & 63];
	for (int i = 0; i < 6; i++)
		out[11 + i] = b64url[(b >> (6 * i)) & 63];
	out[BUTTON_CODE_LEN] = '\0';
}

enum button_data_kind button_classify(const char *data)
{
	size_t len = strlen(data);
	if (len != BUTTON_CODE_LEN || data[0] < '1' || data[0] > '9' ||
	    strspn(data + 1, b64url) != BUTTON_CODE_LEN - 1)
		return BUTTON_DATA_FOREIGN;
	return data[0] == BUTTON_CODE_VERSION ? BUTTON_DATA_CURRENT
					      : BUTTON_DATA_OLD_VERSION;
}
