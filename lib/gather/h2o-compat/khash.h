/*
 * A stand-in for klib's khash.h, which libh2o-dev 2.2.5 does not install although its installed
 * <h2o/http2_internal.h> includes it (h2o bundles klib in its own source tree). gatherd reads
 * that header only for the layout of h2o_http2_conn_t and for the functions libh2o exports; the
 * stream table is a pointer in that struct, so any complete type keeps the layout, and the
 * macros only have to compile in the header's inline h2o_http2_conn_get_stream(), which gatherd
 * must never call (it would not find any stream). Found through this folder on the include
 * path, for "khash.h" only.
 */
#ifndef GD_H2O_COMPAT_KHASH_H
#define GD_H2O_COMPAT_KHASH_H

typedef unsigned int khint_t;
typedef khint_t khiter_t;

#define KHASH_MAP_INIT_INT64(name, khval_t)                                                        \
    typedef struct kh_##name##_s {                                                                 \
        khint_t n_buckets;                                                                         \
        khval_t *vals;                                                                             \
    } kh_##name##_t;
#define khash_t(name)      kh_##name##_t
#define kh_end(h)          ((h)->n_buckets)
#define kh_get(name, h, k) ((void)(k), kh_end(h))
#define kh_val(h, x)       ((h)->vals[x])

#endif
