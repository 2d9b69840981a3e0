# The purchase outbox (sync/outbox.c) with the power-cut VFS (faultvfs.c).
ts_unit_test(test_outbox unit/test_outbox.c ts_sync PkgConfig::SQLITE3)
target_sources(test_outbox PRIVATE unit/faultvfs.c)
target_include_directories(test_outbox PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)
# Purchases on the agent (agent/purchase.c) and the uploader's back-off.
ts_unit_test(test_purchase unit/test_purchase.c ts_agent)
