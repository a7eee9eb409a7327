#include "front/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "base/b64url.h"

bool gd_auth_is_api_key(const gd_auth_conf_t *auth, const char *key, size_t len)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    int found = 0;

    /* Hashing first makes the comparison independent of the key's length; CRYPTO_memcmp is
     * constant-time for the 32 bytes, and every configured key is compared. */
    SHA256((const unsigned char *)key, len, digest);
    for (size_t i = 0; i < auth->napi_keys; i++)
        found |= CRYPTO_memcmp(digest, auth->api_key_hashes[i], sizeof(digest)) == 0;
    OPENSSL_cleanse(digest, sizeof(digest));
    return found != 0;
}

/* RFC 6750 section 3: a challenge with an error code and a fixed description (no quotes). */
static const char *bearer_challenge(h2o_req_t *req, const char *error, const char *description)
{
    size_t cap = 96 + strlen(description);
    char *s = h2o_mem_alloc_pool(&req->pool, cap);

    snprintf(s, cap, "Bearer realm=\"gatherd\", error=\"%s\", error_description=\"%s\"", error,
             description);
    return s;
}

static int refuse_token(h2o_req_t *req, const char *why, gd_auth_refusal_t *ret)
{
    ret->status = 401;
    ret->code = "unauthorized";
    ret->message = why;
    ret->challenge = bearer_challenge(req, "invalid_token", why);
    return GD_AUTH_INVALID;
}

/* A 403: "@before@name@after", with the challenge of RFC 6750 section 3.1. */
static int forbid(h2o_req_t *req, const char *before, const char *name, const char *after,
                  gd_auth_refusal_t *ret)
{
    size_t cap = strlen(before) + strlen(name) + strlen(after) + 1;
    char *msg = h2o_mem_alloc_pool(&req->pool, cap);

    snprintf(msg, cap, "%s%s%s", before, name, after);
    ret->status = 403;
    ret->code = "forbidden";
    ret->message = msg;
    ret->challenge = bearer_challenge(req, "insufficient_scope", msg);
    return GD_AUTH_FORBIDDEN;
}

static bool json_has_string(const json_t *v, const char *want, bool is_space_list)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(want);
        if (!is_space_list)
            return strcmp(s, want) == 0;
        for (const char *p = s; *p != '\0';) {
            const char *end = strchr(p, ' ');
            size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
            if (len == n && memcmp(p, want, n) == 0)
                return true;
            p += len;
            while (*p == ' ')
                p++;
        }
        return false;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) if (json_is_string(e) &&
                                        strcmp(json_string_value(e), want) == 0) return true;
    }
    return false;
}

/* The claims of a verified token: dates, issuer, audience, then the required claims. */
static int check_claims(const gd_jwt_conf_t *jc, h2o_req_t *req, const json_t *claims,
                        gd_auth_refusal_t *ret)
{
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    double now = (double)time(NULL);

    if (!json_is_number(exp))
        return refuse_token(req, "the token has no expiry time (exp)", ret);
    if (now > json_number_value(exp) + jc->leeway_s)
        return refuse_token(req, "the token has expired", ret);
    if (nbf != NULL && (!json_is_number(nbf) || now + jc->leeway_s < json_number_value(nbf)))
        return refuse_token(req, "the token is not valid yet", ret);
    if (jc->issuer != NULL && !json_has_string(json_object_get(claims, "iss"), jc->issuer, false))
        return refuse_token(req, "the token's issuer is not accepted", ret);
    if (jc->audience != NULL &&
        !json_has_string(json_object_get(claims, "aud"), jc->audience, false))
        return refuse_token(req, "the token is not meant for this audience", ret);
    for (size_t i = 0; i < jc->nrequired_claims; i++) {
        const gd_claim_rule_t *rule = &jc->required_claims[i];
        if (!json_has_string(json_object_get(claims, rule->name), rule->value,
                             strcmp(rule->name, "scope") == 0)) {
            return forbid(req, "the token lacks the required claim ", rule->name, "", ret);
        }
    }
    return 0;
}

#define MAX_TOKEN_LEN 8192

/* The "alg" and "kid" of @token's JOSE header (RFC 7515 section 4.1), not yet verified.
 * *@ret_kid: in @req's pool, NULL when there is none. */
