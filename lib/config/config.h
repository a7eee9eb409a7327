/*
 * gd_config: the daemon's JSON config, loaded with jansson and validated whole before anything
 * starts. Every error names its place: file:line:column for syntax, the JSON path for the rest
 * ("endpoints[1].calls.user.upstream: unknown upstream \"acounts\""). The loaded config is
 * immutable and shared read-only by all threads. README.md documents every key.
 */
#ifndef GD_CONFIG_H
#define GD_CONFIG_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/ratelimit.h"
#include "config/expr.h"
#include "config/template.h"

#define GD_CONFIG_MAX_DURATION_MS 86400000u
/* The most earlier configs that may still be finishing their requests when a reload is
 * accepted: one more is refused until they have (each thread holds pools for each of them). */
#define GD_CONFIG_MAX_FINISHING 2

typedef enum gd_param_type {
    GD_PARAM_STRING,
    GD_PARAM_INT,
    GD_PARAM_PATTERN,
    GD_PARAM_INT_LIST,    /* ?ids=1,2,3 or ?ids=1&ids=2: a Postgres array literal "{1,2,3}" */
    GD_PARAM_STRING_LIST, /* the same of strings: "{\"a\",\"b\"}" */
} gd_param_type_t;

/* A "for_each" call's defaults: items under way at once, and the most items it takes. */
#define GD_FOR_EACH_DEFAULT_CONCURRENCY 10
#define GD_FOR_EACH_DEFAULT_MAX_ITEMS 100
#define GD_FOR_EACH_MAX_ITEMS 10000

/* The most items a list parameter takes unless its "max_items" says otherwise. */
#define GD_PARAM_DEFAULT_MAX_ITEMS 100

/* A request parameter: declared in "params", or used by a template. */
typedef struct gd_param {
    /* read-only */
    char *name;         /* as in templates: "id", "query.limit", "header.x-tenant" (lower-case) */
    char *key;          /* without the prefix: "id", "limit", "x-tenant" */
    gd_src_t src;
    size_t path_index;  /* GD_SRC_PATH: index among the route's captures (0-based) */
    gd_param_type_t type;
    regex_t pattern;    /* GD_PARAM_PATTERN: compiled "^(?:src)$" equivalent, REG_EXTENDED|REG_NOSUB */
    char *pattern_src;  /* GD_PARAM_PATTERN: as written */
    bool is_required;
    char *default_value; /* owned; "" when none (a list's: its array literal, "{}" when none) */
    size_t max_items;    /* a list's: more items are a 400 */
} gd_param_t;

/* upstreams.NAME.tls: what an https:// upstream is verified against and presents. */
typedef struct gd_tls_conf {
    /* read-only; NULL when absent */
    char *ca_file;          /* PEM trust anchors instead of the system CA store */
    char *server_name;      /* SNI and the name the certificate must carry, instead of the host */
    char *client_cert_file; /* PEM certificate (chain) for mTLS, with client_key_file */
    char *client_key_file;
    int min_version; /* 12 (TLS 1.2, the default) or 13 */
} gd_tls_conf_t;

/* A request header of fixed value (an upstream's "headers": env references substituted). */
typedef struct gd_header {
    /* read-only */
    char *name;  /* as written */
    char *value; /* may hold a secret from the environment: never logged */
} gd_header_t;

/* "status_map": an upstream status and the status it gives the answer. */
typedef struct gd_status_map_entry {
    /* read-only */
    int upstream_status; /* 100..599 */
    int answer_status;   /* 400..599 */
} gd_status_map_entry_t;

/* Call failures as "retry.on" and "breaker.on" list them: kinds of failure, and upstream
 * statuses 400 to 599, one bit each. */
typedef struct gd_failure_set {
    bool connect, io, timeout, tls;
    uint64_t statuses[4]; /* bit (status - 400) */
} gd_failure_set_t;

static inline bool gd_failure_set_has_status(const gd_failure_set_t *set, int status)
{
    unsigned bit = (unsigned)(status - 400);

    return status >= 400 && status <= 599 && ((set->statuses[bit / 64] >> (bit % 64)) & 1) != 0;
}

