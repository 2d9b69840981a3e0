/*
 * The purchase journal and outbox (sync/outbox.c): the queue rules, the
 * disk-full answer, and power cuts through the fault-injecting VFS
 * (faultvfs.c): whatever was acknowledged before the cut is there after
 * it, and the file passes PRAGMA integrity_check every time.
 */
#include "faultvfs.h"
#include "outbox.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

static char dir[64];

static void path_in(char *out, size_t outsz, const char *name)
{
    snprintf(out, outsz, "%s/%s", dir, name);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ts-outbox-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int add(struct ts_outbox *o, const char *mid, const char *receipt, const char *event,
               bool *dup, char existing[TS_OUTBOX_ID_MAX])
{
    struct ts_outbox_entry e = {
        .message_id = mid, .receipt = receipt, .source = "api", .event = event};
    return ts_outbox_add(o, &e, 1000, dup, existing);
}

static bool count_row(void *ud, const struct ts_outbox_item *it)
{
    (void)it;
    (*(int *)ud)++;
    return true;
}

static void queue_rules(void **state)
{
    (void)state;
    char path[128], existing[TS_OUTBOX_ID_MAX], err[256];
    path_in(path, sizeof path, "q.db");
    struct ts_outbox *o = NULL;
    bool dup = true;
    assert_int_equal(ts_outbox_open(path, NULL, &o, err, sizeof err), TS_OK);
    assert_int_equal(add(o, "m1", "R1", "{\"a\":1}", &dup, existing), TS_OK);
    assert_false(dup);
    assert_int_equal(add(o, "m2", "R2", "{\"a\":2}", &dup, existing), TS_OK);
    assert_int_equal(add(o, "m3", "R3", "{\"a\":3}", &dup, existing), TS_OK);
    /* the same receipt again: nothing new, the first id comes back */
    assert_int_equal(add(o, "m9", "R2", "{\"a\":9}", &dup, existing), TS_OK);
    assert_true(dup);
    assert_string_equal(existing, "m2");

    struct ts_outbox_row *rows;
    size_t n;
    assert_int_equal(ts_outbox_pending(o, 0, 10, 1 << 20, &rows, &n), TS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].message_id, "m1");
    assert_string_equal(rows[2].event, "{\"a\":3}");
    ts_outbox_rows_free(rows, n);
    /* a byte budget smaller than one event still yields that one event */
    assert_int_equal(ts_outbox_pending(o, 0, 10, 1, &rows, &n), TS_OK);
    assert_int_equal(n, 1);
    ts_outbox_rows_free(rows, n);

    const char *sent[] = {"m1"};
    assert_int_equal(ts_outbox_mark_sent(o, sent, 1, 2000), TS_OK);
    assert_int_equal(ts_outbox_mark_dead(o, "m2", "hub said no", 2000), TS_OK);
    struct ts_outbox_stats st;
    assert_int_equal(ts_outbox_stats(o, &st), TS_OK);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.oldest_pending_ms, 1000);
    assert_int_equal(ts_outbox_pending(o, 0, 10, 1 << 20, &rows, &n), TS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].message_id, "m3");
    ts_outbox_rows_free(rows, n);

    int dead_rows = 0;
    assert_int_equal(ts_outbox_list(o, "dead", 0, count_row, &dead_rows), TS_OK);
    assert_int_equal(dead_rows, 1);
    int64_t moved = 0;
    assert_int_equal(ts_outbox_retry(o, "m1", &moved), TS_ERR_NOTFOUND); /* sent, not dead */
    assert_int_equal(ts_outbox_retry(o, "m2", &moved), TS_OK);
    assert_int_equal(moved, 1);
    assert_int_equal(ts_outbox_stats(o, &st), TS_OK);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.dead, 0);

    char *ev = NULL, s[8];
    assert_int_equal(ts_outbox_find_receipt(o, "R1", &ev, s), TS_OK);
    assert_string_equal(s, "sent");
    free(ev);
    assert_int_equal(ts_outbox_find_receipt(o, "R404", &ev, s), TS_ERR_NOTFOUND);
    ts_outbox_close(o);

    /* the CLI's open never creates a file */
    path_in(path, sizeof path, "missing.db");
    assert_int_equal(ts_outbox_open_existing(path, &o, err, sizeof err), TS_ERR_NOTFOUND);
    assert_int_not_equal(access(path, F_OK), 0);
}

/*
 * RLIMIT_FSIZE stands in for a full disk: past it a write fails with EFBIG
 * (SIGXFSZ ignored). Adding must say TS_ERR_FULL, keep everything
 * acknowledged before, and work again once the limit is raised.
 */
