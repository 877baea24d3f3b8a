/* eyrie — Whisper log-mel spectrogram.
 *
 * ref: transformers 5.x models/whisper/feature_extraction_whisper.py
 * (_np_extract_fbank_features, __call__ padding) and audio_utils.py
 * (mel_filter_bank with norm="slaney", mel_scale="slaney"; window_function
 * "hann" periodic; spectrogram with center=True, pad_mode="reflect").
 *
 * Numerics follow the numpy path: frames windowed and transformed in double,
 * each bin rounded to complex64 as numpy stores it,
 * power = hypot(re, im)^2 in double, mel product in double, log10 in double,
 * then float32; floor at max - 8 and (x + 4) / 4 in float32. */
#include "modalities/audio/ey_audio.h"

#include <libavutil/mem.h>
#include <libavutil/tx.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_BINS (EY_MEL_N_FFT / 2 + 1) /* 201 */
#define PAD (EY_MEL_N_FFT / 2)        /* 200: center=True */
/* The 400-point DFT: libavutil's av_tx (FFmpeg 5.x) has no fast path for
 * 400 = 16 * 25 and falls back to an O(n^2) transform (~1.5 ms a frame), so
 * we run Bluestein's chirp-z algorithm on av_tx's fast 1024-point double
 * FFTs: X[k] = w[k] * IFFT(FFT(x * w) * FFT(conj w))[k], w[m] =
 * exp(-i pi m^2 / N). Double precision keeps it within ~1e-13 relative of a
 * direct DFT, far below the complex64 rounding numpy applies afterwards. */
#define BLU_M 1024

struct ey_mel_ctx {
    int n_mels;
    double window[EY_MEL_N_FFT];
    double *filters;   /* (n_mels, N_BINS) */
    int *f_lo, *f_hi;  /* per mel: nonzero bin range [lo, hi) */
    AVTXContext *fft, *ifft;
    av_tx_fn fft_fn, ifft_fn;
    AVComplexDouble chirp[EY_MEL_N_FFT]; /* w[m] */
    AVComplexDouble *filt;  /* FFT(conj w, wrapped) / M, BLU_M */
    AVComplexDouble *a, *b; /* BLU_M scratch */
    float *wave;       /* 480000 + 2*PAD reflect-padded waveform */
    double *power;     /* (3000, N_BINS) */
};

static double hz_to_mel(double f)
{
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = 27.0 / log(6.4);
    double m = 3.0 * f / 200.0;
    if (f >= min_log_hz) m = min_log_mel + log(f / min_log_hz) * logstep;
    return m;
}

static double mel_to_hz(double m)
{
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = log(6.4) / 27.0;
    double f = 200.0 * m / 3.0;
    if (m >= min_log_mel) f = min_log_hz * exp(logstep * (m - min_log_mel));
    return f;
}

/* numpy.linspace(a, b, n)[i]: a + i * step, the last element exactly b. */
static double linspace_at(double a, double b, int n, int i)
{
    if (i == n - 1) return b;
    double step = (b - a) / (n - 1);
    return i * step + a;
}

