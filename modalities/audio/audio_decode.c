/* eyrie — audio decoding from memory with FFmpeg, to mono float PCM.
 *
 * Flow: custom AVIOContext over the caller's bytes -> avformat_open_input
 * restricted to an allow-list of audio demuxers -> best audio stream ->
 * decoder with AV_EF_EXPLODE | AV_EF_CRCCHECK (corruption is an error, not
 * noise) -> libswresample (default settings, like the ffmpeg CLI's
 * aresample) to mono float at the requested rate -> growable buffer capped
 * by the duration limit. See ey_audio.h for the contract. */
#include "modalities/audio/audio_internal.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Demuxers we open. Everything else (image2, hls, concat, ...) is refused,
 * which also keeps FFmpeg from opening any nested URL. */
static const char k_format_whitelist[] =
    "wav,w64,aiff,caf,au,flac,mp3,ogg,mov,mp4,m4a,3gp,matroska,webm,aac";

void ey_audio_limits_default(ey_audio_limits *lim)
{
    lim->max_bytes = (size_t)64 << 20;
    lim->max_duration_s = 20 * 60;
    lim->max_channels = 16;
    lim->max_sample_rate = 384000;
}

void ey_audio_quiet_ffmpeg_log(void) { av_log_set_level(AV_LOG_QUIET); }

typedef struct mem_reader {
    const uint8_t *data;
    size_t n, pos;
} mem_reader;

static int mem_read(void *opaque, uint8_t *buf, int size)
{
    mem_reader *r = opaque;
    if (r->pos >= r->n) return AVERROR_EOF;
    size_t k = r->n - r->pos;
    if (size < 0) return AVERROR(EINVAL);
    if (k > (size_t)size) k = (size_t)size;
    memcpy(buf, r->data + r->pos, k);
    r->pos += k;
    return (int)k;
}

static int64_t mem_seek(void *opaque, int64_t off, int whence)
{
    mem_reader *r = opaque;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return (int64_t)r->n;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? (int64_t)r->pos
                 : whence == SEEK_END ? (int64_t)r->n : -1;
    if (base < 0) return AVERROR(EINVAL);
    if ((off > 0 && base > INT64_MAX - off)) return AVERROR(EINVAL);
    int64_t p = base + off;
    if (p < 0 || p > (int64_t)r->n) return AVERROR(EINVAL);
    r->pos = (size_t)p;
    return p;
}

/* RIFF WAVE: libavformat estimates a PCM WAV's length from the bytes
 * present, so a cut file looks complete. Read the declared data size and
 * byte rate ourselves. Returns the declared seconds, or -1 if not a plain
 * WAV or the size is the streaming placeholder (0 or 0xFFFFFFFF). */
static double wav_declared_seconds(const uint8_t *d, size_t n)
{
    if (n < 12 || memcmp(d, "RIFF", 4) || memcmp(d + 8, "WAVE", 4)) return -1;
    size_t pos = 12;
    uint32_t byte_rate = 0;
    while (pos + 8 <= n) {
        uint32_t sz = (uint32_t)d[pos + 4] | (uint32_t)d[pos + 5] << 8 |
                      (uint32_t)d[pos + 6] << 16 | (uint32_t)d[pos + 7] << 24;
        if (!memcmp(d + pos, "fmt ", 4) && sz >= 16 && pos + 8 + 12 <= n)
            byte_rate = (uint32_t)d[pos + 16] | (uint32_t)d[pos + 17] << 8 |
                        (uint32_t)d[pos + 18] << 16 | (uint32_t)d[pos + 19] << 24;
        if (!memcmp(d + pos, "data", 4)) {
            if (!byte_rate || sz == 0 || sz == 0xFFFFFFFFu) return -1;
            return (double)sz / byte_rate;
        }
        if ((uint64_t)sz + 8 + (sz & 1) > n - pos) return -1;
        pos += 8 + (size_t)sz + (sz & 1);
    }
    return -1;
}

