"""Plain-words messages for counter staff, in English and Chinese.

Every :class:`schemas.codes.ResultCode` has a sentence in both languages (a test keeps it
so), and so has every code of the verifier tools themselves (sync, cache, scanning).
The domain words are the glossary's (``schemas/glossary.json``, ``docs/GLOSSARY.md``).

Example::

    from verifier.messages import reason, verdict
    reason("REVOKED").en        # 'The card has been revoked.'
    reason("REVOKED").zh        # '此卡已被吊销。'
    verdict(True).zh            # '通过'
"""

from __future__ import annotations

from types import MappingProxyType
from typing import NamedTuple

from schemas.codes import ResultCode

__all__ = [
    "ENTITLEMENT_NAMES",
    "FIELD_LABELS",
    "RESULT_REASONS",
    "SERVICE_NAMES",
    "TOOL_REASONS",
    "Bilingual",
    "reason",
    "verdict",
]


class Bilingual(NamedTuple):
    en: str
    zh: str

    def pick(self, lang: str | None) -> str:
        """One language (``en`` or ``zh``), or both on two lines when ``lang`` is None."""
        if lang == "en":
            return self.en
        if lang == "zh":
            return self.zh
        return f"{self.en}\n{self.zh}"


_R = ResultCode
RESULT_REASONS: MappingProxyType[ResultCode, Bilingual] = MappingProxyType({
    _R.OK: Bilingual("Valid card: identity and entitlement confirmed.",
                     "证件有效：身份和权益已确认。"),
    _R.MALFORMED: Bilingual("Not a readable Foreign Merchant Card code.",
                            "无法识别的外籍商友卡二维码。"),
    _R.UNSUPPORTED_VERSION: Bilingual(
        "Code of an unsupported version: ask the holder to update the card app.",
        "二维码版本不受支持：请持卡人更新卡片应用。"),
    _R.ALGORITHM_NOT_ALLOWED: Bilingual("The code uses a signature method that is not allowed.",
                                        "二维码使用了不允许的签名算法。"),
    _R.ALGORITHM_DOWNGRADE: Bilingual(
        "Signed after the issuer moved to Ed25519 but labelled with the old EdDSA: refused.",
        "发证机关已改用 Ed25519 后仍标注旧算法 EdDSA 签发：拒绝。"),
    _R.UNKNOWN_KEY: Bilingual(
        "Not signed by a trusted issuer (or this verifier needs a sync).",
        "非受信任的发证机关签发（或本核验端需要同步）。"),
    _R.BAD_SIGNATURE: Bilingual("Invalid signature: the code was altered or forged.",
                                "签名无效：二维码被篡改或伪造。"),
    _R.KEY_NOT_VALID_AT_ISSUE: Bilingual(
        "Signed with a key that was not valid at the time of issue.",
        "签发时所用的密钥当时无效。"),
    _R.EXPIRED: Bilingual("The card has expired.", "此卡已过期。"),
    _R.NOT_YET_VALID: Bilingual("The card is not valid yet (check this computer's clock).",
                                "此卡尚未生效（请检查本机时钟）。"),
    _R.REVOKED: Bilingual("The card has been revoked.", "此卡已被吊销。"),
    _R.SUSPENDED: Bilingual("The card is suspended.", "此卡已被暂停使用。"),
    _R.STATUS_UNAVAILABLE: Bilingual(
        "The card's revocation status is missing or too old: sync this verifier.",
        "卡片状态信息缺失或过旧：请同步本核验端。"),
    _R.TRUST_LIST_STALE: Bilingual(
        "The trust list is out of date: sync this verifier.",
        "信任列表已过期：请同步本核验端。"),
    _R.HOLDER_PROOF_INVALID: Bilingual("The code was not made by the card holder's phone.",
                                       "二维码不是由持卡人的手机生成的。"),
    _R.HOLDER_PROOF_STALE: Bilingual(
        "The code is too old (or the phone's clock is wrong): ask for a fresh code.",
        "二维码已过时（或手机时间不准）：请持卡人刷新二维码。"),
    _R.REPLAYED: Bilingual("This code was already used: ask for a fresh code.",
                           "此二维码已被使用：请持卡人刷新二维码。"),
    _R.WRONG_PURPOSE: Bilingual("Wrong kind of code for this service: ask for the right code.",
                                "二维码类型不适用于本服务：请出示正确的二维码。"),
    _R.ENTITLEMENT_MISSING: Bilingual("The holder is not entitled to this service.",
                                      "持卡人无权享受此项服务。"),
    _R.KEY_COMPROMISED: Bilingual("Signed with a compromised key: do not trust this card.",
                                  "签发密钥已泄露：此卡不可信。"),
    _R.TRUST_LIST_ROLLBACK: Bilingual(
        "An older trust list was offered (possible attack): the current one is kept.",
        "收到较旧的信任列表（可能遭到攻击）：已保留当前列表。"),
    _R.LIFETIME_TOO_LONG: Bilingual(
        "The card claims a validity longer than the authority ever issues (possible forgery).",
        "此卡声称的有效期超过发证机关的上限（可能是伪造）。"),
    _R.ISSUER_UNKNOWN: Bilingual(
        "The card's issuing city is not on the national list: do not accept it.",
        "发卡城市不在全国名单中：不予受理。"),
    _R.ISSUER_SUSPENDED: Bilingual(
        "The card's issuing city is suspended nationally: do not accept it for now.",
        "发卡城市已被全国暂停：暂不受理。"),
    _R.ISSUER_REMOVED: Bilingual(
        "The card's issuing city has been removed from the national list: do not accept it.",
        "发卡城市已从全国名单中移除：不予受理。"),
    _R.CHALLENGE_MISMATCH: Bilingual(
        "This pay code was made for another sale: show this sale's challenge and scan again.",
        "此付款码是为另一笔交易生成的：请出示本笔交易的收款码并重新扫码。"),
    _R.CHALLENGE_EXPIRED: Bilingual(
        "This sale's challenge has expired: show a new one and ask for a new pay code.",
        "本笔交易的收款码已过期：请重新生成收款码并请持卡人重新扫码。"),
    _R.TIMESTAMP_ROLLBACK: Bilingual(
        "An older signed timestamp was offered (possible attack): the current one is kept.",
        "收到较旧的签名时间戳（可能遭到攻击）：已保留当前时间戳。"),
    _R.TIMESTAMP_STALE: Bilingual(
        "This verifier has not heard from the authority for too long: sync it.",
        "本核验端过久未收到发证机关的签名时间戳：请同步。"),
    _R.TRUST_LIST_OUTDATED: Bilingual(
        "A newer trust list exists but was not received (possible attack): sync "
        "from a trusted network.",
        "存在更新的信任列表但未收到（可能遭到攻击）：请在可信网络中同步。"),
})

