/*
 * TLS session ticket keys shared by the hub processes on one PostgreSQL
 * database (sync/tls.h, ts_tls_ticket_keys_fn), so a terminal resumes its
 * session on whichever process a round-robin balancer sends it to.
 *
 * Whichever process first finds no key younger than the session lifetime
 * makes one, in a write transaction (on PostgreSQL the writers' advisory
 * lock: two processes never both make one); the others read it at their
 * next look (once a minute, or at once when a ticket names a key they do
 * not hold). Each process uses the newest two: the newest seals, both open.
 * A key older than twice the lifetime can open no ticket still within its
 * lifetime and is deleted.
 *
 * The keys are stored sealed (AES-256-GCM, the row id as AAD) under a key
 * derived from the tenant key (HMAC-SHA256(tenant key, "tls ticket keys")),
 * so a copy of the database alone (a backup, a read-only role) does not let
 * anyone forge a ticket, that is, pass for a terminal without its private
 * key. A row sealed under a tenant key version this hub does not hold is
 * skipped. docs/ARCHITECTURE.md, "Session tickets across hub processes".
 */
#include "ticketkeys.h"
#include "db.h"

#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include <string.h>

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS tls_ticket_keys(id INTEGER PRIMARY KEY, created INTEGER NOT NULL,"
    "  kv INTEGER NOT NULL, sealed TEXT NOT NULL);";

/* nonce[12] | tag[16] | key[32], in hex */
#define SEALED_BYTES (12 + 16 + 32)

/* The wrapping key of tenant key k. */
static int wrap_key(const struct ts_tenant_key *k, unsigned char out[32])
{
    static const char label[] = "tls ticket keys";
    return mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), k->key, k->len,
                           (const unsigned char *)label, sizeof label - 1, out);
}

/* Seals or opens key for row id under tenant key k; 0 on success. */
static int seal(const struct ts_tenant_key *k, uint32_t id, bool open, unsigned char box[],
                unsigned char key[32])
{
    unsigned char kek[32], aad[4] = {(unsigned char)(id >> 24), (unsigned char)(id >> 16),
                                     (unsigned char)(id >> 8), (unsigned char)id};
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int ret = wrap_key(k, kek);
    if (ret == 0 && !open)
        ret = ts_random(box, 12) == TS_OK ? 0 : -1;
    if (ret == 0)
        ret = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, kek, 256);
    if (ret == 0)
        ret = open
                  ? mbedtls_gcm_auth_decrypt(&gcm, 32, box, 12, aad, 4, box + 12, 16, box + 28, key)
                  : mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, 32, box, 12, aad, 4, key,
                                              box + 28, 16, box + 12);
    mbedtls_gcm_free(&gcm);
    mbedtls_platform_zeroize(kek, sizeof kek);
    return ret;
}

/* The tenant key of version kv this hub holds, or NULL. */
static const struct ts_tenant_key *tenant_key(struct ts_hub_store *s, int64_t kv)
{
    const struct ts_tenant_key *cur = ts_hub_db_key(s), *prev = ts_hub_db_prev(s);
    return cur->version == kv ? cur : prev && prev->version == kv ? prev : NULL;
}

/* Makes a key now and stores it (writer held); it becomes keys[0]. */
static enum ts_err make_key(struct ts_hub_store *s, int64_t now_ms, struct ts_tls_ticket_key *k)
{
    unsigned char box[SEALED_BYTES];
    char hex[2 * SEALED_BYTES + 1];
    uint32_t id = 0;
    while (id == 0)
        if (ts_random(&id, sizeof id) != TS_OK)
            return TS_ERR_IO;
    id &= 0x7fffffff; /* a positive row id on either database */
    *k = (struct ts_tls_ticket_key){.id = id, .created_ms = now_ms};
    const struct ts_tenant_key *tk = ts_hub_db_key(s);
    if (ts_random(k->key, sizeof k->key) != TS_OK || seal(tk, id, false, box, k->key) != 0)
        return TS_ERR_IO;
    ts_hex_encode(box, sizeof box, hex);
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc = ts_sql_prepare(ts_hub_db_writer(s),
                                    "INSERT INTO tls_ticket_keys(id, created, kv, sealed)"
                                    " VALUES(?1, ?2, ?3, ?4)",
                                    &st);
    if (rc == TS_OK) {
        ts_sql_bind_int64(st, 1, id);
        ts_sql_bind_int64(st, 2, now_ms);
        ts_sql_bind_int64(st, 3, tk->version);
        ts_sql_bind_text(st, 4, hex);
        rc = ts_sql_step(st) == TS_SQL_DONE ? TS_OK : TS_ERR_DB;
    }
    ts_sql_finalize(st);
    return rc ? ts_hub_db_werr(s, "store a session ticket key") : TS_OK;
}

