/* aligngemini-sdk's exact area resize in C (loaded with ctypes by aligngemini_sdk.resize).
 *
 * agr_area: the same integers as aligngemini_sdk.resize's numpy reference (`_area_numpy`), so the same bytes: with
 * an input length L and an output length n, output j covers [j L, (j + 1) L) in units of 1/n input pixel; with
 * c = x / n and r = x % n at those boundaries its area sum, scaled by n, is
 *     n * sum(p[c_j .. c_{j+1} - 1]) + r_{j+1} p[c_{j+1}] - r_j p[c_j],
 * rows first, then columns on the row sums; the output is (2 S + H W) / (2 H W) (the mean, rounded half up).
 * Integer arithmetic only: no compiler, vector width or CPU can change a byte. Every value is non-negative; a row
 * sum is below 255 (H + 2n), held in 32 bits (the caller admits only images where that fits), and a column sum
 * below 255 (H + 2n) (W + 2m) < 2^63 in 64 bits.
 *
 * Input: `h` rows of `w` pixels of `ch` interleaved uint8 channels, rows `stride` bytes apart (a numpy view whose
 * rows are contiguous is read in place). Output: `oh` x `ow` x `ch`, contiguous. Returns 0 on success, 1 on
 * arguments the caller should have refused (no growth, sizes out of range), 2 when memory could not be allocated.
 * Reentrant: no global state, so branches may call it from several threads at once (ctypes releases the GIL). */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* only for the empty module below: importing it (pkgutil walks, pydoc) must not fail */
#include <stdint.h>
#include <stdlib.h>

#define MAX_SIDE (1LL << 24)

/* sum of rows [c0, c1) of the image, per value of a row (w * ch values), into acc */
static void add_rows(const uint8_t *src, int64_t stride, int64_t c0, int64_t c1, int64_t len, uint32_t *acc) {
    for (int64_t k = 0; k < len; k++) acc[k] = 0;
    for (int64_t y = c0; y < c1; y++) {
        const uint8_t *row = src + y * stride;
        for (int64_t k = 0; k < len; k++) acc[k] += row[k];
    }
}

/* one output row's row sums (scaled by oh): n * acc + r1 * p[c1] - r0 * p[c0], in 32 bits (vectorised) */
static void row_sums(const uint8_t *src, int64_t stride, int64_t h, int64_t oh, int64_t j, int64_t len,
                     uint32_t *acc, uint32_t *sums) {
    int64_t a = j * h, b = (j + 1) * h;
    int64_t c0 = a / oh, r0 = a % oh, c1 = b / oh, r1 = b % oh;
    const uint8_t *e0 = src + c0 * stride, *e1 = src + (c1 < h ? c1 : h - 1) * stride;
    add_rows(src, stride, c0, c1, len, acc);
    uint32_t n = (uint32_t)oh, a1 = (uint32_t)r1, a0 = (uint32_t)r0;
    for (int64_t k = 0; k < len; k++) sums[k] = n * acc[k] + a1 * e1[k] - a0 * e0[k];
}

/* floor(n / d) for 0 <= n < 2^62, 0 < d: a quotient from the reciprocal (within one of the true one, as n / d <
 * 256 here), then corrected in integers, so the result is exact whatever the floating-point unit does. An integer
 * division per output value cost more than the rest of the resize. */
static inline int64_t quotient(int64_t n, int64_t d, double inv) {
    int64_t q = (int64_t)((double)n * inv);
    while (q > 0 && q * d > n) q--;
    while ((q + 1) * d <= n) q++;
    return q;
}

/* one output row from its row sums: the same rule along the columns (boundaries `col`, remainders `rem`, one per
 * output column and one more), per channel, then the rounded mean */
static void column_means(const uint32_t *sums, int64_t w, int64_t ch, int64_t ow, const int64_t *col,
                         const int64_t *rem, int64_t total, uint8_t *out) {
    double inv = 1.0 / (double)(2 * total);
    for (int64_t i = 0; i < ow; i++) {
        int64_t c0 = col[i], c1 = col[i + 1], e1 = c1 < w ? c1 : w - 1;
        for (int64_t c = 0; c < ch; c++) {
            int64_t s = 0;
            for (int64_t x = c0; x < c1; x++) s += sums[x * ch + c];
            s = ow * s + rem[i + 1] * (int64_t)sums[e1 * ch + c] - rem[i] * (int64_t)sums[c0 * ch + c];
            out[i * ch + c] = (uint8_t)quotient(2 * s + total, 2 * total, inv);
        }
    }
}

int agr_area(const uint8_t *src, int64_t h, int64_t w, int64_t ch, int64_t stride, uint8_t *dst, int64_t oh,
             int64_t ow) {
    if (h <= 0 || w <= 0 || ch <= 0 || oh <= 0 || ow <= 0 || oh > h || ow > w || h >= MAX_SIDE || w >= MAX_SIDE ||
        ch > 4 || stride < w * ch || 255 * (h + 2 * oh) > (int64_t)UINT32_MAX)
        return 1;
    int64_t len = w * ch;
    uint32_t *acc = malloc((size_t)len * sizeof(uint32_t));
    uint32_t *sums = malloc((size_t)len * sizeof(uint32_t));
    int64_t *col = malloc((size_t)(2 * (ow + 1)) * sizeof(int64_t));
    if (!acc || !sums || !col) {
        free(acc);
        free(sums);
        free(col);
        return 2;
    }
    int64_t *rem = col + ow + 1;
    for (int64_t i = 0; i <= ow; i++) {
        col[i] = i * w / ow;
        rem[i] = i * w % ow;
    }
    for (int64_t j = 0; j < oh; j++) {
        row_sums(src, stride, h, oh, j, len, acc, sums);
        column_means(sums, w, ch, ow, col, rem, h * w, dst + j * ow * ch);
    }
    free(acc);
    free(sums);
    free(col);
    return 0;
}

static struct PyModuleDef agr_module = {PyModuleDef_HEAD_INIT, "_resize_area",
                                        "the exact integer area resize; its C function is called via ctypes "
                                        "(aligngemini_sdk.resize).", -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__resize_area(void) { return PyModule_Create(&agr_module); }
