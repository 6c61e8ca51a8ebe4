"""Test kit for the wallet: a fake authority, a thread server, QR and verify helpers.

The fake authority is a small stand-in for cardsvc's wallet routes, with the real
provisioning protocol.

POST /v1/provision verifies the device's proof of possession and answers with
credentials (signed by tests.support.ISSUER_KEY) bound to the posted device key.
POST /v1/wallet/refresh (switchable) checks the device signature and re-issues.
Served by uvicorn on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import zxingcpp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image, ImageDraw

from keys import sign_credential, verify_signature
from schemas import (
    Entitlement,
    IssuerKey,
    KeyState,
    Purpose,
    StatusList,
    StatusListClaims,
    StatusRef,
    TrustListClaims,
    b64url_decode,
)
from schemas.codes import ResultCode
from schemas.credential import portrait_digest
from schemas.provisioning import provisioning_proof_message, refresh_proof_message
from support import DAY, ISSUER, ISSUER_KEY, NOW, World, credential
from verifier import (
    POLICIES,
    MemoryReplayCache,
    VerificationResult,
    VerifierState,
    verify_presentation,
)

FOREIGNER_CODE = "933566199001010017"


@dataclass
class CardSpec:
    card_number: str
    portrait: bytes | None = None
    lifetime: int = 30 * DAY  # what cardsvc issues (schemas caps pay at 31 days)
    status_index: int = 123_456
    surname: str = "OKAFOR"
    given_names: str = "CHIDI EMMANUEL"
    purposes: tuple[Purpose, ...] = tuple(Purpose)  # cardsvc sends pay only with payment
    device_key: bytes | None = None  # set once provisioned


@dataclass
class FakeAuthority:
    url: str = ""
    clock: Callable[[], int] = lambda: NOW
    refresh_enabled: bool = True
    codes: dict[str, CardSpec] = field(default_factory=dict)
    cards: dict[str, CardSpec] = field(default_factory=dict)
    requests: list[tuple[str, bytes]] = field(default_factory=list)

    def reset(self) -> None:
        self.clock = lambda: NOW
        self.refresh_enabled = True
        self.codes.clear()
        self.cards.clear()
        self.requests.clear()

    def issue_code(self, card_number: str = "3300012345678901", **spec: Any) -> str:
        code = f"C{len(self.codes):03d}-{card_number[-4:]}-XK7Q"
        self.codes[_normalized(code)] = CardSpec(card_number, **spec)
        return code

    def bundle(self, spec: CardSpec, device_key: bytes) -> dict[str, Any]:
        issued_at = self.clock() - 60
        credentials = {}
        for purpose in spec.purposes:
            overrides: dict[str, Any] = dict(
                holder_key=device_key, card_number=spec.card_number, issued_at=issued_at,
                expires_at=issued_at + spec.lifetime, status=StatusRef("1", spec.status_index),
            )
            if purpose is not Purpose.PAY:
                overrides.update(surname=spec.surname, given_names=spec.given_names,
                                 portrait_digest=(None if spec.portrait is None
                                                  else portrait_digest(spec.portrait)))
            if purpose is Purpose.SVC:
                overrides["entitlements"] = (Entitlement.HEALTHCARE,
                                             Entitlement.SOCIAL_INSURANCE)
            credentials[purpose.value] = sign_credential(credential(purpose, **overrides),
                                                         ISSUER_KEY)
        return {
            "card_number": spec.card_number,
            "foreigner_code": FOREIGNER_CODE,
            "credentials": credentials,
            "expires_at": issued_at + spec.lifetime,
            "holder": {"surname": spec.surname, "given_names": spec.given_names},
            "portrait": None if spec.portrait is None
            else base64.b64encode(spec.portrait).decode("ascii"),
            "trust_list_url": "/v1/trust-list",
            "issuer": "CN-YW",
        }


def _normalized(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


def _problem(status: int, code: str) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": code.lower(), "status": status,
                         "code": code}, status_code=status,
                        media_type="application/problem+json")


def build_app(authority: FakeAuthority) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/provision")
    async def provision(request: Request) -> JSONResponse:
        raw = await request.body()
        authority.requests.append(("provision", raw))
        body = await request.json()
        spec = authority.codes.get(_normalized(str(body.get("provisioning_code", ""))))
        if spec is None:
            return _problem(404, "PROVISIONING_CODE_UNKNOWN")
        try:
            device_key = b64url_decode(body["device_key"])
            proof = b64url_decode(body["proof"])
        except Exception:
            return _problem(422, "MALFORMED")
        message = provisioning_proof_message(body["provisioning_code"], device_key)
        if not verify_signature(device_key, message, proof):
            return _problem(422, "PROOF_INVALID")
        if spec.device_key is not None:
            return _problem(409, "PROVISIONING_CODE_USED")
        spec.device_key = device_key
        authority.cards[spec.card_number] = spec
        return JSONResponse(authority.bundle(spec, device_key))

    @app.post("/v1/wallet/refresh")
    async def wallet_refresh(request: Request) -> JSONResponse:
        if not authority.refresh_enabled:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        raw = await request.body()
        authority.requests.append(("refresh", raw))
        body = await request.json()
        spec = authority.cards.get(str(body.get("card_number")))
        if spec is None:
            return _problem(404, "CARD_NOT_FOUND")
        device_key = b64url_decode(body["device_key"])
        if device_key != spec.device_key:
            return _problem(403, "DEVICE_KEY_UNKNOWN")
        proof_time = int(body["time"])
        message = refresh_proof_message(spec.card_number, device_key, proof_time)
        if not verify_signature(device_key, message, b64url_decode(body["proof"])):
            return _problem(422, "PROOF_INVALID")
        if abs(proof_time - authority.clock()) > 300:
            return _problem(422, "PROOF_STALE")
        return JSONResponse(authority.bundle(spec, device_key))

    return app


POLICY_FOR = {Purpose.PAY: "payment", Purpose.ID: "counter", Purpose.SVC: "hospital"}
PIN = "482913"


def state_at(now: int) -> VerifierState:
    """A verifier state valid around ``now`` (the World's is fixed around support.NOW)."""
    if now == NOW:
        return World().state(NOW)
    trust = TrustListClaims(ISSUER, 1, now - 60, now + 7 * DAY,
                            (IssuerKey("k1", ISSUER_KEY.public_key, KeyState.ACTIVE,
                                       now - 30 * DAY),))
    statuses = StatusListClaims("1", "https://fmc.example/v1/status-lists/1", now - 60,
                                now + DAY, 3600, StatusList.empty(131_072))
    return VerifierState.of(trust, {"1": statuses})


def verify(text: str, purpose: Purpose, *, now: int, state: VerifierState | None = None,
           leeway: int | None = None) -> VerificationResult:
    """The verifier library's answer, with the service policy for ``purpose``.

    ``leeway`` overrides the allowance for phones whose clock runs ahead; it does not
    widen the 60 s window, so a proof is stale 61 s later with any leeway.
    """
    policy = POLICIES[POLICY_FOR[purpose]]
    if leeway is not None:
        policy = replace(policy, leeway=leeway)
    return verify_presentation(text, state=state or state_at(now), policy=policy, now=now,
                               replay_cache=MemoryReplayCache())


def assert_fresh_then_stale(text: str, purpose: Purpose, *, proof_time: int) -> None:
    """OK now and 60 s later; HOLDER_PROOF_STALE 61 s later (default policy)."""
    assert verify(text, purpose, now=proof_time).code is ResultCode.OK
    assert verify(text, purpose, now=proof_time + 60, state=state_at(proof_time)
                  ).code is ResultCode.OK
    assert verify(text, purpose, now=proof_time + 61, state=state_at(proof_time)
                  ).code is ResultCode.HOLDER_PROOF_STALE
    assert verify(text, purpose, now=proof_time + 61, leeway=30, state=state_at(proof_time)
                  ).code is ResultCode.HOLDER_PROOF_STALE


def decode_qr(image: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image)
            if r.format == zxingcpp.BarcodeFormat.QRCode]


def portrait_png() -> bytes:
    """A small real PNG portrait (a face-like drawing), deterministic."""
    image = Image.new("RGB", (96, 120), (214, 226, 238))
    draw = ImageDraw.Draw(image)
    draw.ellipse((28, 18, 68, 62), fill=(141, 85, 36))
    draw.rectangle((18, 70, 78, 120), fill=(40, 60, 110))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def halfblocks_to_image(lines: list[str]) -> Image.Image:
    top = {" ": False, "▀": True, "▄": False, "█": True}
    bottom = {" ": False, "▀": False, "▄": True, "█": True}
    rows: list[list[bool]] = []
    for line in lines:
        rows.append([top[c] for c in line])
        rows.append([bottom[c] for c in line])
    image = Image.new("L", (len(rows[0]), len(rows)), 255)
    image.putdata([0 if dark else 255 for row in rows for dark in row])
    return image.resize((image.width * 8, image.height * 8), Image.Resampling.NEAREST)