/* "retry" of an upstream or a call: which failures of an idempotent call are tried again. */
typedef struct gd_retry_conf {
    /* read-only */
    unsigned attempts; /* the first included; 1: no retries (the default) */
    uint64_t backoff_ms, max_backoff_ms; /* the wait before retry n: random in [0, min(max, base*2^(n-1))] */
    uint64_t attempt_timeout_ms;         /* 0: an attempt may take all of the call's time */
    uint64_t hedge_after_ms; /* a second attempt when the first has no answer by then; 0: none */
    unsigned budget_percent;             /* retries per 100 calls of the last 10 s, process-wide */
    unsigned min_retries_per_s;          /* the budget's floor */
    gd_failure_set_t on; /* the failures that are retried */
} gd_retry_conf_t;

typedef struct gd_upstream_conf {
    /* read-only */
    char *name;
    size_t index; /* position in gd_config_t.upstreams */
    /* As written, {env.NAME} references unexpanded: the only form of the URL that is ever
     * logged or shown, since an expanded reference may be a secret. */
    char *url;
    char *place;  /* "upstreams.NAME" as config errors name it */
    bool is_tls;  /* https:// */
    gd_tls_conf_t tls;
    /* The host for log lines and messages: host itself, or url when the URL has {env.NAME}. */
    char *host_shown;
    char *host; /* without brackets for IPv6; from the expanded URL */
    uint16_t port;
    char *base_path; /* "" or "/base" without a trailing slash */
    bool is_host_numeric; /* host is an IPv4/IPv6 literal: no DNS */
    size_t max_connections;
    uint64_t connect_timeout_ms;
    uint64_t keepalive_timeout_ms;
    uint64_t dns_refresh_ms; /* a named host is looked up again this often */
    size_t max_body_bytes; /* of the body as sent, and decoded when gzip-coded */
    bool accepts_gzip;     /* calls send Accept-Encoding: gzip */
    char *host_header;    /* "host": sent as Host instead of HOST[:PORT] of the URL; NULL: none */
    gd_header_t *headers; /* "headers", sent on every call unless the call sets the same name */
    size_t nheaders;
    char **forward_headers; /* lower-case names of client headers copied to the calls */
    size_t nforward_headers;
    int *null_on; /* statuses that give a null value, as success */
    size_t nnull_on;
    gd_status_map_entry_t *status_map;
    size_t nstatus_map;
    gd_retry_conf_t retry;
    /* Mutable, shared by every thread (atomics): the retries this upstream may still add. */
    struct gd_retry_budget *retry_budget;
    /* "breaker": mutable, shared by every thread (atomics); NULL without one */
    struct gd_breaker *breaker;
    gd_failure_set_t breaker_on; /* the call outcomes it counts as failures */
    /* "rate_limit": mutable, shared by every thread (atomics); NULL without one */
    struct gd_pacer *rate_limit;
    /* "rate_limit.scope": "cluster": the tokens come from Redis (rate_limit then only gives
     * the interval and tolerance), and rate_limit_local, at redis.local_share of the rate,
     * stands in while Redis does not answer in time. */
    bool is_rate_cluster;
    struct gd_pacer *rate_limit_local; /* owned, with is_rate_cluster; NULL otherwise */
    char *rate_key;                    /* owned: the limit's Redis key, with is_rate_cluster */
    /* "max_in_flight": calls at once for the whole process, 0: no cap. The budget of its units
     * is shared by the threads (mutable, created by the loader with one member per thread);
     * NULL without a cap. */
    size_t max_in_flight;
    struct gd_budget *in_flight;
    /* Mutable, shared by every thread (atomics): how long calls waited, for the metrics. */
    struct gd_waits *waits;
    size_t metrics_slot; /* its series in gd_metrics, by name (see gd_metrics_keys_assign()) */
    /* private: GD_CONFIG_LENT_* of the mutable objects above that a newer config took over
     * at a reload (gd_config_carry()): this one borrows them and does not free them */
    unsigned _lent;
} gd_upstream_conf_t;

/* What of an upstream's mutable state a newer config took over (gd_upstream_conf_t._lent). */
#define GD_CONFIG_LENT_RETRY_BUDGET (1u << 0)
#define GD_CONFIG_LENT_BREAKER      (1u << 1)
#define GD_CONFIG_LENT_RATE_LIMIT   (1u << 2)
#define GD_CONFIG_LENT_IN_FLIGHT    (1u << 3)
#define GD_CONFIG_LENT_WAITS        (1u << 4)

typedef struct gd_header_template {
    /* read-only */
    char *name; /* as written */
    gd_template_t value;
} gd_header_template_t;

