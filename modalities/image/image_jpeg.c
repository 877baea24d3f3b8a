/* eyrie — JPEG decoding with libjpeg-turbo's TurboJPEG API.
 *
 * Before TurboJPEG sees the bytes, a bounded marker walk checks the frame
 * header (size, components, progressive), counts scans (a progressive JPEG
 * with thousands of scans is a CPU bomb), and reads the EXIF orientation and
 * the Adobe APP14 marker. Limits are enforced from that walk, so nothing is
 * allocated for an image we would refuse.
 *
 * Warnings: libjpeg reports truncated or corrupt entropy data as warnings and
 * fills the rest with grey. We turn every warning except "extraneous bytes
 * before marker" (harmless, common in camera files) into EY_ERR_FORMAT, so a
 * damaged file is an error, never a half-grey picture. */
#include "modalities/image/image_internal.h"

#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

typedef struct jpeg_info {
    uint32_t width, height;
    unsigned n_comp;
    int progressive;
    int arithmetic;
    int lossless;
    int have_sof;
    unsigned n_scans;
    unsigned orientation; /* 1..8, 1 if absent */
    int adobe;            /* APP14 Adobe present */
} jpeg_info;

static uint32_t rd16(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8
              : (uint32_t)p[0] << 8 | (uint32_t)p[1];
}
static uint32_t rd32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                    (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* EXIF APP1 payload (after "Exif\0\0"): TIFF header, IFD0, tag 0x0112. Any
 * inconsistency just means "no orientation"; EXIF is advisory. */
static unsigned exif_orientation(const uint8_t *t, size_t n)
{
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n - 2) return 1;
    uint32_t count = rd16(t + ifd, le);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t off = (uint64_t)ifd + 2 + (uint64_t)i * 12;
        if (off + 12 > n) return 1;
        const uint8_t *e = t + off;
        if (rd16(e, le) != 0x0112) continue;
        uint32_t type = rd16(e + 2, le), cnt = rd32(e + 4, le);
        if (type != 3 || cnt < 1) return 1; /* SHORT, value inline */
        uint32_t v = rd16(e + 8, le);
        return v >= 1 && v <= 8 ? v : 1;
    }
    return 1;
}

static ey_err jpeg_walk(const uint8_t *d, size_t n, const ey_image_limits *lim,
                        jpeg_info *ji)
{
    memset(ji, 0, sizeof *ji);
    ji->orientation = 1;
    size_t pos = 2; /* after SOI */
    for (;;) {
        /* Find the next marker: skip anything up to 0xFF, then fill bytes. */
        while (pos < n && d[pos] != 0xFF) pos++;
        while (pos < n && d[pos] == 0xFF) pos++;
        if (pos >= n)
            return ji->have_sof && ji->n_scans
                       ? ey_err_set(EY_ERR_FORMAT, "jpeg: truncated (no end-of-image marker)")
                       : ey_err_set(EY_ERR_FORMAT, "jpeg: truncated before the first scan");
        uint8_t m = d[pos++];
        if (m == 0xD9) break; /* EOI */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7) || m == 0xD8) continue;
        if (n - pos < 2) return ey_err_set(EY_ERR_FORMAT, "jpeg: truncated marker 0x%02X", m);
        size_t len = rd16(d + pos, 0);
        if (len < 2) return ey_err_set(EY_ERR_FORMAT, "jpeg: bad segment length %zu in marker 0x%02X", len, m);
        if (len > n - pos)
            return ey_err_set(EY_ERR_FORMAT, "jpeg: truncated in marker 0x%02X segment", m);
        const uint8_t *s = d + pos + 2;
        size_t sl = len - 2;
        pos += len;
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (ji->have_sof) return ey_err_set(EY_ERR_FORMAT, "jpeg: more than one frame header");
            if (sl < 6) return ey_err_set(EY_ERR_FORMAT, "jpeg: short frame header");
            ji->have_sof = 1;
            ji->height = rd16(s + 1, 0);
            ji->width = rd16(s + 3, 0);
            ji->n_comp = s[5];
            ji->progressive = (m & 3) == 2;
            ji->lossless = (m & 3) == 3;
            ji->arithmetic = m >= 0xC9;
            if (ji->n_comp != 1 && ji->n_comp != 3 && ji->n_comp != 4)
                return ey_err_set(EY_ERR_UNSUPPORTED, "jpeg: %u colour components", ji->n_comp);
            if (sl < 6 + 3 * (size_t)ji->n_comp)
                return ey_err_set(EY_ERR_FORMAT, "jpeg: short frame header");
            if (ji->height == 0)
                return ey_err_set(EY_ERR_UNSUPPORTED, "jpeg: height defined by DNL marker");
            /* Output RGB + a rotated copy + the CMYK staging buffer + the
             * whole-image coefficient buffer of a progressive decode. */
            uint64_t bpp = 3 + 3 + (ji->n_comp == 4 ? 4 : 0) +
                           (ji->progressive ? 2 * (uint64_t)ji->n_comp : 0);
            ey_err e = ey_image_check_dims_impl("jpeg", ji->width, ji->height, bpp, lim);
            if (e) return e;
        } else if (m == 0xDA) { /* SOS: count, then skip entropy-coded data */
            if (!ji->have_sof) return ey_err_set(EY_ERR_FORMAT, "jpeg: scan before frame header");
            if (++ji->n_scans > lim->max_jpeg_scans)
                return ey_err_set(EY_ERR_LIMIT, "jpeg: more than %u scans", lim->max_jpeg_scans);
            while (pos + 1 < n) {
                if (d[pos] == 0xFF && d[pos + 1] != 0 &&
                    !(d[pos + 1] >= 0xD0 && d[pos + 1] <= 0xD7) && d[pos + 1] != 0xFF)
                    break;
                pos++;
            }
        } else if (m == 0xE1 && sl >= 6 && !memcmp(s, "Exif\0\0", 6)) {
            if (ji->orientation == 1) ji->orientation = exif_orientation(s + 6, sl - 6);
        } else if (m == 0xEE && sl >= 5 && !memcmp(s, "Adobe", 5)) {
            ji->adobe = 1;
        }
    }
    if (!ji->have_sof) return ey_err_set(EY_ERR_FORMAT, "jpeg: no frame header");
    if (!ji->n_scans) return ey_err_set(EY_ERR_FORMAT, "jpeg: no image data (no scan)");
    return EY_OK;
}