/* The newest two keys this hub can open on db, into keys. */
static enum ts_err load_keys(struct ts_hub_store *s, struct ts_sql *db,
                             struct ts_tls_ticket_key keys[2], size_t *n)
{
    struct ts_sql_stmt *st = NULL;
    *n = 0;
    if (ts_sql_prepare(db,
                       "SELECT id, created, kv, sealed FROM tls_ticket_keys"
                       " ORDER BY created DESC, id DESC LIMIT 8",
                       &st) != TS_OK)
        return ts_hub_db_err(db, "read the session ticket keys");
    int step;
    while (*n < 2 && (step = ts_sql_step(st)) == TS_SQL_ROW) {
        unsigned char box[SEALED_BYTES];
        size_t len = 0;
        const char *hex = ts_sql_column_text(st, 3);
        const struct ts_tenant_key *tk = tenant_key(s, ts_sql_column_int64(st, 2));
        struct ts_tls_ticket_key *k = &keys[*n];
        k->id = (uint32_t)ts_sql_column_int64(st, 0);
        k->created_ms = ts_sql_column_int64(st, 1);
        if (tk && hex && ts_hex_decode(hex, box, sizeof box, &len) == TS_OK && len == sizeof box &&
            seal(tk, k->id, true, box, k->key) == 0)
            (*n)++;
    }
    ts_sql_finalize(st);
    return TS_OK;
}

enum ts_err ts_hub_ticketkeys_schema(struct ts_hub_store *s)
{
    return ts_hub_db_ddl(s, schema_sql);
}

/* Makes a new key when the newest is a lifetime old, and deletes those
 * that can open no live ticket (write transaction: one process makes it). */
static enum ts_err rotate(struct ts_hub_store *s, int64_t now_ms, int64_t life_ms,
                          struct ts_tls_ticket_key keys[2], size_t *n)
{
    enum ts_err rc = ts_hub_db_write_begin(s, 0);
    if (rc)
        return rc;
    if ((rc = load_keys(s, ts_hub_db_writer(s), keys, n)) == TS_OK &&
        (*n == 0 || keys[0].created_ms + life_ms <= now_ms)) {
        keys[1] = keys[0];
        if ((rc = make_key(s, now_ms, &keys[0])) == TS_OK)
            *n = *n ? 2 : 1;
    }
    if (rc == TS_OK) {
        struct ts_sql_stmt *st = NULL;
        if (ts_sql_prepare(ts_hub_db_writer(s), "DELETE FROM tls_ticket_keys WHERE created < ?1",
                           &st) == TS_OK) {
            ts_sql_bind_int64(st, 1, now_ms - 2 * life_ms);
            if (ts_sql_step(st) != TS_SQL_DONE)
                rc = ts_hub_db_werr(s, "delete old session ticket keys");
        } else {
            rc = ts_hub_db_werr(s, "delete old session ticket keys");
        }
        ts_sql_finalize(st);
    }
    return ts_hub_db_write_end(s, rc, false);
}

enum ts_err ts_hub_ticket_keys(void *ud, int64_t now_ms, int lifetime_s,
                               struct ts_tls_ticket_key keys[2], size_t *n)
{
    struct ts_hub_store *s = ud;
    int64_t life_ms = (int64_t)lifetime_s * 1000;
    /* Usually the newest key is young enough: read it on the read side,
     * which never waits for a writer (a long import holds the writers'
     * lock, and handshakes wait for this). */
    enum ts_err rc = load_keys(s, ts_hub_db_read_begin(s, false), keys, n);
    ts_hub_db_read_end(s, false);
    if (rc == TS_OK && (*n == 0 || keys[0].created_ms + life_ms <= now_ms))
        rc = rotate(s, now_ms, life_ms, keys, n);
    if (rc)
        mbedtls_platform_zeroize(keys, 2 * sizeof *keys);
    return rc;
}
