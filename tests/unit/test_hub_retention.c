/*
 * Retention (hub/retention.c) under a simulated month: the real API
 * handler takes a month of synthetic load on an injected clock (customers
 * who come once, regulars who come daily, purchases forwarded upstream, a
 * store following its feed every day), retention runs once a simulated
 * day, and the test checks that the database stops growing and that
 * nothing a store still needs went away: the regulars' cards, the store's
 * daily cursor (never 410), purchases still waiting to be forwarded or
 * dead, and that a store whose cursor is older than the tombstones kept is
 * told to resync (410) and then gets every live card.
 */
#include "hub_purchases_fx.h"
#include "sinks.h"
#include "tmpdir.h"

#define DAY (24LL * 3600 * 1000)
#define DAYS 30
#define STEADY_FROM 15
#define REGULARS 10
#define NEW_PER_DAY 20
#define PURCHASES_PER_DAY 30

static int64_t sim_now = NOW;

static int64_t sim_clock(void)
{
    return sim_now;
}

struct sim {
    struct fx f;
    char dir[64], db[512];
    struct ts_sql *peek; /* a second connection, to count rows */
};

static int sim_setup(void **state)
{
    struct sim *m = calloc(1, sizeof *m);
    char err[256];
    assert_non_null(m);
    snprintf(m->dir, sizeof m->dir, "/tmp/ts-retention.XXXXXX");
    assert_non_null(mkdtemp(m->dir));
    test_hub_db_file(m->db, sizeof m->db, m->dir);
    assert_int_equal(ts_hub_config_parse("hub.conf",
                                         "[hub]\ndb = :memory:\n[cdp]\nwrite_key = test-write-key\n"
                                         "[tenant]\nname = acme\nkey = " KEY_HEX "\n"
                                         "[upstream]\nurl = https://127.0.0.1:9/v1/batch\n"
                                         "write_key = up\n"
                                         "[retention]\npurchases_days = 5\n"
                                         "upstream_sent_days = 2\nprofile_quiet_days = 7\n"
                                         "processed_days = 3\ntombstone_days = 4\n",
                                         &m->f.cfg, err, sizeof err),
                     TS_OK);
    assert_int_equal(ts_hub_store_open(m->db, &m->f.cfg.key, 0, &m->f.store, err, sizeof err),
                     TS_OK);
    assert_int_equal(ts_sql_open(m->db, 0, &m->peek, err, sizeof err), TS_OK);
    /* Purchases are queued for the [upstream] sink as the forwarder would
     * have it (the forwarder itself does not run here). */
    const struct ts_sink_conf *sink = &m->f.cfg.sinks[0];
    assert_int_equal(m->f.cfg.nsinks, 1);
    ts_hub_sinkq_set_targets(&sink, 1);
    m->f.api = (struct ts_hub_api){.cfg = &m->f.cfg, .store = m->f.store, .now_ms = sim_clock};
    m->f.t01 = (struct ts_peer_id){.verified = true, .cn = "T01", .ou = "S001", .o = "acme"};
    *state = m;
    return 0;
}

static int sim_teardown(void **state)
{
    struct sim *m = *state;
    ts_sql_close(m->peek);
    ts_hub_store_close(m->f.store);
    ts_test_rm_tree(m->dir);
    free(m);
    return 0;
}

static int64_t peek_int(struct sim *m, const char *sql)
{
    struct ts_sql_stmt *st = NULL;
    int64_t v = -1;
    assert_int_equal(ts_sql_prepare(m->peek, sql, &st), TS_OK);
    if (ts_sql_step(st) == TS_SQL_ROW)
        v = ts_sql_column_int64(st, 0);
    ts_sql_finalize(st);
    return v;
}

static void peek_exec(struct sim *m, const char *sql)
{
    assert_int_equal(ts_sql_exec(m->peek, sql), TS_OK);
}

static void cdp(struct sim *m, const char *events)
{
    char *body = malloc(strlen(events) + 32);
    assert_non_null(body);
    sprintf(body, "{\"batch\":[%s]}", events);
    struct answer a = call(&m->f, "POST", "/v1/batch", AUTH_OK, body, NULL);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    free(body);
}