static ey_err tj_error(tjhandle h, const char *stage)
{
    return ey_err_set(EY_ERR_FORMAT, "jpeg: %s: %s", stage, tjGetErrorStr2(h));
}

ey_err ey_image_decode_jpeg_impl(const uint8_t *data, size_t n,
                                 const ey_image_limits *lim, ey_image *out)
{
    jpeg_info ji;
    ey_err e = jpeg_walk(data, n, lim, &ji);
    if (e) return e;
    if (ji.lossless) return ey_err_set(EY_ERR_UNSUPPORTED, "jpeg: lossless JPEG");
    if (n > (size_t)0xFFFFFFFFu) return ey_err_set(EY_ERR_LIMIT, "jpeg: input over 4 GiB");

    tjhandle h = tjInitDecompress();
    if (!h) return ey_err_set(EY_ERR_NOMEM, "jpeg: tjInitDecompress: %s", tjGetErrorStr2(NULL));
    uint8_t *buf = NULL;
    int w = 0, hh = 0, subsamp = 0, cs = 0;
    if (tjDecompressHeader3(h, data, (unsigned long)n, &w, &hh, &subsamp, &cs) != 0) {
        e = tj_error(h, "header");
        goto done;
    }
    /* TurboJPEG parsed the same header; insist it agrees with our walk. */
    if ((uint32_t)w != ji.width || (uint32_t)hh != ji.height) {
        e = ey_err_set(EY_ERR_FORMAT, "jpeg: inconsistent frame headers");
        goto done;
    }
    const int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    const int pf = cmyk ? TJPF_CMYK : TJPF_RGB;
    const size_t ps = cmyk ? 4 : 3;
    buf = malloc((size_t)w * hh * ps);
    if (!buf) {
        e = ey_err_set(EY_ERR_NOMEM, "jpeg: %dx%d pixel buffer", w, hh);
        goto done;
    }
    /* Default flags: accurate integer IDCT and fancy upsampling, which is
     * what Pillow asks libjpeg for. */
    if (tjDecompress2(h, data, (unsigned long)n, buf, w, 0, hh, pf, 0) != 0) {
        const char *msg = tjGetErrorStr2(h);
        if (tjGetErrorCode(h) == TJERR_FATAL || !strstr(msg, "extraneous bytes")) {
            e = ey_err_set(EY_ERR_FORMAT, "jpeg: %s", msg);
            goto done;
        }
    }
    if (cmyk) {
        /* Pillow reads CMYK JPEGs with Adobe (inverted) polarity and converts
         * with cmyk2rgb: out = nk - MULDIV255(c, nk), nk = 255 - k, where
         * (c, k) = 255 - raw. So nk = raw_k and c = 255 - raw_c. */
        const size_t np = (size_t)w * hh;
        for (size_t i = 0; i < np; i++) {
            const uint8_t *p = buf + i * 4;
            uint32_t nk = p[3];
            uint8_t o[3];
            for (int c = 0; c < 3; c++) {
                uint32_t t = (uint32_t)(255 - p[c]) * nk + 128;
                uint32_t mul = ((t >> 8) + t) >> 8;
                o[c] = (uint8_t)(nk - mul);
            }
            memcpy(buf + i * 3, o, 3); /* in place: i*3 <= i*4 */
        }
        uint8_t *shrunk = realloc(buf, np * 3);
        if (shrunk) buf = shrunk;
    }
    out->rgb = buf;
    buf = NULL;
    out->width = out->src_width = (uint32_t)w;
    out->height = out->src_height = (uint32_t)hh;
    out->src_channels = (uint8_t)ji.n_comp;
    out->src_bit_depth = 8;
    out->is_cmyk = (uint8_t)cmyk;
    out->is_progressive = (uint8_t)ji.progressive;
    out->orientation = 1;
    (void)ji.adobe;
    e = ey_image_orient_impl(out, ji.orientation);
done:
    free(buf);
    tjDestroy(h);
    return e;
}
