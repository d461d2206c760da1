"""An OpenAI-compatible HTTP server for one local model, on FastAPI and uvicorn (``pip install 'boltgrad[serve]'``).

    boltgrad serve smollm2 --port 8000

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    for chunk in client.chat.completions.create(model="smollm2", stream=True,
                                                messages=[{"role": "user", "content": "Hi"}]):
        print(chunk.choices[0].delta.content or "", end="")

Endpoints: ``POST /v1/chat/completions`` (the model's chat template), ``POST /v1/completions`` (raw text, BOS as
the tokenizer adds it), ``GET /v1/models``, ``GET /health``. ``"stream": true`` answers with server-sent events
(``chat.completion.chunk`` or ``text_completion`` objects, then ``data: [DONE]``); every answer counts its tokens in
``usage`` (a streamed one when ``stream_options.include_usage`` asks).

Request fields: ``max_tokens`` (``max_completion_tokens``; default: the rest of the context), ``temperature``
(default 1, as OpenAI's), ``top_p``, ``stop`` (a string or up to 4), ``seed``, ``presence_penalty`` and
``frequency_penalty`` (-2 to 2, as OpenAI defines them), and the extensions other local servers accept:
``top_k``, ``min_p``, ``repetition_penalty``. Other fields are ignored; ``n`` must be 1.

One model, one generation at a time: requests wait their turn in the queue of a single worker thread, which runs
the generation, so the event loop keeps accepting and answering requests meanwhile. A request whose client goes
away, while it waits or streams, is cancelled: the worker stops at its next token. A malformed request gets HTTP
400 and an OpenAI-style JSON error naming the field.
"""

# No ``from __future__ import annotations``: FastAPI reads the route functions' annotations (``fastapi.Request``)
# as objects, and fastapi is imported inside create_app.
import asyncio
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .generate import GenerationStats, generate

MAX_STOP_STRINGS = 4  # as OpenAI's API allows


def require_fastapi() -> tuple[Any, Any]:
    """The fastapi and uvicorn modules, or an ImportError saying how to install them."""
    try:
        import fastapi
        import uvicorn
    except ImportError as e:
        raise ImportError(f"boltgrad serve needs FastAPI and uvicorn ({e.name} is missing): "
                          "pip install 'boltgrad[serve]'") from None  # fmt: skip
    return fastapi, uvicorn


class RequestError(ValueError):
    """A request the server cannot serve as it is: HTTP 400 with an OpenAI-style error naming ``param``."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


# ---------------------------------------------------------------- reading a request


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(f"{name} must be a number from {low} to {high}, got {value!r}", name)
    return float(value)


def _integer(body: dict[str, Any], name: str, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise RequestError(f"{name} must be an integer >= {low}, got {value!r}", name)
    return value


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > MAX_STOP_STRINGS:
        raise RequestError(f"stop must be a string or a list of at most {MAX_STOP_STRINGS} strings, got {stop!r}",
                           "stop")  # fmt: skip
    return stops


def _message_text(message: Any, index: int) -> dict[str, str]:
    """A chat message as the template wants it: role and content text (a list of text parts is joined)."""
    where = f"messages[{index}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise RequestError(f"{where} must be an object with a role and a content, got {message!r}", where)
    content = message.get("content")
    if content is None:
        content = ""
    elif isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"{where}.content: only text parts are supported, got {part!r}", where)
            parts.append(part["text"])
        content = "".join(parts)
    elif not isinstance(content, str):
        raise RequestError(f"{where}.content must be a string or a list of text parts, got {content!r}", where)
    return {"role": message["role"], "content": content}


@dataclass
class Job:
    """One request's generation, as the worker runs it."""

    kind: str  # "chat.completion" or "text_completion"
    prompt: list[int]
    max_tokens: int
    stream: bool
    include_usage: bool
    settings: dict[str, Any]  # generate's sampling keywords and stop strings
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))
    cancelled: threading.Event = field(default_factory=threading.Event)


