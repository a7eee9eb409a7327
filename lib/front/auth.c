#include "front/auth.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

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

int gd_auth_check(const gd_auth_conf_t *auth, h2o_req_t *req, gd_auth_refusal_t *ret_refusal)
{
    ssize_t i;

    if (auth == NULL || auth->api_key_header == NULL)
        return 0;
    i = h2o_find_header_by_str(&req->headers, auth->api_key_header, strlen(auth->api_key_header),
                               -1);
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
