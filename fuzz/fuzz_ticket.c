/*
 * libFuzzer target for the hub's session ticket parser (sync/tls_session.c,
 * ts_tls_ticket_parse): a ticket is bytes a client sends. The first input
 * byte picks the form: odd, the rest is offered as it is (the key id and
 * lengths a stranger controls); even, the rest is first sealed under the
 * context's ticket key, so the fuzzer reaches what only a ticket that opens
 * carries (certificate length, DER, mbedTLS's session serialisation).
 */
#define _GNU_SOURCE /* tls_int.h needs POSIX types (dev_t, ino_t) */
#include "tls_int.h"

#include <mbedtls/gcm.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY_ID 0x01020304u

static enum ts_err fixed_keys(void *ud, int64_t now_ms, int lifetime_s,
                              struct ts_tls_ticket_key keys[2], size_t *n)
{
    (void)ud;
    (void)lifetime_s;
    memset(keys, 0, 2 * sizeof *keys);
    keys[0].id = KEY_ID;
    keys[0].created_ms = now_ms;
    memset(keys[0].key, 0x42, sizeof keys[0].key);
    *n = 1;
    return TS_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ts_tls_ctx ctx;
    static bool ready;
    if (!ready) {
        pthread_mutex_init(&ctx.tk_mu, NULL);
        ctx.server = ctx.tickets = true;
        ctx.session_lifetime_ms = 3600 * 1000;
        ctx.ticket_keys = fixed_keys;
        ready = true;
    }
    if (size < 1)
        return 0;
    size_t n = size - 1, len = n;
    unsigned char *buf = malloc(4 + 12 + 16 + n + 1);
    if (!buf)
        return 0;
    if (data[0] & 1) {
        memcpy(buf, data + 1, n);
    } else {
        unsigned char key[32];
        memset(key, 0x42, sizeof key);
        buf[0] = 1, buf[1] = 2, buf[2] = 3, buf[3] = 4;
        memset(buf + 4, 7, 12);
        mbedtls_gcm_context gcm;
        mbedtls_gcm_init(&gcm);
        if (mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 256) != 0 ||
            mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, n, buf + 4, 12, buf, 4, data + 1,
                                      buf + 32, 16, buf + 16) != 0)
            __builtin_trap();
        mbedtls_gcm_free(&gcm);
        len = 32 + n;
    }
    struct ts_tls_conn conn;
    memset(&conn, 0, sizeof conn);
    conn.ctx = &ctx;
    ts_tls_tl_conn = &conn;
    mbedtls_ssl_session session;
    mbedtls_ssl_session_init(&session);
    int ret = ts_tls_ticket_parse(&ctx, &session, buf, len);
    /* A ticket taken must name a verified peer and keep its certificate. */
    if (ret == 0 && (!conn.ticket_ok || !conn.ticket_cert || !conn.ticket_cert_len))
        __builtin_trap();
    mbedtls_ssl_session_free(&session);
    free(conn.ticket_cert);
    ts_tls_tl_conn = NULL;
    free(buf);
    return 0;
}
