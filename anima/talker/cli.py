"""``anima talker ...``: the neural Talker's corpus, training, evaluation, export and tools.

    anima talker build-corpus [--hours 5] [--out out/talker/corpus] [--seed 0] [--jobs 1] [--quiet]
    anima talker train {tokenizer,tts,judge,speaker} [OPTIONS]   (each: --help; resumable; torchrun-ready)
    anima talker tokenize --tokenizer RUN [--speaker RUN] [--corpus out/talker/corpus]
    anima talker eval [--tokenizer DIR ...] [--judge DIR] [--speaker DIR] [--json OUT]
    anima talker eval-tts [--weights DIR] [--sentences 12] [--json OUT]
    anima talker export --tokenizer RUN --tts RUN [--speaker RUN] [--judge RUN] [--out DIR]
    anima talker reconstruct IN.wav -o OUT.wav [--tokenizer DIR]       (any sample rate in)
    anima talker say "TEXT" [--voice V | --prompt VOICE.wav [--prompt-text T]] [--emotion E] -o OUT.wav
    anima talker spectrogram A.wav B.wav ... -o compare.png

Each subcommand is added by one ``_add_*`` function listed in ``SUBCOMMANDS``; its handler imports
what it needs when it runs, so ``anima --help`` loads neither torch nor the speech engines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from anima.subcommands import run_module


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _build_corpus(args: argparse.Namespace) -> int:
    from anima.talker.data.corpus import build_corpus
    from anima.talker.data.sentences import DEFAULT_NOVEL

    try:
        summary = build_corpus(args.out, args.hours, args.novel or DEFAULT_NOVEL, args.seed, args.jobs, args.quiet)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        return _error(str(exc))
    print(json.dumps(summary, indent=2))
    return 0


def _add_build_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-corpus", help="synthesise the speech corpus (espeak-ng voices + Piper, with phoneme timings)",
                       description="Speak the novel's sentences in 12 espeak-ng training voices, the Piper voice and 3 "
                                   "held-out voices with emotion-conditioned prosody; 24 kHz WAVs, a manifest with "
                                   "phoneme timings, splits by sentence. Resumable: re-running continues the build.")
    p.add_argument("--hours", type=float, default=5.0, help="hours of training-voice audio (default 5; held-out voices add 4.5%%)")
    p.add_argument("--out", type=Path, default=Path("out/talker/corpus"), help="corpus folder (default out/talker/corpus)")
    p.add_argument("--novel", type=Path, default=None, help="folder of chapter .txt files (default: the shared novel)")
    p.add_argument("--seed", type=int, default=0, help="voice/emotion/prosody choices (the split does not depend on it)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_build_corpus)


TRAINERS = {  # anima talker train KIND -> the module with add_arguments(parser) and run(args)
    "tokenizer": "anima.talker.training.train_tokenizer",
    "tts": "anima.talker.training.train_tts",
    "judge": "anima.talker.training.train_judge",
    "speaker": "anima.talker.training.train_speaker",
}


def _train(args: argparse.Namespace) -> int:
    return run_module(TRAINERS[args.kind], f"anima talker train {args.kind}", args.rest)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the tokenizer, the TTS model, the phoneme judge or the speaker encoder",
                       description="Resumable (same --out continues), progress bar, metrics.jsonl; runs under torchrun. "
                                   "`anima talker train KIND --help` lists KIND's options. See docs/talker.md.")
    p.add_argument("kind", choices=sorted(TRAINERS))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of that trainer")
    p.set_defaults(func=_train)


def _eval(args: argparse.Namespace) -> int:
    return run_module("anima.talker.training.evaluate", "anima talker eval", args.rest)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="codecs side by side on the same clips: STOI, PESQ, PER, speaker similarity",
                       description="Baselines (Codec2 1200/700C, Opus 6k) and learned tokenizers on test and held-out "
                                   "clips. `anima talker eval --help` lists the options.",
                       add_help=False, prefix_chars="+")  # every option, --help included, goes to evaluate's parser
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_eval)


def _eval_tts(args: argparse.Namespace) -> int:
    return run_module("anima.talker.training.evaluate_tts", "anima talker eval-tts", args.rest)


def _add_eval_tts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-tts", help="the TTS: PER against the recordings, cloning of held-out voices, emotion",
                       description="`anima talker eval-tts --help` lists the options.", add_help=False, prefix_chars="+")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_eval_tts)


def _tokenize(args: argparse.Namespace) -> int:
    import torch

    from anima.checkpoint import CheckpointError
    from anima.talker.training.tokenize_corpus import tokenize_corpus

    torch.set_num_threads(max(1, args.threads))  # small convolutions: more threads only fight other jobs
    try:
        counts = tokenize_corpus(args.corpus, args.tokenizer, args.speaker, args.overwrite, not args.quiet)
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        return _error(str(exc))
    print(json.dumps(counts))
    return 0


def _add_tokenize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="encode the corpus with a tokenizer (and speaker encoder) for TTS training")
    p.add_argument("--tokenizer", type=Path, required=True, help="tokenizer checkpoint (a training run folder)")
    p.add_argument("--speaker", type=Path, default=None, help="speaker encoder checkpoint: also write speaker vectors")
    p.add_argument("--corpus", type=Path, default=Path("out/talker/corpus"))
    p.add_argument("--overwrite", action="store_true", help="re-encode everything (codes of another tokenizer)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_tokenize)


def _export(args: argparse.Namespace) -> int:
    from anima.checkpoint import CheckpointError
    from anima.talker.training.export import export_talker

    try:
        sizes = export_talker(args.out, args.tokenizer, args.tts, args.corpus, args.speaker, args.judge, not args.float32)
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        return _error(str(exc))
    for name, size in sizes.items():
        print(f"{name:10s} {size / 2**20:7.2f} MiB")
    print(f"wrote {args.out}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from anima.talker.kodama import DEFAULT_WEIGHTS

    p = sub.add_parser("export", help="assemble the weights folder --talker kodama loads (models + voice bank)")
    p.add_argument("--tokenizer", type=Path, required=True)
    p.add_argument("--tts", type=Path, required=True)
    p.add_argument("--speaker", type=Path, default=None)
    p.add_argument("--judge", type=Path, default=None)
    p.add_argument("--corpus", type=Path, default=Path("out/talker/corpus"), help="tokenised corpus (the voice bank's prompts)")
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16 files)")
    p.set_defaults(func=_export)


def _read_audio(path: Path):
    """Any WAV/FLAC/OGG soundfile reads, mixed to mono and resampled to 24 kHz: (N,) float32."""
    import numpy as np
    import soundfile as sf
    import soxr

    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ValueError(f"{path}: not an audio file soundfile can read ({exc})") from None
    samples = samples.mean(1)
    if samples.size == 0:
        raise ValueError(f"{path}: no audio (0 samples)")
    if not np.isfinite(samples).all():
        raise ValueError(f"{path}: the audio holds NaN or infinite samples")
    if rate != 24000:
        samples = soxr.resample(samples, rate, 24000).astype(np.float32)
    return samples


def _reconstruct(args: argparse.Namespace) -> int:
    import soundfile as sf
    import torch

    from anima.checkpoint import CheckpointError
    from anima.talker.model.tokenizer import SpeechTokenizer

    try:
        samples = _read_audio(args.input)
        tokenizer = SpeechTokenizer.from_pretrained(args.tokenizer)
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        return _error(str(exc))
    torch.set_num_threads(max(1, args.threads))
    codes = tokenizer.encode(torch.from_numpy(samples)[None])  # (1, 8, T)
    audio = tokenizer.decode(codes)[0, : samples.size].numpy()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.output, audio.clip(-1, 1), 24000, subtype="PCM_16")
    print(f"{samples.size / 24000:.2f} s -> {codes.shape[-1]} frames x {codes.shape[1]} codes "
          f"({tokenizer.bitrate:.0f} bit/s) -> {args.output}")
    return 0


def _add_reconstruct(sub: argparse._SubParsersAction) -> None:
    from anima.talker.kodama import DEFAULT_WEIGHTS

    p = sub.add_parser("reconstruct", help="encode a WAV to speech tokens and decode it back (hear the codec)")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--tokenizer", type=Path, default=DEFAULT_WEIGHTS / "tokenizer")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_reconstruct)


def _say(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile as sf
    import torch

    from anima.checkpoint import CheckpointError
    from anima.core.plan import EMOTIONS
    from anima.talker.kodama import KodamaTTS

    if args.emotion not in EMOTIONS:
        return _error(f"unknown emotion {args.emotion!r}; choose one of {', '.join(EMOTIONS)}")
    torch.set_num_threads(max(1, args.threads))
    try:
        tts = KodamaTTS.load(args.weights, seed=args.seed)
        voice = args.voice
        if args.prompt is not None:
            clone = tts.voice_from_audio(_read_audio(args.prompt), args.prompt_text)
            tts.voices[clone.name] = clone
            voice = clone.name
        elif voice is not None and voice not in tts.voices and f"espeak:{voice}" not in tts.voices:
            return _error(f"unknown voice {voice!r}; the bank has {', '.join(sorted(tts.voices))} (or clone one with --prompt)")
        chunk = tts.synthesize(args.text, voice=voice, emotion=args.emotion)
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        return _error(str(exc))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.output, np.clip(chunk.samples, -1, 1), 24000, subtype="PCM_16")
    print(f"{chunk.samples.size / 24000:.2f} s of speech -> {args.output}")
    return 0


def _add_say(sub: argparse._SubParsersAction) -> None:
    from anima.talker.kodama import DEFAULT_WEIGHTS

    p = sub.add_parser("say", help="speak a text with the neural voice (a bank voice or a cloned one) into a WAV")
    p.add_argument("text")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--voice", default=None, help="a voice of the bank (default: the bank's default)")
    p.add_argument("--prompt", type=Path, default=None, help="clone the voice of this recording (a few seconds)")
    p.add_argument("--prompt-text", default=None, help="what the prompt says (default: recognised by the phoneme judge)")
    p.add_argument("--emotion", default="neutral")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_say)


def _spectrogram(args: argparse.Namespace) -> int:
    from anima.talker.spectrogram import render

    try:
        rows = [(path.name, _read_audio(path)) for path in args.inputs]
        print(f"wrote {render(rows, args.output)}")
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc))
    return 0


def _add_spectrogram(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spectrogram", help="log-mel spectrograms of WAVs stacked in one PNG (compare codecs, voices)")
    p.add_argument("inputs", type=Path, nargs="+")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=_spectrogram)


# Add a subcommand: write ``_add_NAME(sub)`` (parser + ``set_defaults(func=handler)``) and list it here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_build_corpus, _add_train, _add_tokenize, _add_eval, _add_eval_tts, _add_export, _add_reconstruct, _add_say,
    _add_spectrogram,
]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``anima talker ...`` to the top-level parser."""
    talker = subparsers.add_parser("talker", help="neural Talker: speech corpus, tokenizer, TTS",
                                   description="The neural Talker (speech tokenizer + TTS). See docs/talker.md.")
    sub = talker.add_subparsers(dest="talker_command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
