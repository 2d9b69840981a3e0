/* libFuzzer: the serial framer (drivers/serial.c) under every suffix mode,
 * with the inter-character timeout driven from the input, and each code it
 * hands over through the payment card guard and the GS1 parser. */
#include "guard.h"
#include "serial.h"
#include "symbology.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_code(void *ctx, const char *d, size_t n, const char *aim)
{
    (void)ctx;
    struct ts_gs1 g;
    char err[64];
    (void)ts_guard_check(NULL, aim, d, n);
    (void)ts_gs1_parse(d, n, &g, err, sizeof err);
    (void)ts_symbology_upos(aim, d, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct ts_serial_framer f;
    /* First byte: mode, aim flag; then chunks whose first byte is a time step. */
    ts_serial_framer_init(&f, (enum ts_serial_suffix)(data[0] % 6), (data[0] & 0x40) ? 20 : 0,
                          data[0] & 0x80);
    if (f.suffix == TS_SUFFIX_NONE && f.ict_ms == 0)
        f.ict_ms = 20;
    int64_t now = 0;
    size_t i = 1;
    while (i < size) {
        now += data[i++] % 64;
        ts_serial_framer_tick(&f, now, on_code, NULL);
        size_t n = size - i < 17 ? size - i : 17;
        ts_serial_framer_feed(&f, data + i, n, now, on_code, NULL);
        i += n;
    }
    ts_serial_framer_tick(&f, now + 1000, on_code, NULL);
    return 0;
}
