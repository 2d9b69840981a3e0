/*
 * Which stores' feeds a commit changed (hub.h ts_hub_store_on_feed): the
 * last feed seq of every store a long-poll asked about, kept in memory and
 * moved on each change notice (this process's commits, the PostgreSQL
 * listener's notices, the SQLite data_version watch) by one query over the
 * rows stamped since the last look (feed_by_seq). Only the stores whose seq
 * moved are announced, so the servers wake only their parked long-polls
 * (ts_httpd_wake_topic) instead of every terminal of the chain re-running
 * its feed query for one store's change.
 *
 * A poll reads its store's seq (ts_hub_store_feed_seen) before it reads the
 * feed and parks having seen it: a commit in between moves the seq past
 * that and wakes it, whichever comes first.
 */
#include "db.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define FW_BUCKETS 1024
#define FW_STORES_MAX 100000
#define FW_FNS 4

struct fw_store {
    char id[64];
    uint64_t seq;
    struct fw_store *next;
};

struct ts_hub_feedwatch {
    struct ts_hub_store *s;
    pthread_mutex_t mu;     /* the map and the callbacks */
    pthread_mutex_t run_mu; /* one look at the feed at a time */
    _Atomic bool again;     /* a notice came: look (again) */
    bool init;              /* last is set (under run_mu) */
    uint64_t last;          /* the highest feed seq looked at (under run_mu) */
    struct fw_store *map[FW_BUCKETS];
    size_t n;
    void (*fn[FW_FNS])(void *, const char *, uint64_t);
    void *ud[FW_FNS];
    int nfn;
};

static unsigned fw_hash(const char *a)
{
    return ts_hash_str(a) % FW_BUCKETS;
}

static struct fw_store *fw_find(struct ts_hub_feedwatch *fw, const char *id)
{
    for (struct fw_store *e = fw->map[fw_hash(id)]; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

struct moved {
    char id[64];
    uint64_t seq;
};

/* Under run_mu: the stores whose rows were stamped since fw->last, each
 * announced to the callbacks when it moved past what the map had. */
static void look(struct ts_hub_feedwatch *fw)
{
    static const char *const sql[] = {
        "SELECT store_id, MAX(seq) FROM feed WHERE seq > ?1 GROUP BY store_id"};
    struct ts_sql_stmt *st = NULL;
    struct moved *mv = NULL;
    size_t n = 0, cap = 0;
    uint64_t top = fw->last;
    struct ts_sql *db = ts_hub_db_read_begin(fw->s, false);
    if (!fw->init) {
        fw->last = top = (uint64_t)ts_hub_db_meta(db, "seq");
        fw->init = true;
    } else if (ts_sql_prepare(db, sql[0], &st) == TS_OK) {
        ts_sql_bind_int64(st, 1, (int64_t)fw->last);
        while (ts_sql_step(st) == TS_SQL_ROW) {
            const char *id = ts_sql_column_text(st, 0);
            uint64_t seq = (uint64_t)ts_sql_column_int64(st, 1);
            if (!id || strlen(id) >= sizeof mv->id)
                continue;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                struct moved *m = realloc(mv, nc * sizeof *m);
                if (!m)
                    break;
                mv = m;
                cap = nc;
            }
            ts_strlcpy(mv[n].id, id, sizeof mv[n].id);
            mv[n++].seq = seq;
            top = seq > top ? seq : top;
        }
    } else {
        TS_WARN("hub", "feed watch: %s", ts_sql_errmsg(db));
    }
    ts_sql_finalize(st);
    ts_hub_db_read_end(fw->s, false);
    fw->last = top;
    void (*fn[FW_FNS])(void *, const char *, uint64_t);
    void *ud[FW_FNS];
    pthread_mutex_lock(&fw->mu);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct fw_store *e = fw_find(fw, mv[i].id);
        if (e && mv[i].seq > e->seq) {
            e->seq = mv[i].seq;
            mv[k++] = mv[i]; /* only what a poll waits on is announced */
        }
    }
    int nfn = fw->nfn;
    memcpy(fn, fw->fn, sizeof fn);
    memcpy(ud, fw->ud, sizeof ud);
    pthread_mutex_unlock(&fw->mu);
    for (size_t i = 0; i < k; i++)
        for (int j = 0; j < nfn; j++)
            fn[j](ud[j], mv[i].id, mv[i].seq);
    free(mv);
}

