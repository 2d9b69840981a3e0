/*
 * The driver registry: every driver's ops by name (driver.h). Apart from the
 * runner (input.c) so that the drivers it lists never depend on the file
 * that depends on them.
 */
#include "driver.h"
#include "escpos_relay.h"
#include "serial.h"
#include "usbdrv.h"

#include <string.h>

static const struct ts_driver_ops *const drivers[] = {
    &ts_driver_serial, &ts_driver_hidpos, &ts_driver_usbkbd, &ts_driver_evdev, &ts_escpos_driver,
};
#define NDRIVERS (sizeof drivers / sizeof *drivers)

const struct ts_driver_ops *ts_driver_find(const char *name)
{
    for (size_t i = 0; name && i < NDRIVERS; i++)
        if (!strcmp(drivers[i]->name, name))
            return drivers[i];
    return NULL;
}

const char *const *ts_driver_names(void)
{
    static const char *names[NDRIVERS + 1];
    for (size_t i = 0; i < NDRIVERS; i++)
        names[i] = drivers[i]->name;
    names[NDRIVERS] = NULL;
    return names;
}
