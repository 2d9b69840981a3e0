# Operations: schema upgrades from the previous release (06a07ff).
ts_unit_test(test_schema_upgrade unit/test_schema_upgrade.c ts_hub ts_sync)
target_compile_definitions(test_schema_upgrade PRIVATE
    TS_FIXTURES="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
