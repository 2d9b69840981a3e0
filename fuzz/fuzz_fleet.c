/*
 * libFuzzer target: the health report a terminal sends with its feed polls
 * (hub/fleet.c), both as the X-Tillside-Health header value (base64url) and
 * as the JSON inside it. Beyond "no crash": what the parser accepts, written
 * back in the hub's own form, parses again to the same form (the database
 * keeps that form and reads it back), and stays within the size limit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const struct ts_fleet_report *r)
{
    ts_buf a = {0}, b = {0};
    struct ts_fleet_report again;
    char err[160];
    if (ts_fleet_report_json(r, &a) != TS_OK)
        abort();
    if (a.len > TS_FLEET_MAX_JSON + 256 ||
        ts_fleet_report_parse(a.data, a.len, &again, err, sizeof err) != TS_OK) {
        fprintf(stderr, "fuzz_fleet: the hub's own form does not parse: %s\n%s\n", err, a.data);
        abort();
    }
    if (ts_fleet_report_json(&again, &b) != TS_OK || a.len != b.len ||
        memcmp(a.data, b.data, a.len) != 0) {
        fprintf(stderr, "fuzz_fleet: not stable:\n%s\n%s\n", a.data, b.data);
        abort();
    }
    ts_buf_free(&a);
    ts_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ts_fleet_report r;
    char err[160];
    if (ts_fleet_report_parse((const char *)data, size, &r, err, sizeof err) == TS_OK)
        round_trip(&r);
    char *v = malloc(size + 1);
    if (!v)
        return 0;
    memcpy(v, data, size);
    v[size] = '\0';
    if (ts_fleet_report_decode(v, strlen(v), &r, err, sizeof err) == TS_OK)
        round_trip(&r);
    free(v);
    return 0;
}
