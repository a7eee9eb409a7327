/*
 * gd_auth: who may call an endpoint ("auth"). API keys: the key in a request header, compared
 * in constant time against the SHA-256 of every configured key. JWT bearer tokens (RFC 6750,
 * RFC 7519) verified with libjwt against one key, after gatherd checked the token's algorithm
 * against the configured ones; then exp, nbf, iss, aud and the required claims. Keys and tokens
 * are never logged, nor copied anywhere but where they are checked here.
 */
#ifndef GD_AUTH_H
#define GD_AUTH_H

#include <stddef.h>

#include <h2o.h>
#include <jansson.h>

#include "config/config.h"

/* gd_auth_check()'s outcomes besides 0 */
enum {
    GD_AUTH_MISSING = 1, /* no credentials were sent: 401 */
    GD_AUTH_INVALID,     /* credentials were sent and are wrong: 401 */
    GD_AUTH_FORBIDDEN,   /* a valid token without a required claim: 403 */
};

/* Why a request was refused, for its 401 answer. */
typedef struct gd_auth_refusal {
    int status;            /* 401 or 403 */
    const char *code;      /* "unauthorized" or "forbidden" */
    const char *message;   /* static text or from the config: never the credentials */
    const char *challenge; /* the WWW-Authenticate value, from the config or @req's pool */
} gd_auth_refusal_t;

/**
 * Checks @req against @auth (NULL: open, 0). Returns 0 when the request may go on, with
 * *@ret_claims the verified JWT's claims (a new reference, json_decref() it) or NULL without
 * JWT; or GD_AUTH_MISSING / GD_AUTH_INVALID / GD_AUTH_FORBIDDEN with *@ret_refusal filled. Does
 * not yield; a token's signature is checked on the calling thread (tens of µs for RSA).
 */
int gd_auth_check(const gd_auth_conf_t *auth, h2o_req_t *req, json_t **ret_claims,
                  gd_auth_refusal_t *ret_refusal);

/**
 * Fills the values of @ep's {jwt.NAME} parameters in @values from @claims: a string claim as it
 * is, an integer in decimal (in @req's pool). Returns 0, or GD_AUTH_FORBIDDEN with
 * *@ret_refusal filled when a claim is missing or of another type.
 */
int gd_auth_fill_claims(const gd_endpoint_conf_t *ep, h2o_req_t *req, const json_t *claims,
                        gd_strv_t *values, gd_auth_refusal_t *ret_refusal);

/**
 * Whether [@key, @key + @len) is one of @auth's API keys, in time that depends on the number of
 * keys only, never on where the key differs. Every key is compared, with no early exit.
 */
bool gd_auth_is_api_key(const gd_auth_conf_t *auth, const char *key, size_t len);

#endif
