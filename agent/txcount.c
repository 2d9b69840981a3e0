/* Transactions per local day (txcount.h). */
#include "txcount.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct day {
    char day[11];
    int64_t all, identified;
};

struct ts_txcount {
    pthread_mutex_t mu;
    char path[TS_AGENT_PATH_MAX + 32];
    struct day d[TS_TX_KEEP_DAYS]; /* newest first */
    size_t n;
};

void ts_txcount_day(int64_t ms, char day[11], long *utc_offset_s)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(day, 11, "%Y-%m-%d", &tm);
    if (utc_offset_s)
        *utc_offset_s = tm.tm_gmtoff;
}

static bool day_ok(const char *s)
{
    static const char pat[] = "dddd-dd-dd";
    for (size_t i = 0; i < 10; i++)
        if (!s[i] || (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i]))
            return false;
    return s[10] == '\0';
}

static void load(struct ts_txcount *t)
{
    json_error_t je;
    json_t *o = json_load_file(t->path, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        if (access(t->path, F_OK) == 0)
            TS_WARN("txcount", "%s unreadable (%s): counting afresh", t->path, je.text);
        return;
    }
    json_t *days = json_object_get(o, "days"), *v;
    size_t i;
    json_array_foreach(days, i, v)
    {
        const char *d = json_string_value(json_object_get(v, "day"));
        json_t *a = json_object_get(v, "all"), *id = json_object_get(v, "identified");
        if (t->n == TS_TX_KEEP_DAYS || !d || !day_ok(d) || !json_is_integer(a) ||
            !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > json_integer_value(a))
            continue;
        struct day *e = &t->d[t->n++];
        memcpy(e->day, d, 11);
        e->all = json_integer_value(a);
        e->identified = json_integer_value(id);
    }
    json_decref(o);
}

enum ts_err ts_txcount_open(const char *state_dir, struct ts_txcount **out)
{
    struct ts_txcount *t = calloc(1, sizeof *t);
    if (!t)
        return TS_ERR_NOMEM;
    snprintf(t->path, sizeof t->path, "%s/transactions.json", state_dir);
    pthread_mutex_init(&t->mu, NULL);
    load(t);
    *out = t;
    return TS_OK;
}

void ts_txcount_close(struct ts_txcount *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static json_t *days_json(const struct ts_txcount *t, size_t max)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < t->n && i < max; i++)
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I}", "day", t->d[i].day, "all",
                                             (json_int_t)t->d[i].all, "identified",
                                             (json_int_t)t->d[i].identified));
    return arr;
}

/* Written whole to a temporary file, synced, renamed over the old one. */
static enum ts_err save(const struct ts_txcount *t)
{
    char tmp[sizeof t->path + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", t->path);
    json_t *o = json_pack("{s:o}", "days", days_json(t, TS_TX_KEEP_DAYS));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return TS_ERR_NOMEM;
    enum ts_err rc = TS_ERR_IO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t n = strlen(s);
    if (fd >= 0 && write(fd, s, n) == (ssize_t)n && fsync(fd) == 0 && close(fd) == 0) {
        fd = -1;
        if (rename(tmp, t->path) == 0)
            rc = TS_OK;
    }
    if (fd >= 0)
        close(fd);
    if (rc != TS_OK)
        TS_WARN("txcount", "cannot write %s: %s", t->path, strerror(errno));
    free(s);
    return rc;
}

enum ts_err ts_txcount_add(struct ts_txcount *t, bool identified, int64_t now_ms)
{
    if (!t)
        return TS_OK;
    char day[11];
    ts_txcount_day(now_ms, day, NULL);
    pthread_mutex_lock(&t->mu);
    if (t->n == 0 || strcmp(t->d[0].day, day) != 0) {
        /* A new day (or a clock set back: its day goes to the front too). */
        size_t keep = t->n < TS_TX_KEEP_DAYS ? t->n : TS_TX_KEEP_DAYS - 1;
        size_t found = t->n;
        for (size_t i = 0; i < t->n; i++)
            if (strcmp(t->d[i].day, day) == 0)
                found = i;
        struct day cur = {.all = 0};
        memcpy(cur.day, day, 11);
        if (found < t->n) {
            cur = t->d[found];
            memmove(&t->d[found], &t->d[found + 1], (t->n - found - 1) * sizeof cur);
            t->n--;
            keep = t->n;
        }
        memmove(&t->d[1], &t->d[0], keep * sizeof cur);
        t->d[0] = cur;
        t->n = keep + 1;
    }
    t->d[0].all++;
    t->d[0].identified += identified;
    enum ts_err rc = save(t);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

json_t *ts_txcount_report(struct ts_txcount *t, int64_t now_ms)
{
    if (!t)
        return NULL;
    long off = 0;
    char day[11];
    ts_txcount_day(now_ms, day, &off);
    pthread_mutex_lock(&t->mu);
    json_t *o = t->n ? json_pack("{s:I, s:o}", "utc_offset_s", (json_int_t)off, "days",
                                 days_json(t, TS_TX_REPORT_DAYS))
                     : NULL;
    pthread_mutex_unlock(&t->mu);
    return o;
}
