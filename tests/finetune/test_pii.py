"""Masking at the data edge: a table of real-looking personal data in English and Chinese
(masked), of numbers that are not personal (kept), and the contract masking every event."""

from __future__ import annotations

import pandas as pd
import pytest

from finetune.contract import validate_events
from finetune.pii import MASKS, mask, mask_names

# (text, what must disappear, the mask that replaces it)
MASKED = [
    ("write to jane.doe@example.com please", "jane.doe@example.com", "[email]"),
    ("my address x+tag@mail.co.uk", "x+tag@mail.co.uk", "[email]"),
    ("邮箱 zhang.san@qq.com 联系我", "zhang.san@qq.com", "[email]"),
    ("call +44 20 7946 0958 after 5", "+44 20 7946 0958", "[phone]"),
    ("ring (555) 123-4567", "(555) 123-4567", "[phone]"),
    ("US office +1 415 555 2671", "+1 415 555 2671", "[phone]"),
    ("手机 13812345678 请回电", "13812345678", "[phone]"),
    ("电话138-1234-5678", "138-1234-5678", "[phone]"),
    ("我的号码是+86 138 1234 5678", "+86 138 1234 5678", "[phone]"),
    ("座机 010-12345678", "010-12345678", "[phone]"),
    ("深圳 0755-8888 6666", "0755-8888 6666", "[phone]"),
    ("phone 07700 900123 anytime", "07700 900123", "[phone]"),
    ("card 4111 1111 1111 1111 was charged twice", "4111 1111 1111 1111", "[card]"),
    ("use 5500-0000-0000-0004 instead", "5500-0000-0000-0004", "[card]"),
    ("amex 378282246310005", "378282246310005", "[card]"),
    ("discover 6011111111111117 declined", "6011111111111117", "[card]"),
    ("银联卡 6250941006528599 被扣款两次", "6250941006528599", "[card]"),
    ("卡号6212345678901232", "6212345678901232", "[card]"),
    ("refund to GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32", "[iban]"),
    ("IBAN DE89370400440532013000 please", "DE89370400440532013000", "[iban]"),
    ("my IBAN is FR14 2004 1010 0505 0001 3M02 606.", "FR14 2004 1010 0505 0001 3M02 606",
     "[iban]"),
    ("身份证号 11010519491231002X", "11010519491231002X", "[id]"),
    ("身份证440308199901011234用于实名", "440308199901011234", "[id]"),
    ("ID 310104198506123455 attached", "310104198506123455", "[id]"),
    ("SSN 123-45-6789 for the form", "123-45-6789", "[id]"),
    ("NI number AB 12 34 56 C", "AB 12 34 56 C", "[id]"),
    ("NINO AB123456C.", "AB123456C", "[id]"),
    ("deliver to 221B Baker Street, London", "221B Baker Street", "[address]"),
    ("ship to 1600 Pennsylvania Avenue", "1600 Pennsylvania Avenue", "[address]"),
    ("left at 10 Downing St by mistake", "10 Downing St", "[address]"),
    ("send it to 42 Elm Road instead", "42 Elm Road", "[address]"),
    ("moved to 7 Queen's Park Terrace", "7 Queen's Park Terrace", "[address]"),
    ("地址：北京市朝阳区建国路88号", "建国路88号", "[address]"),
    ("送到上海市浦东新区世纪大道100号", "世纪大道100号", "[address]"),
    ("寄到高新南一道8号3栋201室", "高新南一道8号3栋201室", "[address]"),
    ("请送到南京西路1266号恒隆广场", "南京西路1266号", "[address]"),
    ("老地址是文一西路969号", "文一西路969号", "[address]"),
]

KEPT = [
    "Order 12 arrived on 2024-03-05 for 19.99",
    "I paid £45.50 for 3 items, one broken",
    "订单金额 299.00 元，2024年3月5日到货",
    "order #10293 was late by 4 days",
    "rated 4/5, size 42 shoes",
    "30% off code did not work on 2024/11/29",
    "快递单号 YT1234567 还没更新",  # a tracking code, not a phone
    "waited 45 minutes on hold, ticket 88231",
    "3 returns in 60 days",
    "price went from 1,299.00 to 1,499.00",
]


@pytest.mark.parametrize("text, secret, replacement", MASKED)
def test_personal_data_is_masked(text, secret, replacement):
    out = mask(text)
    assert secret not in out and replacement in out, out
    assert mask(out) == out  # idempotent: a second pass changes nothing


@pytest.mark.parametrize("text", KEPT)
def test_numbers_that_are_not_personal_are_kept(text):
    assert mask(text) == text


def test_table_size():
    assert len(MASKED) + len(KEPT) >= 40
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in t) for t, _, _ in MASKED) >= 12


def test_checksums_decide():
    # Same shapes, wrong check digits: not a card, an IBAN or a resident id.
    assert "[card]" not in mask("ref 4111 1111 1111 1112")
    assert "[iban]" not in mask("code GB82 WEST 1234 5698 7654 33")
    assert "[id]" not in mask("no. 110101199003077777")


def test_names_from_a_name_column():
    assert mask_names("Hi, this is Jane Doe; jane wants a refund", "Jane Doe") == \
        "Hi, this is [name] [name]; [name] wants a refund"
    assert mask_names("我是王小明，订单没到", "王小明") == "我是[name]，订单没到"
    assert mask_names("Janet is not Jane", "Jane") == "Janet is not [name]"


def test_contract_masks_every_event_and_drops_the_name():
    frame = pd.DataFrame([
        {"customer_id": "c1", "ts": "2024-01-01", "event": "ticket", "customer_name": "Li Wei",
         "text": "Li Wei here, card 4111 1111 1111 1111, call 13812345678"},
        {"customer_id": "c2", "ts": "2024-01-02", "event": "review", "text": "great, 5 stars"},
        {"customer_id": "c3", "ts": "2024-01-03", "event": "order", "amount": 9.5}])
    events, _ = validate_events(frame, "test")
    texts = dict(zip(events["customer_id"], events["text"]))
    assert texts["c1"] == "[name] [name] here, card [card], call [phone]"
    assert texts["c2"] == "great, 5 stars" and pd.isna(texts["c3"])
    assert "customer_name" not in events.columns
    assert all(m.startswith("[") for m in MASKS)
