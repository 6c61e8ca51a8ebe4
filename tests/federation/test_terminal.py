"""A Yiwu terminal whose cache is pinned nationally: a Hangzhou pay code online (Hangzhou's
receipt checked with Hangzhou's keys) and offline (checked against Hangzhou's lists)."""

from __future__ import annotations

from pathlib import Path

import httpx
from federation_kit import (
    HANGZHOU_KEY,
    NATIONAL_FINGERPRINT,
    federation,
    federation_jwt,
    status_list_jwt,
)

from keys import sign_credential, sign_presentation
from keys.jws import sign_compact
from schemas import Purpose
from schemas._jose import dump_json
from schemas.receipt import RECEIPT_TYP, Receipt
from support import DEVICE, ISSUER_KEY, NOW, credential
from verifier.cache import KIND_NATIONAL, CacheContents, CachedList, VerifierCache
from verifier.receipts import pay_code_key
from verifier.terminal import Terminal, TerminalConfig

CONFIG = TerminalConfig("http://yw.example.cn", 3, "till 1", 7, "Stall 12", 5_000)


def _national_cache(directory: Path) -> None:
    VerifierCache(directory).store(CacheContents(
        NATIONAL_FINGERPRINT, "http://national.example.cn", NOW,
        CachedList(federation_jwt(federation())), kind=KIND_NATIONAL,
        status_lists={"CN-YW/1": CachedList(status_list_jwt("CN-YW", ISSUER_KEY)),
                      "CN-HZ/1": CachedList(status_list_jwt("CN-HZ", HANGZHOU_KEY))}))
    CONFIG.store(directory)


def _hangzhou_pay_code() -> str:
    jws = sign_credential(credential(Purpose.PAY, issuer="CN-HZ"), HANGZHOU_KEY)
    return sign_presentation(jws, DEVICE, proof_time=NOW, purpose="pay")


def _terminal(directory: Path, handler: httpx.MockTransport) -> Terminal:
    return Terminal(directory, http=httpx.Client(transport=handler), clock=lambda: NOW,
                    pause=lambda seconds: None)


def test_online_a_hangzhou_receipt_verifies_at_a_yiwu_terminal(tmp_path: Path) -> None:
    _national_cache(tmp_path)
    code = _hangzhou_pay_code()
    receipt = Receipt("p1", "payment", "p1", "CN-HZ", "3300012345678901", CONFIG.merchant_id,
                      CONFIG.terminal_id, 1250, 8750, 0, "online", NOW, NOW,
                      pay_code_key(code))
    signed = sign_compact({"alg": "EdDSA", "kid": "h1", "typ": RECEIPT_TYP},
                          dump_json(receipt.to_payload()), HANGZHOU_KEY)

    def yiwu(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"payment_id": "p1", "receipt": signed,
                                         "balance_fen": 8750})

    answer = _terminal(tmp_path, httpx.MockTransport(yiwu)).charge(
        code, amount_fen=1250, server=CONFIG.server)
    assert (answer.ok, answer.mode, answer.receipt) == (True, "online", "RECEIPT_OK")


def test_offline_a_hangzhou_pay_code_is_taken_within_the_floor(tmp_path: Path) -> None:
    _national_cache(tmp_path)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    terminal = _terminal(tmp_path, httpx.MockTransport(down))
    assert terminal.server(None) == CONFIG.server  # the city's, never the national one's
    answer = terminal.charge(_hangzhou_pay_code(), amount_fen=300, server=CONFIG.server)
    assert (answer.ok, answer.mode, answer.code) == (True, "offline", "OK")


def test_the_counter_page_and_status_show_a_national_cache(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from verifier.checkpoint import Checkpoint
    from verifier.cli import app
    from verifier.web import create_app

    _national_cache(tmp_path)
    jws = sign_credential(credential(Purpose.SVC, issuer="CN-HZ"), HANGZHOU_KEY)
    text = sign_presentation(jws, DEVICE, proof_time=NOW, purpose="svc")
    client = TestClient(create_app(Checkpoint(VerifierCache(tmp_path)), clock=lambda: NOW))
    answer = client.post("/api/check", data={"service": "hospital", "text": text}).json()
    assert answer["code"] == "OK"
    assert answer["issuer"] == {"code": "CN-HZ", "name_en": "Hangzhou", "name_zh": "杭州"}
    assert "answer.issuer" in client.get("/static/counter.js").text
    status = CliRunner().invoke(app, ["--cache", str(tmp_path), "status", "--json",
                                      "--at", "2027-01-15T08:00:00Z"])
    assert status.exit_code == 0, status.output
    assert "CN-HZ/1" in status.output
