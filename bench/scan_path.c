/*
 * scan_path: the time one scan takes from the scanner's bytes to the
 * resolved session, in-process, beside the bare SQLite lookup of the same
 * keys on the same cache file in the same run.
 *
 * Path measured per scan: the serial driver's framer (drivers/serial.h, fed
 * from memory exactly as serial.c feeds it what sp_nonblocking_read gave)
 * → ts_driver_emit (payment card guard, struct ts_scan) → ts_agent_scan
 * (identity rules, HMAC keying, cache lookup, session JSON, bus events).
 * The link is offline, so a miss never waits for the hub. Logging is at
 * warn (one info line per scan otherwise goes to stderr).
 *
 * The cache: N cards (default 1,000,000) written straight through
 * ts_cache_apply_page with generated cards (one in-store EAN-13 loyalty key
 * each, a ~230-byte card), kept in DIR and reused by later runs.
 *
 *   ts_scan_path [-d DIR] [-c CARDS] [-n SCANS] [-s SEED]
 */
#include "agent.h"
#include "purchase.h"
#include "feed.h"
#include "input.h"
#include "serial.h"
#include "ts.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TENANT_KEY "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* EAN-13 "2" + 11 digits of i + GS1 check digit: an in-store number. */
static void ean13(char prefix, long i, char out[14])
{
    char digits[24]; /* room for any long: the caller keeps i below 10^11 */
    snprintf(digits, sizeof digits, "%011ld", i % 100000000000L);
    out[0] = prefix;
    memcpy(out + 1, digits, 11);
    int sum = 0;
    for (int k = 0; k < 12; k++)
        sum += (out[k] - '0') * (k % 2 ? 3 : 1);
    out[12] = (char)('0' + (10 - sum % 10) % 10);
    out[13] = '\0';
}

