#!/usr/bin/env python3
"""Synthesise a small TIMIT-shaped corpus with espeak-ng, so the TIMIT recipe runs on this machine.

Tree written (the LDC TIMIT layout, upper-case names):
  OUT/{TRAIN,TEST}/DR<n>/<SPK>/{SA1,SA2,SX<k>,SI<k>}.{WAV,TXT,PHONES}
.WAV is NIST SPHERE, 16 kHz, 16-bit PCM; .TXT is ``0 <num_samples> <text>``. There are no
.PHN/.WRD files (espeak-ng gives no phone timing; the TIMIT prep tolerates their absence).
Instead .PHONES is the untimed phone transcript the TIMIT prep reads into ``units``: one line,
the sentence's phonemes separated by single spaces. They are espeak-ng's ASCII phoneme
mnemonics for the sentence with the plain en-us voice (``espeak-ng -q -v en-us -x --sep=" "``;
a speaker's voice variant changes the sound, not the phonemes, so every reading of a sentence
has the same .PHONES), cleaned to phoneme symbols only: the stress marks ``'`` ``,`` ``%`` ``=``
and the linking mark ``;`` are removed from every phoneme, and pauses (``_:``, ``_``...), word
boundaries (``|``, ``||``) and what is left empty are dropped; e.g. ``D @2 b r aI t k aI t d r
I f t I# d ...`` for "The bright kite drifted ...". Each distinct sentence is sent to espeak-ng
once, before synthesis.

Each speaker is a voice of its own: an espeak-ng variant file written for that speaker
(in OUT/espeak/espeak-ng-data, which holds the system's English data and these variants),
made from one of espeak-ng's variants of the speaker's gender with every formant frequency
scaled by a per-speaker vocal-tract factor, plus the speaker's own base pitch, speed and
word gap. Test speakers are planned first, so no two of them share a base variant, nor a
family of variants (klatt/klatt2/klatt3), while there are enough, and those of one gender
are spread evenly over the pitch range and the formant scales; other speakers that share a
variant get pitches in different halves of the range. Each
utterance varies pitch and speed slightly around the speaker's, gets 0.1-0.3 s of leading
and trailing silence and a 2-LSB dither (so no frame is digital zero).
Speakers are named after the TIMIT lists the recipe uses: test speakers from the core-test
list, dev speakers from the dev list (both under TEST), training speakers under TRAIN with
ids ``<g>x<ab>0`` that no list contains; the TIMIT prep then sorts them into test/dev/train
unchanged. Sentences follow TIMIT's design: two SA sentences read by everyone, SX sentences
from a shared pool (each read by several speakers), and SI sentences unique to one speaker;
test speakers read more of them (``--test_num_sx``, ``--test_num_si``), so the test set has
enough target trials to tell systems apart.

Everything is a function of the options and ``--seed``: the same options give identical
files whatever ``--nj``. OUT/corpus.json records the options and the speaker table; a rerun
with the same options finds it complete and does nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from cdsvae.io import UserError, atomic_open, atomic_write_text

SAMPLE_RATE = 16000
FORMAT_VERSION = 3  # 3: .PHONES files
TIMIT_CONF = Path(__file__).resolve().parent.parent.parent.parent / "timit" / "cdsvae1" / "conf"

VARIANTS = {
    "m": ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "croak", "klatt", "klatt2", "klatt3",
          "Andy", "Michael", "david", "john", "max", "Mike", "paul", "robert"],
    "f": ["f1", "f2", "f3", "f4", "f5", "Annie", "Alicia", "Andrea", "belinda", "linda",
          "steph", "steph2", "steph3", "anika", "grandma", "aunty"],
}
PITCH = {"m": (25, 60), "f": (40, 75)}
SPEED = (140, 190)
# Per-speaker scale of every formant frequency (a vocal-tract length), around the base variant's.
FORMANT_SCALE = (0.90, 1.10)

SA_SENTENCES = [
    "A quiet garden lay behind the old stone house near the river.",
    "Bring the yellow boxes to the kitchen before the guests arrive.",
]
SX_POOL = [
    "The bright kite drifted over the wide green field at noon.",
    "Few people remember where the village bakery used to stand.",
    "My brother fixed the broken chair with glue and a thin nail.",
    "Check the map again before we cross the frozen lake.",
    "Our teacher played a short tune on the piano after lunch.",
    "Heavy rain washed the dust from the windows of the train.",
    "She hid the silver coin under a smooth grey pebble.",
    "Thick fog rolled in from the harbour early this morning.",
    "The judge asked both lawyers to speak more clearly.",
    "Orange leaves cover the path that leads to the school.",
    "We bought fresh bread, sharp cheese and a jar of honey.",
    "Nobody could explain why the clock stopped at midnight.",
    "The young pilot waved as the small plane climbed higher.",
    "Put the warm blanket on the bed in the spare room.",
    "Each spring the farmer plants beans along the fence.",
    "A loud voice echoed through the empty concert hall.",
    "Tom measured the table twice and still cut it too short.",
    "The museum shows a huge whale skeleton near the entrance.",
    "Please shut the gate so the dog cannot chase the sheep.",
    "Bright stars appeared one by one above the dark hills.",
    "The nurse gave the child a cup of cool water.",
    "Visitors must leave their muddy boots by the door.",
    "His old radio crackled during the evening news.",
    "The cook stirred the thick soup with a wooden spoon.",
]
SI_WORDS = {
    "adj": ["small", "golden", "noisy", "gentle", "crooked", "shiny", "ancient", "narrow", "purple",
            "sleepy", "clever", "dusty", "frozen", "hollow", "lively", "rusty", "silent", "sturdy"],
    "noun": ["lantern", "wagon", "parrot", "ribbon", "castle", "engine", "basket", "pencil", "meadow",
             "tunnel", "violin", "feather", "harbour", "blanket", "compass", "garden", "ladder", "mirror"],
    "verb_past": ["carried", "painted", "watched", "followed", "dropped", "mended", "found", "cleaned",
                  "pushed", "borrowed", "opened", "described"],
    "verb": ["carry", "paint", "watch", "follow", "mend", "find", "clean", "push", "borrow", "open"],
    "prep": ["across", "behind", "beneath", "beside", "toward", "through", "near", "above"],
    "name": ["Anna", "Victor", "Maria", "Oliver", "Grace", "Daniel", "Lucy", "Samuel", "Helen", "Peter"],
    "time": ["yesterday", "last winter", "every morning", "after dinner", "on Sunday", "at dawn"],
    "adv": ["carefully", "slowly", "quickly", "quietly", "gladly", "twice"],
}
SI_TEMPLATES = [
    "The {adj} {noun} {verb_past} the {adj2} {noun2} {prep} the {noun3}.",
    "{name} {verb_past} a {adj} {noun} {time}.",
    "Why did the {adj} {noun} {verb} the {noun2} {prep} the {noun3}?",
    "Please {verb} the {adj} {noun} {adv} {time2}.",
    "{name} said the {noun} was too {adj} to {verb} {time}.",
]


@dataclass
class Speaker:
    spk: str
    gender: str
    part: str
    dr: int
    variant: str
    pitch: int
    speed: int
    word_gap: int
    formant_scale: float
    role: str  # train, dev or test

    @property
    def voice(self) -> str:
        """Name of this speaker's own espeak-ng variant file (see :func:`write_voices`)."""
        return f"cdsvae_{self.spk}"


