/* libFuzzer driver: the config loader on any text (a config file is read whole, then this). It
 * either loads a config or says why not in one line naming the file; it never aborts, leaks or
 * takes long (patterns that regcomp() would take seconds on are refused before it sees them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = malloc(size + 1), err[1024];
    gd_config_t *cfg = NULL;

    GD_REQUIRE(json != NULL);
    memcpy(json, data, size);
    json[size] = '\0';
    if (gd_config_load_string(json, "fuzz.json", &cfg, err, sizeof(err)) == 0)
        gd_config_free(cfg);
    else
        GD_REQUIRE(strncmp(err, "fuzz.json", 9) == 0 && strchr(err, '\n') == NULL);
    free(json);
    return 0;
}
