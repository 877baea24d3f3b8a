/* eyrie — media subcommands of the `eyrie` CLI.
 *
 *   eyrie probe FILE [--json] [--vision qwen2vl|qwen3vl] [--max-pixels N]
 *                    [--n-mels 80|128]
 *   eyrie convert-audio IN OUT.{wav,flac,opus,ogg,mp3} [--rate HZ] [--bitrate BPS]
 *
 * argv[0] is the subcommand name. Return: 0 ok, 1 bad input (one line on
 * stderr: "eyrie <cmd>: FILE: <error>: <detail>"), 2 bad arguments (usage on
 * stderr). */
#ifndef EY_MEDIA_CLI_H
#define EY_MEDIA_CLI_H

int ey_cli_probe(int argc, char **argv);
int ey_cli_convert_audio(int argc, char **argv);

#endif