static int read_header(h2o_req_t *req, const char *token, char *alg, size_t cap,
                       const char **ret_kid)
{
    const char *dot = strchr(token, '.');
    unsigned char *head;
    ssize_t n;
    json_t *h;
    int r = -EPROTO;

    if (dot == NULL || dot == token)
        return -EPROTO;
    head = h2o_mem_alloc_pool(&req->pool, GD_B64URL_DECODED_MAX((size_t)(dot - token)));
    if ((n = gd_b64url_decode(token, (size_t)(dot - token), head)) < 0)
        return -EPROTO;
    h = json_loadb((const char *)head, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    const char *a = json_string_value(json_object_get(h, "alg"));
    json_t *kid = json_object_get(h, "kid");
    *ret_kid = NULL;
    if (a != NULL && strlen(a) < cap && (kid == NULL || json_is_string(kid))) {
        strcpy(alg, a);
        if (kid != NULL)
            *ret_kid = h2o_strdup(&req->pool, json_string_value(kid), SIZE_MAX).base;
        r = 0;
    }
    json_decref(h);
    return r;
}

static int check_jwt(const gd_jwt_conf_t *jc, h2o_req_t *req, json_t **ret_claims,
                     gd_auth_refusal_t *ret)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    jwt_t *jwt = NULL;
    json_t *claims = NULL;
    char *token, *grants;
    int r;

    if (i < 0) {
        ret->status = 401;
        ret->code = "unauthorized";
        ret->message = "a bearer token is required";
        ret->challenge = "Bearer realm=\"gatherd\""; /* RFC 6750 section 3.1: no error code */
        return GD_AUTH_MISSING;
    }
    h2o_iovec_t v = req->headers.entries[i].value;
    if (h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, i) >= 0 || v.len < 8 ||
        strncasecmp(v.base, "bearer ", 7) != 0 || v.len - 7 > MAX_TOKEN_LEN)
        return refuse_token(req, "the Authorization header does not hold one bearer token", ret);
    token = h2o_mem_alloc_pool(&req->pool, v.len - 7 + 1);
    memcpy(token, v.base + 7, v.len - 7);
    token[v.len - 7] = '\0';
    for (char *p = token; *p != '\0'; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.'))
            return refuse_token(req, "the token is malformed", ret);
    /* The algorithm first, from the unverified header: only a configured one may pick how the
     * signature is checked (never "none", never HMAC with a public key as the secret). */
    char alg[16];
    const char *kid;
    if (read_header(req, token, alg, sizeof(alg), &kid) != 0)
        return refuse_token(req, "the token is malformed", ret);
    bool is_accepted = false;
    for (size_t k = 0; k < jc->nalgorithms; k++)
        is_accepted |= strcmp(alg, jc->algorithms[k]) == 0;
    if (!is_accepted)
        return refuse_token(req, "the token's algorithm is not accepted", ret);
    /* A key file's key serves every token; a JWKS key is the one the token's kid names. */
    const gd_jwt_key_t *key = NULL;
    for (size_t k = 0; k < jc->nkeys && key == NULL; k++)
        if (jc->keys[k].kid == NULL || (kid != NULL && strcmp(jc->keys[k].kid, kid) == 0))
            key = &jc->keys[k];
    if (key == NULL)
        return refuse_token(req,
                            kid == NULL ? "the token names no key (kid)"
                                        : "the token's key (kid) is not known",
                            ret);
    if (jwt_decode(&jwt, token, key->key, (int)key->key_len) != 0 ||
        jwt_alg_str(jwt_get_alg(jwt)) == NULL || strcmp(jwt_alg_str(jwt_get_alg(jwt)), alg) != 0) {
        r = refuse_token(req, "the token's signature is not valid", ret);
        goto out;
    }
    grants = jwt_get_grants_json(jwt, NULL);
    claims = grants != NULL ? json_loads(grants, 0, NULL) : NULL;
    free(grants);
    if (!json_is_object(claims)) {
        r = refuse_token(req, "the token is malformed", ret);
        goto out;
    }
    if ((r = check_claims(jc, req, claims, ret)) == 0) {
        *ret_claims = claims;
        claims = NULL;
    }
out:
    json_decref(claims);
    if (jwt != NULL)
        jwt_free(jwt);
    return r;
}

int gd_auth_fill_claims(const gd_endpoint_conf_t *ep, h2o_req_t *req, const json_t *claims,
                        gd_strv_t *values, gd_auth_refusal_t *ret_refusal)
{
    for (size_t i = 0; i < ep->nparams; i++) {
        const gd_param_t *p = &ep->params[i];
        if (p->src != GD_SRC_JWT)
            continue;
        json_t *c = json_object_get(claims, p->key);
        if (json_is_string(c)) {
            values[i] = (gd_strv_t){json_string_value(c), json_string_length(c)};
        } else if (json_is_integer(c)) {
            char *s = h2o_mem_alloc_pool(&req->pool, 24);
            int n = snprintf(s, 24, "%" JSON_INTEGER_FORMAT, json_integer_value(c));
            values[i] = (gd_strv_t){s, (size_t)n};
        } else {
            return forbid(req, "the token lacks the claim ", p->key,
                          " (a string or an integer) that this endpoint needs", ret_refusal);
        }
    }
    return 0;
}

int gd_auth_check(const gd_auth_conf_t *auth, h2o_req_t *req, json_t **ret_claims,
                  gd_auth_refusal_t *ret_refusal)
{
    ssize_t i;

    *ret_claims = NULL;
    if (auth == NULL)
        return 0;
    if (auth->jwt != NULL)
        return check_jwt(auth->jwt, req, ret_claims, ret_refusal);
    i = h2o_find_header_by_str(&req->headers, auth->api_key_header, strlen(auth->api_key_header),
                               -1);
    ret_refusal->status = 401;
    ret_refusal->code = "unauthorized";
    ret_refusal->challenge = auth->api_key_challenge;
    if (i < 0 || req->headers.entries[i].value.len == 0) {
        ret_refusal->message = "an API key is required";
        return GD_AUTH_MISSING;
    }
    /* A second field of the same name is refused: which one a proxy would look at is unclear. */
    if (h2o_find_header_by_str(&req->headers, auth->api_key_header, strlen(auth->api_key_header),
                               i) >= 0 ||
        !gd_auth_is_api_key(auth, req->headers.entries[i].value.base,
                            req->headers.entries[i].value.len)) {
        ret_refusal->message = "the API key is not valid";
        return GD_AUTH_INVALID;
    }
    return 0;
}
