/*
 * HID POS scanned-data report reassembly (layout and sources in hidpos.h).
 * Kept apart from the libusb driver so the unit tests and the fuzzer run
 * the parser alone.
 */
#include "hidpos.h"

#include <string.h>

void ts_hidpos_asm_reset(struct ts_hidpos_asm *a)
{
    unsigned long dropped = a->dropped;
    explicit_bzero(a, sizeof *a);
    a->dropped = dropped;
}

enum ts_hidpos_feed ts_hidpos_feed(struct ts_hidpos_asm *a, const uint8_t *rep, size_t n)
{
    if (n < 6 || rep[0] != TS_HIDPOS_REPORT_ID)
        return TS_HIDPOS_IGNORED;
    /* Devices with a shorter report (some send only as many bytes as the
     * descriptor's report count) put the data after the AIM id and no
     * continuation byte; a full 64-byte report has it at byte 63. */
    size_t room = n >= 64 ? TS_HIDPOS_DATA_MAX : n - 5;
    size_t len = rep[1];
    if (len > room)
        len = room;
    bool more = n >= 64 && (rep[63] & 0x01);
    /* The AIM id of the first report names the code; later reports repeat
     * it (or leave it zero). */
    if (a->len == 0 && !a->overflow && rep[2] == ']' && rep[3] >= 0x21 && rep[3] < 0x7f &&
        rep[4] >= 0x21 && rep[4] < 0x7f) {
        a->aim[0] = ']';
        a->aim[1] = (char)rep[3];
        a->aim[2] = (char)rep[4];
        a->aim[3] = '\0';
    }
    if (!a->overflow) {
        if (a->len + len >= sizeof a->data || memchr(rep + 5, 0, len)) {
            /* too long, or a NUL inside the data: never pass on half a code */
            a->overflow = true;
            explicit_bzero(a->data, sizeof a->data);
            a->len = 0;
        } else {
            memcpy(a->data + a->len, rep + 5, len);
            a->len += len;
        }
    }
    if (more)
        return TS_HIDPOS_MORE;
    if (a->overflow || a->len == 0) {
        a->dropped++;
        ts_hidpos_asm_reset(a);
        return TS_HIDPOS_DROPPED;
    }
    a->data[a->len] = '\0';
    return TS_HIDPOS_DONE;
}
