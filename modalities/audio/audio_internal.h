/* eyrie — helpers shared by the FFmpeg-based audio files (not public). */
#ifndef EY_AUDIO_INTERNAL_H
#define EY_AUDIO_INTERNAL_H

#include "modalities/audio/ey_audio.h"

#include <libavutil/error.h>
#include <stdio.h>

/* "Invalid data found when processing input" etc., for detail messages. */
static inline const char *ey_av_err_str_impl(int r, char buf[AV_ERROR_MAX_STRING_SIZE])
{
    av_strerror(r, buf, AV_ERROR_MAX_STRING_SIZE);
    return buf;
}

#endif
