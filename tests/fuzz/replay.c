/* Without libFuzzer: runs a fuzz target over the files of its corpus, so every build checks them.
 */
/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Runs one file; returns 1 if it ran, 0 if it could not be read. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long n;
    int ok = 0;

    if (f == NULL)
        return 0;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        /* An exact-size copy, as libFuzzer gives, so ASan sees reads past the end. */
        data = malloc(n > 0 ? (size_t)n : 1);
        if (data != NULL && fread(data, 1, (size_t)n, f) == (size_t)n) {
            LLVMFuzzerTestOneInput(data, (size_t)n);
            ok = 1;
        }
    }
    free(data);
    fclose(f);
    return ok;
}

int main(int argc, char **argv)
{
    size_t ran = 0;

    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: cannot stat\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            ran += (size_t)run_file(argv[i]);
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            char path[4096];
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            ran += (size_t)run_file(path);
        }
        if (d != NULL)
            closedir(d);
    }
    /* The empty input too: the first thing libFuzzer tries. */
    LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
    printf("replay: %zu corpus inputs passed\n", ran);
    /* An empty corpus would make this test prove nothing. */
    return ran > 0 ? 0 : 1;
}
