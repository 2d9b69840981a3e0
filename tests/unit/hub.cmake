# Hub unit tests: the parser, the store and the API handler, called directly
# (no network), each its own ctest entry.
ts_unit_test(test_hub_segment unit/test_hub_segment.c ts_hub)
ts_unit_test(test_hub_store unit/test_hub_store.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_api unit/test_hub_api.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_enroll unit/test_enroll.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_suggest unit/test_hub_suggest.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_purchases unit/test_hub_purchases.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_proxy unit/test_hub_proxy.c ts_hub)
