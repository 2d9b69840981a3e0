/*
 * Who the peer is and whether to trust it (see tls.h): the words for
 * verification failures and refusals, the identity read from a
 * certificate, public key pins and the server's revocation hook, both run
 * from mbedTLS's verify callback at the leaf certificate, and the same
 * revocation hook and validity dates for a session a client asks to resume.
 */
#include "tls_int.h"

#include <mbedtls/md.h>
#include <mbedtls/oid.h>

#include <stdio.h>
#include <string.h>

/* Words for the verify flags an operator can act on; the rest in mbedTLS's. */
void ts_tls_describe_verify(uint32_t flags, const char *host, char *err, size_t errsz)
{
    static const struct {
        uint32_t flag;
        const char *text;
    } known[] = {
        {MBEDTLS_X509_BADCERT_MISSING, "no certificate presented"},
        {MBEDTLS_X509_BADCERT_NOT_TRUSTED, "certificate not trusted by the configured CA"},
        {MBEDTLS_X509_BADCERT_EXPIRED, "certificate expired"},
        {MBEDTLS_X509_BADCERT_FUTURE, "certificate not valid yet (check the clock)"},
        {MBEDTLS_X509_BADCERT_REVOKED, "certificate revoked"},
        {MBEDTLS_X509_BADCERT_KEY_USAGE, "certificate key usage does not allow this"},
        {MBEDTLS_X509_BADCERT_EXT_KEY_USAGE,
         "certificate not issued for this role (extended key usage)"},
    };
    size_t used = 0;
    uint32_t rest = flags;
    err[0] = '\0';
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
        if (!(flags & known[i].flag))
            continue;
        rest &= ~known[i].flag;
        int n = snprintf(err + used, errsz - used, "%s%s", used ? "; " : "", known[i].text);
        used += n > 0 ? (size_t)n : 0;
        if (used >= errsz)
            return;
    }
    if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
        rest &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
        int n = snprintf(err + used, errsz - used, "%shost name mismatch (expected %s)",
                         used ? "; " : "", host ? host : "?");
        used += n > 0 ? (size_t)n : 0;
        if (used >= errsz)
            return;
    }
    if (rest || used == 0) {
        char info[256];
        int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", rest ? rest : flags);
        while (n > 0 && (info[n - 1] == '\n' || info[n - 1] == ' '))
            info[--n] = '\0';
        for (char *p = info; *p; p++)
            if (*p == '\n')
                *p = ';';
        snprintf(err + used, errsz - used, "%s%s", used ? "; " : "",
                 n > 0 ? info : "certificate verification failed");
    }
}

static void copy_name_value(char *dst, size_t dstsz, const mbedtls_x509_buf *v)
{
    size_t n = v->len < dstsz - 1 ? v->len : dstsz - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = v->p[i];
        dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    dst[n] = '\0';
}

/* Subject parts, serial and days left of a certificate. */
void ts_tls_peer_from_crt(const mbedtls_x509_crt *crt, struct ts_peer_id *p)
{
    if (mbedtls_x509_dn_gets(p->subject, sizeof p->subject, &crt->subject) < 0)
        p->subject[0] = '\0';
    for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next) {
        if (!n->oid.p)
            continue;
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
            copy_name_value(p->cn, sizeof p->cn, &n->val);
        else if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_ORG_UNIT, &n->oid) == 0)
            copy_name_value(p->ou, sizeof p->ou, &n->val);
        else if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_ORGANIZATION, &n->oid) == 0)
            copy_name_value(p->o, sizeof p->o, &n->val);
    }
    /* Serials are compared as text: no leading zero bytes, lowercase. */
    const unsigned char *sp = crt->serial.p;
    size_t sl = crt->serial.len;
    while (sl > 1 && sp[0] == 0) {
        sp++;
        sl--;
    }
    if (sl * 2 >= sizeof p->serial)
        sl = sizeof p->serial / 2 - 1;
    ts_hex_encode(sp, sl, p->serial);
    const mbedtls_x509_time *t = &crt->valid_to;
    struct tm tm = {.tm_year = t->year - 1900,
                    .tm_mon = t->mon - 1,
                    .tm_mday = t->day,
                    .tm_hour = t->hour,
                    .tm_min = t->min,
                    .tm_sec = t->sec};
    int64_t left = (int64_t)timegm(&tm) - (int64_t)time(NULL);
    /* floor: a certificate expiring in 10 hours has 0 days left */
    p->days_left = (int)(left >= 0 ? left / 86400 : -((-left + 86399) / 86400));
}

/* SHA-256 over the DER SubjectPublicKeyInfo: what HPKP-style pins hash, so
 * `openssl pkey -pubin -outform der | openssl dgst -sha256` gives the same. */
static enum ts_err spki_sha256(const mbedtls_x509_crt *crt, unsigned char out[32])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    return md && mbedtls_md(md, crt->pk_raw.p, crt->pk_raw.len, out) == 0 ? TS_OK : TS_ERR_TLS;
}

/*
 * mbedTLS calls this for each certificate of the peer's chain, the leaf
 * (depth 0) last, with the flags chain verification found so far. The
 * leaf is where our own rules are added: the client's public key pin and
 * the server's revocation check. Setting a flag fails the handshake the
 * same way a bad chain does (the server then sends certificate_revoked).
 * Set on every connection that verifies its peer, so that a handshake
 * that completed without it having run is known to be a resumed one.
 */
