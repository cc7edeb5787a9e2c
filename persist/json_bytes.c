/* json_bytes.c -- bytes as JSON values (see json_bytes.h): a string when
 * they are valid UTF-8 (Jansson's json_stringn checks), else base64 in an
 * object.  Threads: pure functions. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "persist/json_bytes.h"
#include "ringkeep.h"

char *base64_encode(const void *s, size_t n)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *b = s;
    char *text = malloc((n + 2) / 3 * 4 + 1);
    size_t len = 0;

    if (!text)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v =
            (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        text[len++] = digits[v >> 18 & 63];
        text[len++] = digits[v >> 12 & 63];
        text[len++] = i + 1 < n ? digits[v >> 6 & 63] : '=';
        text[len++] = i + 2 < n ? digits[v & 63] : '=';
    }
    text[len] = '\0';
    return text;
}

json_t *json_base64(const void *s, size_t n)
{
    char *text = base64_encode(s, n);
    json_t *obj = text ? json_pack("{s:s}", "base64", text) : NULL;

    free(text);
    return obj;
}

json_t *json_bytes(const void *s, size_t n)
{
    /* NULL: not valid UTF-8 (or out of memory, and then so is the next) */
    json_t *str = json_stringn(s, n);

    return str ? str : json_base64(s, n);
}

json_t *json_cstr(const char *s)
{
    return json_bytes(s, strlen(s));
}

int base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len)
{
    uint8_t *buf;
    size_t len = 0, pad = 0;

    if (n % 4)
        return RK_ECORRUPT;
    if (n && s[n - 1] == '=')
        pad = n >= 2 && s[n - 2] == '=' ? 2 : 1;
    buf = malloc(n / 4 * 3 + 1);
    if (!buf)
        return ENOMEM;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            char c = s[i + j];
            uint32_t d;
            if (c >= 'A' && c <= 'Z')
                d = (uint32_t)(c - 'A');
            else if (c >= 'a' && c <= 'z')
                d = (uint32_t)(c - 'a' + 26);
            else if (c >= '0' && c <= '9')
                d = (uint32_t)(c - '0' + 52);
            else if (c == '+')
                d = 62;
            else if (c == '/')
                d = 63;
            else if (c == '=' && i + j >= n - pad)
                d = 0;
            else
                goto bad;
            v = v << 6 | d;
        }
        buf[len++] = (uint8_t)(v >> 16);
        if (i + 4 < n || pad < 2)
            buf[len++] = (uint8_t)(v >> 8);
        if (i + 4 < n || pad < 1)
            buf[len++] = (uint8_t)v;
        /* the bits padding stands for must be zero: one encoding per value */
        if (i + 4 == n && ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))))
            goto bad;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
bad:
    free(buf);
    return RK_ECORRUPT;
}

int json_bytes_of(const json_t *v, uint8_t **out, size_t *out_len)
{
    const json_t *b = json_is_object(v) ? json_object_get(v, "base64") : NULL;

    *out = NULL;
    *out_len = 0;
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        if (!(*out = malloc(n + 1)))
            return ENOMEM;
        memcpy(*out, json_string_value(v), n);
        (*out)[n] = '\0';
        *out_len = n;
        return 0;
    }
    if (!b || json_object_size(v) != 1 || !json_is_string(b))
        return RK_EINVAL;
    return base64_decode(json_string_value(b), json_string_length(b), out, out_len);
}
