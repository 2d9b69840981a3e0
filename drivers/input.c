/*
 * The input runner: one thread, one poll(2) over every input's fds, woken
 * by the earliest driver deadline or a stop request (an eventfd). The
 * drivers come from the registry (registry.c); what they read leaves them
 * through ts_driver_emit (emit.c), so no driver calls back into this file.
 */
#include "input.h"
#include "conf.h"
#include "ts.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---- runner -------------------------------------------------------------- */

#define MAX_INPUTS 16
#define MAX_FDS 64

struct input {
    char name[48];
    const struct ts_driver_ops *ops;
    void *self;
    enum ts_input_state state;
    char detail[256];
    int fd0, nfds; /* this input's slice of the pollfd array */
};

struct ts_inputs {
    struct ts_driver_host outer; /* the caller's host */
    struct ts_driver_host inner; /* what drivers get: state and drops pass through us */
    struct ts_guard guard;
    struct input in[MAX_INPUTS];
    size_t n;
    pthread_mutex_t mu; /* guards state/detail/drops */
    uint64_t drops;
    uint64_t refused; /* network peers the inputs turned away */
    int wake;         /* eventfd: stop */
    volatile int stop;
    bool running;
    pthread_t thread;
    struct pollfd fds[MAX_FDS + 1];
};

const char *ts_input_state_name(enum ts_input_state st)
{
    switch (st) {
    case TS_INPUT_WAITING:
        return "waiting";
    case TS_INPUT_OPEN:
        return "open";
    case TS_INPUT_ERROR:
        return "error";
    }
    return "unknown";
}

static void inner_state(void *ctx, const char *input, enum ts_input_state st, const char *detail)
{
    struct ts_inputs *r = ctx;
    input = ts_input_name(input); /* a driver that reports its section still counts */
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->in[i].name, input)) {
            r->in[i].state = st;
            ts_strlcpy(r->in[i].detail, detail ? detail : "", sizeof r->in[i].detail);
        }
    pthread_mutex_unlock(&r->mu);
    if (r->outer.on_state)
        r->outer.on_state(r->outer.ctx, input, st, detail);
}

static void inner_drop(void *ctx, const char *input)
{
    struct ts_inputs *r = ctx;
    pthread_mutex_lock(&r->mu);
    r->drops++;
    pthread_mutex_unlock(&r->mu);
    if (r->outer.on_guard_drop)
        r->outer.on_guard_drop(r->outer.ctx, input);
}

static void inner_refused(void *ctx, const char *input, const char *peer)
{
    struct ts_inputs *r = ctx;
    pthread_mutex_lock(&r->mu);
    r->refused++;
    pthread_mutex_unlock(&r->mu);
    if (r->outer.on_peer_refused)
        r->outer.on_peer_refused(r->outer.ctx, input, peer);
}

static void inner_scan(void *ctx, const struct ts_scan *s)
{
    struct ts_inputs *r = ctx;
    if (r->outer.on_scan)
        r->outer.on_scan(r->outer.ctx, s);
}

static void inner_purchase(void *ctx, const char *input, struct json_t *p)
{
    struct ts_inputs *r = ctx;
    if (r->outer.on_purchase)
        r->outer.on_purchase(r->outer.ctx, input, p);
}

static int64_t inner_mono(void *ctx)
{
    struct ts_inputs *r = ctx;
    return r->outer.now_mono_ms ? r->outer.now_mono_ms(r->outer.ctx) : ts_now_mono_ms();
}

static int64_t inner_wall(void *ctx)
{
    struct ts_inputs *r = ctx;
    return r->outer.now_wall_ms ? r->outer.now_wall_ms(r->outer.ctx) : ts_now_wall_ms();
}

/* "serial, hidpos, ..." for error messages. */
static void known_list(char *out, size_t outsz)
{
    const char *const *names = ts_driver_names();
    out[0] = '\0';
    for (size_t i = 0; names[i]; i++) {
        size_t l = strlen(out);
        snprintf(out + l, outsz - l, "%s%s", i ? ", " : "", names[i]);
    }
}

/* A key the driver does not read: a typo that would silently keep a
 * default (baud, keymap, grab) is refused like a bad value. */
