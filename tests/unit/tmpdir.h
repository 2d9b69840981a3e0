/* Test helper: removes a temporary directory tree a fixture made. */
#ifndef TS_TEST_TMPDIR_H
#define TS_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>

static int ts_test_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* rm -rf dir (files, then the directories holding them). */
static inline void ts_test_rm_tree(const char *dir)
{
    nftw(dir, ts_test_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

#endif