@dataclass
class Task:
    wav: str
    txt: str
    text: str
    variant: str
    pitch: int
    speed: int
    word_gap: int
    seed: list[int]
    data_path: str
    phones: str = ""  # the .PHONES file to write
    phonemes: str = ""  # its content: the sentence's phonemes (see phonemize), filled in before synthesis


def read_list(path: Path) -> list[str]:
    try:
        return [s.lower() for s in path.read_text(encoding="utf-8").split()]
    except OSError as e:
        raise UserError(f"{path}: cannot read speaker list: {e.strerror}") from None


def alternate_genders(names: list[str], count: int) -> list[str]:
    """``count`` names taking female and male ids in turn (TIMIT ids start with the gender)."""
    by_g = {g: [n for n in names if n.startswith(g)] for g in ("f", "m")}
    picked = []
    for i in range(count):
        g = "fm"[i % 2] if by_g["fm"[i % 2]] else "mf"[i % 2]
        if not by_g[g]:
            raise UserError(f"speaker list too short for {count} speakers")
        picked.append(by_g[g].pop(0))
    return picked


def plan_speakers(num_train: int, num_dev: int, num_test: int, seed: int, conf_dir: Path) -> list[Speaker]:
    """Names, folders and voices of every speaker (test, then dev, then train), a pure function of the counts and seed."""
    if num_train < 1 or num_dev < 1 or num_test < 1:
        raise UserError(f"need at least one speaker in each of train, dev and test, got {num_train}, {num_dev}, "
                        f"{num_test}")
    test_list = read_list(conf_dir / "test_spk.list")
    dev_list = read_list(conf_dir / "dev_spk.list")
    for count, names, what in ((num_test, test_list, "test"), (num_dev, dev_list, "dev")):
        if count > len(names):
            raise UserError(f"--num_{what}_speakers {count}: the TIMIT {what} list has only {len(names)} speakers")
    plan: list[tuple[str, str, int, str]] = []
    for name in alternate_genders(test_list, num_test):
        plan.append((name, "TEST", test_list.index(name) // 3 % 8 + 1, "test"))
    for i, name in enumerate(alternate_genders(dev_list, num_dev)):
        plan.append((name, "TEST", i % 8 + 1, "dev"))
    taken = set(test_list) | set(dev_list)
    for i in range(num_train):
        name = f"{'fm'[i % 2]}x{chr(97 + i // 26 % 26)}{chr(97 + i % 26)}0"
        assert name not in taken
        plan.append((name, "TRAIN", i % 8 + 1, "train"))

    rng = np.random.default_rng([seed, 1])
    variant_order = {g: families_first(list(rng.permutation(v))) for g, v in VARIANTS.items()}
    # Test speakers of one gender spread evenly over the pitch range and over the formant scales
    # (each range cut into as many strata as speakers, one draw per stratum, strata shuffled
    # independently), so no two of them share a pitch or a vocal-tract length by chance.
    spread = {}
    for g in ("f", "m"):
        n = sum(1 for name, _, _, role in plan if role == "test" and name[0] == g)
        spread[g] = iter(zip(_strata(rng, n, *PITCH[g]), _strata(rng, n, *FORMANT_SCALE)))
    speakers = []
    count = {"f": 0, "m": 0}
    for name, part, dr, role in plan:
        g = name[0]
        variants = variant_order[g]
        k = count[g]
        count[g] += 1
        if role == "test":
            pitch_f, scale = next(spread[g])
            pitch = int(round(pitch_f))
        else:
            # Speakers sharing a variant (k and k + len) get pitches in different halves of the range.
            lo, hi = PITCH[g]
            cycle = k // len(variants)
            span = (hi - lo) / 2
            half_lo = lo + (cycle % 2) * span
            pitch = int(round(half_lo + rng.uniform(0, span)))
            scale = float(rng.uniform(*FORMANT_SCALE))
        speakers.append(Speaker(name, g, part, dr, str(variants[k % len(variants)]), pitch,
                                int(rng.integers(SPEED[0], SPEED[1] + 1)), int(rng.integers(0, 3)),
                                round(scale, 3), role))
    return speakers


def _strata(rng: np.random.Generator, n: int, lo: float, hi: float) -> list[float]:
    """n values in [lo, hi], one uniform draw in each of n equal strata, in shuffled order."""
    if n == 0:
        return []
    width = (hi - lo) / n
    return [lo + width * (int(k) + float(rng.uniform())) for k in rng.permutation(n)]


def variant_family(name: str) -> str:
    """klatt, klatt2 and klatt3 (or f1..f5, steph..steph3) are versions of one voice: one family."""
    return name.rstrip("0123456789").lower()


def families_first(variants: list[str]) -> list[str]:
    """The same variants, one of each family first (in the given order), then the rest.

    Speakers take variants in this order, test speakers first, so test speakers sound as
    different as the variants allow: similar versions of one voice go to other sets.
    """
    seen: set[str] = set()
    first, rest = [], []
    for v in variants:
        (rest if variant_family(v) in seen else first).append(v)
        seen.add(variant_family(v))
    return first + rest


def espeak_data_dir() -> Path:
    """The system's espeak-ng-data directory, as ``espeak-ng --version`` reports it."""
    proc = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"Data at:\s*(\S+)", proc.stdout)
    if proc.returncode != 0 or not found or not Path(found.group(1)).is_dir():
        raise UserError(f"cannot find espeak-ng's data directory from 'espeak-ng --version': {proc.stdout.strip()!r}")
    return Path(found.group(1))


def variant_text(base: str, speaker: Speaker) -> str:
    """espeak-ng variant file of ``speaker``: the base variant with every formant frequency scaled."""
    formants: dict[int, list[int]] = {}
    kept = []
    for line in base.splitlines():
        words = line.split()
        if words and words[0] == "formant" and len(words) >= 5:
            formants[int(words[1])] = [int(w) for w in words[2:5]]
        elif words and words[0] == "name":
            kept.append(f"name {speaker.voice}")
        else:
            kept.append(line)
    lines = [line for line in kept if line.strip()]
    for k in range(9):
        freq, height, width = formants.get(k, [100, 100, 100])
        if 1 <= k <= 5:
            freq = int(round(freq * speaker.formant_scale))
        lines.append(f"formant {k} {freq} {height} {width}")
    return "\n".join(lines) + "\n"


def write_voices(out: Path, speakers: Sequence[Speaker]) -> Path:
    """OUT/espeak/espeak-ng-data with English and one variant per speaker; returns the ``--path`` for espeak-ng.

    Only what English synthesis reads is copied (phoneme data, the English dictionary and
    language files): espeak-ng lists at most 349 voices, and the system's other languages and
    variants would leave too little room for the speakers' own (a voice left off the list
    silently falls back to the default one).
    """
    system = espeak_data_dir()
    root = out / "espeak"
    data = root / "espeak-ng-data"
    if root.exists():
        shutil.rmtree(root)
    data.mkdir(parents=True)
    for entry in system.iterdir():
        if entry.is_file() and (not entry.name.endswith("_dict") or entry.name == "en_dict"):
            shutil.copy2(entry, data / entry.name)
    english = sorted((system / "lang").rglob("en*"))
    if not english or not (data / "en_dict").is_file():
        raise UserError(f"{system}: no English voice data (lang/**/en*, en_dict) found for espeak-ng")
    for entry in english:
        target = data / entry.relative_to(system)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(entry, target)
    variants = data / "voices" / "!v"
    variants.mkdir(parents=True)
    for spk in speakers:
        base = system / "voices" / "!v" / spk.variant
        if not base.is_file():
            raise UserError(f"espeak-ng variant {spk.variant} not found in {base.parent}")
        atomic_write_text(variants / spk.voice, variant_text(base.read_text(encoding="utf-8", errors="replace"), spk))
    return root


# espeak-ng -x marks that are not phonemes: stress (' , % =) and linking (;) marks inside a
# token are removed; tokens that are pauses (_:, _, _!...) or word boundaries (|, ||) are dropped.
NON_PHONEME_MARKS = str.maketrans("", "", "',%=;")
PHONEME_RE = re.compile(r"[A-Za-z0-9@][A-Za-z0-9@#:/!*&^~<>-]*")


def phoneme_units(mnemonics: str) -> list[str]:
    """Phoneme symbols of ``espeak-ng -x --sep=" "`` output; a token that is none is a ValueError."""
    units = []
    for token in mnemonics.split():
        if token.startswith("_") or set(token) <= {"|"}:
            continue
        unit = token.translate(NON_PHONEME_MARKS)
        if not unit:
            continue
        if not PHONEME_RE.fullmatch(unit):
            raise ValueError(f"unexpected token {token!r}")
        units.append(unit)
    return units


def phonemize(text: str, data_path: str) -> str:
    """The phonemes of ``text`` with the plain en-us voice, separated by single spaces (see the module doc)."""
    cmd = ["espeak-ng", f"--path={data_path}", "-q", "-v", "en-us", "-x", "--sep= ", "--stdin"]
    proc = subprocess.run(cmd, input=text.encode(), capture_output=True, check=False)
    output = proc.stdout.decode(errors="replace")
    try:
        units = phoneme_units(output) if proc.returncode == 0 else []
        problem = "" if units else f"exit status {proc.returncode}, no phonemes"
    except ValueError as e:
        problem = str(e)
    if problem:
        message = " ".join(proc.stderr.decode(errors="replace").split())
        raise UserError(f"espeak-ng could not phonemize the sentence {text!r} ({' '.join(cmd)}): {problem}"
                        + (f": {message}" if message else ""))
    return " ".join(units)


def make_si_sentence(rng: np.random.Generator) -> str:
    template = SI_TEMPLATES[int(rng.integers(len(SI_TEMPLATES)))]
    pick = {k: v[int(rng.integers(len(v)))] for k, v in SI_WORDS.items()}
    pick["adj2"] = SI_WORDS["adj"][int(rng.integers(len(SI_WORDS["adj"])))]
    pick["noun2"] = SI_WORDS["noun"][int(rng.integers(len(SI_WORDS["noun"])))]
    pick["noun3"] = SI_WORDS["noun"][int(rng.integers(len(SI_WORDS["noun"])))]
    pick["time2"] = SI_WORDS["time"][int(rng.integers(len(SI_WORDS["time"])))]
    return template.format(**pick)


def plan_tasks(out: Path, speakers: list[Speaker], args: argparse.Namespace, data_path: Path) -> list[Task]:
    """Every utterance to synthesise; SX sentences are dealt cyclically from a seeded order of the pool.

    Test speakers read ``args.test_num_sx`` SX and ``args.test_num_si`` SI sentences, the
    others ``args.num_sx`` and ``args.num_si``.
    """
    if not 0 <= args.num_sa <= len(SA_SENTENCES):
        raise UserError(f"--num_sa {args.num_sa}: must be between 0 and {len(SA_SENTENCES)}")
    if not 1 <= args.sx_pool <= len(SX_POOL):
        raise UserError(f"--sx_pool {args.sx_pool}: must be between 1 and {len(SX_POOL)}")
    for opt in ("num_sx", "test_num_sx"):
        if getattr(args, opt) > args.sx_pool:
            raise UserError(f"--{opt} {getattr(args, opt)} is larger than --sx_pool {args.sx_pool}")
    rng = np.random.default_rng([args.seed, 2])
    pool_order = list(rng.permutation(args.sx_pool))
    used_si: set[str] = set(SA_SENTENCES) | set(SX_POOL)
    tasks = []
    si_number = 453
    dealt = 0
    for s_idx, spk in enumerate(speakers):
        num_sx, num_si = (args.test_num_sx, args.test_num_si) if spk.role == "test" else (args.num_sx, args.num_si)
        sentences = [(f"SA{i + 1}", SA_SENTENCES[i]) for i in range(args.num_sa)]
        for j in range(num_sx):
            k = int(pool_order[(dealt + j) % args.sx_pool])
            sentences.append((f"SX{k + 3}", SX_POOL[k]))
        dealt += num_sx
        for _ in range(num_si):
            text = make_si_sentence(rng)
            while text in used_si:
                text = make_si_sentence(rng)
            used_si.add(text)
            sentences.append((f"SI{si_number}", text))
            si_number += 1
        folder = out / spk.part / f"DR{spk.dr}" / spk.spk.upper()
        for u_idx, (name, text) in enumerate(sentences):
            u_rng = np.random.default_rng([args.seed, 3, s_idx, u_idx])
            tasks.append(Task(
                wav=str(folder / f"{name}.WAV"), txt=str(folder / f"{name}.TXT"), text=text,
                phones=str(folder / f"{name}.PHONES"),
                variant=spk.voice,
                pitch=int(np.clip(spk.pitch + u_rng.integers(-4, 5), 0, 99)),
                speed=int(spk.speed + u_rng.integers(-10, 11)),
                word_gap=spk.word_gap, seed=[args.seed, 4, s_idx, u_idx], data_path=str(data_path)))
    return tasks


def synthesise(task: Task) -> int:
    """Run espeak-ng for one utterance and write its SPHERE .WAV, .TXT and .PHONES; return the sample count."""
    if not task.phonemes:
        raise UserError(f"{task.wav}: no phonemes for the sentence {task.text!r} (phonemize the tasks first)")
    cmd = ["espeak-ng", f"--path={task.data_path}", "-v", f"en-us+{task.variant}", "-p", str(task.pitch),
           "-s", str(task.speed),
           "-g", str(task.word_gap), "--stdout", "--stdin"]
    proc = subprocess.run(cmd, input=task.text.encode(), capture_output=True, check=False)
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        message = proc.stderr.decode(errors="replace").strip()
        raise UserError(f"{task.wav}: espeak-ng failed ({' '.join(cmd)}): {message}")
    audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float64")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    g = math.gcd(SAMPLE_RATE, rate)
    audio = resample_poly(audio, SAMPLE_RATE // g, rate // g)
    rng = np.random.default_rng(task.seed)
    lead, trail = (int(SAMPLE_RATE * rng.uniform(0.1, 0.3)) for _ in range(2))
    audio = np.concatenate([np.zeros(lead), audio, np.zeros(trail)])
    audio += rng.normal(0.0, 2.0 / 32768, size=audio.shape)
    peak = np.max(np.abs(audio))
    if peak > 0.98:
        audio *= 0.98 / peak
    pcm = np.round(audio * 32767).astype(np.int16)
    with atomic_open(task.wav, "wb") as f:
        sf.write(f, pcm, SAMPLE_RATE, format="NIST", subtype="PCM_16")
    atomic_write_text(task.txt, f"0 {len(pcm)} {task.text}\n")
    atomic_write_text(task.phones, f"{task.phonemes}\n")
    return len(pcm)


def add_phonemes(tasks: list[Task], pool: ProcessPoolExecutor | None) -> None:
    """Fill ``phonemes`` of every task, phonemizing each distinct sentence once (in ``pool`` when given)."""
    sentences = sorted({t.text for t in tasks})
    data_paths = [tasks[0].data_path] * len(sentences) if tasks else []
    mapper = pool.map if pool is not None else map
    phonemes = dict(zip(sentences, mapper(phonemize, sentences, data_paths)))
    for t in tasks:
        t.phonemes = phonemes[t.text]


def options_record(args: argparse.Namespace) -> dict:
    return {"format_version": FORMAT_VERSION, "num_train_speakers": args.num_train_speakers,
            "num_dev_speakers": args.num_dev_speakers, "num_test_speakers": args.num_test_speakers,
            "num_sa": args.num_sa, "num_sx": args.num_sx, "num_si": args.num_si, "test_num_sx": args.test_num_sx,
            "test_num_si": args.test_num_si, "sx_pool": args.sx_pool, "seed": args.seed}


def prepare_output(out: Path, options: dict, speakers: list[dict]) -> bool:
    """True when ``out`` already holds a complete corpus made with ``options`` and this speaker plan.

    The plan is compared too, so a generator whose voices changed rebuilds a corpus made by an
    older version with the same options. A folder this script made earlier (it has corpus.json)
    is cleared for a rebuild; any other non-empty folder is refused rather than overwritten.
    """
    stamp = out / "corpus.json"
    if stamp.is_file():
        try:
            previous = json.loads(stamp.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = {}
        if previous.get("complete") and previous.get("options") == options:
            if previous.get("speakers") == speakers:
                return True
            print(f"{out}: made with the same options by another version of this generator (other voices): "
                  f"rebuilding it", file=sys.stderr)
        for name in ("TRAIN", "TEST", "espeak"):
            shutil.rmtree(out / name, ignore_errors=True)
    elif out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out}: exists, is not empty and has no corpus.json; remove it or choose another directory")
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="corpus root to write (TRAIN/, TEST/, corpus.json)")
    parser.add_argument("--num_train_speakers", type=int, default=24, help="training speakers")
    parser.add_argument("--num_dev_speakers", type=int, default=8, help="dev speakers (from the TIMIT dev list)")
    parser.add_argument("--num_test_speakers", type=int, default=16,
                        help="test speakers (from the TIMIT core-test list, at most 24)")
    parser.add_argument("--num_sa", type=int, default=2, help="SA sentences per speaker, read by everybody (0-2)")
    parser.add_argument("--num_sx", type=int, default=5,
                        help="SX sentences per training or dev speaker, from the shared pool")
    parser.add_argument("--num_si", type=int, default=3,
                        help="SI sentences per training or dev speaker, unique to that speaker")
    parser.add_argument("--test_num_sx", type=int, default=10, help="SX sentences per test speaker")
    parser.add_argument("--test_num_si", type=int, default=10, help="SI sentences per test speaker")
    parser.add_argument("--sx_pool", type=int, default=20, help=f"size of the shared SX pool (at most {len(SX_POOL)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="parallel processes")
    parser.add_argument("--timit_conf", default=str(TIMIT_CONF),
                        help="folder with the TIMIT dev_spk.list and test_spk.list")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        raise UserError("espeak-ng not found on PATH: install it (apt-get install espeak-ng) to make the mini corpus")
    if args.nj < 1:
        raise UserError(f"--nj {args.nj}: must be at least 1")

    out = Path(args.out_dir)
    options = options_record(args)
    for opt in ("num_sx", "num_si", "test_num_sx", "test_num_si"):
        if getattr(args, opt) < 0:
            raise UserError(f"--{opt} {getattr(args, opt)}: must be at least 0")
    speakers = plan_speakers(args.num_train_speakers, args.num_dev_speakers, args.num_test_speakers, args.seed,
                             Path(args.timit_conf))
    # as corpus.json stores it (a JSON round trip turns tuples into lists)
    plan = json.loads(json.dumps([asdict(s) for s in speakers]))
    if prepare_output(out, options, plan):
        print(f"{out}: corpus up to date ({args.num_train_speakers}/{args.num_dev_speakers}/{args.num_test_speakers} "
              f"train/dev/test speakers, seed {args.seed})", file=sys.stderr)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    data_path = write_voices(out, speakers)
    tasks = plan_tasks(out, speakers, args, data_path.resolve())
    record = {"options": options, "complete": False, "sample_rate": SAMPLE_RATE,
              "speakers": [asdict(s) for s in speakers]}
    atomic_write_text(out / "corpus.json", json.dumps(record, indent=1) + "\n")

    start = time.monotonic()
    if args.nj == 1:
        add_phonemes(tasks, None)
        samples = [synthesise(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=args.nj) as pool:
            add_phonemes(tasks, pool)
            samples = list(pool.map(synthesise, tasks, chunksize=max(1, len(tasks) // (8 * args.nj))))
    elapsed = time.monotonic() - start

    record["complete"] = True
    atomic_write_text(out / "corpus.json", json.dumps(record, indent=1) + "\n")
    hours = sum(samples) / SAMPLE_RATE / 3600
    parts = {p: sum(s.part == p for s in speakers) for p in ("TRAIN", "TEST")}
    print(f"{out}: {len(speakers)} speakers (TRAIN {parts['TRAIN']}, TEST {parts['TEST']}), "
          f"{len(tasks)} utterances, {hours * 60:.1f} min of audio in {elapsed:.1f} s with {args.nj} jobs",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    from cdsvae.bin import run_main

    main.__module__ = Path(__file__).stem
    run_main(main)