typedef struct dec_state {
    const ey_audio_limits *lim;
    uint32_t out_rate;
    SwrContext *swr;
    AVChannelLayout in_layout;
    int in_rate, in_fmt;
    float *pcm;
    size_t n, cap, max_out;
    uint64_t in_samples;   /* at the source rate(s) */
    double in_seconds;
} dec_state;

static ey_err out_reserve(dec_state *s, size_t extra)
{
    if (extra > s->max_out - s->n)
        return ey_err_set(EY_ERR_LIMIT, "audio: longer than the %.0f s limit",
                          s->lim->max_duration_s);
    if (s->n + extra <= s->cap) return EY_OK;
    size_t cap = s->cap ? s->cap : 16384;
    while (cap < s->n + extra) cap = cap > s->max_out / 2 ? s->max_out : cap * 2;
    float *p = realloc(s->pcm, cap * sizeof(float));
    if (!p) return ey_err_set(EY_ERR_NOMEM, "audio: %zu-sample buffer", cap);
    s->pcm = p;
    s->cap = cap;
    return EY_OK;
}

/* Runs swr on (in, n_in) (NULL/0 = flush) into the output buffer. */
static ey_err swr_run(dec_state *s, const uint8_t **in, int n_in)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    for (;;) {
        int want = swr_get_out_samples(s->swr, n_in);
        if (want < 0) return ey_err_set(EY_ERR_FORMAT, "audio: resampler: %s", ey_av_err_str_impl(want, eb));
        if (want == 0 && !in) return EY_OK;
        want += 32;
        ey_err e = out_reserve(s, (size_t)want);
        if (e) {
            /* Near the cap, let swr tell us the exact count before failing. */
            if (e != EY_ERR_LIMIT || s->max_out - s->n == 0) return e;
            want = (int)(s->max_out - s->n);
            if ((e = out_reserve(s, (size_t)want))) return e;
        }
        uint8_t *o = (uint8_t *)(s->pcm + s->n);
        int got = swr_convert(s->swr, &o, want, in, n_in);
        if (got < 0) return ey_err_set(EY_ERR_FORMAT, "audio: resampler: %s", ey_av_err_str_impl(got, eb));
        s->n += (size_t)got;
        if (in) return EY_OK; /* all input consumed (buffered inside swr) */
        if (got == 0) return EY_OK;
        if (s->n >= s->max_out)
            return ey_err_set(EY_ERR_LIMIT, "audio: longer than the %.0f s limit",
                              s->lim->max_duration_s);
    }
}

