/* Unit test of the byte FIFO: append/consume order, growth, storage swap on move, shrink. */
/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <string.h>

#include "common/buf.h"
#include "testutil.h"

int main(void)
{
    struct buf a, b;
    uint8_t pat[10000], out[10000];
    size_t in = 0, taken = 0;

    for (size_t i = 0; i < sizeof(pat); i++)
        pat[i] = (uint8_t)(i * 7 + 3);
    buf_init(&a);
    buf_init(&b);

    /* FIFO order survives interleaved appends and partial consumes, across
     * the compaction and growth paths of buf_append. */
    while (taken < sizeof(pat)) {
        size_t add = in < sizeof(pat) ? (in % 13) + 1 : 0;
        if (in + add > sizeof(pat))
            add = sizeof(pat) - in;
        CHECK_EQ_INT(buf_append(&a, pat + in, add), 0);
        in += add;
        size_t eat = a.len > 5 ? 5 : a.len;
        memcpy(out + taken, buf_head(&a), eat);
        buf_consume(&a, eat);
        taken += eat;
    }
    CHECK_EQ_INT(a.len, 0);
    CHECK(memcmp(pat, out, sizeof(pat)) == 0);

    /* Consuming more than held empties the buffer. */
    buf_append(&a, "abc", 3);
    buf_consume(&a, 100);
    CHECK_EQ_INT(a.len, 0);
    CHECK_EQ_INT(a.off, 0);

    /* A nearly full FIFO drained in small pieces: an append may move the
     * live bytes to the front only when no more than the consumed front is
     * moved (otherwise every append would move the whole content). */
    {
        size_t moves = 0, moved = 0, passed = 0;
        buf_append(&a, pat, 4000);
        for (int i = 0; i < 2000; i++) {
            size_t off0, len0, cap0;
            buf_consume(&a, 16);
            off0 = a.off;
            len0 = a.len;
            cap0 = a.cap;
            CHECK_EQ_INT(buf_append(&a, pat + (i % 100), 16), 0);
            passed += 16;
            if (a.cap == cap0 && off0 > 0 && a.off == 0) {
                moves++;
                moved += len0;
                CHECK(len0 <= off0);
            }
        }
        CHECK(moves > 0);       /* the compaction path was taken */
        CHECK(moved <= passed); /* amortised: at most one move per byte */
        CHECK(a.cap <= 4 * 4096);
        CHECK_EQ_INT(a.len, 4000);
        buf_consume(&a, a.len);
    }

    /* Move into an empty buffer swaps storage: no copy, and the source keeps
     * the destination's old memory for reuse. */
    buf_append(&b, "x", 1);
    buf_consume(&b, 1);
    uint8_t *b_old = b.data;
    buf_append(&a, pat, 5000);
    uint8_t *a_old = a.data;
    CHECK_EQ_INT(buf_move(&b, &a), 0);
    CHECK(b.data == a_old);
    CHECK(a.data == b_old);
    CHECK_EQ_INT(b.len, 5000);
    CHECK_EQ_INT(a.len, 0);
    CHECK(memcmp(buf_head(&b), pat, 5000) == 0);

    /* Move into a non-empty buffer appends. */
    buf_append(&a, pat + 5000, 100);
    CHECK_EQ_INT(buf_move(&b, &a), 0);
    CHECK_EQ_INT(b.len, 5100);
    CHECK_EQ_INT(a.len, 0);
    CHECK(memcmp(buf_head(&b), pat, 5100) == 0);

    /* Shrink releases only an empty buffer larger than `keep`. */
    buf_shrink(&b, 16);
    CHECK(b.data != NULL);
    buf_consume(&b, b.len);
    buf_shrink(&b, 1 << 20);
    CHECK(b.data != NULL);
    buf_shrink(&b, 16);
    CHECK(b.data == NULL);
    CHECK_EQ_INT(b.cap, 0);

    /* buf_printf appends formatted text, short (stack copy) or long. */
    {
        struct buf t;
        char big[1000];

        buf_init(&t);
        CHECK_EQ_INT(buf_printf(&t, "x=%d %s\n", 42, "ok"), 0);
        CHECK_EQ_INT(t.len, 8);
        CHECK(memcmp(buf_head(&t), "x=42 ok\n", 8) == 0);
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        CHECK_EQ_INT(buf_printf(&t, "[%s]", big), 0);
        CHECK_EQ_INT(t.len, 8 + 2 + 999);
        CHECK(buf_head(&t)[8] == '[' && buf_head(&t)[8 + 1000] == ']');
        CHECK(buf_head(&t)[500] == 'a');
        buf_free(&t);
    }

    /* Freed storage of the first sizes (4, 8, 16 KiB) is kept and handed to
     * the next buffer that needs that size; other sizes are not. */
    {
        struct buf u, v;
        uint8_t *first, *second;

        buf_init(&u);
        buf_init(&v);
        CHECK_EQ_INT(buf_append(&u, pat, 100), 0);
        CHECK_EQ_INT(u.cap, 4096);
        first = u.data;
        buf_free(&u);
        CHECK_EQ_INT(buf_append(&v, pat, 10), 0);
        CHECK(v.data == first);
        CHECK(memcmp(buf_head(&v), pat, 10) == 0);
        CHECK_EQ_INT(buf_append(&v, pat, 5000), 0); /* grows to 8 KiB */
        CHECK_EQ_INT(v.cap, 8192);
        CHECK(memcmp(buf_head(&v) + 10, pat, 5000) == 0);
        second = v.data;
        buf_consume(&v, v.len);
        buf_shrink(&v, 0);
        CHECK(v.data == NULL);
        CHECK_EQ_INT(buf_append(&u, pat, 5000), 0); /* 8 KiB at once */
        CHECK(u.data == second);
        CHECK(memcmp(buf_head(&u), pat, 5000) == 0);
        buf_free(&u);
    }

    buf_free(&a);
    buf_free(&b);
    TEST_DONE();
}