static void disk_full(void **state)
{
    (void)state;
    char path[128], existing[TS_OUTBOX_ID_MAX], err[256], mid[32], receipt[32];
    char big[8000];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"pad\":\"", 8);
    memcpy(big + sizeof big - 3, "\"}", 3);
    path_in(path, sizeof path, "full.db");
    struct ts_outbox *o = NULL;
    bool dup;
    assert_int_equal(ts_outbox_open(path, NULL, &o, err, sizeof err), TS_OK);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim = {.rlim_cur = 512 * 1024, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int acked = 0, rc = TS_OK;
    for (int i = 0; i < 1000 && rc == TS_OK; i++) {
        snprintf(mid, sizeof mid, "m%d", i);
        snprintf(receipt, sizeof receipt, "R%d", i);
        rc = add(o, mid, receipt, big, &dup, existing);
        if (rc == TS_OK)
            acked++;
    }
    assert_int_equal(rc, TS_ERR_FULL);
    assert_true(acked > 10);
    /* still full: refused again, not corrupted */
    assert_int_equal(add(o, "late", "RL", big, &dup, existing), TS_ERR_FULL);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(add(o, "after", "RA", big, &dup, existing), TS_OK);
    struct ts_outbox_stats st;
    assert_int_equal(ts_outbox_stats(o, &st), TS_OK);
    assert_int_equal(st.pending, acked + 1);
    ts_outbox_close(o);
}

/* ---- power cuts -------------------------------------------------------------*/

#define CYCLES 120
#define MAX_ACKED 20000

static char acked_ids[MAX_ACKED][24];
/* 0 pending; 1 marked sent (not fsync'd: a cut may undo it); 2 marked sent
 * and a purchase committed (fsync'd) after it, which makes the mark durable */
static int acked_sent[MAX_ACKED];
static int nacked;

static bool integrity_ok(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        ok = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    if (!ok)
        fprintf(stderr, "integrity_check: %s\n",
                st ? (const char *)sqlite3_column_text(st, 0) : "?");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

static void power_cuts(void **state)
{
    (void)state;
    char path[128], err[256], existing[TS_OUTBOX_ID_MAX], receipt[32], event[600];
    path_in(path, sizeof path, "power.db");
    assert_int_equal(faultvfs_register(), SQLITE_OK);
    srand(4242);
    int cuts = 0;
    for (int cycle = 0; cycle < CYCLES; cycle++) {
        struct ts_outbox *o = NULL;
        sqlite3 *ck = NULL; /* a second connection that checkpoints now and then */
        faultvfs_arm(1 + rand() % 400);
        int rc = ts_outbox_open(path, FAULTVFS_NAME, &o, err, sizeof err);
        if (rc == TS_OK &&
            sqlite3_open_v2(path, &ck, SQLITE_OPEN_READWRITE, FAULTVFS_NAME) != SQLITE_OK) {
            sqlite3_close(ck);
            ck = NULL;
        }
        for (int i = 0; rc == TS_OK && nacked < MAX_ACKED; i++) {
            char *mid = acked_ids[nacked];
            snprintf(mid, sizeof acked_ids[0], "c%d-%d", cycle, i);
            snprintf(receipt, sizeof receipt, "R-%s", mid);
            /* events of varied size so pages split and the WAL grows */
            int pad = rand() % 500;
            snprintf(event, sizeof event, "{\"id\":\"%s\",\"pad\":\"%.*s\"}", mid, pad,
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
            bool dup = false;
            struct ts_outbox_entry e = {
                .message_id = mid, .receipt = receipt, .source = "api", .event = event};
            rc = ts_outbox_add(o, &e, cycle, &dup, existing);
            if (rc != TS_OK)
                break;
            assert_false(dup);
            for (int k = 0; k < nacked; k++)
                if (acked_sent[k] == 1)
                    acked_sent[k] = 2;
            acked_sent[nacked++] = 0;
            /* the uploader's side: mark an earlier one sent */
            if (i % 4 == 3) {
                int k = rand() % nacked;
                const char *ids[] = {acked_ids[k]};
                if (acked_sent[k] == 0) {
                    rc = ts_outbox_mark_sent(o, ids, 1, cycle);
                    if (rc == TS_OK)
                        acked_sent[k] = 1;
                }
            }
            if (ck && i % 25 == 24 &&
                sqlite3_exec(ck, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) !=
                    SQLITE_OK &&
                faultvfs_dead())
                rc = TS_ERR_IO;
        }
        /* the power is off (or the open itself failed after it went) */
        assert_true(faultvfs_dead());
        sqlite3_close(ck);
        ts_outbox_close(o);
        if (faultvfs_power_cut() > 0)
            cuts++;

        assert_true(integrity_ok(path));
        assert_int_equal(ts_outbox_open(path, NULL, &o, err, sizeof err), TS_OK);
        for (int k = 0; k < nacked; k++) {
            char *ev = NULL, st[8];
            snprintf(receipt, sizeof receipt, "R-%.*s", (int)sizeof acked_ids[0] - 1, acked_ids[k]);
            rc = ts_outbox_find_receipt(o, receipt, &ev, st);
            if (rc != TS_OK)
                fail_msg("cycle %d: acknowledged purchase %s lost", cycle, acked_ids[k]);
            if (acked_sent[k] == 2 && strcmp(st, "sent") != 0)
                fail_msg("cycle %d: %s was marked sent, is %s", cycle, acked_ids[k], st);
            acked_sent[k] = strcmp(st, "sent") == 0 ? 2 : 0;
            free(ev);
        }
        ts_outbox_close(o);
        assert_true(integrity_ok(path));
    }
    print_message("%d cycles, %d acknowledged purchases, %d cuts dropped %ld unsynced writes\n",
                  CYCLES, nacked, cuts, faultvfs_dropped_writes());
    /* the test bites: most cuts threw away writes that were not synced */
    assert_true(cuts > CYCLES / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_rules),
        cmocka_unit_test(disk_full),
        cmocka_unit_test(power_cuts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