int ts_tls_verify_cb(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    struct ts_tls_conn *c = p;
    struct ts_tls_ctx *ctx = c->ctx;
    if (depth != 0)
        return 0;
    c->chain_checked = true; /* a full handshake: a resumed one verifies nothing */
    if (ctx->has_pin) {
        unsigned char h[32];
        if (spki_sha256(crt, h) != 0 || memcmp(h, ctx->pin, sizeof h) != 0) {
            c->pin_mismatch = true;
            *flags |= MBEDTLS_X509_BADCERT_OTHER;
        }
    }
    if (ctx->peer_check && *flags == 0) {
        struct ts_peer_id id = {.verified = true};
        char why[160] = "";
        ts_tls_peer_from_crt(crt, &id);
        if (!ctx->peer_check(ctx->peer_check_ud, &id, why, sizeof why)) {
            c->refused_by_check = true;
            ts_strlcpy(c->refused_why, why[0] ? why : "certificate revoked", sizeof c->refused_why);
            ts_strlcpy(c->refused_subject, id.subject, sizeof c->refused_subject);
            *flags |= MBEDTLS_X509_BADCERT_REVOKED;
        }
    }
    return 0;
}

bool ts_tls_session_peer_ok(struct ts_tls_ctx *ctx, const mbedtls_x509_crt *crt, char *why,
                            size_t whysz)
{
    if (!crt) {
        ts_errf(why, whysz, "the session carries no client certificate");
        return false;
    }
    if (mbedtls_x509_time_is_past(&crt->valid_to)) {
        ts_errf(why, whysz, "certificate expired");
        return false;
    }
    if (mbedtls_x509_time_is_future(&crt->valid_from)) {
        ts_errf(why, whysz, "certificate not valid yet");
        return false;
    }
    if (!ctx->peer_check)
        return true;
    struct ts_peer_id id = {.verified = true};
    ts_tls_peer_from_crt(crt, &id);
    char w[160] = "";
    if (ctx->peer_check(ctx->peer_check_ud, &id, w, sizeof w))
        return true;
    ts_errf(why, whysz, "%s: %s", w[0] ? w : "certificate revoked", id.subject);
    return false;
}

/* The client's words for the alert a server refused the handshake with
 * (RFC 5246 §7.2.2, RFC 8446 §6.2). TS_ERR_CERT when it is about our
 * certificate, so callers can tell "fix the certificate" from "the link". */
enum ts_err ts_tls_describe_alert(int alert, char *err, size_t errsz)
{
    switch (alert) {
    case 44: /* certificate_revoked */
        ts_errf(err, errsz, "the server refused our certificate: certificate revoked");
        return TS_ERR_CERT;
    case 45: /* certificate_expired */
        ts_errf(err, errsz, "the server refused our certificate: certificate expired");
        return TS_ERR_CERT;
    case 42: /* bad_certificate */
    case 46: /* certificate_unknown */
    case 48: /* unknown_ca */
        ts_errf(err, errsz, "the server refused our certificate (not issued by a CA it trusts?)");
        return TS_ERR_CERT;
    case 116: /* certificate_required */
        ts_errf(err, errsz, "the server requires a client certificate and we sent none");
        return TS_ERR_CERT;
    case 70: /* protocol_version */
        ts_errf(err, errsz, "the server refused the TLS version");
        return TS_ERR_TLS;
    default:
        ts_errf(err, errsz,
                "the server refused the handshake (a missing or untrusted client certificate?)");
        return TS_ERR_TLS;
    }
}

/* ---- this connection's peer -------------------------------------------- */

void ts_tls_fill_peer(struct ts_tls_conn *c)
{
    const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&c->ssl);
    if (!crt)
        return;
    c->peer.verified = mbedtls_ssl_get_verify_result(&c->ssl) == 0;
    ts_tls_peer_from_crt(crt, &c->peer);
}

/* Words for a failed verification of the peer's certificate. */
void ts_tls_describe_refusal(struct ts_tls_conn *c, uint32_t flags, const char *host, char *err,
                             size_t errsz)
{
    if (c->refused_by_check) {
        ts_errf(err, errsz, "%s: %s", c->refused_why, c->refused_subject);
    } else if (c->pin_mismatch) {
        flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_OTHER;
        char more[256] = "";
        if (flags)
            ts_tls_describe_verify(flags, host, more, sizeof more);
        ts_errf(err, errsz,
                "public key pin mismatch (the server's key is not the "
                "pinned one)%s%s",
                more[0] ? "; " : "", more);
    } else {
        ts_tls_describe_verify(flags, host, err, errsz);
    }
}

/* The alert (RFC 8446 §6.2) a server refuses a client certificate with. */
unsigned char ts_tls_refusal_alert(const struct ts_tls_conn *c, uint32_t flags)
{
    if (c->refused_by_check || (flags & MBEDTLS_X509_BADCERT_REVOKED))
        return 44; /* certificate_revoked */
    if (flags & MBEDTLS_X509_BADCERT_MISSING)
        return 116; /* certificate_required */
    if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
        return 45; /* certificate_expired */
    if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
        return 48; /* unknown_ca */
    return 42;     /* bad_certificate */
}

/* ---- pins --------------------------------------------------------------- */

enum ts_err ts_tls_pin_parse(const char *s, unsigned char out[32])
{
    size_t n = s ? strlen(s) : 0, got = 0;
    if (n == 64)
        return ts_hex_decode(s, out, 32, &got) == TS_OK && got == 32 ? TS_OK : TS_ERR_INVAL;
    /* base64 of 32 bytes: 43 significant characters, then "=" or nothing */
    unsigned char buf[33];
    if ((n != 43 && n != 44) || ts_base64_decode(s, n, buf, sizeof buf, &got) != TS_OK || got != 32)
        return TS_ERR_INVAL;
    memcpy(out, buf, 32);
    return TS_OK;
}
