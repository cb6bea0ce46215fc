/* aligngemini-sdk's integer resizes in C (loaded with ctypes by aligngemini_sdk.resize).
 *
 * agr_area: the same integers as aligngemini_sdk.resize's numpy reference (`area_numpy`), so the same bytes: with
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
 *
 * agr_cubic: the two integer passes of aligngemini_sdk.resize's bicubic (`cubic_numpy`), with the taps and their
 * 11-bit weights computed by the caller (numpy, float32, the same on every CPU): a horizontal pass into 32-bit sums
 * (x 2^11), a vertical one into 32-bit sums (x 2^22, as numpy's: the taps' absolute weights sum to at most 1.375, so
 * |sum| <= 255 (1.375 2^11)^2 < 2.03e9 < 2^31 for bits <= 11), rounded half up by a floor shift and clipped to
 * 0-255. Returns 0, or 1 / 2 as agr_area.
 *
 * Reentrant: no global state, so branches may call them from several threads at once (ctypes releases the GIL). */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* only for the empty module below: importing it (pkgutil walks, pydoc) must not fail */
#include <stdint.h>
#include <stdlib.h>

#define MAX_SIDE (1LL << 24)

/* Integer loops compiled twice where GCC can dispatch at load time (x86-64 ELF with glibc's ifunc; musl has none):
 * for AVX2 (32-bit multiplies in one instruction; SSE2 has none) and for the baseline. Integer arithmetic: both
 * give the same bytes. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && defined(__GLIBC__)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* sum of rows [c0, c1) of the image, per value of a row (w * ch values), into acc */
SIMD_CLONES static void add_rows(const uint8_t *src, int64_t stride, int64_t c0, int64_t c1, int64_t len,
                                 uint32_t *acc) {
    for (int64_t k = 0; k < len; k++) acc[k] = 0;
    for (int64_t y = c0; y < c1; y++) {
        const uint8_t *row = src + y * stride;
        for (int64_t k = 0; k < len; k++) acc[k] += row[k];
    }
}

/* one output row's row sums (scaled by oh): n * acc + r1 * p[c1] - r0 * p[c0], in 32 bits (vectorised) */
SIMD_CLONES static void row_sums(const uint8_t *src, int64_t stride, int64_t h, int64_t oh, int64_t j,
                                 int64_t len, uint32_t *acc, uint32_t *sums) {
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
 * output column and one more), all channels of a column summed in one sweep, then the rounded means. Inlined for
 * each common channel count, so the compiler unrolls the channel loop. */
static inline __attribute__((always_inline)) void column_means_of(const uint32_t *sums, int64_t w, const int64_t ch,
                                                                    int64_t ow, const int64_t *col, const int64_t *rem,
                                                                    int64_t total, uint8_t *out) {
    double inv = 1.0 / (double)(2 * total);
    for (int64_t i = 0; i < ow; i++) {
        int64_t c0 = col[i], c1 = col[i + 1], e1 = c1 < w ? c1 : w - 1;
        int64_t s[4] = {0, 0, 0, 0};
        for (int64_t x = c0; x < c1; x++)
            for (int64_t c = 0; c < ch; c++) s[c] += sums[x * ch + c];
        for (int64_t c = 0; c < ch; c++) {
            int64_t t = ow * s[c] + rem[i + 1] * (int64_t)sums[e1 * ch + c] - rem[i] * (int64_t)sums[c0 * ch + c];
            out[i * ch + c] = (uint8_t)quotient(2 * t + total, 2 * total, inv);
        }
    }
}

