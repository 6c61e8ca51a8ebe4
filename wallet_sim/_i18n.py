"""The wallet page's words in English, Chinese, Arabic and Russian.

Many holders come from the Middle East, Russia and Africa; the counter staff read
Chinese. Arabic is written right to left. The English and Chinese domain words are the
glossary's (``schemas/glossary.json``, ``docs/GLOSSARY.md``).
"""

from __future__ import annotations

from schemas._accept_language import best_language

__all__ = ["LANGUAGES", "RTL_LANGUAGES", "choose_language", "language_names", "translations"]

LANGUAGES = ("en", "zh", "ar", "ru")
RTL_LANGUAGES = frozenset({"ar"})

_NAMES = {"en": "English", "zh": "中文", "ar": "العربية", "ru": "Русский"}

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Foreign Merchant Card",
        "issuer": "Yiwu Public Security Bureau",
        "name": "Name",
        "foreigner_code": "Foreigner code",
        "card_number": "Card number",
        "birth_date": "Date of birth",
        "nationality": "Nationality",
        "pay": "Pay",
        "id": "Identity",
        "svc": "Services",
        "hint_pay": "Show this code to the cashier to pay.",
        "hint_id": "Show this code to prove who you are.",
        "hint_svc": "Show this code at the hospital, school or government window.",
        "renews_in": "New code in {s} s",
        "renewing": "Renewing…",
        "no_portrait": "No photo on this phone",
        "portrait": "Photo of the card holder",
        "qr_alt": "QR code for {purpose}",
        "expired": "The credentials on this card have expired. The code would be refused.",
        "expiring": "The credentials on this card expire on {date}.",
        "refresh_hint": "Connect to the internet and run “wallet-sim refresh”, or ask the "
                        "registrar for a new provisioning code.",
        "missing": "This card has no credential for this use.",
        "revoked": "This card has been revoked by the authority. It can no longer be used.",
        "suspended": "This card is suspended by the authority. No code is shown until it is "
                     "reinstated; then run “wallet-sim refresh”.",
        "cards": "Cards",
        "no_card": "No card here. Run “wallet-sim provision” with the code from the registrar.",
        "language": "Language",
        "offline_note": "A screenshot of this code stops working within a minute.",
        "challenge_label": "The till's sale code (FMCC1:…)",
        "challenge_submit": "Pay this sale",
        "sale": "Paying {amount} yuan to merchant {merchant}, terminal {terminal}:"
                " this code is good for this sale only.",
        "bad_challenge": "This is not a sale code from a till: no code is shown for it.",
    },
    "zh": {
        "title": "外籍商友卡",
        "issuer": "义乌市公安局",
        "name": "姓名",
        "foreigner_code": "外国人识别码",
        "card_number": "卡号",
        "birth_date": "出生日期",
        "nationality": "国籍",
        "pay": "付款",
        "id": "身份",
        "svc": "公共服务",
        "hint_pay": "向收银员出示此码付款。",
        "hint_id": "出示此码证明身份。",
        "hint_svc": "在医院、学校或政务窗口出示此码。",
        "renews_in": "{s} 秒后刷新",
        "renewing": "正在刷新…",
        "no_portrait": "本机没有照片",
        "portrait": "持卡人照片",
        "qr_alt": "{purpose}二维码",
        "expired": "本卡凭证已过期，二维码将被拒绝。",
        "expiring": "本卡凭证将于 {date} 过期。",
        "refresh_hint": "请联网后运行“wallet-sim refresh”，或向登记员申请新的开通码。",
        "missing": "本卡没有此用途的凭证。",
        "revoked": "本卡已被发证机关吊销，不能再使用。",
        "suspended": "本卡已被发证机关暂停使用。恢复之前不显示二维码；"
                     "恢复后请运行“wallet-sim refresh”。",
        "cards": "卡片",
        "no_card": "此处没有卡片。请用登记员提供的开通码运行“wallet-sim provision”。",
        "language": "语言",
        "offline_note": "此码的截图一分钟内失效。",
        "challenge_label": "收银台的交易码（FMCC1:…）",
        "challenge_submit": "支付这笔交易",
        "sale": "向商户 {merchant} 的终端 {terminal} 支付 {amount} 元：此码仅适用于这笔交易。",
        "bad_challenge": "这不是收银台的交易码：不为其生成付款码。",
    },
    "ar": {
        "title": "بطاقة التاجر الأجنبي",
        "issuer": "مكتب الأمن العام في ييوو",
        "name": "الاسم",
        "foreigner_code": "رمز الأجنبي",
        "card_number": "رقم البطاقة",
        "birth_date": "تاريخ الميلاد",
        "nationality": "الجنسية",
        "pay": "الدفع",
        "id": "الهوية",
        "svc": "الخدمات",
        "hint_pay": "اعرض هذا الرمز على أمين الصندوق للدفع.",
        "hint_id": "اعرض هذا الرمز لإثبات هويتك.",
        "hint_svc": "اعرض هذا الرمز في المستشفى أو المدرسة أو النافذة الحكومية.",
        "renews_in": "رمز جديد خلال {s} ث",
        "renewing": "جارٍ التجديد…",
        "no_portrait": "لا توجد صورة على هذا الهاتف",
        "portrait": "صورة حامل البطاقة",
        "qr_alt": "رمز QR لـ {purpose}",
        "expired": "انتهت صلاحية بيانات هذه البطاقة. سيُرفض الرمز.",
        "expiring": "تنتهي صلاحية بيانات هذه البطاقة في {date}.",
        "refresh_hint": "اتصل بالإنترنت وشغّل ‎“wallet-sim refresh”‎، أو اطلب من موظف "
                        "التسجيل رمز تفعيل جديدًا.",
        "missing": "لا تحمل هذه البطاقة بيانات لهذا الاستخدام.",
        "revoked": "ألغت الجهة المُصدِرة هذه البطاقة. لم يعد بالإمكان استخدامها.",
        "suspended": "أوقفت الجهة المُصدِرة هذه البطاقة مؤقتًا. لن يظهر الرمز حتى إعادة تفعيلها؛ "
                     "ثم شغّل ‎“wallet-sim refresh”‎.",
        "cards": "البطاقات",
        "no_card": "لا توجد بطاقة هنا. شغّل ‎“wallet-sim provision”‎ برمز موظف التسجيل.",
        "language": "اللغة",
        "offline_note": "لقطة الشاشة لهذا الرمز تتوقف عن العمل خلال دقيقة.",
        "challenge_label": "رمز عملية البيع من الصندوق (FMCC1:…)",
        "challenge_submit": "ادفع هذه العملية",
        "sale": "دفع {amount} يوان للتاجر {merchant}، الجهاز {terminal}:"
                " هذا الرمز صالح لهذه العملية فقط.",
        "bad_challenge": "هذا ليس رمز بيع من الصندوق: لا يُعرض رمز له.",
    },
    "ru": {
        "title": "Карта иностранного предпринимателя",
        "issuer": "Бюро общественной безопасности Иу",
        "name": "Имя",
        "foreigner_code": "Код иностранца",
        "card_number": "Номер карты",
        "birth_date": "Дата рождения",
        "nationality": "Гражданство",
        "pay": "Оплата",
        "id": "Личность",
        "svc": "Услуги",
        "hint_pay": "Покажите этот код кассиру для оплаты.",
        "hint_id": "Покажите этот код для подтверждения личности.",
        "hint_svc": "Покажите этот код в больнице, школе или государственном окне.",
        "renews_in": "Новый код через {s} с",
        "renewing": "Обновление…",
        "no_portrait": "На этом телефоне нет фотографии",
        "portrait": "Фотография владельца карты",
        "qr_alt": "QR-код: {purpose}",
        "expired": "Срок действия данных карты истёк. Код будет отклонён.",
        "expiring": "Срок действия данных карты истекает {date}.",
        "refresh_hint": "Подключитесь к интернету и выполните «wallet-sim refresh» или "
                        "попросите у регистратора новый код выдачи.",
        "missing": "На этой карте нет данных для такого использования.",
        "revoked": "Эта карта аннулирована органом выдачи. Пользоваться ею больше нельзя.",
        "suspended": "Действие этой карты приостановлено органом выдачи. Код не показывается "
                     "до её восстановления; затем выполните «wallet-sim refresh».",
        "cards": "Карты",
        "no_card": "Здесь нет карты. Выполните «wallet-sim provision» с кодом от регистратора.",
        "language": "Язык",
        "offline_note": "Снимок экрана с этим кодом перестаёт работать через минуту.",
        "challenge_label": "Код покупки с кассы (FMCC1:…)",
        "challenge_submit": "Оплатить эту покупку",
        "sale": "Оплата {amount} юаней продавцу {merchant}, терминал {terminal}:"
                " этот код годится только для этой покупки.",
        "bad_challenge": "Это не код покупки с кассы: код для него не показывается.",
    },
}


def translations(lang: str) -> dict[str, str]:
    return _TEXT.get(lang, _TEXT["en"])


def language_names() -> dict[str, str]:
    return dict(_NAMES)


def choose_language(requested: str | None, accept_language: str | None) -> str:
    """``?lang=`` first, then the browser's Accept-Language by weight, else English."""
    if requested:
        tag = requested.strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return best_language(accept_language, LANGUAGES) or "en"
