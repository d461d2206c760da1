"""The runner: every workload in boltgrad and each installed peer, one process per peer, then a table and JSON.

    python -m bench [--quick] [--only NAME...] [--json PATH] [--threads N]

Why processes: each framework brings its own thread pool (boltgrad's, PyTorch's OpenMP, OpenBLAS's), and on a
2-core machine an idle pool that still spins slows the next framework. A process per peer also gives each its
own environment (numpy without the OPENBLAS_* overrides, tinygrad's DEV=CPU, boltgrad's fresh kernel cache).

Two kinds of rows:
- steady workloads (``workloads.WORKLOADS``): in the peer's worker process, the first call timed alone, then
  warm-up and the median of several calls (``timing.measure``);
- process rows: ``first_call_cold`` (a small new kernel in a fresh process with an empty kernel cache),
  ``first_call_warm`` (the same graph in another fresh process, the cache now warm: nothing compiles) and
  ``import`` (the framework's import, timed inside a fresh process, so interpreter start-up is left out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .peers import OPENBLAS_SLOW_VARS, PEERS, SOURCE_TREE, Peer, peer_named
from .timing import FULL, QUICK, measure, median, timed
from .workloads import FIRST_CALL, PROCESS_ROWS, WORKLOADS, Workload, by_name

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO_ROOT / "bench" / "results.json"
SAMPLES = 64  # output values sent back per workload to check that every peer computed the same thing
WORKER_TIMEOUT_S = 900
CHILD_TIMEOUT_S = 300
BUSY_LOAD = 0.5  # a 1-minute load average above this before the start means something else is running

# One fresh process per first-call measurement. It times the framework's import before anything else runs, then
# hands over to first_call_child (which imports the rest of the bench).
FIRST_CALL_SCRIPT = """\
import time
start = time.perf_counter()
import {module}
import_s = time.perf_counter() - start
from bench.run import first_call_child
first_call_child({peer!r}, import_s, {out!r})
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed calls and first-call processes (~1 min)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these workloads ('first_call': its rows)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), metavar="PATH", help="where to write all numbers")
    parser.add_argument("--threads", type=int, metavar="N", help="boltgrad's worker threads (BOLT_THREADS)")
    parser.add_argument("--worker", metavar="PEER", help=argparse.SUPPRESS)  # internal: run one peer's workloads
    parser.add_argument("--out", metavar="PATH", help=argparse.SUPPRESS)  # internal: where a worker writes
    return parser.parse_args(argv)


# ---------------------------------------------------------------- inside a peer's process


