/*
 * The database a hub unit test runs on: an in-memory SQLite database, or,
 * when TS_TEST_PG holds a libpq URI (tests/tools/with_pg.sh sets it), that
 * PostgreSQL database, emptied first so every test starts from nothing.
 */
#ifndef TS_TEST_HUBDB_H
#define TS_TEST_HUBDB_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

/* Empties the PostgreSQL database of TS_TEST_PG; NULL when there is none. */
static inline const char *test_hub_pg_reset(void)
{
    const char *uri = getenv("TS_TEST_PG");
    if (!uri || !*uri)
        return NULL;
    PGconn *c = PQconnectdb(uri);
    PGresult *r = NULL;
    if (PQstatus(c) == CONNECTION_OK)
        r = PQexec(c, "SET client_min_messages = warning;"
                      " DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "cannot empty %s: %s\n", uri, PQerrorMessage(c));
        abort();
    }
    PQclear(r);
    PQfinish(c);
    return uri;
}

/* A fresh, empty hub database: ":memory:" or the PostgreSQL one. */
static inline const char *test_hub_db(void)
{
    const char *pg = test_hub_pg_reset();
    return pg ? pg : ":memory:";
}

/* A fresh hub database that outlives a close, for reopening: dir/hub.db, or
 * the PostgreSQL one. */
static inline const char *test_hub_db_file(char *buf, size_t bufsz, const char *dir)
{
    const char *pg = test_hub_pg_reset();
    snprintf(buf, bufsz, "%s%s", pg ? pg : dir, pg ? "" : "/hub.db");
    return buf;
}

#endif
