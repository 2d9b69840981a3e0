/*
 * ts-input-run: runs the real input runner on a configuration's [input.*]
 * sections and prints what comes out, one line each, on stdout:
 *   scan INPUT AIM UPOS DATA      (DATA with bytes < 0x20 as ^X, as umockdev scripts)
 *   state INPUT waiting|open|error DETAIL
 *   drop INPUT
 * Exits after -n scans (0 = until -t), or after -t milliseconds. Used by
 * the serial replay tests under umockdev-run and by bench/.
 *   ts-input-run -c FILE [-n SCANS] [-t MS]
 */
#include "conf.h"
#include "input.h"
#include "ts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct run {
    long scans, drops;
};

static void on_scan(void *ctx, const struct ts_scan *s)
{
    struct run *r = ctx;
    printf("scan %s %s %d ", s->source, s->aim[0] ? s->aim : "-", s->upos_type);
    for (size_t i = 0; i < s->data_len; i++) {
        unsigned char c = (unsigned char)s->data[i];
        if (c < 0x20)
            printf("^%c", c + 64);
        else
            putchar(c);
    }
    putchar('\n');
    fflush(stdout);
    r->scans++;
}

static void on_state(void *ctx, const char *input, enum ts_input_state st, const char *detail)
{
    (void)ctx;
    printf("state %s %s %s\n", input, ts_input_state_name(st), detail);
    fflush(stdout);
}

static void on_drop(void *ctx, const char *input)
{
    struct run *r = ctx;
    r->drops++;
    printf("drop %s\n", input);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *conf_path = NULL;
    long want = 0, ms = 10000;
    int opt;
    while ((opt = getopt(argc, argv, "c:n:t:")) != -1) {
        if (opt == 'c')
            conf_path = optarg;
        else if (opt == 'n')
            want = atol(optarg);
        else if (opt == 't')
            ms = atol(optarg);
        else
            return 2;
    }
    if (!conf_path) {
        fprintf(stderr, "usage: ts-input-run -c FILE [-n SCANS] [-t MS]\n");
        return 2;
    }
    char err[1024];
    struct ts_conf *conf = NULL;
    struct ts_inputs *in = NULL;
    struct run r = {0};
    if (ts_conf_load(conf_path, &conf, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct ts_driver_host host = {
        .ctx = &r, .on_scan = on_scan, .on_state = on_state, .on_guard_drop = on_drop};
    if (ts_inputs_open(conf, &host, &in, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        ts_conf_free(conf);
        return 1;
    }
    int64_t end = ts_now_mono_ms() + ms;
    while (ts_now_mono_ms() < end && (want == 0 || r.scans + r.drops < want))
        ts_inputs_run_once(in, 50);
    ts_inputs_free(in);
    ts_conf_free(conf);
    return want && r.scans + r.drops < want ? 3 : 0;
}
