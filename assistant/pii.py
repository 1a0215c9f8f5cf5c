"""Mask emails and phone numbers before customer text reaches an LLM, a prompt log or a report.

Masking happens where text enters the assistant (evidence building), so nothing downstream can
forget to do it. Numbers that are not phone-shaped (prices, dates, order counts) are kept: the
claim checks need them.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# International (+44 20 7946 0958), North American ((555) 123-4567), Chinese mobile
# (13812345678, 138-1234-5678) and other long digit runs broken by spaces, dots or dashes.
PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?"
                   r"\d{2,4}(?:[\s.-]?\d{2,4}){2,4}(?![\w.])")
CN_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")
EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if DATE.fullmatch(match.group(0).strip()):
        return match.group(0)
    # Prices and dates have few digits or a decimal point; phones have 7 to 15 digits.
    return PHONE_MASK if 7 <= len(digits) <= 15 and not re.search(r"\d\.\d{2}$", match.group(0)) \
        else match.group(0)


def mask(text: str) -> str:
    text = EMAIL.sub(EMAIL_MASK, text)
    text = CN_MOBILE.sub(PHONE_MASK, text)
    return PHONE.sub(_phone, text)
