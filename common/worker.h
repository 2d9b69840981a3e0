/*
 * One background thread with the plumbing every loop of ours needs: a stop
 * flag, a kick (new work), a sleep that either ends, and a join. The
 * condition variable always runs on CLOCK_MONOTONIC, so a wall-clock step
 * (NTP, a till set by hand) never stretches or cuts a sleep.
 *
 * Embed a struct ts_worker in the subsystem, ts_worker_init it, then
 * ts_worker_start with the loop; the loop calls ts_worker_sleep between
 * rounds and returns once it says to stop. ts_worker_stop asks and joins.
 */
#ifndef TS_WORKER_H
#define TS_WORKER_H

#include "ts.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct ts_worker;
typedef void (*ts_worker_fn)(struct ts_worker *w, void *arg);

struct ts_worker {
    pthread_mutex_t mu; /* guards stop and kicked; a loop may guard more with it */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    bool stop, kicked;
    bool started, inited;
    pthread_t thread;
    ts_worker_fn fn;
    void *arg;
};

/* How ts_worker_sleep treats a kick. */
enum ts_worker_wake {
    TS_WORKER_KICKABLE = 0, /* a kick ends the sleep */
    TS_WORKER_NO_KICK = 1,  /* only the deadline or stop does (a back-off) */
};

/* A condition variable whose timed waits count on CLOCK_MONOTONIC, and the
 * absolute deadline ms from now on that clock, for every timed wait of ours
 * (a wall-clock step must not stretch or cut one). */
enum ts_err ts_cond_init_mono(pthread_cond_t *cv);
struct timespec ts_mono_deadline(int64_t ms);

/* Sets up the mutex and the monotonic condition variable. */
enum ts_err ts_worker_init(struct ts_worker *w);
/* Runs fn(w, arg) on a new thread. TS_ERR_NOMEM when it cannot start. */
enum ts_err ts_worker_start(struct ts_worker *w, ts_worker_fn fn, void *arg);
/* Asks the loop to stop and wakes it; does not wait. */
void ts_worker_request_stop(struct ts_worker *w);
/* Asks, then joins; a worker never started only gets its flag set. */
void ts_worker_stop(struct ts_worker *w);
/* Frees what ts_worker_init made (after stop); NULL-safe, idempotent. */
void ts_worker_destroy(struct ts_worker *w);
/* Marks work pending and wakes a kickable sleep. */
void ts_worker_kick(struct ts_worker *w);
/* Whether a stop was asked. */
bool ts_worker_stopping(struct ts_worker *w);
/*
 * Sleeps up to ms (<= 0: not at all), ending early on stop and, when
 * kickable, on a kick (a kick that came before the call counts, and is
 * consumed). Returns true when the loop should stop.
 */
bool ts_worker_sleep(struct ts_worker *w, int64_t ms, enum ts_worker_wake wake);
/* The same with the caller already holding w->mu (loops that guard their
 * own state with it); returns with w->mu held. */
bool ts_worker_sleep_locked(struct ts_worker *w, int64_t ms, enum ts_worker_wake wake);

#endif