/* The day's customers: the regulars change their points, NEW_PER_DAY new
 * ones come once (identify and a view). */
static void customers_of_day(struct sim *m, int d)
{
    ts_buf b = {0};
    for (int k = 0; k < REGULARS; k++)
        ts_buf_printf(
            &b,
            "%s{\"type\":\"identify\",\"userId\":\"u-reg-%d\",\"messageId\":\"reg-%d-%d\","
            "\"traits\":{\"name\":\"Regular %d\",\"points\":%d,\"home_store\":\"S001\"}}",
            b.len ? "," : "", k, k, d, k, d * 10 + k);
    for (int i = 0; i < NEW_PER_DAY; i++)
        ts_buf_printf(&b,
                      ",{\"type\":\"identify\",\"userId\":\"u-%d-%d\",\"messageId\":\"new-%d-%d\","
                      "\"traits\":{\"name\":\"Once %d\",\"home_store\":\"S001\"}},"
                      "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u-%d-%d\","
                      "\"messageId\":\"view-%d-%d\",\"properties\":{\"product_id\":\"SKU-%d\","
                      "\"name\":\"Thing\",\"price\":9.0}}",
                      d, i, d, i, i, d, i, d, i, i);
    cdp(m, b.data);
    ts_buf_free(&b);
}

static void purchases_of_day(struct sim *m, int d)
{
    for (int i = 0; i < PURCHASES_PER_DAY; i++) {
        char e[4096], mid[32], receipt[32];
        snprintf(mid, sizeof mid, "p-%d-%d", d, i);
        snprintf(receipt, sizeof receipt, "S001-T01-%03d%03d", d, i);
        event(e, sizeof e, mid, receipt, "S001", NULL, "SKU-JKT", "EUR");
        struct answer a = post(&m->f, &m->f.t01, e, NULL);
        assert_int_equal(a.status, 200);
        json_decref(a.json);
    }
}

/* The forwarder's outcome (the forwarder itself is test_hub_forward.c's):
 * everything queued today was sent, except on day 2 one purchase stays
 * pending and one went dead. */
static void forward_day(struct sim *m, int d)
{
    char sql[256];
    if (d == 2) {
        peek_exec(m, "UPDATE sink_queue SET state = 'dead', reason = 'test'"
                     " WHERE event_id = 'p-2-1'");
    }
    snprintf(sql, sizeof sql,
             "UPDATE sink_queue SET state = 'sent', done_at = %lld WHERE state = 'pending'"
             " AND event_id <> 'p-2-0'",
             (long long)sim_now);
    peek_exec(m, sql);
}

/* Follows S001's feed from *cursor ("" = from scratch) to its end, adding
 * upserted cids to and removing erased ones from cards; returns the first
 * status other than 200, or 200. */
static int follow(struct sim *m, char *cursor, size_t cursz, json_t *cards)
{
    for (;;) {
        char target[160];
        snprintf(target, sizeof target, "/v1/feed?limit=1000%s%s", cursor[0] ? "&since=" : "",
                 cursor);
        struct answer a = call(&m->f, "GET", target, NULL, NULL, &m->f.t01);
        if (a.status != 200) {
            json_decref(a.json);
            return a.status;
        }
        json_t *items = json_object_get(a.json, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *it = json_array_get(items, i);
            const char *op = json_string_value(json_object_get(it, "op"));
            const char *cid = json_string_value(json_object_get(it, "cid"));
            if (strcmp(op, "upsert") == 0)
                json_object_set(cards, cid, json_object_get(json_object_get(it, "card"), "name"));
            else
                json_object_del(cards, cid);
        }
        ts_strlcpy(cursor, json_string_value(json_object_get(a.json, "cursor")), cursz);
        bool more = json_is_true(json_object_get(a.json, "more"));
        json_decref(a.json);
        if (!more)
            return 200;
    }
}

static const char *const tables[] = {"customers", "feed",  "purchases",   "sink_queue",
                                     "processed", "views", "identifiers", "anon_map",
                                     "orders",    "bought"};