static int fill(struct ts_agent *a, long cards)
{
    int64_t have = ts_cache_count(a->cache);
    if (have >= cards)
        return 0;
    fprintf(stderr, "filling the cache: %ld cards (have %lld)\n", cards, (long long)have);
    enum { PAGE = 2000 };
    struct ts_feed_item *items = calloc(PAGE, sizeof *items);
    char(*keys)[65] = calloc(PAGE, 65);
    char *cardtext = malloc((size_t)PAGE * 320);
    char err[256], code[14];
    int64_t t0 = now_ns();
    for (long base = have; base < cards; base += PAGE) {
        size_t n = 0;
        for (long i = base; i < cards && n < PAGE; i++, n++) {
            ean13('2', i, code);
            ts_ident_key(&a->cfg.tenant, TS_IDENT_LOYALTY, code, keys[n]);
            char *ct = cardtext + n * 320;
            snprintf(ct, 320,
                     "{\"cid\":\"c%09ld\",\"name\":\"Customer %ld\",\"tier\":\"gold\","
                     "\"points\":%ld,\"home_store\":\"S001\",\"consent\":true,\"interests\":"
                     "[{\"product_id\":\"SKU-%ld\",\"name\":\"Trail Runner\",\"signal\":\"view\"}],"
                     "\"orders\":[]}",
                     i, i, i % 5000, i % 997);
            items[n] = (struct ts_feed_item){
                .op = TS_FEED_UPSERT, .nkeys = 1, .keys = &keys[n], .card = ct};
            snprintf(items[n].cid, sizeof items[n].cid, "c%09ld", i);
        }
        struct ts_feed_page pg = {.kv = 1, .nitems = n, .items = items};
        snprintf(pg.cursor, sizeof pg.cursor, "bench-%ld", base + (long)n);
        if (ts_cache_apply_page(a->cache, &pg, ts_now_wall_ms(), err, sizeof err)) {
            fprintf(stderr, "apply: %s\n", err);
            return 1;
        }
    }
    ts_cache_flush(a->cache);
    fprintf(stderr, "filled in %.1f s\n", (double)(now_ns() - t0) / 1e9);
    free(items);
    free(keys);
    free(cardtext);
    return 0;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static void report(const char *what, int64_t *ns, long n)
{
    qsort(ns, (size_t)n, sizeof *ns, cmp_i64);
    printf("| %s | %ld | %.1f | %.1f | %.1f |\n", what, n, (double)ns[n / 2] / 1000.0,
           (double)ns[(long)((double)n * 0.99)] / 1000.0, (double)ns[n - 1] / 1000.0);
}

struct replay {
    struct ts_agent *a;
    long resolved, found;
};

static void on_scan(void *ctx, const struct ts_scan *s)
{
    struct replay *r = ctx;
    char *sess = NULL;
    if (ts_agent_scan(r->a, s, &sess) == TS_OK) {
        r->resolved++;
        if (sess && strstr(sess, "\"status\":\"found\""))
            r->found++;
    }
    free(sess);
}

static void on_code(void *ctx, const char *data, size_t len, const char *aim)
{
    ts_driver_emit(ctx, "bench", data, len, aim);
}

int main(int argc, char **argv)
{
    const char *dir = "build/bench/work/scan_path";
    long cards = 1000000, scans = 100000;
    unsigned seed = 1;
    int opt;
    while ((opt = getopt(argc, argv, "d:c:n:s:")) != -1) {
        if (opt == 'd')
            dir = optarg;
        else if (opt == 'c')
            cards = atol(optarg);
        else if (opt == 'n')
            scans = atol(optarg);
        else if (opt == 's')
            seed = (unsigned)atol(optarg);
        else
            return 2;
    }
    ts_log_set_level(TS_LOG_WARN);
    char conf[2048], err[1024];
    snprintf(conf, sizeof conf,
             "[agent]\nstate_dir = %s\n[hub]\nurl = https://localhost:1\n"
             "[identity]\ntenant_key = " TENANT_KEY "\n"
             "[rule.instore]\nsymbology = ]E0\nprefix = 2\nkind = loyalty\n"
             "[rule.products]\nsymbology = EAN-13\nkind = product\n"
             "[rule.receipt]\nregex = ^S[0-9]{3}-T[0-9]{2}-[0-9]{6}$\nkind = receipt\n"
             "[rule.order]\nsymbology = QR Code\nprefix = ORDER:\nstrip_prefix = ORDER:\n"
             "kind = order\n",
             dir);
    static struct ts_agent_config cfg;
    struct ts_agent *a = NULL;
    struct ts_purch *purch = NULL; /* receipt scans look in its journal, as in `run` */
    if (ts_agent_config_parse("scan_path.conf", conf, &cfg, err, sizeof err) ||
        ts_agent_open(&cfg, &a, err, sizeof err) || ts_purchase_open(a, &purch, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    ts_agent_set_journal(a, purch->ob);
    if (fill(a, cards))
        return 1;
    long ncards = (long)ts_cache_count(a->cache);

    /* The replayed stream: 90 % cards from the cache (uniformly random),
     * 10 % product EAN-13s, each "]E0" + code + CR as a serial scanner
     * with the AIM prefix and CR suffix sends it. */
    srand(seed);
    long warm = scans / 50;
    long total = warm + scans;
    char(*codes)[14] = malloc((size_t)total * 14);
    long loyalty_all = 0;
    for (long i = 0; i < total; i++) {
        char p = rand() % 10 < 9 ? '2' : '4';
        loyalty_all += p == '2';
        ean13(p, rand() % (p == '2' ? ncards : 99999999), codes[i]);
    }

    struct replay r = {.a = a};
    struct ts_driver_host host = {.ctx = &r, .on_scan = on_scan};
    struct ts_serial_framer fr;
    ts_serial_framer_init(&fr, TS_SUFFIX_CR, 0, true);
    int64_t *path_ns = malloc((size_t)scans * sizeof *path_ns);
    int64_t *loy_ns = malloc((size_t)scans * sizeof *loy_ns);
    long nloy = 0;
    int64_t t_all = now_ns();
    for (long i = 0; i < total; i++) {
        uint8_t bytes[32];
        int n = snprintf((char *)bytes, sizeof bytes, "]E0%s\r", codes[i]);
        int64_t t0 = now_ns();
        ts_serial_framer_feed(&fr, bytes, (size_t)n, ts_now_mono_ms(), on_code, &host);
        int64_t dt = now_ns() - t0;
        if (i == warm)
            t_all = t0;
        if (i >= warm) {
            path_ns[i - warm] = dt;
            if (codes[i][0] == '2')
                loy_ns[nloy++] = dt;
        }
    }
    double wall_s = (double)(now_ns() - t_all) / 1e9;
    if (r.resolved != total) {
        fprintf(stderr, "only %ld of %ld scans resolved\n", r.resolved, total);
        return 1;
    }

    /* Baseline: the same keys, the bare indexed lookup on the same file
     * (the cache's own SQL, a second connection, statement prepared once). */
    char path[TS_AGENT_PATH_MAX + 16];
    ts_agent_cache_path(&cfg, path, sizeof path);
    sqlite3 *db;
    sqlite3_stmt *st;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) ||
        sqlite3_prepare_v2(db,
                           "SELECT c.card, c.synced_at FROM card_keys k JOIN cards c ON "
                           "c.cid = k.cid WHERE k.key = ?1",
                           -1, &st, NULL)) {
        fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    int64_t *sql_ns = malloc((size_t)scans * sizeof *sql_ns);
    long nsql = 0, sql_found = 0;
    for (long i = warm; i < total; i++) {
        if (codes[i][0] != '2')
            continue;
        char hex[TS_IDENT_KEY_HEX];
        uint8_t key[32];
        size_t klen;
        /* Keyed outside the timing: the baseline is the lookup alone. */
        ts_ident_key(&cfg.tenant, TS_IDENT_LOYALTY, codes[i], hex);
        ts_hex_decode(hex, key, sizeof key, &klen);
        int64_t t0 = now_ns();
        sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            sql_found += sqlite3_column_bytes(st, 0) > 0;
            (void)sqlite3_column_text(st, 0);
        }
        sqlite3_reset(st);
        sql_ns[nsql++] = now_ns() - t0;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);

    double load[3] = {0};
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = -1;
        fclose(lf);
    }
    printf("cards in cache: %ld; scans: %ld (+%ld warm-up); cards found: %ld of %ld loyalty "
           "scans; SQLite found %ld; %.0f scans/s; load average %.2f %.2f %.2f\n\n",
           ncards, scans, warm, r.found, loyalty_all, sql_found, (double)scans / wall_s, load[0],
           load[1], load[2]);
    printf("| path | n | median µs | p99 µs | max µs |\n|---|---|---|---|---|\n");
    report("scan: framer + guard + rules + HMAC + cache + session (all)", path_ns, scans);
    report("scan: loyalty scans only (card found)", loy_ns, nloy);
    report("baseline: bare SQLite indexed lookup, same keys", sql_ns, nsql);
    free(codes);
    free(path_ns);
    free(loy_ns);
    free(sql_ns);
    ts_purchase_close(purch);
    ts_agent_close(a);
    return 0;
}
