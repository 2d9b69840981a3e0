# USB / keyboard-wedge decoding (drivers/hidpos_report.c, keymap.c, devices.c).
ts_unit_test(test_usbdrv unit/test_usbdrv.c ts_drivers)
