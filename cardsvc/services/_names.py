"""Name normalization and similarity for finding the same person under another spelling."""

from __future__ import annotations

import re
import unicodedata

from rapidfuzz import fuzz

__all__ = ["name_key", "name_similarity"]

# Transliteration variants seen in passports, mapped to one spelling per name.
_VARIANTS = {
    "MUHAMMAD": "MOHAMMED MOHAMMAD MOHAMED MOHAMAD MUHAMMED MUHAMED MUHAMAD MOHAMMAD MOHD "
                "MOHAMMET MUHAMET MOHAMMEDU MUHAMMADU MOHAMAED MOUHAMED MOUHAMMAD",
    "AHMAD": "AHMED AHMET AHAMED AHMAT",
    "YUSUF": "YOUSEF YOUSSEF YOUSIF YUSIF YOUSUF JUSUF YUSSUF YOUSOUF",
    "HUSAYN": "HUSSEIN HUSSAIN HUSAIN HOSSEIN HUSEIN HUSSIEN HOSEIN HUSEYIN",
    "HASAN": "HASSAN HASAAN",
    "ABDUL": "ABDEL ABDOUL ABDUL ABDAL",
    "ABDULLAH": "ABDALLAH ABDULLA ABDOULLAH ABDALLA",
    "MUSTAFA": "MOSTAFA MUSTAPHA MOUSTAFA MOSTAPHA",
    "UMAR": "OMAR OMER OUMAR",
    "UTHMAN": "OSMAN USMAN OTHMAN OUSMANE USMAN",
    "IBRAHIM": "IBRAHEEM EBRAHIM IBRAGIM IBRAHIMA",
    "KHALID": "KHALED KHALIED",
    "MAHMUD": "MAHMOUD MAHMOOD",
    "SULAYMAN": "SULEIMAN SULAIMAN SULEYMAN SOLIMAN SOULEYMANE",
    "YURI": "YURIY IURII YURY IOURI",
    "ALEKSANDR": "ALEXANDER ALEKSANDER OLEKSANDR ALEXANDR",
    "SERGEI": "SERGEY SERGIY SERHII SERGEJ",
    "DMITRI": "DMITRY DMITRIY DMYTRO",
    "ALI": "ALY",
}
_CANONICAL = {
    variant: canonical for canonical, variants in _VARIANTS.items() for variant in variants.split()
}
_SPECIAL = str.maketrans({"ß": "SS", "Ø": "O", "ø": "O", "Ł": "L", "ł": "L", "Đ": "D",
                          "đ": "D", "Æ": "AE", "æ": "AE", "Œ": "OE", "œ": "OE", "Þ": "TH",
                          "þ": "TH", "ı": "I"})
_NON_LETTERS = re.compile(r"[^A-Z]+")


def _token(token: str) -> str:
    token = _CANONICAL.get(token, token)
    return re.sub(r"(.)\1+", r"\1", token)  # doubled letters are a spelling choice


def name_key(surname: str, given_names: str) -> str:
    """Uppercase ASCII tokens with diacritics stripped and variants unified."""
    text = f"{surname} {given_names}".translate(_SPECIAL)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    return " ".join(_token(token) for token in _NON_LETTERS.split(text) if token)


def name_similarity(key_a: str, key_b: str) -> float:
    """0..100; word order and a missing middle name count little."""
    if not key_a or not key_b:
        return 0.0
    return max(fuzz.token_sort_ratio(key_a, key_b), 0.95 * fuzz.token_set_ratio(key_a, key_b))
