/* json_bytes.h -- bytes as JSON values, through Jansson (private to ringkeep).
 *
 * Every JSON the project writes is built with Jansson; these make the
 * values for bytes that come from outside (paths, names, endpoints,
 * error texts) so that no byte is lost or forged:
 *   - bytes that are valid UTF-8 become a JSON string holding exactly them
 *     (Jansson escapes '"', '\' and control characters; NUL included);
 *   - anything else becomes the object {"base64":"..."} (RFC 4648, with
 *     padding), as `ringkeep checkpoint export` writes bytes and `import`
 *     reads them.  Jansson refuses invalid UTF-8 in a string, and turning
 *     a stray byte into U+00XX or U+FFFD would show another name.
 * Threads: pure functions.
 */
#ifndef RK_JSON_BYTES_H
#define RK_JSON_BYTES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A new JSON value for s[0..n): a string when valid UTF-8, else
 * {"base64":...}.  The caller owns the reference; NULL when out of memory. */
json_t *json_bytes(const void *s, size_t n);

/* json_bytes(s, strlen(s)). */
json_t *json_cstr(const char *s);

/* Standard base64 (RFC 4648, with padding) of s[0..n): a malloc'd
 * NUL-terminated text the caller frees; NULL when out of memory.  (Also
 * what etcd's JSON gateway wants for keys and values, node/etcd.c.) */
char *base64_encode(const void *s, size_t n);

/* Decodes canonical padded standard base64 s[0..n) into *out, malloc'd
 * (one NUL after the bytes), of *out_len bytes.  0; RK_ECORRUPT when s is
 * not canonical base64, ENOMEM. */
int base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len);

/* The object {"base64":"..."} for s[0..n) (new reference, NULL when out of
 * memory). */
json_t *json_base64(const void *s, size_t n);

/* The bytes of v, a value as json_bytes makes them: any JSON string (its
 * bytes), or {"base64":"..."} holding canonical padded base64.  *out is
 * malloc'd (one NUL after the bytes), *out_len its length.  0; RK_EINVAL
 * when v is neither, RK_ECORRUPT when the base64 is not canonical, ENOMEM. */
int json_bytes_of(const json_t *v, uint8_t **out, size_t *out_len);

/* A JSON integer for an unsigned counter.  Jansson's integers are signed
 * 64-bit: counters, sequences and LSNs stay far below 2^63. */
static inline json_t *json_uint(uint64_t v)
{
    return json_integer((json_int_t)v);
}

#endif
