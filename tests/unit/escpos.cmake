# The ESC/POS receipt tap: parser + rules (fixtures in tests/fixtures/escpos).
ts_unit_test(test_escpos unit/test_escpos.c ts_drivers)
target_compile_definitions(test_escpos PRIVATE
    TS_ESCPOS_FIXTURES="${CMAKE_CURRENT_SOURCE_DIR}/fixtures/escpos")
# The committed fixtures are what make_receipts.py generates.
add_test(NAME escpos_fixtures_current
    COMMAND ${PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/escpos/make_receipts.py --check)
set_tests_properties(escpos_fixtures_current PROPERTIES LABELS unit)
