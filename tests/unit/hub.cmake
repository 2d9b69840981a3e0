# Hub unit tests: the parser, the store and the API handler, called directly
# (no network), each its own ctest entry.
ts_unit_test(test_hub_segment unit/test_hub_segment.c ts_hub)
ts_unit_test(test_hub_store unit/test_hub_store.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_feed unit/test_hub_feed.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_api unit/test_hub_api.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_enroll unit/test_enroll.c ts_hub_cli ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_suggest unit/test_hub_suggest.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_purchases unit/test_hub_purchases.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_forward unit/test_hub_forward.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_sinks unit/test_sinks.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_proxy unit/test_hub_proxy.c ts_hub)
ts_unit_test(test_hub_throttle unit/test_hub_throttle.c ts_hub)
ts_unit_test(test_hub_sql unit/test_hub_sql.c ts_hub)
ts_unit_test(test_hub_sources unit/test_hub_sources.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_predict unit/test_hub_predict.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_hub_retention unit/test_hub_retention.c ts_hub PkgConfig::JANSSON)

# The same store, API, suggestion and purchase tests on a real PostgreSQL
# server: tests/tools/with_pg.sh starts a throwaway one for each run.
foreach(t test_hub_sql test_hub_store test_hub_feed test_hub_api test_hub_suggest test_hub_purchases test_hub_forward test_hub_retention test_hub_predict)
    add_test(NAME ${t}_pg COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tools/with_pg.sh $<TARGET_FILE:${t}>)
    set_tests_properties(${t}_pg PROPERTIES LABELS "unit;pg" TIMEOUT 300)
endforeach()
ts_unit_test(test_hub_fleet unit/test_hub_fleet.c ts_hub)
# The Bloomreach, Data Cloud and Iterable vendor files: mapping, requests, answers.
ts_unit_test(test_sink_vendors2 unit/test_sink_vendors2.c ts_hub PkgConfig::JANSSON)
ts_unit_test(test_sink_kinds unit/test_sink_kinds.c ts_hub PkgConfig::JANSSON)