def _sample(peer: Peer, out: Any) -> dict[str, Any]:
    array = peer.to_numpy(out)
    flat = array.reshape(-1)
    step = max(1, flat.size // SAMPLES)
    return {"shape": list(array.shape), "sample": [float(v) for v in flat[::step][:SAMPLES]]}


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def worker_main(peer_name: str, names: list[str], quick: bool, out_path: str) -> None:
    """Run the named steady workloads in this process's peer; the file is rewritten after each one."""
    peer = peer_named(peer_name)
    peer.setup()
    report: dict[str, Any] = {"peer": peer.name, "version": peer.version(), "info": {}, "results": {}}
    budget = QUICK if quick else FULL
    for workload in by_name(names)[0]:
        fn = workload.impl_for(peer.family)
        if fn is None:
            continue
        try:
            inputs = [peer.to_input(a) for a in workload.make_inputs()]
            before = peer.counters()
            timing, out = measure(peer.runner(fn, inputs), budget)
            after = peer.counters()
            result: dict[str, Any] = {**timing.as_dict(), **_sample(peer, out)}
            if "kernels" in after:
                kernels = after["kernels"] - before["kernels"]
                result["kernels_per_call"] = kernels / timing.calls
                result["compiles"] = after["compiles"] - before["compiles"]
                if kernels < timing.calls:  # a call that launched nothing timed a remembered result
                    result["error"] = f"{kernels} kernels launched in {timing.calls} calls: some computed nothing"
            del out, inputs
        except Exception as e:  # noqa: BLE001 - a failing workload is reported, the others still run
            result = {"error": f"{type(e).__name__}: {e}"}
        report["results"][workload.name] = result
        report["info"] = peer.info()
        _write_json(out_path, report)
    report["info"] = peer.info()
    _write_json(out_path, report)


def first_call_child(peer_name: str, import_s: float, out_path: str) -> None:
    """In a fresh process: make the small inputs, then time the first call of FIRST_CALL's kernel."""
    peer = peer_named(peer_name)
    peer.setup()
    fn = FIRST_CALL.impl_for(peer.family)
    assert fn is not None, f"{FIRST_CALL.name} has no function for {peer.family}"
    setup_s, inputs = timed(lambda: [peer.to_input(a) for a in FIRST_CALL.make_inputs()])
    before = peer.counters()
    first_s, out = timed(peer.runner(fn, inputs))
    after = peer.counters()
    result = {"import_s": import_s, "setup_s": setup_s, "first_s": first_s, **_sample(peer, out)}
    if "compiles" in after:
        result["compiles"] = after["compiles"] - before["compiles"]
    _write_json(out_path, result)


# ---------------------------------------------------------------- the parent: processes


def _run_process(cmd: list[str], env: dict[str, str], timeout: float) -> str | None:
    """Run a bench process from the repository root; None if it succeeded, else the end of what it printed."""
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"  # the exception's own line
    return None


def run_worker(peer: Peer, workloads: list[Workload], args: argparse.Namespace, scratch: str) -> dict[str, Any]:
    out = f"{scratch}/{peer.name}.json"
    env = peer.process_env(dict(os.environ), scratch, "worker", args.threads)
    cmd = [sys.executable, "-m", "bench.run", "--worker", peer.name, "--out", out]
    cmd += ["--only", *[w.name for w in workloads]] + (["--quick"] if args.quick else [])
    error = _run_process(cmd, env, WORKER_TIMEOUT_S)
    report = json.loads(Path(out).read_text()) if Path(out).exists() else {"results": {}}
    if error:
        report["error"] = error
    return report


def run_first_call(peer: Peer, args: argparse.Namespace, scratch: str, warmed: bool) -> dict[str, Any]:
    """The process rows for one peer: cold and warm first calls and the import, each the median of a few processes.

    A peer without a kernel cache has no cold/warm difference: its processes serve both rows.
    """
    repeats = 1 if args.quick else 5
    if not warmed:  # untimed: fills the OS file cache (and boltgrad's bytecode cache) as the worker would have
        env = peer.process_env(dict(os.environ), scratch, "import-warmup", args.threads)
        _run_process([sys.executable, "-c", f"import {peer.module}"], env, CHILD_TIMEOUT_S)
    runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
    errors: list[str] = []
    for i in range(repeats):
        env = peer.process_env(dict(os.environ), scratch, f"first-{i}", args.threads)
        for kind in ("cold", "warm") if peer.has_kernel_cache else ("cold",):
            out = f"{scratch}/{peer.name}-first-{i}-{kind}.json"
            script = FIRST_CALL_SCRIPT.format(module=peer.module, peer=peer.name, out=out)
            error = _run_process([sys.executable, "-c", script], env, CHILD_TIMEOUT_S)
            if error:
                errors.append(error)
            else:
                runs[kind].append(json.loads(Path(out).read_text()))
    if not peer.has_kernel_cache:
        runs["warm"] = runs["cold"]
    rows: dict[str, Any] = {}
    if errors:
        rows["error"] = errors[0]
    for kind in ("cold", "warm"):
        if runs[kind]:
            first = [r["first_s"] for r in runs[kind]]
            row = {"median_s": median(first), "min_s": min(first), "runs_s": first, **_pick_sample(runs[kind])}
            row["setup_s"] = median([r["setup_s"] for r in runs[kind]])
            if "compiles" in runs[kind][0]:
                row["compiles"] = [r["compiles"] for r in runs[kind]]
            rows[f"first_call_{kind}"] = row
    imports = [r["import_s"] for r in runs["cold"] + (runs["warm"] if peer.has_kernel_cache else [])]
    if imports:
        rows["import"] = {"median_s": median(imports), "min_s": min(imports), "runs_s": imports}
    return rows


def _pick_sample(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"shape": runs[0]["shape"], "sample": runs[0]["sample"]}


# ---------------------------------------------------------------- the parent: checks, table, JSON


def _matches(sample: list[float], reference: list[float], workload: Workload | None) -> bool:
    if len(sample) != len(reference):
        return False
    scale = max((abs(v) for v in reference), default=1.0) or 1.0
    atol = workload.atol if workload is not None and workload.atol is not None else 1e-4 * scale
    return all(abs(a - b) <= atol + 1e-3 * abs(b) for a, b in zip(sample, reference))


def check_results(rows: list[dict[str, Any]], notes: list[str]) -> None:
    """Mark each peer's result ok or not against numpy's (or boltgrad's, where numpy has none)."""
    workloads = {w.name: w for w in [*WORKLOADS, FIRST_CALL]}
    for row in rows:
        results = row["results"]
        ref_name = "numpy" if "sample" in results.get("numpy", {}) else "boltgrad"
        reference = results.get(ref_name, {})
        if "sample" not in reference or row["name"] == "import":
            continue
        workload = workloads.get(row["name"], FIRST_CALL)
        for peer_name, result in results.items():
            if "sample" not in result:
                continue
            result["ok"] = result["shape"] == reference["shape"] and _matches(
                result["sample"], reference["sample"], workload
            )
            if not result["ok"]:
                notes.append(f"{row['name']}: {peer_name}'s result differs from {ref_name}'s (marked '!')")


def _rate(row: dict[str, Any], seconds: float | None) -> str:
    if not seconds:
        return ""
    if row.get("flops"):
        return f"{row['flops'] / seconds / 1e9:.1f} GFLOP/s"
    if row.get("bytes_moved"):
        return f"{row['bytes_moved'] / seconds / 1e9:.1f} GB/s"
    return ""


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1e3:.1f} ms"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