# Codes of the tools around the check (sync, cache, scanning, configuration).
TOOL_REASONS: MappingProxyType[str, Bilingual] = MappingProxyType({
    "NO_CACHE": Bilingual("This verifier has not been synced yet: run `verifier sync`.",
                          "本核验端尚未同步：请运行 `verifier sync`。"),
    "CACHE_CORRUPT": Bilingual("The local cache is damaged: run `verifier sync` again.",
                               "本地缓存已损坏：请重新运行 `verifier sync`。"),
    "CACHE_WRITE_FAILED": Bilingual(
        "The cache could not be written (disk full?): the previous cache is kept.",
        "无法写入缓存（磁盘已满？）：已保留之前的缓存。"),
    "ROOT_MISMATCH": Bilingual(
        "This cache is pinned to another root key; use a new cache directory.",
        "此缓存已绑定另一个根密钥：请使用新的缓存目录。"),
    "NO_ROOT": Bilingual("The first sync needs --root FINGERPRINT.",
                         "首次同步需要提供 --root 根密钥指纹。"),
    "NO_SERVER": Bilingual("The first sync needs --server URL.",
                           "首次同步需要提供 --server 地址。"),
    "BAD_SERVER": Bilingual("The server must be an http:// or https:// URL.",
                            "服务器地址必须是 http:// 或 https:// 开头的网址。"),
    "REPLAY_STORE": Bilingual("The replay database cannot be used: check the cache directory.",
                              "防重放数据库不可用：请检查缓存目录。"),
    "NETWORK_UNAVAILABLE": Bilingual("The authority could not be reached; the cache is unchanged.",
                                     "无法连接发证机关；本地缓存未改变。"),
    "SERVER_ERROR": Bilingual("The authority answered with an error; the cache is unchanged.",
                              "发证机关返回错误；本地缓存未改变。"),
    "BAD_RESPONSE": Bilingual("The authority sent something unexpected; the cache is unchanged.",
                              "发证机关返回了无法识别的内容；本地缓存未改变。"),
    "UNKNOWN_SERVICE": Bilingual("Unknown service type.", "未知的服务类型。"),
    "BAD_INPUT": Bilingual("Give exactly one of --text, --image or - (stdin).",
                           "请只提供 --text、--image 或 -（标准输入）中的一项。"),
    "BAD_TIME": Bilingual("--at needs an ISO 8601 time such as 2027-01-15T08:00:00Z.",
                          "--at 需要 ISO 8601 时间，例如 2027-01-15T08:00:00Z。"),
    "QR_NOT_FOUND": Bilingual("No QR code found in the picture: scan again, closer and steadier.",
                              "图片中未找到二维码：请靠近并稳住后重新扫描。"),
    "IMAGE_TOO_LARGE": Bilingual("The picture is too large to scan.", "图片过大，无法扫描。"),
    "IMAGE_UNREADABLE": Bilingual("The file is not a picture that can be read.",
                                  "无法读取该图片文件。"),
    "FILE_NOT_FOUND": Bilingual("The file does not exist or cannot be read.",
                                "文件不存在或无法读取。"),
    "PORTRAIT_TOKEN": Bilingual("The portrait token file cannot be used.",
                                "无法使用照片令牌文件。"),
    "BAD_PORTRAIT": Bilingual("Not a portrait image (JPEG or PNG expected).",
                              "不是人像照片（需要 JPEG 或 PNG）。"),
    "BAD_ROOT": Bilingual(
        "--root needs the root key's fingerprint: 43 characters of A-Z a-z 0-9 - _.",
        "--root 需要根密钥指纹：43 个字符（A-Z a-z 0-9 - _）。"),
    "CACHE_ROLLBACK": Bilingual(
        "The local cache would go back to older lists than already verified: run `verifier sync`.",
        "本地缓存将回退到比已验证列表更旧的版本：请运行 `verifier sync`。"),
    "NOT_SET_UP": Bilingual(
        "This till does not know its merchant and terminal yet: run `verifier terminal setup`.",
        "本机尚不知道所属商户和终端编号：请运行 `verifier terminal setup`。"),
    "CHALLENGE_STORE": Bilingual(
        "The till's challenge database cannot be used: check the cache directory.",
        "本机的收款码数据库不可用：请检查缓存目录。"),
})