/* A piece of a call's JSON body template ("body": {...}): literal JSON text, then a value. */
typedef struct gd_body_part {
    /* read-only */
    char *json; /* owned literal JSON text written before the value */
    size_t json_len;
    bool has_value; /* false for the last part only */
    bool is_typed;  /* the value is exactly one {param} of type int: a JSON number (empty: null) */
    bool is_json; /* the value is exactly one reference to a call's result: JSON, inserted as is */
    gd_template_t value; /* expanded without encoding, then written as a JSON string */
} gd_body_part_t;

/* Where a reference to a call's result sits in a call's templates: what its value may be. */
typedef enum gd_ref_use {
    GD_REF_URL,       /* in the path: a string, number or boolean, percent-encoded */
    GD_REF_TEXT,      /* inside a header value, a body string or a SQL argument: the same */
    GD_REF_SQL_VALUE, /* a whole SQL argument: also null (NULL), an array (a Postgres array) or
                       * an object (its JSON text) */
    GD_REF_JSON,      /* a whole string of a JSON body: the value as JSON, of any type */
    GD_REF_WHEN,      /* "when": only whether it is true (a missing field is false) */
} gd_ref_use_t;

/* A reference to another call's result in a call's templates. Its value, rendered once that
 * call has finished, is values[endpoint's nparams + its index in the endpoint's refs]. */
typedef struct gd_call_ref {
    /* read-only */
    gd_expr_t expr; /* GD_EXPR_CALL or GD_EXPR_COUNT: expr.index is the call referenced */
    gd_ref_use_t use;
    char *text; /* as written, "{user.company_id}", for messages */
} gd_call_ref_t;

typedef enum gd_call_type {
    GD_CALL_TYPE_HTTP, /* "upstream": an upstream HTTP call */
    GD_CALL_TYPE_SQL,  /* "sql": a Postgres query */
} gd_call_type_t;

/* The most keys "fields", "omit" and "rename" each list. */
#define GD_RESHAPE_MAX_KEYS 256

/* A key of a call's result, decoded (UTF-8; it may hold a NUL). */
typedef struct gd_key_conf {
    /* read-only */
    char *s; /* owned */
    size_t len;
} gd_key_conf_t;

/* One "rename" entry: a key of the result and the name it takes. */
typedef struct gd_rename_conf {
    /* read-only */
    gd_key_conf_t from;
    gd_key_conf_t to;      /* the new name */
    gd_key_conf_t to_json; /* the same as a JSON string, quotes included */
} gd_rename_conf_t;

/* A call's own shaping of its result (gather/reshape.h): "select", then "fields" or "omit",
 * then "rename". */
typedef struct gd_reshape_conf {
    /* read-only */
    bool has_select;
    gd_expr_t select;    /* a path (gd_expr_path_compile()) */
    char *select_text;   /* as written, for messages */
    gd_key_conf_t *keys; /* "fields" or "omit" */
    size_t nkeys;        /* 0: neither */
    bool is_omit;        /* keys are "omit", else "fields" */
    gd_rename_conf_t *renames;
    size_t nrenames;
} gd_reshape_conf_t;

/** Frees @r and what it owns (NULL is a no-op). Returns NULL. */
gd_reshape_conf_t *gd_reshape_conf_free(gd_reshape_conf_t *r);

/* A call's "cache": its results kept for later identical calls, and identical calls in flight
 * coalesced into one. */
typedef struct gd_call_cache_conf {
    /* read-only */
    uint64_t ttl_ms;          /* how long a success is kept; 0: the call has no cache */
    uint64_t negative_ttl_ms; /* how long an answered failure (status, not_found) is; 0: never */
    bool honor_cache_control; /* the upstream's max-age / no-store decide a success's lifetime */
    bool is_shared;           /* "shared": successes also go to Redis, looked up there on a miss */
    /* What besides the rendered request decides the result: the call's settings that shape
     * it (canonical JSON of the call without its timing keys), so that two calls share their
     * entries only when they would make the same document of the same answer. */
    char *variant;
    size_t variant_len;
} gd_call_cache_conf_t;