static void column_means(const uint32_t *sums, int64_t w, int64_t ch, int64_t ow, const int64_t *col,
                         const int64_t *rem, int64_t total, uint8_t *out) {
    switch (ch) {
    case 1: column_means_of(sums, w, 1, ow, col, rem, total, out); break;
    case 3: column_means_of(sums, w, 3, ow, col, rem, total, out); break;
    case 4: column_means_of(sums, w, 4, ow, col, rem, total, out); break;
    default: column_means_of(sums, w, ch, ow, col, rem, total, out);
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

/* floor(v / 2^bits) for any int32 v, in unsigned arithmetic (no reliance on how a compiler shifts negative
 * numbers; vectorises): v + 2^31 lies in [0, 2^32) */
static inline int32_t floor_shift(int32_t v, int bits) {
    return (int32_t)(((uint32_t)v + 0x80000000u) >> bits) - (int32_t)(0x80000000u >> bits);
}

/* one output row of the vertical pass: taps r[0..3] weighted by yc[0..3], rounded half up, clipped to 0-255 */
SIMD_CLONES static void cubic_column(const int32_t *const r[4], const int32_t *yc, int64_t len, int bits,
                                     uint8_t *out) {
    int32_t bias = (int32_t)1 << (2 * bits - 1), c0 = yc[0], c1 = yc[1], c2 = yc[2], c3 = yc[3];
    const int32_t *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
    for (int64_t v = 0; v < len; v++) {
        int32_t q = floor_shift(bias + r0[v] * c0 + r1[v] * c1 + r2[v] * c2 + r3[v] * c3, 2 * bits);
        out[v] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
}

/* one input row of the horizontal pass: widened to 32 bits first (so AVX2 can gather it), then the four taps */
SIMD_CLONES static void cubic_row(const uint8_t *row, int64_t n, const int32_t *col, const int32_t *wt, int64_t len,
                                  int32_t *wide, int32_t *out) {
    for (int64_t x = 0; x < n; x++) wide[x] = row[x];
    const int32_t *c0 = col, *c1 = col + len, *c2 = col + 2 * len, *c3 = col + 3 * len;
    const int32_t *w0 = wt, *w1 = wt + len, *w2 = wt + 2 * len, *w3 = wt + 3 * len;
    for (int64_t v = 0; v < len; v++)
        out[v] = wide[c0[v]] * w0[v] + wide[c1[v]] * w1[v] + wide[c2[v]] * w2[v] + wide[c3[v]] * w3[v];
}

/* rows[y][v] = sum_k src[y][col[k][v]] * wt[k][v] for every input row, where for output value v = i * ch + c the
 * tables hold tap k's source value xi[4 i + k] * ch + c and its weight xc[4 i + k] (built once: the loop over a row
 * is then four loads, multiplies and adds per value, with no index arithmetic). 2 if the tables cannot be had. */
static int cubic_rows(const uint8_t *src, int64_t h, int64_t w, int64_t ch, int64_t stride, int64_t ow,
                      const int64_t *xi, const int32_t *xc, int32_t *rows) {
    int64_t len = ow * ch;
    int32_t *col = malloc((size_t)(4 * len) * sizeof(int32_t)), *wt = malloc((size_t)(4 * len) * sizeof(int32_t));
    int32_t *wide = malloc((size_t)(w * ch) * sizeof(int32_t));
    if (!col || !wt || !wide) {
        free(col);
        free(wt);
        free(wide);
        return 2;
    }
    for (int k = 0; k < 4; k++)
        for (int64_t i = 0; i < ow; i++)
            for (int64_t c = 0; c < ch; c++) {
                col[k * len + i * ch + c] = (int32_t)(xi[4 * i + k] * ch + c);
                wt[k * len + i * ch + c] = xc[4 * i + k];
            }
    for (int64_t y = 0; y < h; y++) cubic_row(src + y * stride, w * ch, col, wt, len, wide, rows + y * len);
    free(col);
    free(wt);
    free(wide);
    return 0;
}

int agr_cubic(const uint8_t *src, int64_t h, int64_t w, int64_t ch, int64_t stride, uint8_t *dst, int64_t oh,
              int64_t ow, const int64_t *xi, const int32_t *xc, const int64_t *yi, const int32_t *yc, int bits) {
    if (h <= 0 || w <= 0 || ch <= 0 || oh <= 0 || ow <= 0 || h >= MAX_SIDE || w >= MAX_SIDE || oh >= MAX_SIDE ||
        ow >= MAX_SIDE || ch > 4 || stride < w * ch || bits < 1 || bits > 11)
        return 1;
    for (int64_t i = 0; i < 4 * ow; i++)
        if (xi[i] < 0 || xi[i] >= w) return 1;
    for (int64_t j = 0; j < 4 * oh; j++)
        if (yi[j] < 0 || yi[j] >= h) return 1;
    int64_t len = ow * ch;
    int32_t *rows = malloc((size_t)(h * len) * sizeof(int32_t));
    if (!rows) return 2;
    if (cubic_rows(src, h, w, ch, stride, ow, xi, xc, rows)) {
        free(rows);
        return 2;
    }
    for (int64_t j = 0; j < oh; j++) {
        const int32_t *r[4] = {rows + yi[4 * j] * len, rows + yi[4 * j + 1] * len, rows + yi[4 * j + 2] * len,
                               rows + yi[4 * j + 3] * len};
        cubic_column(r, yc + 4 * j, len, bits, dst + j * len);
    }
    free(rows);
    return 0;
}

static struct PyModuleDef agr_module = {PyModuleDef_HEAD_INIT, "_resize",
                                        "the integer area and bicubic resizes; their C functions are called via ctypes "
                                        "(aligngemini_sdk.resize).", -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__resize(void) { return PyModule_Create(&agr_module); }
