/* The agent's event bus: numbered events in a ring, waited on by SSE
 * streams (see agent.h). */
#include "agent.h"
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ts_bus {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ts_bus_event *ring;
    size_t cap;
    uint64_t last; /* id of the newest event */
    bool closed;
    uint64_t wakes; /* ts_bus_wake calls: a waiter returns early */
};

enum ts_err ts_bus_new(size_t capacity, struct ts_bus **out)
{
    struct ts_bus *b = calloc(1, sizeof *b);
    if (!b || !(b->ring = calloc(capacity, sizeof *b->ring))) {
        free(b);
        return TS_ERR_NOMEM;
    }
    b->cap = capacity;
    if (ts_cond_init_mono(&b->cv) != TS_OK) {
        free(b->ring);
        free(b);
        return TS_ERR_NOMEM;
    }
    pthread_mutex_init(&b->mu, NULL);
    *out = b;
    return TS_OK;
}

void ts_bus_free(struct ts_bus *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->cap; i++)
        free(b->ring[i].data);
    free(b->ring);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

uint64_t ts_bus_publish(struct ts_bus *b, const char *type, const char *json)
{
    char *copy = strdup(json);
    if (!copy)
        return 0;
    pthread_mutex_lock(&b->mu);
    uint64_t id = ++b->last;
    struct ts_bus_event *e = &b->ring[id % b->cap];
    free(e->data);
    e->id = id;
    ts_strlcpy(e->type, type, sizeof e->type);
    e->data = copy;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return id;
}

uint64_t ts_bus_last_id(struct ts_bus *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t id = b->last;
    pthread_mutex_unlock(&b->mu);
    return id;
}

enum ts_err ts_bus_next(struct ts_bus *b, uint64_t after, int timeout_ms, struct ts_bus_event *out)
{
    struct timespec deadline = ts_mono_deadline(timeout_ms);
    int rc = TS_OK;
    pthread_mutex_lock(&b->mu);
    uint64_t wakes = b->wakes;
    while (!b->closed && b->last <= after) {
        if (b->wakes != wakes) {
            rc = TS_ERR_TIMEOUT;
            break;
        }
        if (pthread_cond_timedwait(&b->cv, &b->mu, &deadline) == ETIMEDOUT) {
            rc = TS_ERR_TIMEOUT;
            break;
        }
    }
    if (b->closed) {
        rc = TS_ERR_CLOSED;
    } else if (rc == TS_OK) {
        /* Oldest still in the ring if the reader fell behind. */
        uint64_t want = after + 1;
        if (b->last - want >= b->cap)
            want = b->last - b->cap + 1;
        const struct ts_bus_event *e = &b->ring[want % b->cap];
        char *copy = strdup(e->data);
        if (!copy) {
            rc = TS_ERR_NOMEM;
        } else {
            *out = *e;
            out->data = copy;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void ts_bus_wake(struct ts_bus *b)
{
    pthread_mutex_lock(&b->mu);
    b->wakes++;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void ts_bus_close(struct ts_bus *b)
{
    pthread_mutex_lock(&b->mu);
    b->closed = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}
