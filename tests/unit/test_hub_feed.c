/*
 * Unit tests for the hub's feed: pages and re-stamps, store scoping, erasure
 * and tombstones, long-poll waits, key rotation (hub_store_fx.h).
 */
#include "hub_store_fx.h"

static void test_feed_paging_and_restamp(void **state)
{
    struct fx *f = *state;
    char user[16], loy[16], cids[5][33];
    for (int i = 0; i < 5; i++) {
        snprintf(user, sizeof user, "u%d", i);
        snprintf(loy, sizeof loy, "20000000%05d", i);
        add_customer(f, user, loy, "S001", true, 1);
        ts_hub_cid(&f->key, user, cids[i]);
    }
    add_customer(f, "u-other", "2000000099999", "S002", true, 1);

    uint64_t since = 0, last;
    bool more;
    int seen = 0;
    const bool want_more[] = {true, true, false};
    for (int p = 0; p < 3; p++) {
        json_t *items = page(f, "S001", since, 2, &more, &last);
        assert_int_equal(json_array_size(items), p < 2 ? 2 : 1);
        assert_int_equal(more, want_more[p]);
        assert_true(last > since);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            assert_string_equal(json_string_value(json_object_get(it, "op")), "upsert");
            /* customers were added in order, so the feed lists them in order */
            assert_string_equal(json_string_value(json_object_get(it, "cid")), cids[seen]);
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(it, "card"), "cid")), cids[seen]);
            assert_int_equal(json_array_size(json_object_get(it, "keys")), 1);
            seen++;
        }
        json_decref(items);
        since = last;
    }
    assert_int_equal(seen, 5);

    /* Nothing new: empty page, cursor unchanged. */
    json_t *items = page(f, "S001", since, 2, &more, &last);
    assert_int_equal(json_array_size(items), 0);
    assert_false(more);
    assert_true(last == since);
    json_decref(items);

    /* A later change to customer 1 re-appears after the cursor, once. */
    ingest(f, "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u1\","
              "\"properties\":{\"product_id\":\"SKU-NEW\"}},"
              "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u1\","
              "\"properties\":{\"product_id\":\"SKU-NEW\"}}");
    items = page(f, "S001", since, 10, &more, &last);
    assert_int_equal(json_array_size(items), 1);
    json_t *it = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(it, "cid")), cids[1]);
    assert_int_equal(num(interest(json_object_get(it, "card"), "SKU-NEW"), "count"), 2);
    json_decref(items);

    /* A full resync lists every customer once at their latest state. */
    items = page(f, "S001", 0, 1000, &more, &last);
    assert_int_equal(json_array_size(items), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 4), "cid")),
                        cids[1]);
    json_decref(items);

    /* A cursor from the future (the hub's database was replaced) is gone. */
    struct ts_hub_feed_page p = {0};
    assert_int_equal(ts_hub_store_feed(f->s, "S001", last + 1000, 10, &p), TS_ERR_GONE);
    ts_buf_free(&p.items);
}

static void test_store_scoping_and_moves(void **state)
{
    struct fx *f = *state;
    add_customer(f, "u-a", "2000000000046", "S001", true, 1);
    add_customer(f, "u-b", "2000000000053", "S002", true, 1);
    char cid_b[33];
    ts_hub_cid(&f->key, "u-b", cid_b);
    bool more;
    uint64_t last, s1;
    json_t *items = page(f, "S001", 0, 100, &more, &s1);
    assert_int_equal(json_array_size(items), 1);
    assert_string_not_equal(json_string_value(json_object_get(json_array_get(items, 0), "cid")),
                            cid_b);
    json_decref(items);
    items = page(f, "S002", 0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "cid")), cid_b);
    json_decref(items);
    items = page(f, "S999", 0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);

    /* u-b moves to S001: S001 gets the upsert, S002 an erase. */
    ingest(f, "{\"type\":\"identify\",\"userId\":\"u-b\",\"traits\":{\"home_store\":\"S001\"}}");
    items = page(f, "S001", s1, 100, &more, &last);
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "cid")), cid_b);
    json_decref(items);
    items = page(f, "S002", 0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 1);
    json_t *it = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(it, "op")), "erase");
    assert_string_equal(json_string_value(json_object_get(it, "cid")), cid_b);
    assert_null(json_object_get(it, "card"));
    json_decref(items);

    /* A customer without a home store is in no slice but still found. */
    ingest(f, "{\"type\":\"identify\",\"userId\":\"u-c\",\"traits\":{\"loyalty_id\":"
              "\"2000000000060\"}}");
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "2000000000060");
    assert_non_null(a);
    json_decref(a);
    ts_buf st = {0};
    assert_int_equal(ts_hub_store_stats(f->s, &st), TS_OK);
    json_t *stats = json_loads(st.data, 0, NULL);
    assert_int_equal(num(stats, "customers"), 3);
    assert_int_equal(num(json_object_get(stats, "stores"), "S001"), 2);
    assert_null(json_object_get(json_object_get(stats, "stores"), "S002"));
    json_decref(stats);
    ts_buf_free(&st);
}

