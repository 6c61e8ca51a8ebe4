"""What a till says, in English and Chinese, with the figures behind a refusal.

A code alone ("OFFLINE_FLOOR_EXCEEDED 90.00 yuan") tells a cashier nothing; each answer
gets a sentence that says what happened and what to do, with the amounts it depends on.
Verification codes (REVOKED, HOLDER_PROOF_STALE, ...) reuse the counter's words."""

from __future__ import annotations

from verifier.messages import Bilingual, reason
from verifier.terminal.service import ChargeAnswer, format_fen

__all__ = ["charge_words"]

_TEMPLATES: dict[str, Bilingual] = {
    "OK": Bilingual("Paid: {amount} yuan.", "支付成功：{amount} 元。"),
    "PENDING": Bilingual("Not paid yet: the card's city has not answered. Ask again in a"
                         " moment; nothing is charged twice.",
                         "尚未支付：发卡城市尚未答复。请稍后再试，不会重复扣款。"),
    "OFFLINE_OK": Bilingual(
        "Taken offline: {amount} yuan, kept on this till until `verifier terminal upload`.",
        "离线收款：{amount} 元，已保存在本机，待 `verifier terminal upload` 上传。"),
    "OFFLINE_FLOOR_EXCEEDED": Bilingual(
        "The authority cannot be reached and this till takes at most {floor} yuan offline:"
        " ask for a smaller amount or another way to pay.",
        "无法连接发证机关，本机离线收款上限为 {floor} 元：请减少金额或改用其他支付方式。"),
    "OFFLINE_LIMIT_EXCEEDED": Bilingual(
        "The card may spend {limit} yuan offline on this till and {left} yuan of it is left:"
        " ask for a smaller amount or another way to pay.",
        "此卡在本机的离线额度为 {limit} 元，剩余 {left} 元：请减少金额或改用其他支付方式。"),
    "INSUFFICIENT_FUNDS": Bilingual(
        "The card's balance ({balance} yuan) is less than {amount} yuan: the holder can top"
        " up at a cashier's desk.",
        "卡内余额（{balance} 元）不足 {amount} 元：持卡人可到收银台充值。"),
    "INSUFFICIENT_FUNDS_NO_BALANCE": Bilingual(
        "The card's balance is less than {amount} yuan: the holder can top up at a cashier's"
        " desk.", "卡内余额不足 {amount} 元：持卡人可到收银台充值。"),
    "PAY_CODE_USED": Bilingual(
        "This pay code has already paid for something: ask the holder for a new code.",
        "此付款码已使用：请持卡人出示新的付款码。"),
    "REPLAYED": Bilingual(
        "This till has already taken this pay code: ask the holder for a new code.",
        "本机已收过此付款码：请持卡人出示新的付款码。"),
    "NOT_A_TERMINAL": Bilingual(
        "This till's token belongs to no registered terminal: run `verifier terminal setup`"
        " with the token the authority gave the shop. The pay code was not used.",
        "本机令牌不属于任何已登记的收款终端：请用发证机关给商户的令牌运行"
        " `verifier terminal setup`。付款码未被使用。"),
    "UNAUTHENTICATED": Bilingual(
        "The authority does not know this till's token: set FMC_TERMINAL_TOKEN. The pay code"
        " was not used.", "发证机关不认识本机令牌：请设置 FMC_TERMINAL_TOKEN。付款码未被使用。"),
    "FORBIDDEN": Bilingual(
        "This token may not take payments: use the terminal's own token. The pay code was"
        " not used.", "此令牌无权收款：请使用收款终端自己的令牌。付款码未被使用。"),
    "IDEMPOTENCY_KEY_REUSED": Bilingual(
        "The authority saw this request with another amount: charge again.",
        "发证机关收到的同一请求金额不同：请重新收款。"),
    "RECEIPT_NO_TRUST_LIST": Bilingual(
        "The authority's receipt cannot be checked: this till has no synced trust list. Run"
        " `verifier sync` before taking payments; do not hand over the goods.",
        "无法核验发证机关的收据：本机尚未同步信任列表。收款前请运行 `verifier sync`；请勿交货。"),
    "RECEIPT_FAILED": Bilingual(
        "The answer is not a valid receipt for this sale ({code}): it may not come from the"
        " authority. Do not hand over the goods; check the till's network and run"
        " `verifier sync`.",
        "该回复不是本笔交易的有效收据（{code}）：可能并非来自发证机关。请勿交货；请检查网络并运行"
        " `verifier sync`。"),
    "AUTHORITY_UNREACHABLE": Bilingual(
        "The authority cannot be reached and this till has no synced lists to decide"
        " offline: run `verifier sync` when the network is back.",
        "无法连接发证机关，本机也没有可离线核验的名单：网络恢复后请运行 `verifier sync`。"),
    "CHALLENGE_REQUIRED": Bilingual(
        "The authority cannot be reached: without a challenge this till takes at most"
        " {unbound_floor} yuan offline. Show the sale's challenge"
        " (`verifier terminal challenge --amount ...`) and let the holder pay it with"
        " `pay --challenge`.",
        "无法连接发证机关：未绑定交易的付款码本机离线最多收 {unbound_floor} 元。请生成本笔交易的"
        "收款码（`verifier terminal challenge --amount ...`），请持卡人扫码后付款。"),
}


def charge_words(answer: ChargeAnswer) -> Bilingual:
    """The sentence for one charge answer, figures filled in."""
    figures = {
        "amount": format_fen(answer.amount_fen),
        "floor": format_fen(answer.floor_fen or 0),
        "unbound_floor": format_fen(answer.unbound_floor_fen or 0),
        "limit": format_fen(answer.offline_limit_fen or 0),
        "left": format_fen(answer.offline_limit_left_fen or 0),
        "balance": format_fen(answer.balance_fen or 0),
        "code": answer.code,
    }
    if answer.ok:
        key = "OFFLINE_OK" if answer.mode == "offline" else "OK"
    elif answer.code == "INSUFFICIENT_FUNDS" and answer.balance_fen is None:
        key = "INSUFFICIENT_FUNDS_NO_BALANCE"
    elif answer.code.startswith("RECEIPT_") and answer.code != "RECEIPT_NO_TRUST_LIST":
        key = "RECEIPT_FAILED"
    elif answer.code in ("NO_CACHE", "CACHE_CORRUPT") and answer.mode == "offline":
        key = "AUTHORITY_UNREACHABLE"
    else:
        key = answer.code
    template = _TEMPLATES.get(key)
    if template is None:
        return reason(answer.code)  # a verification code: the counter's words
    return Bilingual(template.en.format(**figures), template.zh.format(**figures))
