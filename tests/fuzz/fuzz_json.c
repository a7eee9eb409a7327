/* libFuzzer driver: the one-pass JSON validator, and its quoting, whose output must always be
 * a valid JSON string whatever the bytes (invalid UTF-8 becomes U+FFFD). */
#include <stdint.h>
#include <stdlib.h>

#include "base/util.h"
#include "json/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    size_t cap = GD_JSON_QUOTED_MAX(size);
    char *quoted = malloc(cap);

    (void)gd_json_is_valid(s, size);
    (void)gd_json_is_number(s, size, false);
    (void)gd_json_is_number(s, size, true);
    GD_REQUIRE(quoted != NULL);
    size_t n = gd_json_quote(s, size, quoted, cap);
    GD_REQUIRE(n <= cap && gd_json_is_valid(quoted, n));
    free(quoted);
    return 0;
}
