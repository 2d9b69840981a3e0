/*
 * gzip bodies (sync/gzip.c): what the hub compresses the agent gets back
 * byte for byte; a body that would inflate past the cap (a zip bomb) is
 * refused without being inflated; damaged bodies are refused; and the
 * Accept-Encoding negotiation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gzip.h"
#include "ts.h"

static const char page[] =
    "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"c1\",\"keys\":[],\"card\":"
    "{\"name\":\"Ada Lovelace\"}}],\"cursor\":\"c1.aa.2\",\"more\":false}";

static void test_round_trip(void **state)
{
    (void)state;
    ts_buf z = {0}, out = {0};
    assert_int_equal(ts_gzip_compress(page, strlen(page), &z), TS_OK);
    /* RFC 1952 magic: any gzip reader (curl --compressed, Python) reads it */
    assert_true(z.len > 18 && (uint8_t)z.data[0] == 0x1f && (uint8_t)z.data[1] == 0x8b);
    assert_int_equal(ts_gzip_inflate(z.data, z.len, 1 << 20, &out), TS_OK);
    assert_int_equal(out.len, strlen(page));
    assert_memory_equal(out.data, page, out.len);
    assert_int_equal(out.data[out.len], '\0');
    /* Exactly at the cap is fine, one byte under it is not. */
    assert_int_equal(ts_gzip_inflate(z.data, z.len, strlen(page), &out), TS_OK);
    assert_int_equal(ts_gzip_inflate(z.data, z.len, strlen(page) - 1, &out), TS_ERR_FULL);
    assert_null(out.data);
    /* Compression appends, so a header can go before it. */
    ts_buf two = {0};
    ts_buf_puts(&two, "x");
    assert_int_equal(ts_gzip_compress(page, strlen(page), &two), TS_OK);
    assert_int_equal(two.len, z.len + 1);
    ts_buf_free(&two);
    ts_buf_free(&z);
    ts_buf_free(&out);
}

/* 64 MiB of zeros compress to about 64 KiB; a 1 MiB cap stops inflating at
 * 1 MiB + 1 byte and allocates no more than that. */
static void test_zip_bomb_refused(void **state)
{
    (void)state;
    size_t big = 64u << 20;
    char *zeros = calloc(1, big);
    assert_non_null(zeros);
    ts_buf bomb = {0}, out = {0};
    assert_int_equal(ts_gzip_compress(zeros, big, &bomb), TS_OK);
    free(zeros);
    assert_true(bomb.len < big / 500);
    assert_int_equal(ts_gzip_inflate(bomb.data, bomb.len, 1 << 20, &out), TS_ERR_FULL);
    assert_null(out.data);
    assert_int_equal(out.len, 0);
    /* The same through the client-side helper: the body stays as received. */
    size_t before = bomb.len;
    assert_int_equal(ts_gzip_decode_body(&bomb, "gzip", 1 << 20), TS_ERR_FULL);
    assert_int_equal(bomb.len, before);
    ts_buf_free(&bomb);
}

static void test_damaged_bodies_refused(void **state)
{
    (void)state;
    ts_buf z = {0}, out = {0};
    assert_int_equal(ts_gzip_compress(page, strlen(page), &z), TS_OK);
    for (size_t cut = 1; cut < z.len; cut++) /* truncated anywhere */
        if (ts_gzip_inflate(z.data, cut, 1 << 20, &out) != TS_ERR_PROTO)
            fail_msg("truncated to %zu of %zu bytes accepted", cut, z.len);
    z.data[z.len - 6] ^= 0x55; /* inside the CRC-32 */
    assert_int_equal(ts_gzip_inflate(z.data, z.len, 1 << 20, &out), TS_ERR_PROTO);
    z.data[z.len - 6] ^= 0x55;
    z.data[12] ^= 0x55; /* inside the deflate data */
    assert_int_not_equal(ts_gzip_inflate(z.data, z.len, 1 << 20, &out), TS_OK);
    z.data[12] ^= 0x55;
    ts_buf_puts(&z, "garbage"); /* trailing bytes */
    assert_int_equal(ts_gzip_inflate(z.data, z.len, 1 << 20, &out), TS_ERR_PROTO);
    assert_int_equal(ts_gzip_inflate(page, strlen(page), 1 << 20, &out), TS_ERR_PROTO);
    assert_int_equal(ts_gzip_inflate("", 0, 1 << 20, &out), TS_ERR_PROTO);
    assert_null(out.data);
    ts_buf_free(&z);
}

static void test_decode_body_by_encoding(void **state)
{
    (void)state;
    ts_buf body = {0};
    assert_int_equal(ts_gzip_compress("{\"a\":1}", 7, &body), TS_OK);
    assert_int_equal(ts_gzip_decode_body(&body, "gzip", 100), TS_OK);
    assert_string_equal(body.data, "{\"a\":1}");
    assert_int_equal(ts_gzip_decode_body(&body, "", 100), TS_OK); /* none: as is */
    assert_int_equal(ts_gzip_decode_body(&body, "identity", 100), TS_OK);
    assert_string_equal(body.data, "{\"a\":1}");
    assert_int_equal(ts_gzip_decode_body(&body, "br", 100), TS_ERR_PROTO);
    assert_int_equal(ts_gzip_decode_body(&body, "gzip", 100), TS_ERR_PROTO); /* not gzip */
    assert_string_equal(body.data, "{\"a\":1}");
    ts_buf_free(&body);
}

static void test_accept_encoding(void **state)
{
    (void)state;
    assert_true(ts_gzip_accepted("gzip"));
    assert_true(ts_gzip_accepted("GZIP"));
    assert_true(ts_gzip_accepted("deflate, gzip;q=0.5"));
    assert_true(ts_gzip_accepted("br, *"));
    assert_true(ts_gzip_accepted("x-gzip"));
    assert_false(ts_gzip_accepted("gzip;q=0"));
    assert_false(ts_gzip_accepted("*, gzip;q=0"));
    assert_false(ts_gzip_accepted("identity"));
    assert_false(ts_gzip_accepted("gzipx, deflate"));
    assert_false(ts_gzip_accepted(""));
    assert_false(ts_gzip_accepted(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_zip_bomb_refused),
        cmocka_unit_test(test_damaged_bodies_refused),
        cmocka_unit_test(test_decode_body_by_encoding),
        cmocka_unit_test(test_accept_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
