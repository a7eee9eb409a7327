/*
 * gd_ptrcount: a count per pointer key (bytes per connection), kept only while it is not zero:
 * a key whose count falls back to zero leaves the table, so that a key's memory may be freed
 * and reused once its count is zero without a stale entry. Open addressing with linear probing,
 * at most half full, deletion by moving entries back (no tombstones): lookups stay short however
 * keys come and go. One thread's; no locking.
 */
#ifndef GD_PTRCOUNT_H
#define GD_PTRCOUNT_H

#include <stddef.h>

typedef struct gd_ptrcount gd_ptrcount_t;

/** Creates an empty table (aborts when out of memory, like gd_xmalloc()). */
gd_ptrcount_t *gd_ptrcount_new(void);
/** Frees @pc (NULL is a no-op), whatever it still counts. Returns NULL. */
gd_ptrcount_t *gd_ptrcount_free(gd_ptrcount_t *pc);
/** The count of @key (not NULL); 0 when it has none. */
size_t gd_ptrcount_get(const gd_ptrcount_t *pc, const void *key);
/** Adds @n to the count of @key (not NULL); @n == 0 adds nothing and no entry. */
void gd_ptrcount_add(gd_ptrcount_t *pc, const void *key, size_t n);
/** Takes @n from the count of @key, which must hold at least @n (GD_REQUIRE). */
void gd_ptrcount_sub(gd_ptrcount_t *pc, const void *key, size_t n);
/** The number of keys with a count. */
size_t gd_ptrcount_keys(const gd_ptrcount_t *pc);

#endif
