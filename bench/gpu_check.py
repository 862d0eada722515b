"""Does chargen work on a GPU? Every GPU path run once, one table printed.

    python bench/gpu_check.py                    # about 5 minutes on one GPU
    python bench/gpu_check.py --minutes 0.5      # a quicker look

Where CUDA exists, it
1. trains the default model (a 2x512 LSTM) on data/tinyshakespeare.txt for --minutes (2)
   in bf16, through `chargen train --device cuda --precision bf16`;
2. samples from it on the GPU: one stream of 2,000 characters and 64 streams of 500,
   each twice with one seed (a seed must repeat its text);
3. primes a State on a text, continues the State with more text, and generates from it
   (before issue 21 every State made on a GPU was refused: cuda against cuda:0);
4. starts `chargen serve --device cuda` and asks it twice for a primed sample, the
   second from the State it cached after the first;
5. trains 50 steps under a one-GPU `torchrun` (nccl).
It prints one table: each check, whether it passed, and its figure (tokens or characters
per second, bits per character), under the GPU's name. Without CUDA it says so in one
line and exits 0. Record its figures in docs/benchmarks.md, with the GPU's name.

Each check is a function of Settings, so tests/test_gpu_check.py runs them all on the
CPU with a tiny model: only the device differs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, no install needed

import chargen  # noqa: E402 - first: it quiets torch's NumPy warning
import torch  # noqa: E402

CORPUS = ROOT / "data" / "tinyshakespeare.txt"
PRIME = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


@dataclass
class Settings:
    """What the checks run on. The defaults are the GPU run; tests shrink them for the CPU."""

    workdir: Path
    device: str = "cuda"
    precision: str = "bf16"
    corpus: Path = CORPUS
    minutes: float = 2.0
    train_options: list[str] = field(default_factory=list)  # more `chargen train` options (a tiny model, say)
    one_length: int = 2000  # characters of the one-stream sample
    many_streams: int = 64
    many_length: int = 500
    torchrun_steps: int = 50
    timeout: float = 900.0  # seconds any one command may take


@dataclass
class Row:
    check: str
    ok: bool
    figure: str
    note: str = ""


# -- the checks ------------------------------------------------------------------------------------


def check_training(s: Settings) -> tuple[Row, Path]:
    """Train with `chargen train` for s.minutes; the figure is the run's rate and last validation."""
    run = s.workdir / "run"
    _chargen(s, "train", s.corpus, "--device", s.device, "--precision", s.precision, "--minutes", s.minutes,
             "--out", run, *s.train_options)
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["state"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    bits = next(r["val_bits"] for r in reversed(rows) if r.get("val_bits") is not None)
    figure = f"{state['tokens'] / state['elapsed']:,.0f} tokens/s; val {bits:.3f} bits/char at step {state['step']:,}"
    return Row(f"train {s.minutes:g} min, {s.precision}", True, figure), run


def check_sampling(s: Settings, run: Path, streams: int, length: int) -> Row:
    """`streams` samples of `length` characters, twice with one seed: the same text, and the rate."""
    model = chargen.load(run, device=s.device)
    model.generate(PRIME, length=10, seed=1)  # warm up (kernels, the thread probe)
    start = time.perf_counter()
    first = model.generate(PRIME, length=length, n=streams, seed=7)
    seconds = time.perf_counter() - start
    again = model.generate(PRIME, length=length, n=streams, seed=7)
    figure = f"{streams * length / seconds:,.0f} chars/s ({model.precision.name})"
    return Row(f"sample {streams} stream{'s' * (streams > 1)} x {length}", first == again, figure,
               "" if first == again else "a seed did not repeat its text")


def check_state(s: Settings, run: Path) -> Row:
    """A State primed, continued and generated from on the device. Whether that text equals the
    one from reading the prime whole is shown, not required: in fp32 on a CPU it is exact, and a
    GPU's kernels may round a text read in pieces differently."""
    model = chargen.load(run, device=s.device, precision="fp32")
    head, tail = PRIME[:20], PRIME[20:]
    state = model.prime_state(tail, model.prime_state(head))
    continued = model.generate(length=200, seed=3, state=state)
    same = continued == model.generate(PRIME, length=200, seed=3)
    return Row("prime and continue a State", len(continued) == 200,
               f"{state.length} characters read in 2 pieces on {state.logits.device}; "
               f"{'the same' if same else 'not the same'} text as reading them whole")


def check_serve(s: Settings, run: Path) -> Row:
    """`chargen serve --device DEVICE`: a primed request, then one that extends it (from the cached State)."""
    process = subprocess.Popen([sys.executable, "-m", "chargen", "serve", str(run), "--device", s.device,
                                "--port", "0"], stderr=subprocess.PIPE, text=True, env=_env())
    try:
        url = _wait_for_address(process, s.timeout)
        answers = [_post(url + "api/generate", {"prime": prime, "length": 100, "seed": 1}, s.timeout)
                   for prime in (PRIME, PRIME + "All:\n")]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    reused = answers[1]["prime_reused"]
    ok = reused >= len(PRIME) and all(len(a["samples"][0]) == 100 for a in answers)
    return Row(f"serve --device {s.device}", ok, f"2 primed requests, {answers[0]['time']:.2f} s and "
               f"{answers[1]['time']:.2f} s; {reused} characters reused", "" if ok else f"reused {reused}")


def check_torchrun(s: Settings) -> Row:
    """`torchrun --nproc_per_node=1 -m chargen train --device DEVICE`: nccl on a GPU (gloo on the CPU)."""
    out = s.workdir / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "chargen",
               "train", str(s.corpus), *map(str, s.train_options), "--device", s.device, "--steps", str(s.torchrun_steps),
               "--out", str(out)]  # the last of a repeated option wins: these steps
    env = {k: v for k, v in _env().items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=s.timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(_last_line(result.stderr))
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["state"]
    backend = "nccl" if s.device.startswith("cuda") else "gloo"
    return Row(f"torchrun, 1 process ({backend})", state["step"] == s.torchrun_steps,
               f"{state['step']} steps, {state['tokens'] / state['elapsed']:,.0f} tokens/s")


def run_checks(s: Settings) -> list[Row]:
    """Every check, in order; one that fails is a row saying why, and the others still run."""
    rows: list[Row] = []
    try:
        row, run = check_training(s)
        rows.append(row)
    except Exception as e:  # noqa: BLE001 - a failed check is a row of the table, not the end of the script
        return [Row(f"train {s.minutes:g} min, {s.precision}", False, "", _why(e))]
    checks = [
        (f"sample 1 stream x {s.one_length}", lambda: check_sampling(s, run, 1, s.one_length)),
        (f"sample {s.many_streams} streams x {s.many_length}",
         lambda: check_sampling(s, run, s.many_streams, s.many_length)),
        ("prime and continue a State", lambda: check_state(s, run)),
        (f"serve --device {s.device}", lambda: check_serve(s, run)),
        ("torchrun, 1 process", lambda: check_torchrun(s)),
    ]
    for name, check in checks:
        try:
            rows.append(check())
        except Exception as e:  # noqa: BLE001
            rows.append(Row(name, False, "", _why(e)))
    return rows


def table(rows: list[Row], title: str) -> str:
    """The rows as one plain-text table under `title`."""
    cells = [("check", "result", "figure")] + [(r.check, "ok" if r.ok else f"FAILED: {r.note}", r.figure) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells[1:]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="training time of the first check")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU here (torch {torch.__version__}); nothing to check")
        return 0
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="chargen-gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rows = run_checks(Settings(workdir=workdir, minutes=args.minutes))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    title = (f"chargen {chargen.__version__} on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
             f"CUDA {torch.version.cuda}")
    print(table(rows, title))
    return 0 if all(r.ok for r in rows) else 1


# -- helpers ---------------------------------------------------------------------------------------


def _chargen(s: Settings, *args) -> None:
    result = subprocess.run([sys.executable, "-m", "chargen", *map(str, args)], capture_output=True, text=True,
                            timeout=s.timeout, env=_env())
    if result.returncode != 0:
        raise RuntimeError(_last_line(result.stderr))


def _env() -> dict:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _wait_for_address(process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    for line in process.stderr:
        if "serving at http://" in line:
            return line.split("serving at ", 1)[1].split()[0]
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"the server did not start (exit status {process.poll()})")


def _post(url: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _why(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:160]


if __name__ == "__main__":
    sys.exit(main())