typedef struct gd_call_conf {
    /* read-only */
    gd_call_type_t type;
    size_t source; /* the thread's source of this call: an upstream's index, or nupstreams for SQL */
    char *name;
    char *name_json; /* the name as a JSON string with quotes, escaped: "\"user\"" */
    /* GD_CALL_TYPE_HTTP */
    const gd_upstream_conf_t *upstream; /* borrowed from the config */
    char *method;
    gd_template_t path; /* the upstream's base_path is NOT part of it */
    gd_header_template_t *headers; /* the call's own "headers" */
    size_t nheaders;
    bool is_body_forwarded; /* "body": "{body}": the client's body and Content-Type, unchanged */
    gd_body_part_t *body_parts; /* "body": {...} or [...]: a JSON template, else NULL */
    size_t nbody_parts;
    /* may be sent again (retries): HTTP GET HEAD PUT DELETE OPTIONS, SQL a plain SELECT */
    bool is_idempotent;
    /* the call's own "retry", else the upstream's (HTTP) or the postgres section's (SQL) */
    gd_retry_conf_t retry;
    /* The upstream's headers the call does not set itself, as header lines ("name: value\r\n"
     * each; "" when none). May hold secrets: never logged. */
    char *upstream_header_lines;
    size_t upstream_header_lines_len;
    char **forward_headers; /* lower-case; the call's own list, else the upstream's */
    size_t nforward_headers;
    int *null_on; /* the call's own list, else the upstream's */
    size_t nnull_on;
    /* The call's entries, then the upstream's for the statuses the call does not map. */
    gd_status_map_entry_t *status_map;
    size_t nstatus_map;
    /* GD_CALL_TYPE_SQL */
    size_t statement;    /* index into gd_config_t.statements */
    gd_template_t *args; /* one per $n placeholder, expanded without percent-encoding */
    size_t nargs;
    bool is_one_row;     /* "row": "one" */
    size_t max_rows;     /* more rows fail the call with too_large (own, or the pool's default) */
    size_t max_body_bytes; /* so does a larger JSON rendering of the rows */
    uint64_t timeout_ms; /* already min(own, endpoint's) */
    bool is_optional;
    /* Dependencies: the calls this one waits for (its references to their results and its
     * "after"), distinct, in config order. */
    size_t *needs;
    size_t nneeds;
    size_t first_ref, nrefs; /* its references: the endpoint's refs[first_ref..+nrefs] */
    bool has_when;
    gd_template_t when; /* "when": one value, a parameter's or a reference's */
    gd_call_cache_conf_t cache;
    gd_reshape_conf_t *reshape; /* "select", "fields", "omit", "rename"; NULL: none */
    /* "for_each": the call runs once per item of this value (gather/fanout.h), {item} bound to
     * the item; a call's result (GD_EXPR_CALL, the call in needs) or a list parameter
     * (GD_EXPR_PARAM). Its references to {item} have expr.index == the endpoint's ncalls. */
    bool has_for_each;
    gd_expr_t for_each;
    char *for_each_text; /* as written, for messages */
    size_t concurrency;  /* items under way at once */
    size_t max_items;    /* more fail the call with too_large before any starts */
    size_t metrics_slot;        /* its series in gd_metrics, by endpoint and call name */
} gd_call_conf_t;

/* "cors": which browser origins may call, by the Fetch standard's CORS protocol. */
typedef struct gd_cors_conf {
    /* read-only */
    char **origins; /* "scheme://host[:port]" as written (compared case-insensitively) */
    size_t norigins;
    bool is_any_origin; /* "*": every origin, answered "Access-Control-Allow-Origin: *" */
    char **methods;     /* NULL: the method of the endpoint asked for */
    size_t nmethods;
    char *methods_joined; /* "GET, POST"; NULL with methods */
    char **headers;       /* request headers a preflight may ask for, lower-case */
    size_t nheaders;
    char *headers_joined;        /* "content-type, x-request-id" */
    bool has_default_headers;    /* "headers" absent: the endpoint's header parameters count too */
    char *expose_headers_joined; /* "" when none */
    bool has_credentials;
    unsigned max_age_s;
} gd_cors_conf_t;

/* "compress": gzip-coded answers for clients that accept them. */
typedef struct gd_compress_conf {
    /* read-only */
    bool is_enabled;
    size_t min_bytes; /* smaller bodies are sent as they are */
    int level;        /* zlib's, 1..9 */
} gd_compress_conf_t;

/* "auth.jwt.required_claims": a claim and the value it must have (or contain). */
typedef struct gd_claim_rule {
    /* read-only */
    char *name;
    char *value;
} gd_claim_rule_t;

