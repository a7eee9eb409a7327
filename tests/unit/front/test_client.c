#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "front/client.h"
#include "runner.h"

static gd_config_t *load(const char *trusted)
{
    char json[512], err[256];
    gd_config_t *cfg = NULL;

    snprintf(json, sizeof(json),
             "{\"listen\":[\"127.0.0.1:1\"],\"trusted_proxies\":%s,\"upstreams\":{},"
             "\"endpoints\":[]}",
             trusted);
    CHECK_INT_EQ(gd_config_load_string(json, "t.json", &cfg, err, sizeof(err)), 0);
    return cfg;
}

/* @xff and @fwd: one header field each, or NULL for none. */
static void check(const gd_config_t *cfg, const char *peer, const char *xff, const char *fwd,
                  const char *want)
{
    h2o_iovec_t x = {(char *)xff, xff != NULL ? strlen(xff) : 0};
    h2o_iovec_t f = {(char *)fwd, fwd != NULL ? strlen(fwd) : 0};
    char buf[INET6_ADDRSTRLEN];

    gd_client_resolve(cfg, peer, &x, xff != NULL, &f, fwd != NULL, buf, sizeof(buf));
    CHECK_STR_EQ(buf, want);
}

static void test_trusted(void)
{
    gd_config_t *cfg = load("[\"10.0.0.0/8\", \"127.0.0.1\", \"fd00::/8\", \"192.168.0.0/23\"]");
    unsigned char a[16];

    CHECK(inet_pton(AF_INET, "192.168.1.255", a) == 1);
    CHECK(gd_client_is_trusted(cfg, AF_INET, a));
    CHECK(inet_pton(AF_INET, "192.168.2.0", a) == 1);
    CHECK(!gd_client_is_trusted(cfg, AF_INET, a));
    CHECK(inet_pton(AF_INET6, "fdff::1", a) == 1);
    CHECK(gd_client_is_trusted(cfg, AF_INET6, a));
    CHECK(inet_pton(AF_INET6, "fe00::1", a) == 1);
    CHECK(!gd_client_is_trusted(cfg, AF_INET6, a));

    check(cfg, "127.0.0.1", NULL, NULL, "127.0.0.1");
    check(cfg, "127.0.0.1", "1.1.1.1, 2.2.2.2, 10.0.0.1", NULL, "2.2.2.2");
    check(cfg, "127.0.0.1", " , 2.2.2.2 ,, 10.0.0.1 ,", NULL, "2.2.2.2");
    check(cfg, "127.0.0.1", "10.0.0.2, 10.0.0.1", NULL, "10.0.0.2");
    check(cfg, "127.0.0.1", "1.1.1.1, nonsense, 10.0.0.1", NULL, "10.0.0.1");
    check(cfg, "127.0.0.1", "[fd00::5]:80, 2001:db8::9", NULL, "2001:db8::9");
    check(cfg, "127.0.0.1", "1.2.3.4:99", NULL, "1.2.3.4");
    check(cfg, "127.0.0.1", NULL, "for=1.2.3.4;proto=https, for=\"[fd00::1]\"", "1.2.3.4");
    check(cfg, "127.0.0.1", NULL, "proto=https", "127.0.0.1");
    check(cfg, "127.0.0.1", NULL, "For=\"_hidden\", for=2.2.2.2", "2.2.2.2");
    check(cfg, "203.0.113.1", "1.1.1.1", "for=2.2.2.2", "203.0.113.1"); /* not trusted */
    check(cfg, "-", "1.1.1.1", NULL, "-");
    gd_config_free(cfg);
}

const gd_test_case_t gd_test_cases[] = {
    {"trusted", test_trusted},
    {NULL, NULL},
};