ey_err ey_mel_init(ey_mel_ctx **out, int n_mels)
{
    if (!out) return ey_err_set(EY_ERR_ARG, "mel: NULL output");
    *out = NULL;
    if (n_mels < 1 || n_mels > 256)
        return ey_err_set(EY_ERR_ARG, "mel: n_mels %d (80 or 128 expected)", n_mels);
    ey_mel_ctx *c = calloc(1, sizeof *c);
    if (!c) return ey_err_set(EY_ERR_NOMEM, "mel: context");
    c->n_mels = n_mels;
    c->filters = calloc((size_t)n_mels * N_BINS, sizeof(double));
    c->f_lo = calloc((size_t)n_mels, sizeof(int));
    c->f_hi = calloc((size_t)n_mels, sizeof(int));
    c->filt = av_malloc(BLU_M * sizeof(AVComplexDouble));
    c->a = av_malloc(BLU_M * sizeof(AVComplexDouble));
    c->b = av_malloc(BLU_M * sizeof(AVComplexDouble));
    c->wave = malloc((EY_MEL_CHUNK_SAMPLES + 2 * PAD) * sizeof(float));
    c->power = malloc((size_t)EY_MEL_N_FRAMES * N_BINS * sizeof(double));
    if (!c->filters || !c->f_lo || !c->f_hi || !c->filt || !c->a || !c->b || !c->wave || !c->power) {
        ey_mel_free(c);
        return ey_err_set(EY_ERR_NOMEM, "mel: buffers");
    }
    const double scale = 1.0;
    int r = av_tx_init(&c->fft, &c->fft_fn, AV_TX_DOUBLE_FFT, 0, BLU_M, &scale, 0);
    if (r >= 0) r = av_tx_init(&c->ifft, &c->ifft_fn, AV_TX_DOUBLE_FFT, 1, BLU_M, &scale, 0);
    if (r < 0 || !c->fft || !c->ifft) {
        ey_mel_free(c);
        return ey_err_set(EY_ERR_UNSUPPORTED, "mel: av_tx_init(double FFT, %d) failed (%d)", BLU_M, r);
    }
    /* Bluestein chirp (m^2 mod 2N keeps the angle exact) and its filter. */
    for (int m = 0; m < EY_MEL_N_FFT; m++) {
        long q = ((long)m * m) % (2 * EY_MEL_N_FFT);
        double ang = -M_PI * (double)q / EY_MEL_N_FFT;
        c->chirp[m].re = cos(ang);
        c->chirp[m].im = sin(ang);
    }
    memset(c->a, 0, BLU_M * sizeof(AVComplexDouble));
    for (int m = 0; m < EY_MEL_N_FFT; m++) {
        c->a[m].re = c->chirp[m].re;
        c->a[m].im = -c->chirp[m].im;
        if (m) c->a[BLU_M - m] = c->a[m];
    }
    c->fft_fn(c->fft, c->filt, c->a, sizeof(AVComplexDouble));
    for (int m = 0; m < BLU_M; m++) {
        c->filt[m].re /= BLU_M;
        c->filt[m].im /= BLU_M;
    }
    /* np.hanning(401)[:-1]: 0.5 - 0.5 cos(2 pi n / 400). */
    for (int i = 0; i < EY_MEL_N_FFT; i++)
        c->window[i] = 0.5 - 0.5 * cos(2.0 * M_PI * i / EY_MEL_N_FFT);
    /* Slaney mel filter bank, 0..8000 Hz, n_mels + 2 edges. */
    const double mel_lo = hz_to_mel(0.0), mel_hi = hz_to_mel(8000.0);
    double edges[258];
    for (int i = 0; i < n_mels + 2; i++) edges[i] = mel_to_hz(linspace_at(mel_lo, mel_hi, n_mels + 2, i));
    for (int m = 0; m < n_mels; m++) {
        double d0 = edges[m + 1] - edges[m], d1 = edges[m + 2] - edges[m + 1];
        double enorm = 2.0 / (edges[m + 2] - edges[m]);
        c->f_lo[m] = N_BINS;
        c->f_hi[m] = 0;
        for (int k = 0; k < N_BINS; k++) {
            double f = linspace_at(0.0, 8000.0, N_BINS, k);
            double down = -(edges[m] - f) / d0;  /* -slopes[:, :-2] / diff[:-1] */
            double up = (edges[m + 2] - f) / d1; /* slopes[:, 2:] / diff[1:] */
            double v = fmax(0.0, fmin(down, up)) * enorm;
            c->filters[(size_t)m * N_BINS + k] = v;
            if (v != 0.0) {
                if (k < c->f_lo[m]) c->f_lo[m] = k;
                c->f_hi[m] = k + 1;
            }
        }
        if (c->f_hi[m] == 0) c->f_lo[m] = 0;
    }
    *out = c;
    return EY_OK;
}

