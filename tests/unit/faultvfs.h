/*
 * A test-only SQLite VFS that simulates a power cut: it passes everything
 * through to the default ("unix") VFS but remembers, per file, what every
 * write and truncate since that file's last xSync overwrote. After the
 * fault point (a number of write/truncate/sync calls) every further write,
 * sync, truncate and delete fails, as if the machine had lost power;
 * faultvfs_power_cut() then puts back the bytes and sizes each file had at
 * its last sync and removes the -shm files (shared memory does not survive
 * a power cut either). What remains on disk is what a disk that honours
 * fsync and nothing more would hold.
 *
 * Not modelled: torn sectors inside one write, directory entries (files are
 * taken to exist once created), and writes reaching the disk out of order
 * without a sync (they are all dropped).
 */
#ifndef TS_TEST_FAULTVFS_H
#define TS_TEST_FAULTVFS_H

#include <stdbool.h>

#define FAULTVFS_NAME "faultvfs"

/* Registers the VFS (not as the default); idempotent. */
int faultvfs_register(void);
/* Power fails at the n-th write/truncate/sync from now (n >= 1); 0 = never. */
void faultvfs_arm(long n);
/* True once the power is off. */
bool faultvfs_dead(void);
/* Restores every file to its last synced state and deletes -shm files;
 * the power is back on afterwards. Call with no connection open. Returns
 * the number of files that had unsynced writes. */
int faultvfs_power_cut(void);
/* Writes dropped by power cuts so far (to show the test bites). */
long faultvfs_dropped_writes(void);

#endif
