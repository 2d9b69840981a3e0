/* The USB / keyboard-wedge drivers' ops, for the registry in drivers/input.c. */
#ifndef TS_USBDRV_H
#define TS_USBDRV_H

#include "driver.h"

extern const struct ts_driver_ops ts_driver_hidpos; /* drivers/hidpos.c */
extern const struct ts_driver_ops ts_driver_usbkbd; /* drivers/usbkbd.c */
extern const struct ts_driver_ops ts_driver_evdev;  /* drivers/evdev.c */

#endif