static json_t *only_item(struct fx *f, const char *store, uint64_t since, uint64_t *last)
{
    bool more;
    json_t *items = page(f, store, since, 100, &more, last);
    assert_int_equal(json_array_size(items), 1);
    json_t *it = json_incref(json_array_get(items, 0));
    json_decref(items);
    return it;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/*
 * GDPR erasure: the customer is gone from the hub (by userId or by loyalty
 * number, anonymous browsing merged into them included), every store that
 * had the card gets an erase naming only the cid, and a full sync lists no
 * trace of them but that tombstone.
 */
static void test_erase_customer(void **state)
{
    struct fx *f = *state;
    ingest(f, "{\"type\":\"track\",\"event\":\"Product Viewed\",\"anonymousId\":\"anon-e\","
              "\"properties\":{\"product_id\":\"SKU-X\"}}");
    add_customer(f, "u-ada", "2000000000015", "S001", true, 2);
    ingest(f, "{\"type\":\"identify\",\"userId\":\"u-ada\",\"anonymousId\":\"anon-e\"},"
              "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u-ada\","
              "\"properties\":{\"order_id\":\"W-77\",\"total\":10}}");
    add_customer(f, "u-bob", "2000000000022", "S001", true, 1);
    add_customer(f, "u-cat", "2000000000039", "S002", true, 1);
    char cid[33];
    ts_hub_cid(&f->key, "u-ada", cid);
    bool more;
    uint64_t last, after;
    json_decref(page(f, "S001", 0, 100, &more, &last));

    struct ts_hub_erase_result r;
    memset(&r, 0xff, sizeof r);
    assert_int_equal(ts_hub_store_erase(f->s, "u-ada", NULL, NOW, &r), TS_OK);
    assert_string_equal(r.cid, cid);
    assert_int_equal(r.stores, 1);
    assert_null(lookup(f, TS_IDENT_LOYALTY, "2000000000015"));
    assert_null(lookup(f, TS_IDENT_ORDER, "W-77"));

    /* S001 is told to erase; S002 never had the card and hears nothing. */
    json_t *it = only_item(f, "S001", last, &after);
    assert_string_equal(str(it, "op"), "erase");
    assert_string_equal(str(it, "cid"), cid);
    assert_null(json_object_get(it, "card"));
    assert_null(json_object_get(it, "keys"));
    json_decref(it);
    json_decref(page(f, "S002", 0, 100, &more, &last));
    json_t *items = page(f, "S002", last, 100, &more, &after);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);

    /* A full sync shows bob's card and ada's tombstone, nothing else. */
    char bob[33];
    ts_hub_cid(&f->key, "u-bob", bob);
    items = page(f, "S001", 0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(str(json_array_get(items, 0), "cid"), bob);
    assert_string_equal(str(json_array_get(items, 0), "op"), "upsert");
    assert_string_equal(str(json_array_get(items, 1), "cid"), cid);
    assert_string_equal(str(json_array_get(items, 1), "op"), "erase");
    char *dump = json_dumps(items, 0);
    assert_null(strstr(dump, "u-ada"));
    assert_null(strstr(dump, "SKU-X")); /* what ada browsed anonymously */
    free(dump);
    json_decref(items);

    ts_buf st = {0};
    assert_int_equal(ts_hub_store_stats(f->s, &st), TS_OK);
    assert_non_null(strstr(st.data, "\"customers\":2"));
    ts_buf_free(&st);

    /* By loyalty number (as scanned: normalized first), once only. */
    assert_int_equal(ts_hub_store_erase(f->s, NULL, " 2000-0000-00022 ", NOW, &r), TS_OK);
    assert_null(lookup(f, TS_IDENT_LOYALTY, "2000000000022"));
    assert_int_equal(ts_hub_store_erase(f->s, NULL, "2000000000022", NOW, &r), TS_ERR_NOTFOUND);
    assert_int_equal(ts_hub_store_erase(f->s, "u-ada", NULL, NOW, &r), TS_ERR_NOTFOUND);
    assert_int_equal(ts_hub_store_erase(f->s, "nobody", NULL, NOW, &r), TS_ERR_NOTFOUND);
    json_t *c = lookup(f, TS_IDENT_LOYALTY, "2000000000039");
    assert_non_null(c); /* the others are untouched */
    json_decref(c);
}

/* Tombstones are kept keep_ms, then pruned; pruning raises the horizon and
 * a cursor below it is gone (410), while a full sync still works. */
static void test_tombstones_pruned_raise_horizon(void **state)
{
    struct fx *f = *state;
    const int64_t keep = 90 * DAY;
    add_customer(f, "u1", "2000000000046", "S001", true, 1);
    add_customer(f, "u2", "2000000000053", "S001", true, 1);
    add_customer(f, "u3", "2000000000060", "S001", true, 1);
    bool more;
    uint64_t s0, s1, s2, last;
    json_decref(page(f, "S001", 0, 100, &more, &s0));
    /* u1 moves away at NOW (an erase for S001), u2 is erased a day later. */
    ingest_at(f, NOW,
              "{\"type\":\"identify\",\"userId\":\"u1\",\"traits\":{\"home_store\":"
              "\"S009\"}}");
    json_decref(page(f, "S001", 0, 100, &more, &s1));
    assert_int_equal(ts_hub_store_erase(f->s, "u2", NULL, NOW + DAY, NULL), TS_OK);
    json_decref(page(f, "S001", 0, 100, &more, &s2));
    assert_true(s0 < s1 && s1 < s2);
    assert_true(ts_hub_store_horizon(f->s) == 0);

    size_t removed = 99;
    assert_int_equal(ts_hub_store_prune(f->s, NOW + 30 * DAY, keep, &removed), TS_OK);
    assert_int_equal(removed, 0);
    json_decref(page(f, "S001", s0, 100, &more, &last)); /* still served */

    /* 90 days and a bit after the move: its tombstone goes. */
    assert_int_equal(ts_hub_store_prune(f->s, NOW + keep + 1, keep, &removed), TS_OK);
    assert_int_equal(removed, 1);
    assert_true(ts_hub_store_horizon(f->s) == s1);
    struct ts_hub_feed_page p = {0};
    assert_int_equal(ts_hub_store_feed(f->s, "S001", s0, 10, &p), TS_ERR_GONE);
    ts_buf_free(&p.items);
    json_t *items = page(f, "S001", s1, 100, &more, &last); /* saw the move: fine */
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(str(json_array_get(items, 0), "op"), "erase");
    json_decref(items);
    items = page(f, "S001", 0, 100, &more, &last); /* a full sync: u3 and u2's tombstone */
    assert_int_equal(json_array_size(items), 2);
    json_decref(items);

    assert_int_equal(ts_hub_store_prune(f->s, NOW + DAY + keep + 1, keep, &removed), TS_OK);
    assert_int_equal(removed, 1);
    assert_true(ts_hub_store_horizon(f->s) == s2);
    assert_int_equal(ts_hub_store_feed(f->s, "S001", s1, 10, &p), TS_ERR_GONE);
    ts_buf_free(&p.items);
    items = page(f, "S001", s2, 100, &more, &last);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);
    /* Pruning never lowers the horizon. */
    assert_int_equal(ts_hub_store_prune(f->s, NOW, keep, &removed), TS_OK);
    assert_true(ts_hub_store_horizon(f->s) == s2);
}