def _cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    if "median_s" not in result or "error" in result:
        return "err"
    return _fmt_time(result["median_s"]) + ("" if result.get("ok", True) else " !")


def summarize(rows: list[dict[str, Any]]) -> None:
    """Add the best peer, the ratio best_peer_time / boltgrad_time (>1: boltgrad is faster) and the rates."""
    for row in rows:
        results = row["results"]
        peers = {
            name: r["median_s"]
            for name, r in results.items()
            if name != "boltgrad" and "median_s" in r and "error" not in r and r.get("ok", True)
        }
        bolt_result = results.get("boltgrad", {})
        bolt = bolt_result.get("median_s") if "error" not in bolt_result else None
        row["best_peer"] = min(peers, key=peers.get) if peers else None
        row["ratio"] = peers[row["best_peer"]] / bolt if peers and bolt else None
        row["boltgrad_rate"] = _rate(row, bolt)
        row["best_peer_rate"] = _rate(row, peers.get(row["best_peer"])) if peers else ""


def format_table(rows: list[dict[str, Any]], peer_names: list[str]) -> str:
    header = ["workload", "boltgrad", "1st call", *peer_names, "peer/bolt", "best peer", "boltgrad rate", "peer rate"]
    lines = []
    for row in rows:
        results = row["results"]
        bolt = results.get("boltgrad")
        first = _fmt_time(bolt["first_s"]) if bolt and "first_s" in bolt else ""
        ratio = f"{row['ratio']:.3g}x" if row["ratio"] else "-"
        cells = [row["name"], _cell(bolt), first, *[_cell(results.get(p)) for p in peer_names]]
        lines.append([*cells, ratio, row["best_peer"] or "-", row["boltgrad_rate"], row["best_peer_rate"]])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = []
    for i, line in enumerate([header, *lines]):
        first_col = line[0].ljust(widths[0])
        out.append("  ".join([first_col, *[str(c).rjust(w) for c, w in zip(line[1:], widths[1:])]]).rstrip())
        if i == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def _cpu_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"model": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return facts
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            facts["model"] = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            facts["isa"] = [f for f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni") if f in flags]
            break
    return facts


def _git(*args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        return proc.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": _cpu_facts(), "logical_cores": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    info["os"] = platform.platform()
    info["python"] = platform.python_version()
    info["boltgrad_commit"] = _git("rev-parse", "HEAD") + ("-dirty" if _git("status", "--porcelain") else "")
    info["env"] = {k: os.environ[k] for k in (*OPENBLAS_SLOW_VARS, "PYTHONDONTWRITEBYTECODE") if k in os.environ}
    return info


# ---------------------------------------------------------------- the parent: main


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _startup_warnings(notes: list[str]) -> float | None:
    """Say what will make the numbers unfair or noisy; returns the load average before the start."""
    slow_vars = [k for k in OPENBLAS_SLOW_VARS if k in os.environ]
    if slow_vars:
        notes.append(f"{', '.join(slow_vars)} set: removed for the numpy peer only (they slow OpenBLAS here)")
    load = _load_average()
    if load is not None and load > BUSY_LOAD:
        notes.append(f"the machine is busy before the bench starts (load average {load:.1f}): times will be noisy")
    for note in notes:
        print(f"warning: {note}", flush=True)
    return load


def run_peers(
    workloads: list[Workload], with_process_rows: bool, args: argparse.Namespace, notes: list[str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every available peer's worker and first-call processes; returns the table's rows and what each peer is."""
    rows = [{"name": w.name, "bytes_moved": w.bytes_moved, "flops": w.flops, "results": {}} for w in workloads]
    rows += [{"name": name, "results": {}} for name in PROCESS_ROWS] if with_process_rows else []
    by_row = {row["name"]: row for row in rows}
    peers_report: dict[str, Any] = {}
    scratch = tempfile.mkdtemp(prefix="boltgrad-bench-")
    try:
        for peer in PEERS:
            reason = peer.unavailable_reason()
            if reason:
                notes.append(f"{peer.name} skipped: {reason}")
                peers_report[peer.name] = {"skipped": reason}
                continue
            start = time.perf_counter()
            report: dict[str, Any] = {"results": {}}
            if workloads:
                report = run_worker(peer, workloads, args, scratch)
                for name, result in report["results"].items():
                    by_row[name]["results"][peer.name] = result
                    if "error" in result:
                        notes.append(f"{name}: {peer.name} failed: {result['error']}")
                if report.get("error"):
                    notes.append(f"{peer.name}'s process failed: {report['error']} ({peer.install_hint})")
            peers_report[peer.name] = {k: report[k] for k in ("version", "info", "error") if k in report}
            worker_died = report.get("error") and not report["results"]
            if with_process_rows and not worker_died:
                process = run_first_call(peer, args, scratch, warmed=bool(workloads))
                for name in PROCESS_ROWS:
                    if name in process:
                        by_row[name]["results"][peer.name] = process[name]
                if "error" in process:
                    notes.append(f"first_call: {peer.name} failed: {process['error']}")
            _log(f"{peer.name} done in {time.perf_counter() - start:.1f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows, peers_report


def print_report(rows: list[dict[str, Any]], peers_report: dict[str, Any], machine: dict[str, Any], quick: bool,
                 notes: list[str]) -> None:  # fmt: skip
    versions = {name: p.get("version", "-") for name, p in peers_report.items()}
    if versions.get("boltgrad") == SOURCE_TREE:
        versions["boltgrad"] = f"{SOURCE_TREE} @ {machine['boltgrad_commit'][:12]}"
    cpu = machine["cpu"]
    print(f"machine: {cpu['model']}, {machine.get('usable_cores')} cores, {machine.get('memory_gib')} GiB, "
          f"{' '.join(cpu.get('isa', []))}; python {machine['python']}")  # fmt: skip
    print("versions: " + ", ".join(f"{name} {v}" for name, v in versions.items()))
    print(f"mode: {'quick' if quick else 'full'}; times are medians after warm-up; peer/bolt = best peer's time / "
          "boltgrad's (>1: boltgrad is faster); '-' = not run; '!' = a wrong result")  # fmt: skip
    print()
    print(format_table(rows, [p.name for p in PEERS if p.name != "boltgrad"]))
    if notes:
        print("\nnotes:")
        for note in notes:
            print(f"  - {note}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.only or [], args.quick, args.out)
        return 0
    try:
        workloads, with_process_rows = by_name(args.only)
    except ValueError as e:
        print(f"python -m bench: {e}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    notes: list[str] = []
    load_before = _startup_warnings(notes)
    rows, peers_report = run_peers(workloads, with_process_rows, args, notes)
    check_results(rows, notes)
    summarize(rows)
    warm = next((r["results"].get("boltgrad", {}) for r in rows if r["name"] == "first_call_warm"), {})
    if any(warm.get("compiles", [])):
        notes.append(f"first_call_warm: boltgrad compiled in a warm start ({warm['compiles']}); it should not")
    machine = machine_info()
    print_report(rows, peers_report, machine, args.quick, notes)

    elapsed = time.perf_counter() - started
    result = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])],
        "mode": "quick" if args.quick else "full",
        "threads": args.threads,
        "elapsed_s": round(elapsed, 1),
        "load_average": {"before": load_before, "after": _load_average()},
        "machine": machine,
        "peers": peers_report,
        "rows": rows,
        "notes": notes,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    _write_json(args.json, result)
    print(f"\nwrote {args.json} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
