/* `tillside version`: ours and the libraries' versions. */
#include "cmd.h"

#include <jansson.h>
#include <mbedtls/version.h>
#include <sqlite3.h>
#include <stdio.h>

int ts_cmd_version(void)
{
    printf("tillside %s (mbedTLS %s, SQLite %s, jansson %s)\n", TS_VERSION, MBEDTLS_VERSION_STRING,
           sqlite3_libversion(), JANSSON_VERSION);
    return 0;
}