struct later {
    struct fx *f;
    const char *user, *store;
    int delay_ms;
};

static void *ingest_later(void *arg)
{
    struct later *l = arg;
    ts_sleep_ms(l->delay_ms);
    add_customer(l->f, l->user, "2000000000077", l->store, true, 1);
    return NULL;
}

/* Long-poll: a waiter wakes when its store's feed changes, not for another
 * store's change, times out otherwise, and is released at shutdown. */
static void test_wait_for_change(void **state)
{
    struct fx *f = *state;
    add_customer(f, "u1", "2000000000084", "S001", true, 1);
    bool more;
    uint64_t last;
    json_decref(page(f, "S001", 0, 100, &more, &last));
    assert_true(ts_hub_store_wait(f->s, "S001", 0, 5000)); /* already there: at once */

    int64_t t0 = ts_now_mono_ms();
    assert_false(ts_hub_store_wait(f->s, "S001", last, 150));
    int64_t dt = ts_now_mono_ms() - t0;
    assert_true(dt >= 140 && dt < 1500);

    pthread_t th;
    struct later other = {f, "u-other", "S002", 100};
    assert_int_equal(pthread_create(&th, NULL, ingest_later, &other), 0);
    assert_false(ts_hub_store_wait(f->s, "S001", last, 600));
    pthread_join(th, NULL);

    struct later mine = {f, "u-mine", "S001", 200};
    t0 = ts_now_mono_ms();
    assert_int_equal(pthread_create(&th, NULL, ingest_later, &mine), 0);
    assert_true(ts_hub_store_wait(f->s, "S001", last, 10000));
    dt = ts_now_mono_ms() - t0;
    pthread_join(th, NULL);
    assert_true(dt >= 150 && dt < 1000); /* woken by the commit, not by polling */

    json_decref(page(f, "S001", 0, 100, &more, &last));
    ts_hub_store_shutdown(f->s);
    t0 = ts_now_mono_ms();
    assert_false(ts_hub_store_wait(f->s, "S001", last, 10000));
    assert_true(ts_now_mono_ms() - t0 < 500);
}

