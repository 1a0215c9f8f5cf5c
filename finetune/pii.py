"""Mask personal data in customer text, once, at the data edge.

``finetune.contract.validate_events`` masks the ``text`` column of every event that enters the
product (files, SQL, the API, the database), so the stored events, the Chroma store, the
model's inputs, prompts, answers, reports and logs all see masked text; later calls in the
assistant are a second line of defence and change nothing (masking is idempotent).

What is masked, and how reliably:
- emails; phone numbers (international, North American, Chinese mobile and landline);
- payment card numbers (13-19 digits, Luhn-checked), IBANs (ISO 13616 mod-97 checked);
- national ids: the Chinese resident id (18 characters, ISO 7064 check digit), US SSNs
  (ddd-dd-dddd), UK National Insurance numbers;
- street addresses where the pattern is reliable: "221B Baker Street" style (a number, words,
  a street suffix) and Chinese addresses ending in 号 or 室 after 路/街/道/巷/弄;
- names, only when the events carry a name column (``customer_name``): each of that row's
  name parts is masked in its text. A name in free text without such a column is not found:
  no reliable pattern exists for it.

Numbers that are not personal (prices, dates, order counts, quantities) are kept: the claim
checks need them.
"""

from __future__ import annotations

import re

import pandas as pd

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# International (+44 20 7946 0958), North American ((555) 123-4567), Chinese mobile
# (13812345678, 138-1234-5678) and other long digit runs broken by spaces, dots or dashes.
PHONE = re.compile(r"(?<![A-Za-z0-9_.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?"
                   r"\d{2,4}(?:[\s.-]?\d{2,4}){2,4}(?![A-Za-z0-9_.])")
CN_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
CN_ID = re.compile(r"(?<![\dA-Za-z])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])"
                   r"(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\dA-Za-z])")
CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?![\d-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
UK_NINO = re.compile(r"\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
STREET = re.compile(
    r"\b\d{1,5}[A-Za-z]?,? (?:[A-Z][\w'.-]*\s){1,4}(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|"
    r"Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Terrace|Close|Crescent|Square|Sq)\b\.?")
CN_ADDRESS = re.compile(r"[\u4e00-\u9fff]{1,12}(?:路|街|道|巷|弄)\d{1,5}(?:号|號)"
                        r"(?:[\d\u4e00-\u9fff-]{0,12}(?:室|楼|樓|单元))?")
DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")

EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"
CARD_MASK = "[card]"
IBAN_MASK = "[iban]"
ID_MASK = "[id]"
ADDRESS_MASK = "[address]"
NAME_MASK = "[name]"
MASKS = (EMAIL_MASK, PHONE_MASK, CARD_MASK, IBAN_MASK, ID_MASK, ADDRESS_MASK, NAME_MASK)


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_valid(text: str) -> bool:
    total = sum(int(c) * w for c, w in zip(text[:17], CN_WEIGHTS))
    return "10X98765432"[total % 11] == text[17].upper()


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD_MASK if 13 <= len(digits) <= 19 and luhn(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if DATE.fullmatch(match.group(0).strip()):
        return match.group(0)
    # Prices and dates have few digits or a decimal point; phones have 7 to 15 digits.
    return PHONE_MASK if 7 <= len(digits) <= 15 and not re.search(r"\d\.\d{2}$", match.group(0)) \
        else match.group(0)


def mask(text: str) -> str:
    """``text`` with every personal datum this module recognises replaced by its mask."""
    if not text:
        return text
    text = EMAIL.sub(EMAIL_MASK, text)
    text = IBAN.sub(lambda m: IBAN_MASK if iban_valid(m.group(0)) else m.group(0), text)
    text = CN_ID.sub(lambda m: ID_MASK if cn_id_valid(m.group(0)) else m.group(0), text)
    text = CARD.sub(_card, text)
    text = SSN.sub(ID_MASK, text)
    text = UK_NINO.sub(ID_MASK, text)
    text = CN_ADDRESS.sub(ADDRESS_MASK, text)
    text = STREET.sub(ADDRESS_MASK, text)
    text = CN_MOBILE.sub(PHONE_MASK, text)
    return PHONE.sub(_phone, text)


def mask_names(text: str, name: str) -> str:
    """Mask each part of ``name`` (two letters or more; whole words, any case) in ``text``."""
    parts = sorted({p for p in re.split(r"[\s,.]+", name.strip()) if len(p) >= 2}, key=len,
                   reverse=True)
    for part in parts:
        boundary = r"\b" if re.match(r"\w", part, re.ASCII) else ""
        text = re.sub(f"{boundary}{re.escape(part)}{boundary}", NAME_MASK, text,
                      flags=re.IGNORECASE)
    return text


def mask_series(texts: pd.Series, names: pd.Series | None = None) -> pd.Series:
    """Mask a column of texts (missing values stay missing); ``names``: the row's customer
    name, masked in its own text."""
    def one(i: int, t: object) -> object:
        if not isinstance(t, str) or not t:
            return t
        if names is not None:
            n = names.iloc[i]
            if isinstance(n, str) and n.strip():
                t = mask_names(t, n)
        return mask(t)

    values = [one(i, t) for i, t in enumerate(texts.tolist())]
    return pd.Series(values, index=texts.index, dtype=texts.dtype)