def read_job(body: Any, chat: bool, tokenizer: Any, ctx: int) -> Job:
    """The job a request body asks for, or a RequestError naming what is wrong with it."""
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
    if body.get("n", 1) != 1:
        raise RequestError("n must be 1: this server makes one choice per request", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(f"stream must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError(f"stream_options must be an object, got {options!r}", "stream_options")
    settings = {
        "temperature": _number(body, "temperature", 1.0, 0, 2),
        "top_p": _number(body, "top_p", 1.0, 0, 1),
        "top_k": _integer(body, "top_k", 0) or 0,
        "min_p": _number(body, "min_p", 0.0, 0, 1),
        "presence_penalty": _number(body, "presence_penalty", 0.0, -2, 2),
        "frequency_penalty": _number(body, "frequency_penalty", 0.0, -2, 2),
        "repetition_penalty": _number(body, "repetition_penalty", 1.0, 0.01, 10),
        "seed": _integer(body, "seed", 0),
        "stop": _stops(body),
    }
    if settings["top_p"] == 0:  # OpenAI accepts 0: only the likeliest token
        settings["top_p"], settings["temperature"] = 1.0, 0.0
    prompt = _chat_prompt(body, tokenizer) if chat else _completion_prompt(body, tokenizer)
    if len(prompt) >= ctx:
        message = (f"the prompt is {len(prompt)} tokens, and the context of this server holds {ctx} (start it "
                   "with a larger --ctx, or send a shorter prompt)")  # fmt: skip
        raise RequestError(message, "messages" if chat else "prompt")
    name = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body, name, 1)
    if max_tokens is None:
        max_tokens = ctx - len(prompt)
    elif len(prompt) + max_tokens > ctx:
        message = (f"the context of this server holds {ctx} tokens, but {len(prompt) + max_tokens} were asked "
                   f"for ({len(prompt)} in the prompt, {max_tokens} to generate): lower {name}")  # fmt: skip
        raise RequestError(message, name)
    kind = "chat.completion" if chat else "text_completion"
    return Job(kind, prompt, max_tokens, stream, bool(options.get("include_usage")), settings)


def _chat_prompt(body: dict[str, Any], tokenizer: Any) -> list[int]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(f"messages must be a non-empty list of messages, got {messages!r}", "messages")
    conversation = [_message_text(m, i) for i, m in enumerate(messages)]
    try:
        text = tokenizer.apply_chat_template(conversation)
    except ValueError as e:  # the template refuses the conversation (e.g. roles that do not alternate)
        raise RequestError(str(e), "messages") from None
    return tokenizer.encode(text, add_special_tokens=False)


def _completion_prompt(body: dict[str, Any], tokenizer: Any) -> list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str) and prompt:
        return tokenizer.encode(prompt)
    vocab = tokenizer.vocab_size
    if isinstance(prompt, list) and prompt and all(type(t) is int and 0 <= t < vocab for t in prompt):
        return prompt
    raise RequestError(f"prompt must be a non-empty string or list of token ids below {vocab} (one prompt per "
                       f"request), got {prompt!r}", "prompt")  # fmt: skip


# ---------------------------------------------------------------- the worker


