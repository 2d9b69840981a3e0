/* The background thread of worker.h. */
#include "worker.h"

#include <time.h>

struct timespec ts_mono_deadline(int64_t ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += (time_t)(ms / 1000);
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    return dl;
}

enum ts_err ts_cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return TS_ERR_NOMEM;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc == 0 ? TS_OK : TS_ERR_NOMEM;
}

enum ts_err ts_worker_init(struct ts_worker *w)
{
    *w = (struct ts_worker){0};
    if (ts_cond_init_mono(&w->cv) != TS_OK)
        return TS_ERR_NOMEM;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        pthread_cond_destroy(&w->cv);
        return TS_ERR_NOMEM;
    }
    w->inited = true;
    return TS_OK;
}

static void *trampoline(void *arg)
{
    struct ts_worker *w = arg;
    w->fn(w, w->arg);
    return NULL;
}

enum ts_err ts_worker_start(struct ts_worker *w, ts_worker_fn fn, void *arg)
{
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_lock(&w->mu);
    w->stop = false;
    pthread_mutex_unlock(&w->mu);
    if (pthread_create(&w->thread, NULL, trampoline, w) != 0)
        return TS_ERR_NOMEM;
    w->started = true;
    return TS_OK;
}

void ts_worker_request_stop(struct ts_worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void ts_worker_stop(struct ts_worker *w)
{
    if (!w || !w->inited)
        return;
    ts_worker_request_stop(w);
    if (w->started) {
        pthread_join(w->thread, NULL);
        w->started = false;
    }
}

void ts_worker_destroy(struct ts_worker *w)
{
    if (!w || !w->inited)
        return;
    ts_worker_stop(w);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->inited = false;
}

void ts_worker_kick(struct ts_worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->kicked = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

bool ts_worker_stopping(struct ts_worker *w)
{
    pthread_mutex_lock(&w->mu);
    bool stop = w->stop;
    pthread_mutex_unlock(&w->mu);
    return stop;
}

bool ts_worker_sleep_locked(struct ts_worker *w, int64_t ms, enum ts_worker_wake wake)
{
    bool kickable = wake == TS_WORKER_KICKABLE;
    if (ms > 0) {
        struct timespec dl = ts_mono_deadline(ms);
        while (!w->stop && !(kickable && w->kicked) &&
               pthread_cond_timedwait(&w->cv, &w->mu, &dl) == 0) {
        }
    }
    if (kickable)
        w->kicked = false;
    return w->stop;
}

bool ts_worker_sleep(struct ts_worker *w, int64_t ms, enum ts_worker_wake wake)
{
    pthread_mutex_lock(&w->mu);
    bool stop = ts_worker_sleep_locked(w, ms, wake);
    pthread_mutex_unlock(&w->mu);
    return stop;
}