#define KEY2_HEX "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b"

static char *key_under(const struct ts_tenant_key *k, enum ts_ident_kind kind, const char *raw,
                       char hex[TS_IDENT_KEY_HEX])
{
    char norm[64];
    assert_int_equal(ts_ident_normalize(raw, strlen(raw), norm, sizeof norm), TS_OK);
    assert_int_equal(ts_ident_key(k, kind, norm, hex), TS_OK);
    return hex;
}

static bool found_by(struct ts_hub_store *s, const char *key)
{
    ts_buf out = {0};
    int rc = ts_hub_store_lookup(s, key, &out);
    ts_buf_free(&out);
    assert_true(rc == TS_OK || rc == TS_ERR_NOTFOUND);
    return rc == TS_OK;
}

/*
 * Key rotation in the documented steps, on a database file the hub reopens
 * with each new configuration: the second key is added (every customer
 * re-stamped with prev_keys), the current key switches (re-stamped again,
 * lookups by either key keep working), the old key is dropped.
 */
static void test_key_rotation_restamps(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_hub_rotate.XXXXXX", path[256], err[256];
    assert_non_null(mkdtemp(dir));
    test_hub_db_file(path, sizeof path, dir);
    struct ts_tenant_key k1, k2;
    assert_int_equal(ts_tenant_key_parse(KEY_HEX, 1, &k1), TS_OK);
    assert_int_equal(ts_tenant_key_parse(KEY2_HEX, 2, &k2), TS_OK);
    char h1[TS_IDENT_KEY_HEX], h2[TS_IDENT_KEY_HEX];
    key_under(&k1, TS_IDENT_LOYALTY, "2000000000091", h1);
    key_under(&k2, TS_IDENT_LOYALTY, "2000000000091", h2);

    struct fx f = {.key = k1};
    size_t n = 99;
    bool more;
    uint64_t last, s0;
    assert_int_equal(ts_hub_store_open(path, &k1, 0, &f.s, err, sizeof err), TS_OK);
    assert_int_equal(ts_hub_store_set_keys(f.s, NULL, &n), TS_OK);
    assert_int_equal(n, 0); /* nothing changed */
    add_customer(&f, "r1", "2000000000091", "S001", true, 1);
    add_customer(&f, "r2", "2000000000107", "S001", true, 1);
    json_decref(page(&f, "S001", 0, 100, &more, &s0));
    assert_true(found_by(f.s, h1));
    assert_false(found_by(f.s, h2));

    /* Step 1: both keys known, the old one still current. */
    assert_int_equal(ts_hub_store_set_keys(f.s, &k2, &n), TS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ts_hub_store_prev_kv(f.s), 2);
    json_t *items = page(&f, "S001", s0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 2); /* both re-sent */
    json_t *r1 = NULL;
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        if (strcmp(json_string_value(json_array_get(json_object_get(it, "keys"), 0)), h1) == 0)
            r1 = it;
    }
    assert_non_null(r1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r1, "prev_keys"), 0)), h2);
    json_decref(items);
    assert_true(found_by(f.s, h1));
    assert_true(found_by(f.s, h2));
    ts_buf out = {0};
    assert_int_equal(ts_hub_store_lookup(f.s, h2, &out), TS_OK);
    json_t *a = json_loads(out.data, 0, NULL);
    assert_int_equal(num(a, "kv"), 1);
    assert_int_equal(num(a, "prev_kv"), 2);
    json_decref(a);
    ts_buf_free(&out);
    assert_int_equal(ts_hub_store_set_keys(f.s, &k2, &n), TS_OK);
    assert_int_equal(n, 0); /* same pair: no re-stamp */
    ts_hub_store_close(f.s);

    /* Step 2: the hub switches its current key (restart with a new config). */
    f.key = k2;
    assert_int_equal(ts_hub_store_open(path, &k2, 0, &f.s, err, sizeof err), TS_OK);
    assert_int_equal(ts_hub_store_set_keys(f.s, &k1, &n), TS_OK);
    assert_int_equal(n, 2);
    json_decref(page(&f, "S001", 0, 100, &more, &s0));
    items = page(&f, "S001", last, 100, &more, &last);
    assert_int_equal(json_array_size(items), 2);
    json_array_foreach(items, i, it)
    {
        if (strcmp(json_string_value(json_array_get(json_object_get(it, "keys"), 0)), h2) == 0)
            assert_string_equal(
                json_string_value(json_array_get(json_object_get(it, "prev_keys"), 0)), h1);
    }
    json_decref(items);
    assert_true(found_by(f.s, h1));
    assert_true(found_by(f.s, h2));
    /* A customer who arrives now gets keys under both versions too. */
    add_customer(&f, "r3", "2000000000114", "S001", true, 1);
    char n3a[TS_IDENT_KEY_HEX], n3b[TS_IDENT_KEY_HEX];
    assert_true(found_by(f.s, key_under(&k1, TS_IDENT_LOYALTY, "2000000000114", n3a)));
    assert_true(found_by(f.s, key_under(&k2, TS_IDENT_LOYALTY, "2000000000114", n3b)));
    ts_hub_store_close(f.s);

    /* Step 3: the old key is dropped. */
    assert_int_equal(ts_hub_store_open(path, &k2, 0, &f.s, err, sizeof err), TS_OK);
    assert_int_equal(ts_hub_store_set_keys(f.s, NULL, &n), TS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ts_hub_store_prev_kv(f.s), 0);
    assert_true(found_by(f.s, h2));
    assert_false(found_by(f.s, h1));
    items = page(&f, "S001", 0, 100, &more, &last);
    json_array_foreach(items, i, it) assert_null(json_object_get(it, "prev_keys"));
    json_decref(items);
    ts_hub_store_close(f.s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_feed_paging_and_restamp), T(test_store_scoping_and_moves),
        T(test_erase_customer),          T(test_tombstones_pruned_raise_horizon),
        T(test_wait_for_change),         cmocka_unit_test(test_key_rotation_restamps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
