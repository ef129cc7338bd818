"""Every input limit polymodal enforces, in one place (docs: README "Limits").

`validate`, `encode`, the Python API and `serve` read these constants, so a file refused by one
is refused by all with the same message (the value and the limit). Change a limit here only.
"""
from __future__ import annotations

# files
MAX_FILE_BYTES = 2 * 1024**3          # any media file: 2 GiB
# images
MAX_IMAGE_PIXELS = 89_478_485         # Pillow's default bomb limit (~9459×9459), from the header
MIN_IMAGE_SIDE = 2                    # 1-px images carry no content
# audio
MAX_AUDIO_SECONDS = 600.0             # audio used for features, pooled over 30-s windows (longer: cut, stated)
MIN_SAMPLE_RATE = 1_000               # Hz declared in the header
MAX_SAMPLE_RATE = 384_000             # Hz declared in the header (highest rate of studio gear)
MAX_AUDIO_CHANNELS = 64
MAX_DECODED_SAMPLES = 3600 * 48_000   # samples per channel decoded at once (1 h at 48 kHz)
MAX_TRANSCRIBE_SECONDS = 4 * 3600.0   # longest audio `transcribe` takes (decoded in 10-min blocks)
# speech synthesis (`polymodal speak`)
MAX_SPEAK_CHARS = 5_000               # one text to speak (~6 min of speech at normal speed)
MIN_SPEECH_RATE = 0.5                 # speed factor (1 = the voice's normal speed)
MAX_SPEECH_RATE = 2.5
MAX_RESAMPLE_FACTOR = 10_000          # polyphase up/down factors (filter taps = 20 × factor + 1)
# video (`polymodal.data.video`: validate, encode and serve read these)
MAX_VIDEO_SECONDS = 3600.0            # longest video decoded (frames and audio track): 1 h
MAX_VIDEO_FRAMES = 256                # frames sampled per clip (more: spread out / strongest kept, stated)
MAX_VIDEO_FRAME_PIXELS = 7680 * 4320  # one frame's declared size (8K UHD), from the stream header
VIDEO_FRAME_SIDE = 512                # sampled frames are scaled down to at most this long side
# serve (HTTP; uploads are limited by `serve --max-upload-mb`)
MAX_QUERY_CHARS = 10_000              # one search / embed / classify text (encoders read ~256 tokens)
MAX_JSON_BODY_BYTES = 1024**2         # one JSON request body (counted while it streams in)
# text and manifests
MAX_TEXT_CHARS = 100_000              # one text cell / query (characters)
MAX_CELL_CHARS = 10_000_000           # one manifest cell (CSV's own default limit is 131,072)
MAX_JSON_DEPTH = 64                   # nesting of a JSON value in a JSONL row or a cell
MAX_PATH_BYTES = 4096                 # one media path, absolute, encoded (Linux PATH_MAX)
MAX_PATH_PART_BYTES = 255             # one file / folder name in a path (NAME_MAX)