/* A key JWTs may be signed with: a key_file's, or one of a JWKS file's. */
typedef struct gd_jwt_key {
    /* read-only */
    char *kid;          /* a JWKS key's "kid"; NULL for key_file's key */
    unsigned char *key; /* the HMAC secret, or a PEM public key; may be secret: never logged */
    size_t key_len;
} gd_jwt_key_t;

/* "auth.jwt": bearer tokens (RFC 7519) verified against a key file or a JWKS file. */
typedef struct gd_jwt_conf {
    /* read-only */
    char **algorithms; /* "HS256", ...: all of one family, matching every key */
    size_t nalgorithms;
    gd_jwt_key_t *keys; /* key_file: one, without kid; jwks_file: those of the family, by kid */
    size_t nkeys;
    char *issuer;   /* "iss" must equal it; NULL: not checked */
    char *audience; /* "aud" must be or contain it; NULL: not checked */
    unsigned leeway_s;
    gd_claim_rule_t *required_claims; /* a mismatch is a 403 */
    size_t nrequired_claims;
} gd_jwt_conf_t;

/* "auth": who may call an endpoint. */
typedef struct gd_auth_conf {
    /* read-only */
    char *api_key_header; /* "api_keys": the request header holding the key, lower-case; NULL:
                           * no API keys */
    unsigned char (*api_key_hashes)[32]; /* SHA-256 of each key: keys themselves are not kept */
    size_t napi_keys;
    char *api_key_challenge; /* the WWW-Authenticate of a 401 */
    gd_jwt_conf_t *jwt;      /* owned; NULL: no bearer tokens */
} gd_auth_conf_t;

/* What "client_rate_limit" counts by. */
typedef enum gd_rate_key {
    GD_RATE_KEY_CLIENT,  /* the client's address (see trusted_proxies) */
    GD_RATE_KEY_API_KEY, /* the API key (its SHA-256) */
    GD_RATE_KEY_JWT,     /* a claim of the verified JWT */
} gd_rate_key_t;

/* "client_rate_limit": a token bucket per client. */
typedef struct gd_rate_limit_conf {
    /* read-only */
    uint64_t requests, per_ms, burst;
    gd_rate_key_t key;
    char *claim; /* GD_RATE_KEY_JWT: the claim's name */
    size_t max_keys;
    /* The buckets: mutable, thread-safe, made at load and freed with the config (unless
     * _is_lent: a newer config took them over at a reload and frees them). */
    gd_ratelimit_t *limiter;
    bool _is_lent;
    char *limit_header; /* RateLimit-Limit's value: "20" */
    /* "scope": "cluster": the buckets are held in Redis (a GCRA of interval_us, tolerance_us
     * at keys redis_key + the client's key), limiter being the local stand-in at
     * redis.local_share of the rate while Redis does not answer in time. */
    bool is_cluster;
    uint64_t interval_us, tolerance_us;
    char *redis_key; /* owned, with is_cluster: "PREFIXrl:client:METHOD PATH:" ("*" top level) */
} gd_rate_limit_conf_t;

/* One segment of an endpoint's path pattern. */
typedef struct gd_path_segment {
    /* read-only */
    bool is_capture;
    char *text; /* literal text, or the capture's name */
} gd_path_segment_t;

typedef struct gd_endpoint_conf {
    /* read-only */
    size_t index; /* position in gd_config_t.endpoints */
    char *method;
    char *path; /* as written */
    gd_path_segment_t *segments;
    size_t nsegments;
    size_t ncaptures;
    gd_param_t *params; /* every declared or template-referenced parameter; captures first, in order */
    size_t nparams;
    gd_call_conf_t *calls; /* in config order */
    size_t ncalls;
    uint64_t timeout_ms;
    const gd_cors_conf_t *cors;  /* its own, else the top level's; NULL: no CORS */
    gd_cors_conf_t *own_cors;    /* owned; NULL when inherited or "cors": false */
    gd_compress_conf_t compress; /* its own, else the top level's */
    char *cache_control;         /* on complete 2xx answers; NULL: none */
    bool has_etag; /* complete 200 answers carry a strong ETag; If-None-Match gives 304 */
    const gd_auth_conf_t *auth; /* its own, else the top level's; NULL: anyone may call */
    gd_auth_conf_t *own_auth;   /* owned; NULL when inherited or "auth": false */
    const gd_rate_limit_conf_t *rate_limit; /* its own, else the top level's; NULL: none */
    gd_rate_limit_conf_t *own_rate_limit;   /* owned; NULL when inherited or false */
    gd_response_t *response; /* "response": the answer's template; NULL: the merged document */
    gd_call_ref_t *refs;     /* the calls' references to other calls' results, by call */
    size_t nrefs;
    /* Some call waits for another (a "when" of parameters only is no dependency): the calls
     * start in call_order as what each needs arrives. Without, all start at once. */
    bool has_dependencies;
    size_t *call_order; /* each call after those it needs; NULL without dependencies */
    /* "for_each" on the endpoint: a batch endpoint, whose calls and response run once per item
     * of the list parameter params[batch_list], with {item} (params[batch_item], of src
     * GD_SRC_ITEM: an int or a string) bound to it; the answer is the array of the runs'. */
    bool is_batch;
    size_t batch_list, batch_item;
    size_t batch_concurrency; /* runs under way at once */
    size_t batch_max_items;   /* more items are the client's error (400) */
    size_t metrics_slot; /* its series in gd_metrics, by method and path */
} gd_endpoint_conf_t;

