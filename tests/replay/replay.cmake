# Replay tests for the USB and keyboard-wedge drivers: the real driver code
# against umockdev recordings (tests/replay/<driver>/, each with a README).
add_executable(ts_replay replay/ts_replay.c)
target_link_libraries(ts_replay PRIVATE ts_drivers ts_warnings)

# ts_replay_test(NAME FUNC): one ctest entry per scenario in test_replay.py.
function(ts_replay_test name func)
    add_test(NAME ${name} COMMAND ${PYTHON3} -u ${CMAKE_CURRENT_SOURCE_DIR}/replay/test_replay.py ${func})
    set_tests_properties(${name} PROPERTIES LABELS replay TIMEOUT 120 SKIP_RETURN_CODE 77
        ENVIRONMENT "TS_REPLAY=$<TARGET_FILE:ts_replay>;TS_TILLSIDE=$<TARGET_FILE:tillside>;TS_SRC_DIR=${CMAKE_SOURCE_DIR}")
endfunction()

# The unplug / replug scenario needs libumockdev (device removed from and
# added back to the testbed while the driver runs) and the preload wrapper.
pkg_check_modules(UMOCKDEV REQUIRED IMPORTED_TARGET umockdev-1.0)
find_program(UMOCKDEV_WRAPPER umockdev-wrapper REQUIRED)
add_executable(hidpos_vanish replay/hidpos_vanish.c)
target_link_libraries(hidpos_vanish PRIVATE ts_drivers PkgConfig::UMOCKDEV ts_warnings)
add_test(NAME replay_hidpos_unplug_replug COMMAND ${UMOCKDEV_WRAPPER} $<TARGET_FILE:hidpos_vanish>)
set_tests_properties(replay_hidpos_unplug_replug PROPERTIES LABELS replay TIMEOUT 120
    SKIP_RETURN_CODE 77 ENVIRONMENT "TS_SRC_DIR=${CMAKE_SOURCE_DIR}")

ts_replay_test(replay_hidpos_short_code hidpos_short_code)
ts_replay_test(replay_hidpos_multi_report_code hidpos_multi_report_code)
ts_replay_test(replay_hidpos_card_number_dropped hidpos_card_number_dropped)
ts_replay_test(replay_hidpos_device_missing hidpos_device_missing)
ts_replay_test(replay_usbkbd_us usbkbd_us)
ts_replay_test(replay_usbkbd_de usbkbd_de)
ts_replay_test(replay_usbkbd_fr usbkbd_fr)
ts_replay_test(replay_evdev_grab evdev_grab)
ts_replay_test(replay_evdev_no_grab evdev_no_grab)
ts_replay_test(replay_devices_lists_scanners devices_lists_scanners)

# Under ASan the umockdev preload library comes before the ASan runtime in
# the library list; ASan then refuses to start unless told the order is fine.
# lsan.supp says why one libusb allocation is expected to outlive a replay.
if(TS_SANITIZE)
    get_property(_ts_replay_tests DIRECTORY PROPERTY TESTS)
    foreach(_t IN LISTS _ts_replay_tests)
        if(_t MATCHES "^replay_")
            set_property(TEST ${_t} APPEND PROPERTY ENVIRONMENT_MODIFICATION
                "ASAN_OPTIONS=string_append::verify_asan_link_order=0"
                "LSAN_OPTIONS=string_append::suppressions=${CMAKE_CURRENT_SOURCE_DIR}/replay/lsan.supp")
        endif()
    endforeach()
endif()
