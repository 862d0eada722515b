"""Benchmark rows that run chargen in child processes: corpus scale, MIDI tokenizing, time to quality.

Each measurement runs in a fresh Python process so its peak RSS (ru_maxrss) is
its own, and so a 1 GB corpus never shares memory with the rest of the suite.

Generated corpora: Tiny Shakespeare with one random non-ASCII character (Greek,
Cyrillic, accented Latin, CJK, emoji) sprinkled after every ~200 characters,
repeated to the wanted size, written to a temporary directory that is deleted
afterwards. The vocabulary is then ~120 characters, still one byte per id.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPRINKLE = "αβγδλπΩЖшщюяéèüñçøß中文字😀🎵→✓"

CHILD_LOAD = r"""
import json, sys, time
import chargen, torch  # imported before the clock starts: the rows time loading, not imports
from chargen.data.corpus import load_corpus
from chargen.model import CharRNN, ModelConfig
from chargen.training.run import make_optimizer
from chargen.training.loop import TrainConfig, TrainState, train
t = time.perf_counter()
if sys.argv[2] == "baseline":  # the textbook way: read it all, one Python int per character
    text = open(sys.argv[1], encoding="utf-8").read()
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = len(ids)
else:
    corpus = load_corpus([sys.argv[1]])
    n = len(corpus.train) + len(corpus.val)
    loaded = time.perf_counter() - t
    # Training starts: one step of a tiny model on the full-size streams.
    model = CharRNN(ModelConfig(vocab_size=len(corpus.vocab), hidden_size=32, num_layers=1, embed_dim=8))
    config = TrainConfig(steps=1)
    train(model, make_optimizer(model, config), corpus.train, corpus.val[:0], config, TrainState())
