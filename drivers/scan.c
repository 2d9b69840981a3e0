/* Scan events shared by every input. */
#include "scan.h"
#include "ts.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static int is_aim(const char *a, size_t len)
{
    /* ISO/IEC 15424: "]" symbology-character modifier-character. */
    return len >= 3 && a[0] == ']' && a[1] >= 'A' && a[1] <= 'z' &&
           ((a[2] >= '0' && a[2] <= '9') || (a[2] >= 'A' && a[2] <= 'Z'));
}

enum ts_err ts_scan_from_text(const char *source, const char *code, size_t len, const char *aim,
                              struct ts_scan *out)
{
    struct ts_scan s = {0};
    if (!code || memchr(code, '\0', len))
        return TS_ERR_INVAL;
    if (aim && *aim) {
        if (!is_aim(aim, strlen(aim)) || strlen(aim) != 3)
            return TS_ERR_INVAL;
        memcpy(s.aim, aim, 3);
    } else if (is_aim(code, len)) {
        memcpy(s.aim, code, 3);
        code += 3;
        len -= 3;
    }
    /* Trailing CR/LF/TAB suffixes come from scanners and terminals. */
    while (len && (code[len - 1] == '\r' || code[len - 1] == '\n' || code[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= TS_SCAN_MAX)
        return TS_ERR_INVAL;
    memcpy(s.data, code, len);
    s.data_len = len;
    ts_strlcpy(s.source, source ? source : "", sizeof s.source);
    s.mono_ms = ts_now_mono_ms();
    s.wall_ms = ts_now_wall_ms();
    *out = s;
    return TS_OK;
}

void ts_scan_mask(const char *code, char *out, size_t outsz)
{
    /* The last 4 characters, not bytes: a keyboard-wedge scan decoded with
     * a German or French layout ends in 'ö' or 'é', and half of one would
     * make the session JSON (and every event carrying it) invalid. */
    size_t n = strlen(code), start = n, chars = 0;
    while (start > 0 && chars < 4)
        if (((unsigned char)code[--start] & 0xc0) != 0x80)
            chars++;
    if (start == 0) {
        ts_strlcpy(out, "****", outsz);
        return;
    }
    char tail[32];
    size_t t = ts_strlcpy(tail, code + start, sizeof tail);
    json_t *as_text = json_string(tail); /* NULL for anything but well-formed UTF-8 */
    if (t >= sizeof tail || !as_text)
        for (size_t i = 0; tail[i]; i++) /* bytes that are no text: shown as '?' */
            if ((unsigned char)tail[i] >= 0x80)
                tail[i] = '?';
    json_decref(as_text);
    snprintf(out, outsz, "…%s", tail);
}