/* Looks as long as notices keep coming, unless another thread does. */
static void drain(struct ts_hub_feedwatch *fw)
{
    while (atomic_load(&fw->again)) {
        if (pthread_mutex_trylock(&fw->run_mu) != 0)
            return; /* its holder looks again before it lets go */
        while (atomic_exchange(&fw->again, false))
            look(fw);
        pthread_mutex_unlock(&fw->run_mu);
    }
}

/* ts_hub_store_on_change's callback: after every change notice. */
static void on_notice(void *ud)
{
    struct ts_hub_feedwatch *fw = ud;
    atomic_store(&fw->again, true);
    drain(fw);
}

static void fw_free(struct ts_hub_feedwatch *fw)
{
    if (!fw)
        return;
    for (int i = 0; i < FW_BUCKETS; i++)
        while (fw->map[i]) {
            struct fw_store *e = fw->map[i];
            fw->map[i] = e->next;
            free(e);
        }
    pthread_mutex_destroy(&fw->mu);
    pthread_mutex_destroy(&fw->run_mu);
    free(fw);
}

enum ts_err ts_hub_store_on_feed(struct ts_hub_store *s,
                                 void (*fn)(void *ud, const char *store_id, uint64_t seq), void *ud)
{
    struct ts_hub_feedwatch *fw = ts_hub_db_feedwatch(s);
    if (!fw) {
        if (!(fw = calloc(1, sizeof *fw)))
            return TS_ERR_NOMEM;
        fw->s = s;
        pthread_mutex_init(&fw->mu, NULL);
        pthread_mutex_init(&fw->run_mu, NULL);
        enum ts_err rc = ts_hub_store_on_change(s, on_notice, fw);
        if (rc != TS_OK) {
            fw_free(fw);
            return rc;
        }
        ts_hub_db_set_feedwatch(s, fw, fw_free);
    }
    pthread_mutex_lock(&fw->mu);
    enum ts_err rc = fw->nfn < FW_FNS ? TS_OK : TS_ERR_FULL;
    if (rc == TS_OK) {
        fw->ud[fw->nfn] = ud;
        fw->fn[fw->nfn++] = fn;
    }
    pthread_mutex_unlock(&fw->mu);
    return rc;
}

bool ts_hub_store_feed_seen(struct ts_hub_store *s, const char *store_id, uint64_t *seq)
{
    struct ts_hub_feedwatch *fw = ts_hub_db_feedwatch(s);
    if (!fw || strlen(store_id) >= sizeof fw->map[0]->id)
        return false;
    pthread_mutex_lock(&fw->mu);
    struct fw_store *e = fw_find(fw, store_id);
    *seq = e ? e->seq : 0;
    pthread_mutex_unlock(&fw->mu);
    if (e)
        return true;
    /* A store nobody asked about yet: its last seq, read while no look runs
     * (a commit after it is then looked at with it in the map). */
    pthread_mutex_lock(&fw->run_mu);
    if (!fw->init) {
        struct ts_sql *db = ts_hub_db_read_begin(s, false);
        fw->last = (uint64_t)ts_hub_db_meta(db, "seq");
        fw->init = true;
        ts_hub_db_read_end(s, false);
    }
    static const char *const sql[] = {"SELECT MAX(seq) FROM feed WHERE store_id = ?1"};
    struct ts_sql_stmt *st = NULL;
    bool ok = false;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    if (ts_sql_prepare(db, sql[0], &st) == TS_OK && ts_sql_bind_text(st, 1, store_id) == TS_OK &&
        ts_sql_step(st) == TS_SQL_ROW) {
        *seq = (uint64_t)ts_sql_column_int64(st, 0); /* NULL (no rows) reads 0 */
        ok = true;
    }
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    pthread_mutex_lock(&fw->mu);
    if (ok && !(e = fw_find(fw, store_id))) {
        e = fw->n < FW_STORES_MAX ? calloc(1, sizeof *e) : NULL;
        if (e) {
            ts_strlcpy(e->id, store_id, sizeof e->id);
            e->seq = *seq;
            unsigned h = fw_hash(store_id);
            e->next = fw->map[h];
            fw->map[h] = e;
            fw->n++;
        }
    } else if (e) {
        *seq = e->seq;
    }
    pthread_mutex_unlock(&fw->mu);
    pthread_mutex_unlock(&fw->run_mu);
    drain(fw); /* a notice that came while we held run_mu */
    return e != NULL;
}
