"""Benchmark of McAdams voice anonymization (`penumbra.anonymize.voice`): privacy, utility, speed.

Speech: 8 espeak-ng voices × 10 Harvard sentences, resampled to 16 kHz (the VoicePrivacy rate).
For each condition (fixed α ∈ {0.6 … 1.0} and the default random α ∈ [0.7, 0.9] per utterance):
- speaker similarity: cosine between resemblyzer embeddings of an utterance and its anonymized
  version;
- EER of an *ignorant* attacker (enrolls each voice on 4 ORIGINAL utterances, tests the other 6
  anonymized ones of every voice) and of a *lazy-informed* attacker (enrolls on anonymized
  utterances made the same way);
- WER of pocketsphinx (its en-us acoustic model, with a closed-vocabulary unigram LM over the
  sentences' words: the general LM gets nearly nothing right on espeak-ng speech);
- real-time factor on this machine's cores, of the DSP and of whole files (decode + encode).

resemblyzer is used without its `audio` module (which needs librosa and webrtcvad): the mel
spectrogram its encoder expects (16 kHz, 25 ms Hann window, 10 ms hop, 40 Slaney mel bands,
power) is computed here with numpy, and silences are trimmed by energy instead of WebRTC VAD.

Run: `.venv/bin/python bench/anonymize_voice.py` (about 6 minutes on 2 busy cores). Writes
bench/results/anonymize_voice.md and .png.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from penumbra.anonymize.voice import anonymize_file, anonymize_voice, make_rng

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"
RATE = 16000
VOICES = [
    "en-us", "en-gb+m3", "en+f3", "en-us+f2", "en-gb-scotland+m5",
    "en+f4", "en-us+m7", "en-029+f1",
]  # fmt: skip
SENTENCES = [  # Harvard sentences, list 1 (IEEE 1969, public domain)
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
]
N_ENROLL = 4
ALPHAS = [0.6, 0.7, 0.8, 0.9, 1.0]
RANDOM = "random 0.7-0.9"


# ---------------------------------------------------------------- speaker encoder (resemblyzer)
def _mel_filters(n_fft: int, n_mels: int, rate: int) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults: Slaney mel scale and norm."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log, lin)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        lin = m * (200.0 / 3)
        log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log, lin)

    fft_freqs = np.linspace(0, rate / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(
        np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(rate / 2)), n_mels + 2)
    )
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights


_N_FFT, _HOP = 400, 160
_MEL = _mel_filters(_N_FFT, 40, RATE)


def _wav_to_mel(wav: np.ndarray) -> np.ndarray:
    """resemblyzer.audio.wav_to_mel_spectrogram: centered STFT (reflect pad), power, mel."""
    padded = np.pad(wav, _N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    window = scipy.signal.get_window("hann", _N_FFT, fftbins=True)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (power @ _MEL.T).astype(np.float32)


def _preprocess(wav: np.ndarray) -> np.ndarray:
    """resemblyzer.preprocess_wav at 16 kHz: raise to -30 dBFS; drop silent 30 ms windows
    (energy more than 40 dB below the loudest, WebRTC VAD stand-in)."""
    rms = np.sqrt(np.mean(wav**2))
    change = -30 - 20 * np.log10(max(rms, 1e-9))
    if change > 0:
        wav = wav * 10 ** (change / 20)
    win = 480
    n = len(wav) // win * win
    energy = (wav[:n].reshape(-1, win) ** 2).mean(axis=1)
    keep = energy > energy.max() * 1e-4
    keep = np.convolve(keep, np.ones(7), "same") > 0  # keep short pauses, like the dilation
    return wav[:n].reshape(-1, win)[keep].reshape(-1)


def _load_encoder() -> object:
    stub = types.ModuleType("resemblyzer.audio")
    stub.preprocess_wav = _preprocess  # type: ignore[attr-defined]
    stub.wav_to_mel_spectrogram = _wav_to_mel  # type: ignore[attr-defined]
    stub.trim_long_silences = lambda w: w  # type: ignore[attr-defined]
    stub.normalize_volume = lambda w, *a, **k: w  # type: ignore[attr-defined]
    sys.modules["resemblyzer.audio"] = stub
    from resemblyzer import VoiceEncoder

    return VoiceEncoder(device="cpu", verbose=False)


def _embed(encoder: object, wav: np.ndarray) -> np.ndarray:
    return np.asarray(encoder.embed_utterance(_preprocess(wav).astype(np.float32)))  # type: ignore[attr-defined]


# ---------------------------------------------------------------- attacker, ASR
def eer(scores: np.ndarray, target: np.ndarray) -> float:
    """Equal error rate: where false acceptance equals false rejection (linear interpolation)."""
    order = np.argsort(-scores)
    t = target[order]
    far = np.concatenate([[0.0], np.cumsum(~t) / max((~t).sum(), 1)])
    frr = np.concatenate([[1.0], 1 - np.cumsum(t) / max(t.sum(), 1)])
    i = int(np.flatnonzero(far >= frr)[0])
    if i == 0:
        return 0.0
    d0, d1 = frr[i - 1] - far[i - 1], frr[i] - far[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(far[i - 1] + w * (far[i] - far[i - 1]))


def attack_eer(enroll: np.ndarray, trial: np.ndarray) -> float:
    """enroll/trial: embeddings (voice, sentence, d). Each voice model = mean of its enrolment
    sentences; every test sentence of every voice is scored against every model."""
    models = enroll[:, :N_ENROLL].mean(axis=1)
    models /= np.linalg.norm(models, axis=1, keepdims=True)
    tests = trial[:, N_ENROLL:].reshape(-1, trial.shape[-1])
    owner = np.repeat(np.arange(trial.shape[0]), trial.shape[1] - N_ENROLL)
    scores = tests @ models.T
    target = owner[:, None] == np.arange(models.shape[0])[None, :]
    return eer(scores.ravel(), target.ravel())


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _unigram_lm(path: Path) -> None:
    counts = Counter(w for s in SENTENCES for w in _words(s))
    total = sum(counts.values()) + len(SENTENCES)
    lines = ["\\data\\", f"ngram 1={len(counts) + 2}", "", "\\1-grams:", "-99 <s>"]
    lines.append(f"{math.log10(len(SENTENCES) / total):.4f} </s>")
    lines += [f"{math.log10(k / total):.4f} {w}" for w, k in sorted(counts.items())]
    path.write_text("\n".join([*lines, "", "\\end\\", ""]))


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def _recognise(decoder: object, wav: np.ndarray) -> list[str]:
    pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16).tobytes()
    decoder.start_utt()  # type: ignore[attr-defined]
    decoder.process_raw(pcm, full_utt=True)  # type: ignore[attr-defined]
    decoder.end_utt()  # type: ignore[attr-defined]
    hyp = decoder.hyp()  # type: ignore[attr-defined]
    return _words(hyp.hypstr) if hyp is not None else []


# ---------------------------------------------------------------- main
def _synthesise(tmp: Path) -> np.ndarray:
    """(voice, sentence) object array of 16 kHz float waveforms."""
    speech = np.empty((len(VOICES), len(SENTENCES)), dtype=object)
    for v, voice in enumerate(VOICES):
        for s, text in enumerate(SENTENCES):
            path = tmp / f"{v}_{s}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
            x, rate = sf.read(path)
            g = math.gcd(RATE, rate)
            speech[v, s] = scipy.signal.resample_poly(x, RATE // g, rate // g)
    return speech


def _file_rtf(tmp: Path, speech: np.ndarray) -> list[tuple[str, float, float, float]]:
    """RTF of `anonymize_file` (decode, anonymize, encode) on one minute of audio."""
    import imageio_ffmpeg

    minute = np.concatenate(list(speech.ravel()))[: 60 * RATE]
    rows = []
    sf.write(tmp / "m16.wav", minute, RATE, subtype="PCM_16")
    up = scipy.signal.resample_poly(minute, 441, 160)
    sf.write(tmp / "s44.wav", np.stack([up, up], axis=1), 44100, subtype="PCM_16")
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(tmp / "s44.wav"),
         "-b:a", "128k", str(tmp / "s44.mp3")],
        check=True,
    )  # fmt: skip
    for name, label in (
        ("m16.wav", "WAV 16 kHz mono"),
        ("s44.wav", "WAV 44.1 kHz stereo"),
        ("s44.mp3", "MP3 44.1 kHz stereo 128 kb/s"),
    ):
        cpu0 = time.process_time()
        rep = anonymize_file(tmp / name, tmp / f"out_{name}", 0.8)
        cpu = time.process_time() - cpu0  # ffmpeg runs in a child process: not counted
        rows.append((label, rep.duration_s, rep.rtf, cpu / rep.duration_s))
    return rows


def main() -> None:
    import torch
    from pocketsphinx import Decoder
    from rich.progress import Progress, TimeElapsedColumn, TimeRemainingColumn

    # One thread: the LSTM is tiny, and with more threads than free cores it runs 20-50x slower.
    torch.set_num_threads(1)
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is required (apt-get install espeak-ng)")
    OUT.mkdir(parents=True, exist_ok=True)
    conditions: list[float | str] = [*ALPHAS, RANDOM]
    rng = make_rng(0)
    with tempfile.TemporaryDirectory() as tmpdir, Progress(
        *Progress.get_default_columns()[:-1], TimeElapsedColumn(), TimeRemainingColumn()
    ) as progress:  # fmt: skip
        tmp = Path(tmpdir)
        n_utt = len(VOICES) * len(SENTENCES)
        task = progress.add_task("espeak-ng", total=n_utt)
        speech = _synthesise(tmp)
        progress.update(task, completed=n_utt)
        encoder = _load_encoder()
        lm = tmp / "closed.arpa"
        _unigram_lm(lm)
        decoder = Decoder(samprate=RATE, loglevel="FATAL", lm=str(lm))
        refs = [_words(s) for s in SENTENCES]

        def evaluate(waves: np.ndarray, label: str) -> tuple[np.ndarray, float]:
            t = progress.add_task(f"embed + ASR: {label}", total=n_utt)
            emb = np.zeros((*waves.shape, 256))
            errors = 0
            for (v, s), wav in np.ndenumerate(waves):
                emb[v, s] = _embed(encoder, wav)
                errors += _edit_distance(refs[s], _recognise(decoder, wav))
                progress.advance(t)
            return emb, errors / (sum(len(r) for r in refs) * len(VOICES))

        orig_emb, orig_wer = evaluate(speech, "original")
        progress.console.log(f"original: WER {orig_wer:.3f}")
        audio_s = sum(len(w) for w in speech.ravel()) / RATE
        results = []
        for cond in conditions:
            anon = np.empty_like(speech)
            alphas_used = []
            start, cpu0 = time.perf_counter(), time.process_time()
            for (v, s), wav in np.ndenumerate(speech):
                a = float(rng.uniform(0.7, 0.9)) if cond == RANDOM else float(cond)
                alphas_used.append(a)
                anon[v, s] = anonymize_voice(wav, RATE, a)
            rtf = (time.perf_counter() - start) / audio_s
            cpu_rtf = (time.process_time() - cpu0) / audio_s
            emb, wer = evaluate(anon, f"α={cond}")
            sim = float(np.mean(np.sum(emb * orig_emb, axis=-1)))
            results.append({
                "cond": cond, "sim": sim, "eer_ignorant": attack_eer(orig_emb, emb),
                "eer_lazy": attack_eer(emb, emb), "wer": wer, "rtf": rtf, "cpu_rtf": cpu_rtf,
            })  # fmt: skip
            progress.console.log(results[-1])
        file_rows = _file_rtf(tmp, speech)
    baseline = {"eer": attack_eer(orig_emb, orig_emb), "wer": orig_wer}
    _write(results, baseline, file_rows, audio_s)


def _write(results: list[dict], baseline: dict, file_rows: list, audio_s: float) -> None:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    lines = [
        "# Voice anonymization (McAdams coefficient) — `bench/anonymize_voice.py`",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}.",
        f"Command: `.venv/bin/python bench/anonymize_voice.py` ({time.strftime('%Y-%m-%d')}).",
        "",
        f"Data: {len(VOICES)} espeak-ng voices ({', '.join(VOICES)}) × {len(SENTENCES)} Harvard "
        f"sentences = {len(VOICES) * len(SENTENCES)} utterances, {audio_s:.0f} s at 16 kHz. "
        f"Attackers enroll each voice on {N_ENROLL} utterances and test the other "
        f"{len(SENTENCES) - N_ENROLL} of every voice (resemblyzer embeddings, cosine scoring). "
        "WER: pocketsphinx en-us acoustic model with a closed-vocabulary unigram LM.",
        "",
        f"Without anonymization: EER {100 * baseline['eer']:.1f} %, "
        f"WER {100 * baseline['wer']:.1f} %.",
        "",
        "| α | similarity orig↔anon | EER ignorant (%) | EER lazy-informed (%) | WER (%) "
        "| RTF wall | RTF CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['cond']} | {r['sim']:.3f} | {100 * r['eer_ignorant']:.1f} | "
            f"{100 * r['eer_lazy']:.1f} | {100 * r['wer']:.1f} | {r['rtf']:.4f} | "
            f"{r['cpu_rtf']:.4f} |"
        )
    lines += [
        "",
        "RTF above: `anonymize_voice` time / audio time at 16 kHz mono, wall clock and CPU "
        "time of this process (the CPU figure is the one to trust when the machine is shared; "
        f"load average at the end of the run: {os.getloadavg()[0]:.1f}). Whole files with "
        "`anonymize_file` (α = 0.8, decode + anonymize + atomic encode):",
        "",
        "| file | seconds of audio | RTF wall | RTF CPU (this process) |",
        "|---|---|---|---|",
        *[f"| {lb} | {d:.0f} | {rtf:.4f} | {cpu:.4f} |" for lb, d, rtf, cpu in file_rows],
        "",
        "Caveat: espeak-ng voices are formant-synthesised variants of a few base voices, not "
        "people; the speaker encoder and the recogniser were trained on real speech. The "
        "numbers compare conditions with each other; they do not predict EER or WER on real "
        "speakers (VPC 2020 reports for McAdams α = 0.8 on LibriSpeech: ignorant EER ~30-45 %, "
        "lazy-informed much lower).",
        "",
    ]
    (OUT / "anonymize_voice.md").write_text("\n".join(lines), encoding="utf-8")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    fixed = [r for r in results if r["cond"] != RANDOM]
    xs = [r["cond"] for r in fixed]
    ax1.plot(xs, [100 * r["eer_ignorant"] for r in fixed], "o-", label="ignorant attacker")
    ax1.plot(xs, [100 * r["eer_lazy"] for r in fixed], "s-", label="lazy-informed attacker")
    ax1.axhline(100 * baseline["eer"], color="gray", ls="--", label="no anonymization")
    ax1.set_xlabel("McAdams α")
    ax1.set_ylabel("EER (%)")
    ax1.set_title("Privacy (higher is better)")
    ax1.legend()
    ax2.plot(xs, [100 * r["wer"] for r in fixed], "o-", color="C2", label="WER (%)")
    ax2.axhline(100 * baseline["wer"], color="gray", ls="--", label="WER, original")
    ax2.set_xlabel("McAdams α")
    ax2.set_ylabel("WER (%)")
    ax2.set_title("Utility (lower is better)")
    ax3 = ax2.twinx()
    ax3.plot(xs, [r["sim"] for r in fixed], "^-", color="C3", label="speaker similarity")
    ax3.set_ylabel("cosine similarity orig↔anon")
    ax2.legend(loc="upper left")
    ax3.legend(loc="upper right")
    fig.suptitle(
        f"McAdams anonymization, espeak-ng ({len(VOICES)} voices × {len(SENTENCES)} sentences)"
    )
    fig.tight_layout()
    fig.savefig(OUT / "anonymize_voice.png", dpi=110)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