static ey_err on_frame(dec_state *s, AVFrame *fr)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    int ch = fr->ch_layout.nb_channels;
    if (fr->sample_rate <= 0 || (uint32_t)fr->sample_rate > s->lim->max_sample_rate)
        return ey_err_set(EY_ERR_LIMIT, "audio: sample rate %d outside 1..%u", fr->sample_rate,
                          s->lim->max_sample_rate);
    if (ch <= 0 || (uint32_t)ch > s->lim->max_channels)
        return ey_err_set(EY_ERR_LIMIT, "audio: %d channels (limit %u)", ch, s->lim->max_channels);
    if (fr->nb_samples <= 0) return EY_OK;
    AVChannelLayout lay;
    if (fr->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC) av_channel_layout_default(&lay, ch);
    else if (av_channel_layout_copy(&lay, &fr->ch_layout) < 0)
        return ey_err_set(EY_ERR_NOMEM, "audio: channel layout");
    int same = s->swr && s->in_rate == fr->sample_rate && s->in_fmt == fr->format &&
               !av_channel_layout_compare(&s->in_layout, &lay);
    if (!same) {
        if (s->swr) { /* parameters changed mid-stream: drain, then rebuild */
            ey_err e = swr_run(s, NULL, 0);
            swr_free(&s->swr);
            if (e) {
                av_channel_layout_uninit(&lay);
                return e;
            }
        }
        if (s->out_rate == 0) { /* EY_AUDIO_RATE_SOURCE: keep the first frame's rate */
            s->out_rate = (uint32_t)fr->sample_rate;
            if (s->out_rate < 8000) s->out_rate = 8000;
            if (s->out_rate > 192000) s->out_rate = 192000;
            s->max_out = (size_t)ceil(s->lim->max_duration_s * s->out_rate) + 1;
        }
        AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
        int r = swr_alloc_set_opts2(&s->swr, &mono, AV_SAMPLE_FMT_FLT, (int)s->out_rate, &lay,
                                    (enum AVSampleFormat)fr->format, fr->sample_rate, 0, NULL);
        if (r >= 0) r = swr_init(s->swr);
        if (r < 0) {
            av_channel_layout_uninit(&lay);
            return ey_err_set(EY_ERR_UNSUPPORTED, "audio: cannot convert %d ch %s @ %d Hz: %s", ch,
                              av_get_sample_fmt_name(fr->format) ? av_get_sample_fmt_name(fr->format) : "?",
                              fr->sample_rate, ey_av_err_str_impl(r, eb));
        }
        av_channel_layout_uninit(&s->in_layout);
        s->in_layout = lay;
        s->in_rate = fr->sample_rate;
        s->in_fmt = fr->format;
    } else {
        av_channel_layout_uninit(&lay);
    }
    s->in_samples += (uint64_t)fr->nb_samples;
    s->in_seconds += (double)fr->nb_samples / fr->sample_rate;
    if (s->in_seconds > s->lim->max_duration_s + 1.0)
        return ey_err_set(EY_ERR_LIMIT, "audio: longer than the %.0f s limit", s->lim->max_duration_s);
    return swr_run(s, (const uint8_t **)fr->extended_data, fr->nb_samples);
}

static ey_err drain(dec_state *s, AVCodecContext *dec, AVFrame *fr)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    for (;;) {
        int r = avcodec_receive_frame(dec, fr);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return EY_OK;
        if (r < 0) return ey_err_set(EY_ERR_FORMAT, "audio: corrupt %s stream: %s",
                                     dec->codec->name, ey_av_err_str_impl(r, eb));
        ey_err e = on_frame(s, fr);
        av_frame_unref(fr);
        if (e) return e;
    }
}

