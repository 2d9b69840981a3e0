/* Unit tests for identifier normalization and HMAC keying. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "ident.h"
#include "ts.h"

static void test_normalize(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(ts_ident_normalize(" 2000-1234 5678\r\n", 17, out, sizeof out), TS_OK);
    assert_string_equal(out, "200012345678");
    assert_int_equal(ts_ident_normalize("ab-c", 4, out, sizeof out), TS_OK);
    assert_string_equal(out, "ABC");
    assert_int_equal(ts_ident_normalize(" \t\r\n", 4, out, sizeof out), TS_ERR_INVAL);
    assert_int_equal(ts_ident_normalize("12345", 5, out, 3), TS_ERR_INVAL);
}

static void test_key_matches_rfc4231_style_vector(void **state)
{
    (void)state;
    /* Independent check: HMAC-SHA256(key=0x0b*20, "loyalty:4012345678901") computed with
     * python3 -c 'import hmac,hashlib;print(hmac.new(b"\x0b"*20,
     * b"loyalty:4012345678901",hashlib.sha256).hexdigest())' */
    struct ts_tenant_key k;
    assert_int_equal(ts_tenant_key_parse("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", 1, &k), TS_OK);
    char hex[TS_IDENT_KEY_HEX];
    assert_int_equal(ts_ident_key(&k, TS_IDENT_LOYALTY, "4012345678901", hex), TS_OK);
    assert_string_equal(hex, "8bc937a3be4affeae0c5dd758ba4eb422ffd1b04324dbc5986ae3c990d379407");
    char hex2[TS_IDENT_KEY_HEX];
    assert_int_equal(ts_ident_key(&k, TS_IDENT_ORDER, "4012345678901", hex2), TS_OK);
    assert_string_not_equal(hex, hex2); /* kind separates key spaces */
    assert_int_equal(ts_tenant_key_parse("zz", 1, &k), TS_ERR_INVAL);
    assert_int_equal(ts_tenant_key_parse("0b0b", 1, &k), TS_ERR_INVAL); /* too short */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_key_matches_rfc4231_style_vector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
