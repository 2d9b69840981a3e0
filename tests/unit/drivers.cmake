# Inputs: the payment card guard, symbology / GS1, the serial framer and the
# registry (unit), and the serial replays under umockdev (black-box).
ts_unit_test(test_guard unit/test_guard.c ts_drivers)

# Test-only tools: the TIOCM* and realpath() shim umockdev replays need with
# libserialport (tests/tools/tiocm_shim.c), and ts-input-run, which runs the real
# input runner on a config and prints the scans.
add_library(ts_tiocm_shim MODULE tools/tiocm_shim.c)
target_link_libraries(ts_tiocm_shim PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(ts_tiocm_shim PROPERTIES PREFIX "" OUTPUT_NAME tiocm_shim)
add_executable(ts-input-run tools/input_run.c)
target_link_libraries(ts-input-run PRIVATE ts_drivers ts_warnings)

ts_blackbox_test(bb_serial_replay_cr test_serial.py replay_cr)
ts_blackbox_test(bb_serial_replay_lf test_serial.py replay_lf)
ts_blackbox_test(bb_serial_replay_crlf test_serial.py replay_crlf)
ts_blackbox_test(bb_serial_replay_tab test_serial.py replay_tab)
ts_blackbox_test(bb_serial_replay_etx test_serial.py replay_etx)
ts_blackbox_test(bb_serial_replay_timeout test_serial.py replay_timeout)
ts_blackbox_test(bb_serial_replug test_serial.py replug)
ts_blackbox_test(bb_serial_agent_card test_serial.py agent_card)
ts_blackbox_test(bb_serial_guard_leaves_no_trace test_serial.py guard_leaves_no_trace)
ts_blackbox_test(bb_serial_unknown_driver test_serial.py unknown_driver)
