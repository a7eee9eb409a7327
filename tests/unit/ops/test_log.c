#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ops/log.h"
#include "runner.h"

/* Runs one gd_log_event() (no writer thread: it writes to stderr at once) and returns what it
 * wrote, read back from a temporary file standing in for stderr. */
static char *capture_event(const gd_log_field_t *fields, size_t nfields, size_t *ret_len)
{
    FILE *tmp = tmpfile();
    int saved = dup(2);
    static char out[65536];

    CHECK(tmp != NULL && saved >= 0);
    CHECK(dup2(fileno(tmp), 2) == 2);
    gd_log_event(GD_LOG_INFO, "access", fields, nfields);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    rewind(tmp);
    *ret_len = fread(out, 1, sizeof(out) - 1, tmp);
    out[*ret_len] = '\0';
    fclose(tmp);
    return out;
}

/* A value longer than a line is shortened, the fields after it left out, and the line stays one
 * valid JSON object (a log pipeline rejects anything else), never split inside a character. */
static void test_json_line_cut_stays_valid(void)
{
    size_t big_len = 10000;
    char *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i += 2)
        memcpy(big + i, "\xc3\xa9", 2); /* e-acute, two bytes each */
    gd_log_field_t fields[] = {
        {.key = "request_id", .type = GD_LOG_STR, .str = "abc", .str_len = SIZE_MAX},
        {.key = "path", .type = GD_LOG_STR, .str = big, .str_len = big_len},
        {.key = "status", .type = GD_LOG_INT, .i = 200},
    };
    size_t len;

    gd_log_set_json(true);
    char *line = capture_event(fields, 3, &len);
    CHECK(len > 100 && len <= 4096);
    CHECK(line[len - 1] == '\n');
    json_error_t err;
    json_t *doc = json_loadb(line, len - 1, 0, &err);
    CHECK(doc != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(doc, "request_id")), "abc");
    const char *path = json_string_value(json_object_get(doc, "path"));
    CHECK(path != NULL && strlen(path) > 1000 && strlen(path) % 2 == 0);
    CHECK(json_object_get(doc, "status") == NULL); /* left out: no room */
    json_decref(doc);
    free(big);
}

/* Raw JSON that does not fit is left out whole, not cut. */
static void test_json_raw_field_left_out_whole(void)
{
    size_t big_len = 5000;
    char *big = malloc(big_len);
    memset(big, '1', big_len); /* one long JSON number */
    gd_log_field_t fields[] = {
        {.key = "calls", .type = GD_LOG_JSON, .str = big, .str_len = big_len},
    };
    size_t len;

    gd_log_set_json(true);
    char *line = capture_event(fields, 1, &len);
    json_t *doc = json_loadb(line, len - 1, 0, NULL);
    CHECK(doc != NULL);
    CHECK(json_object_get(doc, "calls") == NULL);
    json_decref(doc);
    free(big);
}

const gd_test_case_t gd_test_cases[] = {
    {"json_line_cut_stays_valid", test_json_line_cut_stays_valid},
    {"json_raw_field_left_out_whole", test_json_raw_field_left_out_whole},
    {NULL, NULL},
};