SERVICE_NAMES: MappingProxyType[str, Bilingual] = MappingProxyType({
    "counter": Bilingual("Identity check", "身份核验"),
    "hospital": Bilingual("Hospital", "医院"),
    "school": Bilingual("School", "学校"),
    "social": Bilingual("Social insurance", "社会保险"),
    "transport": Bilingual("Public transport", "公共交通"),
    "government": Bilingual("Government window", "政务窗口"),
    "payment": Bilingual("Payment", "支付"),
})

ENTITLEMENT_NAMES: MappingProxyType[str, Bilingual] = MappingProxyType({
    "healthcare": Bilingual("Healthcare", "医疗"),
    "education": Bilingual("Education", "教育"),
    "social_insurance": Bilingual("Social insurance", "社会保险"),
    "public_transport": Bilingual("Public transport", "公共交通"),
    "government_services": Bilingual("Government services", "政务服务"),
    "payment": Bilingual("Payment", "支付"),
})

FIELD_LABELS: MappingProxyType[str, Bilingual] = MappingProxyType({
    "name": Bilingual("Name", "姓名"),
    "foreigner_code": Bilingual("Foreigner code", "外国人识别码"),
    "nationality": Bilingual("Nationality", "国籍"),
    "birth_date": Bilingual("Birth date", "出生日期"),
    "sex": Bilingual("Sex", "性别"),
    "entitlements": Bilingual("Entitlements", "权益"),
    "asked": Bilingual("Asked for", "所需权益"),
    "card": Bilingual("Card", "卡号"),
    "issuer": Bilingual("Issuing authority", "发证机关"),
    "service": Bilingual("Service", "服务"),
    "reason": Bilingual("Reason", "原因"),
    "cache_age": Bilingual("Lists synced", "列表同步于"),
    "portrait": Bilingual("Portrait", "照片"),
    "no_portrait": Bilingual("No portrait available on this verifier: check the holder's papers.",
                             "本核验端没有该持卡人的照片：请核对其他证件。"),
    "portrait_mismatch": Bilingual("The cached portrait does not match the card: do not use it.",
                                   "缓存照片与卡片不符：请勿采信。"),
})

_ACCEPTED = Bilingual("ACCEPTED", "通过")
_REFUSED = Bilingual("REFUSED", "拒绝")
# A picture without a readable code says nothing about a card: scan again, not a refusal.
SCAN_AGAIN = Bilingual("SCAN AGAIN", "请重新扫描")
_UNKNOWN = Bilingual("Unknown reason.", "未知原因。")


def verdict(ok: bool) -> Bilingual:
    return _ACCEPTED if ok else _REFUSED


def reason(code: str) -> Bilingual:
    """The plain-words reason for a result code or a tool code."""
    try:
        return RESULT_REASONS[ResultCode(code)]
    except ValueError:
        return TOOL_REASONS.get(code, _UNKNOWN)