void ey_mel_free(ey_mel_ctx *c)
{
    if (!c) return;
    av_tx_uninit(&c->fft);
    av_tx_uninit(&c->ifft);
    free(c->filters);
    free(c->f_lo);
    free(c->f_hi);
    av_free(c->filt);
    av_free(c->a);
    av_free(c->b);
    free(c->wave);
    free(c->power);
    free(c);
}

int ey_mel_n_mels(const ey_mel_ctx *c) { return c ? c->n_mels : 0; }

ey_err ey_mel_compute(ey_mel_ctx *c, const float *pcm, size_t n, float *out,
                      uint32_t *n_real_frames)
{
    if (!c || !out || (!pcm && n)) return ey_err_set(EY_ERR_ARG, "mel: NULL argument");
    const size_t N = EY_MEL_CHUNK_SAMPLES;
    if (n > N) n = N; /* truncation=True, max_length=n_samples */
    /* Pad to 30 s with zeros, then reflect-pad 200 each side
     * (numpy 'reflect': x[200..1] | x | x[N-2..N-201]). */
    float *w = c->wave;
    memset(w, 0, (N + 2 * PAD) * sizeof(float));
    if (n) memcpy(w + PAD, pcm, n * sizeof(float));
    for (int i = 0; i < PAD; i++) {
        w[PAD - 1 - i] = w[PAD + 1 + i];
        w[PAD + N + i] = w[PAD + N - 2 - i];
    }
    for (int t = 0; t < EY_MEL_N_FRAMES; t++) { /* frame 3000 is dropped */
        const float *x = w + (size_t)t * EY_MEL_HOP;
        AVComplexDouble *a = c->a, *b = c->b;
        for (int i = 0; i < EY_MEL_N_FFT; i++) {
            double v = (double)x[i] * c->window[i];
            a[i].re = v * c->chirp[i].re;
            a[i].im = v * c->chirp[i].im;
        }
        memset(a + EY_MEL_N_FFT, 0, (BLU_M - EY_MEL_N_FFT) * sizeof(AVComplexDouble));
        c->fft_fn(c->fft, b, a, sizeof(AVComplexDouble));
        for (int m = 0; m < BLU_M; m++) {
            double re = b[m].re * c->filt[m].re - b[m].im * c->filt[m].im;
            double im = b[m].re * c->filt[m].im + b[m].im * c->filt[m].re;
            b[m].re = re;
            b[m].im = im;
        }
        c->ifft_fn(c->ifft, a, b, sizeof(AVComplexDouble));
        double *p = c->power + (size_t)t * N_BINS;
        for (int k = 0; k < N_BINS; k++) {
            double xr = a[k].re * c->chirp[k].re - a[k].im * c->chirp[k].im;
            double xi = a[k].re * c->chirp[k].im + a[k].im * c->chirp[k].re;
            float re = (float)xr, im = (float)xi; /* numpy stores complex64 */
            double a = hypot((double)re, (double)im);
            p[k] = a * a;
        }
    }
    float maxv = -INFINITY;
    for (int m = 0; m < c->n_mels; m++) {
        const double *f = c->filters + (size_t)m * N_BINS;
        const int lo = c->f_lo[m], hi = c->f_hi[m];
        float *o = out + (size_t)m * EY_MEL_N_FRAMES;
        for (int t = 0; t < EY_MEL_N_FRAMES; t++) {
            const double *p = c->power + (size_t)t * N_BINS;
            double s = 0.0;
            for (int k = lo; k < hi; k++) s += f[k] * p[k];
            if (s < 1e-10) s = 1e-10;
            float v = (float)log10(s);
            o[t] = v;
            if (v > maxv) maxv = v;
        }
    }
    const float floor_v = maxv - 8.0f;
    const size_t total = (size_t)c->n_mels * EY_MEL_N_FRAMES;
    for (size_t i = 0; i < total; i++) {
        float v = out[i] < floor_v ? floor_v : out[i];
        out[i] = (v + 4.0f) / 4.0f;
    }
    if (n_real_frames) *n_real_frames = (uint32_t)((n + EY_MEL_HOP - 1) / EY_MEL_HOP);
    return EY_OK;
}
