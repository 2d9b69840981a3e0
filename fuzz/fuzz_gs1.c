/* libFuzzer: GS1 element strings (drivers/symbology.c) and the payment card
 * guard (drivers/guard.c) on arbitrary scanned bytes. */
#include "guard.h"
#include "symbology.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ts_gs1 g;
    char err[128];
    const char *s = (const char *)data;
    if (ts_gs1_parse(s, size, &g, err, sizeof err) == 0)
        for (int i = 0; i < g.n; i++)
            (void)ts_gs1_get(&g, g.f[i].ai);
    static const char *aims[] = {NULL, "]C1", "]E0", "]Q1", "]d2"};
    (void)ts_guard_check(NULL, aims[size % 5], s, size);
    (void)ts_luhn_valid(s, size);
    (void)ts_gs1_check_ok(s, size);
    return 0;
}