seconds = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": loaded if sys.argv[2] != "baseline" else seconds, "tokens": n, "peak_rss_mb": hwm / 1024}))
"""


def make_corpus(path: Path, megabytes: int, seed: int = 0) -> None:
    """Tiny Shakespeare with random Unicode sprinkled in, repeated to `megabytes` MB (10^6 bytes)."""
    rng = random.Random(seed)
    text = (ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    pieces, i = [], 0
    while i < len(text):
        step = rng.randint(100, 300)
        pieces.append(text[i : i + step] + rng.choice(SPRINKLE))
        i += step
    block = "".join(pieces).encode("utf-8")
    target = megabytes * 10**6
    with open(path, "wb") as f:
        while target > 0:
            f.write(block[:target])
            target -= len(block)
    past = time.time() - 60  # old enough for the corpus cache (it skips just-modified files)
    os.utime(path, (past, past))


def _child(path: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD_LOAD, str(path), mode], cwd=ROOT, capture_output=True, text=True,
                         env=os.environ | {"PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_scale(sizes_mb: list[int], baseline_up_to_mb: int = 100) -> list[dict]:
    """Load time and peak RSS per corpus size: first load, cached load, and the textbook baseline."""
    from chargen.data import cache

    rows = []
    with tempfile.TemporaryDirectory(prefix="chargen-bench-") as tmp:
        for mb in sizes_mb:
            path = Path(tmp) / f"corpus-{mb}mb.txt"
            make_corpus(path, mb)
            first = _child(path, "chargen")
            cached = _child(path, "chargen")
            row = {"mb": mb, "tokens": first["tokens"], "first_s": first["seconds"], "peak_rss_mb": first["peak_rss_mb"],
                   "cached_s": cached["seconds"], "cached_peak_rss_mb": cached["peak_rss_mb"],
                   "cache_written": cache.cache_path(str(path)).is_file()}
            if mb <= baseline_up_to_mb:
                base = _child(path, "baseline")
                row |= {"baseline_s": base["seconds"], "baseline_peak_rss_mb": base["peak_rss_mb"]}
            rows.append(row)
            path.unlink()
    return rows


def bench_midi(data_dir: Path) -> dict:
    """Files/s and notes/s of chargen.midi.encode_file over the shipped MIDI files, if it exists yet."""
    from chargen.music import midifile as midi

    if not hasattr(midi, "encode_file"):
        return {"skipped": "skipped: chargen.midi has no encode_file yet (midi branch)"}
    from chargen.music.vocabulary import has_midi_extension

    files = sorted(p for p in data_dir.rglob("*") if has_midi_extension(p))
    if not files:
        return {"skipped": f"skipped: no MIDI files under {data_dir}"}
    import mido

    notes = sum(1 for f in files for msg in mido.MidiFile(f) if msg.type == "note_on" and msg.velocity > 0)
    from chargen.data.corpus import load_corpus

    timings = []
    for _ in range(2):  # the second pass is what a later run sees (OS file cache warm; a MIDI token cache if any)
        start = time.perf_counter()
        load_corpus([str(data_dir)], format="midi")
        timings.append(time.perf_counter() - start)
    return {"files": len(files), "notes": notes, "files_per_s": len(files) / timings[0],
            "notes_per_s": notes / timings[0], "cached_files_per_s": len(files) / timings[1]}


def bench_ttq(corpus: Path, minutes: list[float], extra_args: tuple[str, ...] = ()) -> list[dict]:
    """Validation bits/char after training with the default settings (plus `extra_args`)
    for each budget, one run each."""
    from chargen.training import checkpoint

    rows = []
    with tempfile.TemporaryDirectory(prefix="chargen-ttq-") as tmp:
        for m in minutes:
            out = Path(tmp) / f"run-{m:g}"
            load_before = os.getloadavg()[0]
            subprocess.run([sys.executable, "-m", "chargen", "train", str(corpus), "--minutes", str(m), "--out", str(out),
                            *extra_args],
                           cwd=ROOT, check=True, capture_output=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
            metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
            last = checkpoint.load(out / checkpoint.LAST)
            rows.append({"minutes": m, "val_bits": metrics[-1]["val_bits"], "steps": metrics[-1]["step"],
                         "best_val_bits": min(r["val_bits"] for r in metrics if r["val_bits"] is not None),
                         "tokens_per_s": metrics[-1]["tokens_per_s"], "args": list(extra_args),
                         "precision": checkpoint.trained_precision(last)["name"],
                         "load_average": (load_before + os.getloadavg()[0]) / 2, "curve": metrics})
    return rows


CHILD_STEP = r"""
import json, sys, time
import chargen, torch
import torch.nn.functional as F
from chargen.model import CharRNN, ModelConfig
torch.manual_seed(0)
model = CharRNN(ModelConfig(vocab_size=65, hidden_size=512, dropout=0.1))  # the throughput rows' 2x512
optimizer = torch.optim.Adam(model.parameters())
x = torch.randint(0, 65, (64, 128))
times = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter()
    logits, _ = model(x, model.init_hidden(64))
    loss = F.cross_entropy(logits.flatten(0, 1), x.flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    times.append(time.perf_counter() - t)
print(json.dumps({"tokens_per_s": 64 * 128 / min(times[1:])}))
"""


def bench_wait_policy(rounds: int = 2, steps: int = 4) -> dict:
    """Training tokens/s of the 2x512 LSTM with OpenMP workers spinning (ACTIVE) or sleeping
    (PASSIVE) while they wait; fresh processes, interleaved rounds. chargen leaves OpenMP's
    default (spinning): passive waiting helps only on a machine whose cores are busy."""
    best = {"ACTIVE": 0.0, "PASSIVE": 0.0}
    for _ in range(rounds):
        for policy in best:
            out = subprocess.run([sys.executable, "-c", CHILD_STEP, str(steps)], cwd=ROOT, capture_output=True, text=True,
                                 env=os.environ | {"PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": policy})
            if out.returncode == 0:
                best[policy] = max(best[policy], json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"])
    return {"active_tokens_per_s": best["ACTIVE"], "passive_tokens_per_s": best["PASSIVE"],
            "load_average": os.getloadavg()[0]}


def _train_rate(out: Path, corpus: Path, steps: int, threads: int, processes: int) -> float:
    """Training tokens/s (all processes together; validation excluded) of one `chargen train` run."""
    common = ["train", str(corpus), "--steps", str(steps), "--eval-every", str(steps), "--val-frac", "0.01",
              "--device", "cpu", "--out", str(out), "--dropout", "0"]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    if processes == 1:
        command = [sys.executable, "-m", "chargen", *common]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "chargen", *common]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env=env)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return metrics[-1]["tokens_per_s"]


def bench_processes(corpus: Path, steps: int = 40, rounds: int = 2) -> dict:
    """Data-parallel scaling on this machine, same model and global batch (the defaults: 2x512 LSTM,
    16 streams x 64): 1 process with 2 threads, 2 processes (gloo) with 1 thread each, and 1 process
    with 1 thread. Interleaved rounds, best of each.

    two_vs_one_ratio = (2 processes x 1 thread) / (1 process x 2 threads): whether splitting two cores
    into two processes beats letting one process use both (above 1: it does).
    efficiency = (2 processes x 1 thread) / (2 x one process with 1 thread): the scaling efficiency
    that `chargen train --single-process-rate` prints, the single-process rate measured here.
    """
    best = {"one_process_two_threads": 0.0, "two_processes_one_thread": 0.0, "one_process_one_thread": 0.0}
    shapes = {"one_process_two_threads": (2, 1), "two_processes_one_thread": (1, 2), "one_process_one_thread": (1, 1)}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="chargen-procs-") as tmp:
        for r in range(rounds):
            for name, (threads, processes) in shapes.items():
                rate = _train_rate(Path(tmp) / f"{name}-{r}", corpus, steps, threads, processes)
                best[name] = max(best[name], rate)
    return best | {
        "two_vs_one_ratio": best["two_processes_one_thread"] / best["one_process_two_threads"],
        "efficiency": best["two_processes_one_thread"] / (2 * best["one_process_one_thread"]),
        "steps": steps,
        "load_average": (load_before + os.getloadavg()[0]) / 2,
    }