typedef struct gd_listen_conf {
    /* read-only */
    char *text; /* as written */
    struct sockaddr_storage addr;
    socklen_t addrlen;
} gd_listen_conf_t;

/* What a Postgres outage does to /readyz ("readiness"). */
typedef enum gd_pg_readiness {
    /* 503 until every worker's pool has had a live connection; afterwards an outage is
     * reported in the body of a 200 (the default) */
    GD_PG_READINESS_FIRST_CONNECT = 0,
    GD_PG_READINESS_CONNECTED, /* 503 whenever a worker's pool has no live connection */
    GD_PG_READINESS_IGNORED,   /* never 503 for Postgres, only reported */
} gd_pg_readiness_t;

typedef struct gd_postgres_conf {
    /* read-only */
    char *conninfo; /* "" = libpq's PG* environment */
    size_t pool_size;
    /* "pipeline_depth": plain reads per batch (one write, one Sync) on a connection at most */
    size_t pipeline_depth;
    uint64_t acquire_timeout_ms;
    uint64_t connect_timeout_ms;
    gd_pg_readiness_t readiness;
    size_t max_rows;       /* default of every SQL call's max_rows */
    size_t max_body_bytes; /* default of every SQL call's max_body_bytes */
    /* "prepared": statements are prepared once per connection; false: every query is sent
     * unprepared (for PgBouncer in transaction pooling mode) */
    bool is_prepared;
    /* "retry": the default of every SQL call's, with the budget of all of them */
    gd_retry_conf_t retry;
    /* Mutable, shared by every thread (atomics): the retries SQL calls may still add. */
    struct gd_retry_budget *retry_budget;
    bool _is_retry_budget_lent; /* a newer config took it over at a reload */
} gd_postgres_conf_t;

/* Log settings; levels in the order of gd_log_level_t (config sits beside log, not above). */
typedef struct gd_log_conf {
    /* read-only */
    bool is_json;
    int level; /* 0 error, 1 warn, 2 info, 3 debug */
} gd_log_conf_t;

/* A network in "trusted_proxies": an address and a prefix length. IPv4 is kept as 4 bytes. */
typedef struct gd_cidr {
    /* read-only */
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* the network, host bits cleared */
    unsigned prefix_len;
} gd_cidr_t;