static enum ts_err check_keys(const struct ts_conf *conf, const char *sec,
                              const struct ts_driver_ops *ops, char *err, size_t errsz)
{
    const char *key;
    for (size_t i = 0; ops->keys && (key = ts_conf_key(conf, sec, i)); i++) {
        bool known = !strcmp(key, "driver");
        for (size_t k = 0; !known && ops->keys[k]; k++)
            known = !strcmp(key, ops->keys[k]);
        if (known)
            continue;
        char list[640] = "driver";
        for (size_t k = 0; ops->keys[k]; k++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, ", %s", ops->keys[k]);
        }
        return ts_conf_errf(conf, sec, key, err, errsz, "unknown key for driver %s (known: %s)",
                            ops->name, list);
    }
    return TS_OK;
}

/* The driver's own validation of its section: what open() would refuse. */
static enum ts_err check_driver(const struct ts_conf *conf, const char *sec,
                                const struct ts_driver_ops *ops, char *err, size_t errsz)
{
    int rc = check_keys(conf, sec, ops, err, errsz);
    if (rc || ops->check)
        return rc ? rc : ops->check(conf, sec, err, errsz);
    struct ts_driver_host host = {.parse_only = true};
    void *self = NULL;
    if ((rc = ops->open(conf, sec, &host, &self, err, errsz)) == TS_OK)
        ops->close(self);
    return rc;
}

enum ts_err ts_inputs_check(const struct ts_conf *conf, char *err, size_t errsz)
{
    const char *sec;
    size_t count = 0;
    for (size_t i = 0; (sec = ts_conf_section(conf, i)); i++) {
        if (strncmp(sec, "input.", 6))
            continue;
        char where[512], known[128];
        const char *drv = ts_conf_get(conf, sec, "driver", NULL);
        known_list(known, sizeof known);
        if (!sec[6] || strlen(sec + 6) >= sizeof((struct input *)0)->name) {
            ts_errf(err, errsz, "%s: [%s]: the input name must be 1 to 47 characters",
                    ts_conf_where(conf, sec, "driver", where, sizeof where), sec);
            return TS_ERR_CONFIG;
        }
        if (!drv || !*drv) {
            ts_conf_errf(conf, sec, "driver", err, errsz, "missing (known drivers: %s)", known);
            return TS_ERR_CONFIG;
        }
        if (!ts_driver_find(drv)) {
            ts_conf_errf(conf, sec, "driver", err, errsz, "unknown driver '%s' (known drivers: %s)",
                         drv, known);
            return TS_ERR_CONFIG;
        }
        int rc = check_driver(conf, sec, ts_driver_find(drv), err, errsz);
        if (rc)
            return rc;
        if (++count > MAX_INPUTS) {
            ts_errf(err, errsz, "%s: [%s]: more than %d inputs",
                    ts_conf_where(conf, sec, "driver", where, sizeof where), sec, MAX_INPUTS);
            return TS_ERR_CONFIG;
        }
    }
    struct ts_guard g;
    return ts_guard_conf(conf, &g, err, errsz);
}

enum ts_err ts_inputs_open(const struct ts_conf *conf, const struct ts_driver_host *host,
                           struct ts_inputs **out, char *err, size_t errsz)
{
    int rc = ts_inputs_check(conf, err, errsz);
    if (rc)
        return rc;
    struct ts_inputs *r = calloc(1, sizeof *r);
    if (!r)
        return TS_ERR_NOMEM;
    pthread_mutex_init(&r->mu, NULL);
    r->wake = -1;
    r->outer = *host;
    if ((rc = ts_guard_conf(conf, &r->guard, err, errsz)))
        goto fail;
    r->inner = (struct ts_driver_host){
        .ctx = r,
        .on_scan = inner_scan,
        .on_state = inner_state,
        .on_guard_drop = inner_drop,
        .on_peer_refused = inner_refused,
        .now_mono_ms = inner_mono,
        .now_wall_ms = inner_wall,
        .on_purchase = host->on_purchase ? inner_purchase : NULL,
        .guard = &r->guard,
    };
    r->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->wake < 0) {
        ts_errf(err, errsz, "eventfd: %s", strerror(errno));
        rc = TS_ERR_IO;
        goto fail;
    }
    const char *sec;
    for (size_t i = 0; (sec = ts_conf_section(conf, i)); i++) {
        if (strncmp(sec, "input.", 6))
            continue;
        struct input *in = &r->in[r->n];
        ts_strlcpy(in->name, sec + 6, sizeof in->name);
        in->ops = ts_driver_find(ts_conf_get(conf, sec, "driver", ""));
        in->state = TS_INPUT_WAITING;
        ts_strlcpy(in->detail, "not opened yet", sizeof in->detail);
        /* The count goes up first: a driver may report its state from open. */
        r->n++;
        if ((rc = in->ops->open(conf, sec, &r->inner, &in->self, err, errsz))) {
            r->n--;
            goto fail;
        }
    }
    *out = r;
    return TS_OK;
