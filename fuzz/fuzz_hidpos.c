/*
 * libFuzzer target: the HID POS report reassembler (drivers/hidpos_report.c)
 * fed a stream of reports as a scanner would send them. Input: repeated
 * [length byte][that many report bytes]. Checks the promises a caller relies
 * on: a completed code is NUL-terminated, has no NUL inside, fits
 * TS_SCAN_MAX, and its AIM id is "" or "]" plus two printable characters.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hidpos.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ts_hidpos_asm a;
    memset(&a, 0, sizeof a);
    size_t i = 0;
    while (i < size) {
        size_t n = data[i++];
        if (n > size - i)
            n = size - i;
        uint8_t rep[256];
        memcpy(rep, data + i, n);
        i += n;
        enum ts_hidpos_feed r = ts_hidpos_feed(&a, rep, n);
        if (r == TS_HIDPOS_DONE) {
            assert(a.len > 0 && a.len < TS_SCAN_MAX);
            assert(a.data[a.len] == '\0');
            assert(strlen(a.data) == a.len);
            assert(a.aim[0] == '\0' || (a.aim[0] == ']' && strlen(a.aim) == 3));
            ts_hidpos_asm_reset(&a);
        }
        assert(a.len < TS_SCAN_MAX);
    }
    return 0;
}