#define NTABLES (sizeof tables / sizeof tables[0])

static void count_rows(struct sim *m, int64_t out[NTABLES])
{
    for (size_t t = 0; t < NTABLES; t++) {
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", tables[t]);
        out[t] = peek_int(m, sql);
    }
}

static void simulated_month(void **state)
{
    struct sim *m = *state;
    int64_t rows[DAYS][NTABLES], pages[DAYS];
    char daily[96] = "", lagging[96] = "", recent[96] = "";
    json_t *daily_cards = json_object();
    bool pg = ts_sql_target_is_pg(m->db);
    for (int d = 0; d < DAYS; d++) {
        sim_now = NOW + d * DAY;
        customers_of_day(m, d);
        purchases_of_day(m, d);
        forward_day(m, d);
        /* the store that syncs every day is never told to resync */
        int st = follow(m, daily, sizeof daily, daily_cards);
        if (st != 200)
            fail_msg("day %d: the daily store's feed poll was answered %d", d, st);
        if (d == 5)
            ts_strlcpy(lagging, daily, sizeof lagging);
        if (d == DAYS - 3)
            ts_strlcpy(recent, daily, sizeof recent);
        struct ts_hub_retention_result r;
        assert_int_equal(ts_hub_retention_run(m->f.store, &m->f.cfg.retention,
                                              m->f.cfg.tombstone_days, sim_now, &r),
                         TS_OK);
        if (d >= STEADY_FROM) { /* every kind of row is being removed by now */
            assert_int_equal(r.profiles, NEW_PER_DAY);
            assert_int_equal(r.purchases, PURCHASES_PER_DAY);
            assert_int_equal(r.sent, PURCHASES_PER_DAY);
            assert_true(r.processed > 0 && r.tombstones == NEW_PER_DAY);
        }
        count_rows(m, rows[d]);
        pages[d] = pg ? 0 : peek_int(m, "PRAGMA page_count");
    }
    /* Steady: the same rows every day once the longest period has passed,
     * and the file no bigger (its free pages are reused). */
    for (int d = STEADY_FROM; d < DAYS; d++)
        for (size_t t = 0; t < NTABLES; t++)
            if (rows[d][t] != rows[STEADY_FROM][t])
                fail_msg("%s: %lld rows on day %d, %lld on day %d: still growing", tables[t],
                         (long long)rows[d][t], d, (long long)rows[STEADY_FROM][t], STEADY_FROM);
    assert_int_equal(rows[DAYS - 1][0], REGULARS + 8 * NEW_PER_DAY); /* quiet after 7 days */
    assert_int_equal(rows[DAYS - 1][2], 6 * PURCHASES_PER_DAY + 2);  /* + pending and dead */
    if (!pg)
        assert_true(pages[DAYS - 1] <= pages[STEADY_FROM] + pages[STEADY_FROM] / 20);

    /* What a store still needs is there: the regulars and the last 7 days'
     * customers in the daily store's cache, exactly those a full sync
     * gives; the purchase still pending and the dead one, with their
     * outbox rows; a recent purchase can still be looked up. */
    assert_int_equal(follow(m, daily, sizeof daily, daily_cards), 200); /* the last pass's */
    assert_int_equal(json_object_size(daily_cards), REGULARS + 8 * NEW_PER_DAY);
    json_t *full = json_object();
    char fresh[96] = "";
    assert_int_equal(follow(m, fresh, sizeof fresh, full), 200);
    assert_true(json_equal(full, daily_cards));
    assert_int_equal(peek_int(m, "SELECT count(*) FROM customers WHERE id LIKE 'u-reg-%'"),
                     REGULARS);
    assert_int_equal(peek_int(m, "SELECT count(*) FROM purchases p JOIN sink_queue o"
                                 " ON o.event_id = p.message_id"
                                 " WHERE p.message_id IN ('p-2-0', 'p-2-1')"
                                 " AND o.state IN ('pending', 'dead')"),
                     2);
    struct answer a =
        call(&m->f, "GET", "/v1/lookup?receipt=S001-T01-029000", NULL, NULL, &m->f.t01);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    a = call(&m->f, "GET", "/v1/lookup?receipt=S001-T01-003000", NULL, NULL, &m->f.t01);
    assert_int_equal(a.status, 404); /* past purchases_days */
    json_decref(a.json);

    /* A cursor older than the tombstones kept must resync (410); one
     * within them goes on, and learns of the erasures since. */
    json_t *cards = json_object();
    assert_int_equal(follow(m, lagging, sizeof lagging, cards), 410);
    assert_int_equal(follow(m, recent, sizeof recent, cards), 200);
    json_decref(cards);
    json_decref(full);
    json_decref(daily_cards);
}