fail:
    ts_inputs_free(r);
    return rc;
}

void ts_inputs_run_once(struct ts_inputs *r, int timeout_ms)
{
    int64_t now = inner_mono(r), deadline = INT64_MAX;
    int n = 0;
    r->fds[n++] = (struct pollfd){.fd = r->wake, .events = POLLIN};
    for (size_t i = 0; i < r->n; i++) {
        struct input *in = &r->in[i];
        in->fd0 = n;
        in->nfds = in->ops->pollfds(in->self, r->fds + n, MAX_FDS + 1 - n, &deadline);
        if (in->nfds < 0)
            in->nfds = 0;
        n += in->nfds;
    }
    int wait = timeout_ms;
    if (deadline != INT64_MAX) {
        int64_t left = deadline - now;
        if (left < 0)
            left = 0;
        if (wait < 0 || left < wait)
            wait = (int)(left > 60000 ? 60000 : left);
    }
    for (int i = 0; i < n; i++)
        r->fds[i].revents = 0;
    int k = poll(r->fds, (nfds_t)n, wait);
    if (k < 0 && errno != EINTR) {
        TS_ERROR("input", "poll: %s", strerror(errno));
        ts_sleep_ms(100); /* never spin on a broken poll set */
    }
    if (r->fds[0].revents & POLLIN) {
        uint64_t v;
        (void)!read(r->wake, &v, sizeof v);
    }
    now = inner_mono(r);
    for (size_t i = 0; i < r->n && !r->stop; i++) {
        struct input *in = &r->in[i];
        in->ops->dispatch(in->self, r->fds + in->fd0, in->nfds, now);
    }
}

static void *thread_main(void *arg)
{
    struct ts_inputs *r = arg;
    while (!r->stop)
        ts_inputs_run_once(r, -1);
    return NULL;
}

enum ts_err ts_inputs_start(struct ts_inputs *r)
{
    if (!r || r->n == 0 || r->running)
        return TS_OK;
    if (pthread_create(&r->thread, NULL, thread_main, r))
        return TS_ERR_NOMEM;
    r->running = true;
    return TS_OK;
}

void ts_inputs_stop(struct ts_inputs *r)
{
    if (!r)
        return;
    r->stop = 1;
    if (r->running) {
        uint64_t one = 1;
        (void)!write(r->wake, &one, sizeof one);
        pthread_join(r->thread, NULL);
        r->running = false;
    }
}

void ts_inputs_free(struct ts_inputs *r)
{
    if (!r)
        return;
    ts_inputs_stop(r);
    for (size_t i = 0; i < r->n; i++)
        r->in[i].ops->close(r->in[i].self);
    if (r->wake >= 0)
        close(r->wake);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

size_t ts_inputs_count(const struct ts_inputs *r)
{
    return r ? r->n : 0;
}

json_t *ts_inputs_devices_json(struct ts_inputs *r)
{
    json_t *a = json_array();
    if (!r || !a)
        return a;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s}", "name", r->in[i].name, "driver",
                                           r->in[i].ops->name, "state",
                                           ts_input_state_name(r->in[i].state), "detail",
                                           r->in[i].detail));
    pthread_mutex_unlock(&r->mu);
    return a;
}

uint64_t ts_inputs_refused(struct ts_inputs *r)
{
    if (!r)
        return 0;
    pthread_mutex_lock(&r->mu);
    uint64_t n = r->refused;
    pthread_mutex_unlock(&r->mu);
    return n;
}

void ts_inputs_counts(struct ts_inputs *r, unsigned states[3], uint64_t *drops)
{
    states[0] = states[1] = states[2] = 0;
    *drops = 0;
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        if ((unsigned)r->in[i].state < 3)
            states[r->in[i].state]++;
    *drops = r->drops;
    pthread_mutex_unlock(&r->mu);
}