typedef struct gd_config {
    /* read-only */
    char *source; /* the file name (or the name given to gd_config_load_string) */
    gd_listen_conf_t *listen;
    size_t nlisten;
    unsigned threads; /* 0 resolved to the number of online CPUs */
    bool is_http2_enabled;
    unsigned http2_reset_budget; /* streams reset before their answer; 0: no limit */
    bool expose_error_details; /* answers carry each failed call's own message, not a fixed text */
    size_t max_requests_in_flight;
    size_t max_request_body_bytes; /* a larger client body is answered 413 */
    uint64_t slow_loop_ms;         /* an event-loop turn busier than this is logged; 0: never */
    size_t max_url_bytes;          /* a longer request target is answered 414 */
    size_t max_header_bytes;       /* more bytes of header fields are answered 431 */
    size_t max_headers;            /* more header fields are answered 431 */
    size_t max_client_connections; /* 0: half the open-files limit, resolved at start */
    uint64_t queue_timeout_ms; /* 0: no queue, 503 at once when every slot is taken */
    uint64_t write_timeout_ms; /* an answer taking no progress this long closes its connection */
    size_t max_unsent_bytes_per_connection; /* answer bytes held for one connection's client */
    size_t max_unsent_bytes;                /* and for all clients of the process */
    size_t coroutine_stack_bytes;
    uint64_t drain_delay_ms;
    uint64_t shutdown_timeout_ms;
    gd_upstream_conf_t *upstreams;
    size_t nupstreams;
    gd_endpoint_conf_t *endpoints;
    size_t nendpoints;
    bool has_postgres; /* a "postgres" section was given */
    gd_postgres_conf_t postgres;
    char **statements;      /* the distinct SQL texts of all SQL calls */
    int *statement_nparams; /* the number of $n placeholders of each */
    /* Of each: a plain select with no INTO and no row lock, which may share a batch of
     * queries (postgres.pipeline_depth) when its call is idempotent too */
    bool *statement_is_batchable;
    size_t nstatements;
    bool has_admin; /* admin_listen is not null */
    gd_listen_conf_t admin_listen;
    gd_log_conf_t log;
    gd_cors_conf_t *cors;        /* owned; NULL: no CORS unless an endpoint has its own */
    gd_compress_conf_t compress; /* the default of every endpoint, and of unmatched paths */
    gd_auth_conf_t *auth;        /* owned; NULL: endpoints without their own "auth" are open */
    gd_rate_limit_conf_t *rate_limit; /* owned; shared by every endpoint without its own */
    gd_cidr_t *trusted_proxies;  /* peers whose X-Forwarded-For / Forwarded is believed */
    size_t ntrusted_proxies;
    size_t cache_max_bytes; /* the response cache's bound, for the whole process */
    /* mutable, shared by every thread: the response cache; NULL when no call has "cache" */
    struct gd_ttlcache *cache_store;
    uint64_t cache_max_ttl_ms; /* the longest lifetime a call gives its results (the store's cap) */
    /* The document as loaded (jansson, sorted keys kept by json_equal()), for what a reload
     * compares; touched by the thread that loads configs only. */
    struct json_t *document;
    char hash[17]; /* FNV-1a 64 of the canonical (sorted, compact) document, in hex */
    /* private: a newer config took the cache store over at a reload */
    bool _is_cache_store_lent;
    /* "redis" (restart-only): a reload hands the running config's to the next, whose
     * workers' connections (sources/redis) borrow it and its stats (gd_config_carry()) */
    struct gd_redis_conf *redis; /* owned; NULL: no "redis", no cluster scope */
} gd_config_t;

/* "redis": shared state for many replicas (sources/redis/redis.h). */
typedef struct gd_redis_conf {
    char *url;            /* as written ({env.NAME} unexpanded): the only form that is logged */
    char *host;           /* from the expanded URL, without brackets for IPv6 */
    uint16_t port;        /* default 6379 */
    bool is_host_numeric; /* an IP literal: no lookup */
    unsigned db;          /* the URL's /DB, SELECTed on connect when not 0 */
    char *user;           /* AUTH user (Redis 6 ACL); NULL: none */
    char *password;       /* expanded; NULL: no AUTH. Never logged. */
    uint64_t timeout_ms;  /* a command without an answer this long is given up */
    uint64_t connect_timeout_ms;  /* connect + AUTH/SELECT/PING */
    size_t pool_size;             /* connections per worker thread */
    char *key_prefix;             /* before every key gatherd writes */
    double local_share;           /* of a cluster limit's rate enforced locally while down */
    size_t cache_max_entry_bytes; /* a larger result is not put in the shared cache */
    /* mutable, shared by every thread (atomics): the metrics of the connections */
    struct gd_redis_stats *stats;
} gd_redis_conf_t;

/* The largest config file (a 40,000-endpoint config is 3.5 MB): beyond it, -EFBIG. */
#define GD_CONFIG_MAX_BYTES (16 << 20)

/**
 * Loads and validates the config file @path. On success *@ret_config is a new config (free with
 * gd_config_free()). Returns 0, or -EINVAL (bad config) / -errno (unreadable file) with a
 * one-line message in @err (@errlen bytes) that starts with the file name.
 */
int gd_config_load_file(const char *path, gd_config_t **ret_config, char *err, size_t errlen);
/** Same as gd_config_load_file() for config text @json, with @name standing for the file name. */
int gd_config_load_string(const char *json, const char *name, gd_config_t **ret_config, char *err,
                          size_t errlen);
/** Frees @config (NULL is a no-op). Returns NULL. */
gd_config_t *gd_config_free(gd_config_t *config);

#endif
