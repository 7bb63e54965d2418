/* utf8: the few UTF-8 facts the core needs. Telegram text is UTF-8 and its
 * length limits count UTF-16 code units, so both views are provided here. */
#ifndef BOTFACTORY_UTF8_H
#define BOTFACTORY_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). NUL bytes count as invalid. When false and
 * bad_off is non-NULL, *bad_off is the byte offset of the first bad byte. */
bool utf8_valid(const char *s, size_t len, size_t *bad_off);

/* Length in bytes of the UTF-8 sequence starting with lead byte c
 * (1 for ASCII and for invalid lead bytes). */
size_t utf8_seqlen(unsigned char c);

/* Number of UTF-16 code units needed for s[0..len) (valid UTF-8 assumed):
 * 2 for every 4-byte sequence, 1 for every other code point. */
size_t utf8_utf16_len(const char *s, size_t len);

#endif