/* A profile with a change inside the period stays; the same profile quiet
 * one day longer is erased, and its store's feed says so. */
static void quiet_profile_reaches_store(void **state)
{
    struct sim *m = *state;
    sim_now = NOW;
    cdp(m, "{\"type\":\"identify\",\"userId\":\"u-ada\",\"messageId\":\"a1\","
           "\"traits\":{\"name\":\"Ada\",\"home_store\":\"S001\"}}");
    char cursor[96] = "";
    json_t *cards = json_object();
    assert_int_equal(follow(m, cursor, sizeof cursor, cards), 200);
    assert_int_equal(json_object_size(cards), 1);
    struct ts_hub_retention_result r;
    const struct ts_hub_retention *ret = &m->f.cfg.retention;
    assert_int_equal(ts_hub_retention_run(m->f.store, ret, 4, NOW + 7 * DAY, &r), TS_OK);
    assert_int_equal(r.profiles, 0);
    assert_int_equal(follow(m, cursor, sizeof cursor, cards), 200);
    assert_int_equal(json_object_size(cards), 1);
    assert_int_equal(ts_hub_retention_run(m->f.store, ret, 4, NOW + 7 * DAY + 1, &r), TS_OK);
    assert_int_equal(r.profiles, 1);
    assert_int_equal(follow(m, cursor, sizeof cursor, cards), 200);
    assert_int_equal(json_object_size(cards), 0);
    assert_int_equal(peek_int(m, "SELECT count(*) FROM customers"), 0);
    json_decref(cards);
}

/* The [retention] keys' defaults, and what check-config refuses. */
static void retention_config(void **state)
{
    (void)state;
    struct ts_hub_config c;
    char err[256] = "", conf[1024];
    const char *base = "[hub]\ndb = :memory:\n[cdp]\nwrite_key = k\n"
                       "[tenant]\nname = acme\nkey = " KEY_HEX "\n";
    assert_int_equal(ts_hub_config_parse("hub.conf", base, &c, err, sizeof err), TS_OK);
    assert_int_equal(c.retention.purchases_days, 400);
    assert_int_equal(c.retention.upstream_sent_days, 30);
    assert_int_equal(c.retention.profile_quiet_days, 730);
    assert_int_equal(c.retention.processed_days, 30);
    assert_int_equal(c.retention.period_s, 3600);
    assert_int_equal(c.tombstone_days, 90);
    snprintf(conf, sizeof conf, "%s[feed]\ntombstone_days = 60\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &c, err, sizeof err), TS_OK);
    assert_int_equal(c.tombstone_days, 60); /* the older name still counts */
    snprintf(conf, sizeof conf, "%s[feed]\ntombstone_days = 60\n[retention]\ntombstone_days = 30\n",
             base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "[retention] tombstone_days"));
    snprintf(conf, sizeof conf, "%s[retention]\nupstream_sent_days = 0\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "hub.conf:"));
    assert_non_null(strstr(err, "upstream_sent_days"));
    snprintf(conf, sizeof conf, "%s[retention]\nprofile_quiet_days = 0\npurchases_days = 0\n",
             base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &c, err, sizeof err), TS_OK);
    assert_int_equal(c.retention.profile_quiet_days + c.retention.purchases_days, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retention_config),
        cmocka_unit_test_setup_teardown(quiet_profile_reaches_store, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(simulated_month, sim_setup, sim_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
