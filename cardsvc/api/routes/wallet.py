"""What wallets call: redeem a provisioning code, renew a bundle, refill one-use pay
credentials. No officer token: the device key proves itself by signature."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from cardsvc.api._present import bundle_out
from cardsvc.api.deps import Ctx
from cardsvc.api.routes._common import json_answer, problems
from cardsvc.api.schemas import BundleOut, PayBatchIn, PayBatchOut, ProvisionIn, RefreshIn
from cardsvc.payments.pay_batch import issue_pay_batch
from cardsvc.services import provisioning
from cardsvc.services.errors import Invalid
from schemas import FmcError, b64url_decode

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["wallet"])


def _bytes(unverified_text: str, field: str) -> bytes:
    try:
        return b64url_decode(unverified_text)
    except FmcError as exc:
        raise Invalid("INVALID_DEVICE_KEY", f"{field} must be base64url") from exc


@router.post("/provision", response_model=BundleOut,
             responses=problems(403, 404, 409, 410, 422))
def provision(body: ProvisionIn, ctx: Ctx) -> Response:
    """Redeem a one-time code: device key + proof of possession -> the signed bundle.

    The proof is the device's Ed25519 signature over
    ``schemas.provisioning.provisioning_proof_message(code, device_key)``. A card
    provisioned before (another phone) gets a new status index and the old one is revoked.
    """
    device_key, proof = _bytes(body.device_key, "device_key"), _bytes(body.proof, "proof")

    def work(session: Session) -> BundleOut:
        bundle = provisioning.redeem_provisioning_code(
            session, unverified_code=body.provisioning_code, unverified_device_key=device_key,
            unverified_proof=proof, signing=ctx.signing, now=ctx.clock())
        return bundle_out(bundle, ctx)

    return json_answer(ctx.database.transact(work))


@router.post("/wallet/refresh", response_model=BundleOut,
             responses=problems(403, 404, 409, 422))
def refresh(body: RefreshIn, ctx: Ctx) -> BundleOut:
    """Fresh credentials for the phone holding the card.

    ``proof`` is the device key's signature over
    ``schemas.provisioning.refresh_proof_message(card_number, device_key, time)``;
    ``time`` within 5 minutes of the server's clock. New personal data (a passport change)
    comes with a new status index, and the old bundle's index is revoked.
    """
    device_key = _bytes(body.device_key, "device_key")
    proof = _bytes(body.proof, "proof")

    def work(session: Session) -> BundleOut:
        bundle = provisioning.refresh_bundle(
            session, card_number=body.card_number, unverified_device_key=device_key,
            proof_time=body.time, unverified_proof=proof, signing=ctx.signing,
            now=ctx.clock())
        return bundle_out(bundle, ctx)

    return ctx.database.transact(work)


@router.post("/wallet/pay-batch", response_model=PayBatchOut,
             responses=problems(403, 404, 409, 422))
def pay_batch(body: PayBatchIn, ctx: Ctx) -> PayBatchOut:
    """One-use pay credentials (P13.3), one per fresh holder key the phone made.

    ``proof`` is the card's device key's signature over
    ``schemas.provisioning.pay_batch_proof_message(card_number, device_key, time,
    holder_keys)``. The card must be active and entitled to payment. Each credential is
    valid on one UTC day (``days``): the earliest days first, today up to
    ``CARDSVC_ONE_USE_PAY_LIFETIME_DAYS``, ``CARDSVC_PAY_OFFLINE_PER_DAY`` each (used ones
    counted), then online-only top-ups (``ol`` 0) for today once today's are all used. A
    card holds at most ``CARDSVC_PAY_HANDLES_OUTSTANDING_MAX`` unused ones (fewer are
    issued near the cap, 409 PAY_HANDLES_OUTSTANDING at it or with nothing to issue).
    """
    device_key = _bytes(body.device_key, "device_key")
    proof = _bytes(body.proof, "proof")
    holder_keys = [_bytes(key, "holder_keys") for key in body.holder_keys]

    def work(session: Session) -> PayBatchOut:
        batch = issue_pay_batch(
            session, card_number=body.card_number, unverified_device_key=device_key,
            proof_time=body.time, unverified_proof=proof, unverified_holder_keys=holder_keys,
            signing=ctx.signing, policy=ctx.pay_batch_policy, now=ctx.clock())
        return PayBatchOut(card_number=batch.card_number, credentials=batch.credentials,
                           days=batch.days, expires_at=batch.expires_at,
                           outstanding=batch.outstanding,
                           offline_limit_fen=batch.offline_limit_fen,
                           balance_fen=batch.balance_fen,
                           retired_keys=batch.retired_keys)

    return ctx.database.transact(work)