ey_err ey_audio_decode(const void *data, size_t n, uint32_t out_rate,
                       const ey_audio_limits *lim, ey_audio *out)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    ey_audio_limits dl;
    if (!out) return ey_err_set(EY_ERR_ARG, "audio: NULL output");
    memset(out, 0, sizeof *out);
    if (!lim) {
        ey_audio_limits_default(&dl);
        lim = &dl;
    }
    if (out_rate == 0) out_rate = EY_AUDIO_SAMPLE_RATE;
    if (out_rate == EY_AUDIO_RATE_SOURCE) out_rate = 0; /* set at the first frame */
    else if (out_rate < 8000 || out_rate > 192000)
        return ey_err_set(EY_ERR_ARG, "audio: output rate %u outside 8000..192000", out_rate);
    if (!data && n) return ey_err_set(EY_ERR_ARG, "audio: NULL data");
    if (n == 0) return ey_err_set(EY_ERR_FORMAT, "audio: empty input (0 bytes)");
    if (n > lim->max_bytes)
        return ey_err_set(EY_ERR_LIMIT, "audio: %zu bytes exceeds the %zu-byte limit", n,
                          lim->max_bytes);
    if (!(lim->max_duration_s > 0) || lim->max_duration_s > 24 * 3600.0)
        return ey_err_set(EY_ERR_ARG, "audio: bad duration limit");

    ey_err e = EY_OK;
    mem_reader rd = {.data = data, .n = n};
    AVIOContext *avio = NULL;
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    AVPacket *pkt = NULL;
    AVFrame *fr = NULL;
    AVDictionary *opts = NULL;
    dec_state s = {.lim = lim, .out_rate = out_rate};
    s.max_out = out_rate ? (size_t)ceil(lim->max_duration_s * out_rate) + 1 : 0;

    const int iobuf_size = 32768;
    uint8_t *iobuf = av_malloc(iobuf_size);
    if (!iobuf) return ey_err_set(EY_ERR_NOMEM, "audio: I/O buffer");
    avio = avio_alloc_context(iobuf, iobuf_size, 0, &rd, mem_read, NULL, mem_seek);
    if (!avio) {
        av_free(iobuf);
        return ey_err_set(EY_ERR_NOMEM, "audio: AVIOContext");
    }
    fmt = avformat_alloc_context();
    if (!fmt) {
        e = ey_err_set(EY_ERR_NOMEM, "audio: AVFormatContext");
        goto done;
    }
    fmt->pb = avio;
    fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    av_dict_set(&opts, "format_whitelist", k_format_whitelist, 0);
    av_dict_set(&opts, "max_streams", "32", 0);
    int r = avformat_open_input(&fmt, NULL, NULL, &opts); /* frees fmt on failure */
    if (r < 0) {
        e = ey_err_set(EY_ERR_FORMAT, "audio: not a supported audio container: %s",
                       ey_av_err_str_impl(r, eb));
        goto done;
    }
    snprintf(out->container, sizeof out->container, "%s", fmt->iformat->name);
    /* Fills in rate/channels for raw streams (FLAC, MP3, ADTS) by parsing
     * their first frames; bounded by probesize (5 MB) and 5 s of analysis. */
    fmt->max_analyze_duration = 5 * AV_TIME_BASE;
    if ((r = avformat_find_stream_info(fmt, NULL)) < 0) {
        e = ey_err_set(EY_ERR_FORMAT, "audio: %s: cannot read stream parameters: %s",
                       fmt->iformat->name, ey_av_err_str_impl(r, eb));
        goto done;
    }
    int idx = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    if (idx < 0) {
        e = ey_err_set(EY_ERR_FORMAT, "audio: no audio stream in %s container", fmt->iformat->name);
        goto done;
    }
    AVStream *st = fmt->streams[idx];
    AVCodecParameters *par = st->codecpar;
    const AVCodec *codec = avcodec_find_decoder(par->codec_id);
    if (!codec) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "audio: no decoder for codec '%s'",
                       avcodec_get_name(par->codec_id));
        goto done;
    }
    snprintf(out->codec, sizeof out->codec, "%s", codec->name);
    if (par->sample_rate < 0 || (uint32_t)par->sample_rate > lim->max_sample_rate)
        e = ey_err_set(EY_ERR_LIMIT, "audio: declared sample rate %d over %u", par->sample_rate,
                       lim->max_sample_rate);
    else if (par->ch_layout.nb_channels < 0 || (uint32_t)par->ch_layout.nb_channels > lim->max_channels)
        e = ey_err_set(EY_ERR_LIMIT, "audio: declared %d channels (limit %u)",
                       par->ch_layout.nb_channels, lim->max_channels);
    if (e) goto done;
    /* The length the container declares: WAV's data size / byte rate, the
     * stream's own duration, or the file's when it came from headers (not
     * guessed from the bit rate). */
    double declared = -1;
    const double wav_declared = !strcmp(fmt->iformat->name, "wav") ? wav_declared_seconds(data, n) : -1;
    if (wav_declared > 0)
        declared = wav_declared;
    else if (st->duration > 0 && st->time_base.num > 0 && st->time_base.den > 0)
        declared = st->duration * av_q2d(st->time_base);
    else if (fmt->duration > 0 && fmt->duration_estimation_method != AVFMT_DURATION_FROM_BITRATE)
        declared = (double)fmt->duration / AV_TIME_BASE;
    if (declared > lim->max_duration_s)
        e = ey_err_set(EY_ERR_LIMIT, "audio: declared duration %.1f s exceeds the %.0f s limit",
                       declared, lim->max_duration_s);
    if (e) goto done;
    out->bit_rate = fmt->bit_rate;

    dec = avcodec_alloc_context3(codec);
    if (!dec) {
        e = ey_err_set(EY_ERR_NOMEM, "audio: decoder context");
        goto done;
    }
    if ((r = avcodec_parameters_to_context(dec, par)) < 0) {
        e = ey_err_set(EY_ERR_FORMAT, "audio: codec parameters: %s", ey_av_err_str_impl(r, eb));
        goto done;
    }
    dec->thread_count = 1;
    dec->err_recognition = AV_EF_EXPLODE | AV_EF_CRCCHECK;
    dec->pkt_timebase = st->time_base;
    if ((r = avcodec_open2(dec, codec, NULL)) < 0) {
        e = ey_err_set(EY_ERR_FORMAT, "audio: cannot open %s decoder: %s", codec->name,
                       ey_av_err_str_impl(r, eb));
        goto done;
    }
    pkt = av_packet_alloc();
    fr = av_frame_alloc();
    if (!pkt || !fr) {
        e = ey_err_set(EY_ERR_NOMEM, "audio: packet/frame");
        goto done;
    }
    while ((r = av_read_frame(fmt, pkt)) >= 0) {
        if (pkt->stream_index == idx) {
            int sr = avcodec_send_packet(dec, pkt);
            if (sr < 0 && sr != AVERROR(EAGAIN)) {
                e = ey_err_set(EY_ERR_FORMAT, "audio: corrupt %s stream: %s", codec->name,
                               ey_av_err_str_impl(sr, eb));
                av_packet_unref(pkt);
                goto done;
            }
            e = drain(&s, dec, fr);
        }
        av_packet_unref(pkt);
        if (e) goto done;
    }
    if (r != AVERROR_EOF) {
        e = ey_err_set(EY_ERR_FORMAT, "audio: %s container: %s", fmt->iformat->name,
                       ey_av_err_str_impl(r, eb));
        goto done;
    }
    avcodec_send_packet(dec, NULL);
    if ((e = drain(&s, dec, fr))) goto done;
    if (!s.swr || s.in_samples == 0) {
        e = ey_err_set(EY_ERR_FORMAT, "audio: no audio decoded from the %s stream", codec->name);
        goto done;
    }
    if ((e = swr_run(&s, NULL, 0))) goto done;
    /* A container that declares its length (WAV data size, FLAC STREAMINFO,
     * MP4 mdhd, Ogg last granule) and ends well short of it is truncated. */
    if (declared > 0 &&
        (wav_declared > 0 || fmt->duration_estimation_method != AVFMT_DURATION_FROM_BITRATE) &&
        s.in_seconds < declared * 0.95 - 0.1) {
        e = ey_err_set(EY_ERR_FORMAT, "audio: truncated: %s declares %.2f s, decoded %.2f s",
                       fmt->iformat->name, declared, s.in_seconds);
        goto done;
    }
    if (s.n == 0) {
        e = ey_err_set(EY_ERR_FORMAT, "audio: no samples after resampling");
        goto done;
    }
    out->pcm = s.pcm;
    s.pcm = NULL;
    out->n_samples = s.n;
    out->sample_rate = s.out_rate;
    out->src_sample_rate = (uint32_t)s.in_rate;
    out->src_channels = (uint32_t)s.in_layout.nb_channels;
    out->src_duration_s = s.in_seconds;
done:
    if (e) memset(out, 0, sizeof *out);
    av_dict_free(&opts);
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    if (avio) av_freep(&avio->buffer);
    avio_context_free(&avio);
    swr_free(&s.swr);
    av_channel_layout_uninit(&s.in_layout);
    free(s.pcm);
    return e;
}

void ey_audio_free(ey_audio *a)
{
    if (!a) return;
    free(a->pcm);
    memset(a, 0, sizeof *a);
}