class Worker:
    """Runs generations one at a time on its own thread; each job's tokens come back through an asyncio queue."""

    def __init__(self, model: Any, tokenizer: Any, name: str, log: Callable[[str], None]):
        self.model, self.tokenizer, self.name, self.log = model, tokenizer, name, log
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="boltgrad-generate")
        self.eos = set(tokenizer.eos_token_ids)

    async def events(self, job: Job) -> AsyncIterator[tuple[str, Any]]:
        """("text", piece) for each token, then ("done", stats); a generation error is raised. Leaving the
        iteration early (the client went away) cancels the job."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        self.executor.submit(self._run, job, put)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise value
                yield kind, value
                if kind == "done":
                    return
        finally:
            job.cancelled.set()

    def _run(self, job: Job, put: Callable[[str, Any], None]) -> None:
        stats = GenerationStats(prompt_tokens=len(job.prompt))
        if job.cancelled.is_set():
            self.log(f"{job.id}: cancelled before it started (the client left)")
            put("done", stats)
            return
        tokens = generate(self.model, self.tokenizer, job.prompt, max_tokens=job.max_tokens, stats=stats,
                          **job.settings)  # fmt: skip
        try:
            for token in tokens:
                put("text", "" if token.id in self.eos else token.text)
                if job.cancelled.is_set():
                    stats.finish_reason = "cancelled"
                    break
        except Exception as e:  # reported to the client (HTTP 500); the worker goes on with the next job
            self.log(f"{job.id}: generation failed: {type(e).__name__}: {e}")
            put("error", e)
            return
        finally:
            tokens.close()
        if stats.finish_reason == "cancelled":
            self.log(f"{job.id}: cancelled after {stats.generated} of {job.max_tokens} tokens (the client left)")
        else:
            self.log(f"{job.id}: {stats.prompt_tokens} prompt tokens, {stats.generated} generated "
                     f"({stats.finish_reason}), decode {stats.decode_tok_s:.1f} tok/s")  # fmt: skip
        put("done", stats)


# ---------------------------------------------------------------- responses


def _usage(stats: GenerationStats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.generated,
            "total_tokens": stats.prompt_tokens + stats.generated}  # fmt: skip


def _head(job: Job, model: str, chunk: bool) -> dict[str, Any]:
    prefix = "chatcmpl" if job.kind == "chat.completion" else "cmpl"
    kind = job.kind + ".chunk" if chunk and job.kind == "chat.completion" else job.kind
    return {"id": f"{prefix}-{job.id}", "object": kind, "created": job.created, "model": model}


def _choice(job: Job, text: str | None, finish: str | None, chunk: bool) -> dict[str, Any]:
    if job.kind == "text_completion":
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
    if chunk:
        delta = {} if text is None else {"content": text}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}


async def complete(worker: Worker, job: Job) -> dict[str, Any]:
    """The whole answer of a request that does not stream."""
    pieces: list[str] = []
    stats = GenerationStats()
    async for kind, value in worker.events(job):
        if kind == "text":
            pieces.append(value)
        else:
            stats = value
    return {**_head(job, worker.name, False), "choices": [_choice(job, "".join(pieces), stats.finish_reason, False)],
            "usage": _usage(stats)}  # fmt: skip


async def stream(worker: Worker, job: Job) -> AsyncIterator[str]:
    """The answer as server-sent events: a chunk per piece of text, one with the finish reason, the usage when
    asked, then ``[DONE]``."""

    def event(payload: Any) -> str:
        return f"data: {json.dumps(payload)}\n\n"

    head = _head(job, worker.name, True)
    if job.kind == "chat.completion":
        first = {**_choice(job, "", None, True), "delta": {"role": "assistant", "content": ""}}
        yield event({**head, "choices": [first]})
    try:
        async for kind, value in worker.events(job):
            if kind == "text" and value:
                yield event({**head, "choices": [_choice(job, value, None, True)]})
            elif kind == "done":
                yield event({**head, "choices": [_choice(job, None, value.finish_reason, True)]})
                if job.include_usage:
                    yield event({**head, "choices": [], "usage": _usage(value)})
    except Exception as e:  # the status line is sent already: the error goes in the stream
        yield event(error_body(f"generation failed: {e}", "server_error"))
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------- the app


def model_name(path_or_name: str) -> str:
    """The id a model is served under: a packaged model's name, else its file or folder name."""
    base = os.path.basename(os.path.normpath(path_or_name))
    return base[: -len(".gguf")] if base.endswith(".gguf") else base


def create_app(model: Any, tokenizer: Any, name: str, log: Callable[[str], None] | None = None) -> Any:
    """The FastAPI app serving ``model`` under the id ``name``."""
    fastapi, _ = require_fastapi()
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    log = log or (lambda message: print(f"serve: {message}", file=sys.stderr, flush=True))
    worker = Worker(model, tokenizer, name, log)
    app = fastapi.FastAPI(title=f"boltgrad serve: {name}")
    created = int(time.time())

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, exc: Any) -> Any:  # 404, 405: in OpenAI's shape too
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code)

    @app.get("/health")
    async def health():  # no return annotation on routes: FastAPI would take it for a response model
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "boltgrad"}]}

    async def serve_request(request: Any, chat: bool) -> Any:
        raw = await request.body()
        try:
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise RequestError(f"the request body is not valid JSON: {e}") from None
            job = read_job(body, chat, tokenizer, model.ctx)
        except RequestError as e:
            return JSONResponse(error_body(str(e), param=e.param), status_code=400)
        watcher = asyncio.create_task(_cancel_when_gone(request, job))
        if job.stream:

            async def events() -> AsyncIterator[str]:
                try:
                    async for text in stream(worker, job):
                        yield text
                finally:
                    watcher.cancel()

            return StreamingResponse(events(), media_type="text/event-stream")
        try:
            return await complete(worker, job)
        except Exception as e:
            return JSONResponse(error_body(f"generation failed: {e}", "server_error"), status_code=500)
        finally:
            watcher.cancel()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: fastapi.Request):
        return await serve_request(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: fastapi.Request):
        return await serve_request(request, chat=False)

    app.state.worker = worker
    return app


async def _cancel_when_gone(request: Any, job: Job) -> None:
    """Cancel ``job`` when its client disconnects (the server learns it by receiving ``http.disconnect``)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancelled.set()
            return


def serve(model: Any, tokenizer: Any, name: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``model`` until interrupted."""
    _, uvicorn = require_fastapi()
    app = create_app(model, tokenizer, name)
    print(f"serve: {name} at http://{host}:{port}/v1 (chat/completions, completions, models); Ctrl-C stops",
          file=sys.stderr, flush=True)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["create_app", "serve", "read_job", "model_name", "require_fastapi", "RequestError", "Worker", "Job"]
