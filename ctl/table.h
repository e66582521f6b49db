/* Terminal tables for tetherctl: columns aligned by display width, untrusted text made safe to
 * print. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_CTL_TABLE_H
#define TETHER_CTL_TABLE_H

#include <stddef.h>
#include <stdio.h>

/* A table owns copies of its headers and cells. */
struct table;

/* ncols >= 1; headers holds ncols strings. NULL on allocation failure. */
struct table *table_new(size_t ncols, const char *const *headers);
void table_free(struct table *t);
/* Right-aligns column col (numbers). */
void table_align_right(struct table *t, size_t col);
/* Appends a row of ncols cells (copied; NULL or "" prints as "-").
 * -ENOMEM on allocation failure. */
int table_add(struct table *t, const char *const *cells);
size_t table_rows(const struct table *t);
/* Prints the header and rows, columns separated by two spaces, no trailing
 * blanks. Cells are cleaned with table_clean() first. */
void table_print(const struct table *t, FILE *out);

/* Copy of s safe to write to a terminal: control characters (C0, DEL, C1),
 * bidirectional overrides and invalid UTF-8 bytes become '?'. Text from the
 * hub partly comes from sites (versions, service names), so nothing from it
 * reaches the terminal without this. Caller frees; NULL on allocation failure. */
char *table_clean(const char *s);
/* Columns that s (valid UTF-8, as table_clean returns) takes in a terminal. */
size_t table_width(const char *s);

#endif
