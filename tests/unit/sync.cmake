# Unit tests for the shared transport layer (sync/http.c, tls.c, httpc.c,
# httpd.c, pki.c). Included from tests/CMakeLists.txt.
ts_unit_test(test_http unit/test_http.c ts_sync)
ts_unit_test(test_httpd_topic unit/test_httpd_topic.c ts_sync)
ts_unit_test(test_tls unit/test_tls.c ts_sync)
ts_unit_test(test_tls_trust unit/test_tls_trust.c ts_sync)
ts_unit_test(test_gzip unit/test_gzip.c ts_sync)
