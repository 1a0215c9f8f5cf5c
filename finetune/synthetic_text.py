"""Phrase banks for the synthetic generator, in English and Chinese.

Texts are assembled from fragments so that no two customers read alike, and so that some signals
live only in the words (a 3-star review that says "I'm done with this shop"), which the numeric
aggregates cannot see but a text encoder can.
"""

from __future__ import annotations

import numpy as np

PRODUCTS = {
    "en": ["wireless earbuds", "running shoes", "ceramic mug set", "yoga mat", "phone case",
           "desk lamp", "backpack", "coffee beans", "face cream", "bluetooth speaker",
           "kitchen knife", "winter jacket", "board game", "water bottle", "bed sheets",
           "LED strip lights", "dog food", "notebook pack", "sunglasses", "air fryer"],
    "zh": ["无线耳机", "跑步鞋", "陶瓷杯套装", "瑜伽垫", "手机壳", "台灯", "双肩包", "咖啡豆",
           "面霜", "蓝牙音箱", "厨房刀具", "冬季外套", "桌游", "保温杯", "床单", "LED灯带",
           "狗粮", "笔记本套装", "太阳镜", "空气炸锅"],
}

REVIEW = {
    ("en", "pos"): ["Great quality, exactly as described.", "Arrived fast and works perfectly.",
                    "Love it, will order again.", "Excellent value for the price.",
                    "Second time buying this, still happy.", "Packaging was neat and delivery quick."],
    ("en", "mid"): ["It's okay, nothing special.", "Decent, but a bit smaller than expected.",
                    "Does the job. Delivery took a while.", "Average quality for the price."],
    ("en", "neg"): ["Broke after two days.", "Not as described, very disappointed.",
                    "Poor quality, the seams came apart.", "Arrived damaged and support was slow.",
                    "Smells of chemicals, returning it."],
    ("zh", "pos"): ["质量很好，和描述一致。", "物流很快，用着很满意。", "非常喜欢，还会再买。",
                    "性价比很高。", "第二次购买了，依然满意。", "包装很仔细，发货也快。"],
    ("zh", "mid"): ["一般般，没什么特别的。", "还行，就是比想象的小一点。", "能用，物流有点慢。",
                    "质量中规中矩。"],
    ("zh", "neg"): ["用了两天就坏了。", "和描述不符，非常失望。", "质量很差，线头都开了。",
                    "收到时已经损坏，客服回复也慢。", "有很重的异味，准备退货。"],
}

# Said only by customers who have already decided to leave: the words carry the signal.
LEAVING = {
    "en": ["I think I'm done with this shop.", "Found a cheaper store, probably won't be back.",
           "Not sure why I keep ordering here.", "This was my last order for a while.",
           "Other shops handle this much better."],
    "zh": ["以后应该不会再来这家店了。", "找到更便宜的店了，可能不会回来了。",
           "不知道为什么还在这里买。", "这是我最近最后一次下单了。", "别家店处理得好多了。"],
}

TICKET = {
    ("en", "complaint"): ["My order {order} arrived late, over a week past the promised date.",
                          "The package for {order} was damaged when it arrived.",
                          "I received the wrong item in order {order}.",
                          "I was charged twice for order {order}, please refund.",
                          "Still waiting for my refund on {order}, this is frustrating."],
    ("en", "question"): ["Can I change the delivery address for {order}?",
                         "Do you have this in a larger size?",
                         "Could you send me an invoice for {order}?",
                         "How do I use my gift card at checkout?"],
    ("zh", "complaint"): ["订单{order}比承诺的时间晚了一周多才到。", "订单{order}的包裹到的时候已经破损了。",
                          "订单{order}发错货了。", "订单{order}被重复扣款了，请退款。",
                          "订单{order}的退款还没到账，太让人失望了。"],
    ("zh", "question"): ["订单{order}可以修改收货地址吗？", "这个有大一号的吗？",
                         "能给我开一下订单{order}的发票吗？", "结账时怎么使用礼品卡？"],
}


def pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def review_text(rng: np.random.Generator, lang: str, rating: int, leaving: bool) -> str:
    tone = "pos" if rating >= 4 else "mid" if rating == 3 else "neg"
    parts = [pick(rng, REVIEW[(lang, tone)])]
    if rng.random() < 0.3:
        parts.append(pick(rng, REVIEW[(lang, tone)]))
    if leaving:
        parts.append(pick(rng, LEAVING[lang]))
    sep = "" if lang == "zh" else " "
    return sep.join(dict.fromkeys(parts))


def ticket_text(rng: np.random.Generator, lang: str, complaint: bool, order_id: str,
                leaving: bool) -> str:
    kind = "complaint" if complaint else "question"
    text = pick(rng, TICKET[(lang, kind)]).format(order=order_id)
    if leaving:
        text += ("" if lang == "zh" else " ") + pick(rng, LEAVING[lang])
    return text
