"""Probability calibration fitted on validation scores, so a 0.7 means seven in ten leave."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))


@dataclass
class PlattCalibrator:
    """Logistic map of a raw score (a logit): monotone, two numbers, robust on small validation."""

    a: float = 1.0
    b: float = 0.0

    def fit(self, scores: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        lr = LogisticRegression(C=1e4).fit(np.asarray(scores, float).reshape(-1, 1), y)
        self.a, self.b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        z = self.a * np.asarray(scores, dtype=float) + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict:
        return {"method": "platt", "a": self.a, "b": self.b}


@dataclass
class IsotonicCalibrator:
    """Monotone step map; better with thousands of validation rows and an odd-shaped score."""

    model: IsotonicRegression | None = None

    def fit(self, scores: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        self.model = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4)
        self.model.fit(np.asarray(scores, dtype=float), y)
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        assert self.model is not None, "fit first"
        return self.model.predict(np.asarray(scores, dtype=float))

    def to_dict(self) -> dict:
        assert self.model is not None
        return {"method": "isotonic", "x": self.model.X_thresholds_.tolist(),
                "y": self.model.y_thresholds_.tolist()}


def calibrator_from_dict(data: dict) -> PlattCalibrator | IsotonicCalibrator:
    if data["method"] == "platt":
        return PlattCalibrator(a=data["a"], b=data["b"])
    iso = IsotonicRegression(out_of_bounds="clip")
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    iso.fit(x, y)
    return IsotonicCalibrator(model=iso)
