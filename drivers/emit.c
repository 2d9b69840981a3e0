/*
 * ts_driver_emit: the payment card guard at the driver boundary (driver.h).
 * Every driver calls it; it depends on the guard and symbology only.
 */
#include "driver.h"
#include "guard.h"
#include "symbology.h"
#include "ts.h"

#include <string.h>

bool ts_driver_emit(const struct ts_driver_host *host, const char *input, const char *data,
                    size_t len, const char *aim)
{
    enum ts_guard_verdict v = ts_guard_check(host->guard, aim, data, len);
    if (v != TS_GUARD_PASS) {
        /* Nothing of the scan in the log, not even masked: the kind is
         * enough to find the cause (a card swiped at the scanner). */
        TS_WARN("guard", "payment card data dropped from input %s (%s)", input,
                v == TS_GUARD_TRACK ? "magnetic stripe track" : "card number");
        if (host->on_guard_drop)
            host->on_guard_drop(host->ctx, input);
        return false;
    }
    if (len == 0 || len >= TS_SCAN_MAX || memchr(data, '\0', len)) {
        TS_WARN("input", "[%s] dropped a %zu-byte scan (empty, too long or binary)", input, len);
        return false;
    }
    struct ts_scan s = {0};
    ts_strlcpy(s.source, input, sizeof s.source);
    s.mono_ms = host->now_mono_ms ? host->now_mono_ms(host->ctx) : ts_now_mono_ms();
    s.wall_ms = host->now_wall_ms ? host->now_wall_ms(host->ctx) : ts_now_wall_ms();
    memcpy(s.data, data, len);
    s.data_len = len;
    if (aim && strlen(aim) == 3)
        memcpy(s.aim, aim, 3);
    s.upos_type = (int)ts_symbology_upos(s.aim, s.data, s.data_len);
    if (host->on_scan)
        host->on_scan(host->ctx, &s);
    explicit_bzero(&s, sizeof s);
    return true;
}

const char *ts_input_name(const char *section)
{
    return strncmp(section, "input.", 6) == 0 && section[6] ? section + 6 : section;
}
