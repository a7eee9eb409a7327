#include "ops/trace.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#include "base/util.h"

/* A per-thread xorshift128+ seeded from the kernel: ids must be unique, not secret, and a
 * system call per request would cost more than the rest of the id's life. */
static __thread uint64_t prng_state[2];

static uint64_t next_random(void)
{
    uint64_t s1 = prng_state[0], s0 = prng_state[1];

    if ((s1 | s0) == 0) {
        if (getrandom(prng_state, sizeof(prng_state), 0) != (ssize_t)sizeof(prng_state) ||
            (prng_state[0] | prng_state[1]) == 0) {
            prng_state[0] = 0x9e3779b97f4a7c15u ^ (uint64_t)(uintptr_t)&prng_state;
            prng_state[1] = 0xbf58476d1ce4e5b9u;
        }
        s1 = prng_state[0];
        s0 = prng_state[1];
    }
    prng_state[0] = s0;
    s1 ^= s1 << 23;
    prng_state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return prng_state[1] + s0;
}

static void put_hex(char *out, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

bool gd_trace_is_valid_request_id(const char *s, size_t len)
{
    if (len == 0 || len > GD_TRACE_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              strchr("-_.:/+=@", c) != NULL) ||
            c == '\0')
            return false;
    }
    return true;
}

void gd_trace_new_request_id(char out[33])
{
    put_hex(out, next_random(), 16);
    put_hex(out + 16, next_random(), 16);
    out[32] = '\0';
}

static bool is_lower_hex(const char *s, size_t n, bool *is_all_zero)
{
    *is_all_zero = true;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        if (s[i] != '0')
            *is_all_zero = false;
    }
    return true;
}

int gd_trace_parse(const char *s, size_t len, gd_traceparent_t *ret)
{
    bool zero;

    /* version "-" trace-id "-" parent-id "-" flags; version ff is invalid (section 3.2.2.1) */
    if (len < GD_TRACE_TRACEPARENT_LEN || s[2] != '-' || s[35] != '-' || s[52] != '-' ||
        !is_lower_hex(s, 2, &zero) || memcmp(s, "ff", 2) == 0)
        return -EINVAL;
    if (memcmp(s, "00", 2) == 0 ? len != GD_TRACE_TRACEPARENT_LEN
                                : (len > GD_TRACE_TRACEPARENT_LEN && s[55] != '-'))
        return -EINVAL;
    if (!is_lower_hex(s + 3, 32, &zero) || zero)
        return -EINVAL;
    memcpy(ret->trace_id, s + 3, 32);
    ret->trace_id[32] = '\0';
    if (!is_lower_hex(s + 36, 16, &zero) || zero || !is_lower_hex(s + 53, 2, &zero))
        return -EINVAL;
    memcpy(ret->flags, s + 53, 2);
    ret->flags[2] = '\0';
    return 0;
}

void gd_trace_child(const gd_traceparent_t *parent, char out[GD_TRACE_TRACEPARENT_LEN + 1])
{
    uint64_t span;

    do
        span = next_random();
    while (span == 0); /* an all-zero parent-id is invalid */
    memcpy(out, "00-", 3);
    memcpy(out + 3, parent->trace_id, 32);
    out[35] = '-';
    put_hex(out + 36, span, 16);
    out[52] = '-';
    memcpy(out + 53, parent->flags, 2);
    out[55] = '\0';
}
