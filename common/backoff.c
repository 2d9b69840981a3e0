/*
 * Retry back-off for every loop that talks to a peer (agent sync and
 * uploader, the hub's upstream forwarder): one definition of attempt, cap
 * and floor, so the three cannot drift apart again.
 */
#include "ts.h"

/*
 * Full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog,
 * 2015): uniform in [floor, min(cap, base * 2^attempt)], attempt 0 being the
 * first retry. r is a uniform 32-bit number; the range is scaled, not taken
 * modulo, so every value is (within 2^-32) equally likely and r = 0 /
 * UINT32_MAX give exactly the two ends. A floor at or above the ceiling wins.
 */
int64_t ts_backoff_pick_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, int64_t floor_ms,
                           uint32_t r)
{
    if (base_ms < 1)
        base_ms = 1;
    int64_t ceiling = base_ms;
    for (unsigned i = 0; i < attempt && ceiling < cap_ms; i++)
        ceiling *= 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    if (floor_ms < 0)
        floor_ms = 0;
    if (ceiling <= floor_ms)
        return floor_ms;
    uint64_t span = (uint64_t)(ceiling - floor_ms) + 1;
    return floor_ms + (int64_t)((span * (uint64_t)r) >> 32);
}

int64_t ts_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, int64_t floor_ms)
{
    uint32_t r = 0;
    if (ts_random(&r, sizeof r) != TS_OK)
        r = (uint32_t)ts_now_mono_ms() * 2654435761u; /* never fails on Linux >= 3.17 */
    return ts_backoff_pick_ms(attempt, base_ms, cap_ms, floor_ms, r);
}
