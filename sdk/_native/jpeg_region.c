/* aligngemini-sdk's JPEG shim over libjpeg-turbo's own libjpeg API (loaded with ctypes by aligngemini_sdk.jpeg).
 *
 * agj_header: the stored size, the MCU size and whether the file is decodable here (8-bit YCbCr/RGB/gray).
 * agj_decode_scaled: the whole image at 1/2, 1/4 or 1/8 scale (DCT-domain downscaling).
 * agj_decode_region: one rectangle of a JPEG with libjpeg-turbo's partial-decoding API (jpeg_skip_scanlines,
 * jpeg_crop_scanline): rows above the rectangle are entropy-decoded but not transformed, rows below are never
 * read, columns outside it are not transformed. Output: RGB, 3 bytes per pixel, `width` x `height`, rows of
 * `out_stride` bytes.
 *
 * Returns 0 on success; 1 on any libjpeg error or warning (corrupt data: the caller falls back to a full
 * decode so that the pixels are exactly a full decode's); 2 on an unsupported file (not 8-bit YCbCr/RGB/gray);
 * 3 when the rectangle is outside the image. `msg` receives libjpeg's message (up to msg_len bytes). */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* only for the empty module below: importing it (pkgutil walks, pydoc) must not fail */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>

struct guard {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *msg;
    size_t msg_len;
};

static void on_error(j_common_ptr cinfo) {
    struct guard *g = (struct guard *)cinfo->err;
    if (g->msg && g->msg_len) (*cinfo->err->format_message)(cinfo, g->msg);
    longjmp(g->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) on_error(cinfo); /* a warning: corrupt data; refuse rather than guess */
}

/* The error manager every entry point installs before its setjmp (longjmp must land in the caller's frame). */
static void guard_init(struct jpeg_decompress_struct *cinfo, struct guard *g, char *msg, unsigned long msg_len) {
    memset(cinfo, 0, sizeof(*cinfo));
    cinfo->err = jpeg_std_error(&g->pub);
    g->pub.error_exit = on_error;
    g->pub.emit_message = on_message;
    g->msg = (msg && msg_len >= JMSG_LENGTH_MAX) ? msg : NULL;
    g->msg_len = msg_len;
}

/* After a successful setjmp: read the header of `data`. */
static void open_source(struct jpeg_decompress_struct *cinfo, const unsigned char *data, unsigned long size) {
    jpeg_create_decompress(cinfo);
    jpeg_mem_src(cinfo, data, size);
    jpeg_read_header(cinfo, TRUE);
}

/* 8-bit YCbCr, RGB or grayscale: what this shim decodes exactly as OpenCV does (CMYK/YCCK are left to it). */
static int decodable(const struct jpeg_decompress_struct *cinfo) {
    return cinfo->data_precision == 8 && (cinfo->jpeg_color_space == JCS_YCbCr ||
           cinfo->jpeg_color_space == JCS_RGB || cinfo->jpeg_color_space == JCS_GRAYSCALE);
}

int agj_header(const unsigned char *data, unsigned long size, unsigned int *width, unsigned int *height,
               unsigned int *mcu_width, unsigned int *mcu_height, int *supported) {
    struct jpeg_decompress_struct cinfo;
    struct guard g;

    guard_init(&cinfo, &g, NULL, 0);
    if (setjmp(g.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    open_source(&cinfo, data, size);
    jpeg_calc_output_dimensions(&cinfo);
    *width = cinfo.image_width;
    *height = cinfo.image_height;
    *mcu_width = (unsigned int)cinfo.max_h_samp_factor * DCTSIZE;
    *mcu_height = (unsigned int)cinfo.max_v_samp_factor * DCTSIZE;
    *supported = decodable(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

int agj_decode_region(const unsigned char *data, unsigned long size, unsigned int x, unsigned int y,
                      unsigned int width, unsigned int height, unsigned char *out, unsigned long out_stride,
                      char *msg, unsigned long msg_len) {
    struct jpeg_decompress_struct cinfo;
    struct guard g;
    JSAMPARRAY row;
    unsigned int xoff, cw, skipped, r;
    volatile int rc = 0;

    guard_init(&cinfo, &g, msg, msg_len);
    if (setjmp(g.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    open_source(&cinfo, data, size);
    if (!decodable(&cinfo)) {
        jpeg_destroy_decompress(&cinfo);
        return 2;
    }
    if (width == 0 || height == 0 || x + width > cinfo.image_width || y + height > cinfo.image_height ||
        x + width < x || y + height < y) {
        jpeg_destroy_decompress(&cinfo);
        return 3;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    xoff = x;
    cw = width;
    jpeg_crop_scanline(&cinfo, &xoff, &cw); /* xoff moves left to an iMCU boundary, cw grows to cover */
    row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, cw * 3, 1);
    if (y > 0) {
        skipped = jpeg_skip_scanlines(&cinfo, y);
        if (skipped != y) rc = 1;
    }
    for (r = 0; rc == 0 && r < height; r++) {
        if (jpeg_read_scanlines(&cinfo, row, 1) != 1) {
            rc = 1;
            break;
        }
        memcpy(out + (unsigned long)r * out_stride, row[0] + (unsigned long)(x - xoff) * 3, (size_t)width * 3);
    }
    jpeg_abort_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return rc;
}

/* The whole image decoded at 1/denom scale (denom 1, 2, 4 or 8: libjpeg's scaled inverse DCT, as OpenCV's
 * IMREAD_REDUCED_* modes decode), RGB into `out` (`width` x `height` must be the scaled size). Same return codes. */
int agj_decode_scaled(const unsigned char *data, unsigned long size, unsigned int denom, unsigned int width,
                      unsigned int height, unsigned char *out, unsigned long out_stride, char *msg,
                      unsigned long msg_len) {
    struct jpeg_decompress_struct cinfo;
    struct guard g;
    JSAMPROW row;

    guard_init(&cinfo, &g, msg, msg_len);
    if (setjmp(g.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    open_source(&cinfo, data, size);
    if (!decodable(&cinfo) || (denom != 1 && denom != 2 && denom != 4 && denom != 8)) {
        jpeg_destroy_decompress(&cinfo);
        return 2;
    }
    cinfo.out_color_space = JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = denom;
    jpeg_calc_output_dimensions(&cinfo);
    if (cinfo.output_width != width || cinfo.output_height != height) {
        jpeg_destroy_decompress(&cinfo);
        return 3;
    }
    jpeg_start_decompress(&cinfo);
    while (cinfo.output_scanline < cinfo.output_height) {
        row = out + (unsigned long)cinfo.output_scanline * out_stride;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) break;
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

static struct PyModuleDef agj_module = {PyModuleDef_HEAD_INIT, "_jpeg_region",
                                        "libjpeg-turbo partial decoding; its C functions are called via ctypes "
                                        "(aligngemini_sdk.jpeg).", -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__jpeg_region(void) { return PyModule_Create(&agj_module); }
