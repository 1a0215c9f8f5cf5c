"""The baselines every churn model must beat, on the RFM aggregates of ``features``.

Each is an estimator in the scikit-learn manner: ``fit(X, y, X_val, y_val)`` returns self and
``predict_proba(X)`` returns the churn probability. Validation data choose hyper-parameters and
stop boosting early; the test snapshot is never seen here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from finetune.features import FEATURE_COLUMNS


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else 0.5


@dataclass
class RecencyBaseline:
    """Days since the last order, mapped to a probability by a one-feature logistic fit."""

    model: LogisticRegression | None = None

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None) -> RecencyBaseline:
        self.model = LogisticRegression().fit(self._x(X), y)
        return self

    @staticmethod
    def _x(X: pd.DataFrame) -> np.ndarray:
        return np.log1p(X[["recency_days"]].fillna(X["tenure_days"].max()).to_numpy())

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        assert self.model is not None, "fit first"
        return self.model.predict_proba(self._x(X))[:, 1]


@dataclass
class LogRegBaseline:
    """Logistic regression on signed-log, imputed, standardised aggregates; C chosen on validation."""

    cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    columns: tuple[str, ...] = FEATURE_COLUMNS
    model: object | None = None
    params: dict = field(default_factory=dict)

    def _pipeline(self, c: float):
        return make_pipeline(FunctionTransformer(_signed_log),
                             SimpleImputer(strategy="median", add_indicator=True,
                                           keep_empty_features=True),
                             StandardScaler(), LogisticRegression(C=c, max_iter=2000))

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None) -> LogRegBaseline:
        cols = list(self.columns)
        best = (-1.0, None, self.cs[-1])
        for c in self.cs if X_val is not None else (1.0,):
            model = self._pipeline(c).fit(X[cols].to_numpy(), y)
            score = _auc(y_val, model.predict_proba(X_val[cols].to_numpy())[:, 1]) \
                if X_val is not None else 0.0
            if score > best[0]:
                best = (score, model, c)
        self.model, self.params = best[1], {"C": best[2], "val_auc": best[0]}
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        assert self.model is not None, "fit first"
        return self.model.predict_proba(X[list(self.columns)].to_numpy())[:, 1]


@dataclass
class LightGBMBaseline:
    """Gradient-boosted trees, tuned on a small grid and early-stopped on validation AUC."""

    grid: dict[str, tuple] = field(default_factory=lambda: {
        "num_leaves": (7, 15, 31), "min_child_samples": (20, 100), "learning_rate": (0.03,)})
    columns: tuple[str, ...] = FEATURE_COLUMNS
    seed: int = 0
    n_jobs: int = 2
    model: object | None = None
    params: dict = field(default_factory=dict)

    def _classifier(self, **params):
        import lightgbm as lgb

        return lgb.LGBMClassifier(subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                                  reg_lambda=1.0, random_state=self.seed, n_jobs=self.n_jobs,
                                  verbose=-1, deterministic=True, force_row_wise=True, **params)

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None) -> LightGBMBaseline:
        import warnings

        import lightgbm as lgb

        warnings.filterwarnings("ignore", message=".*eval_set.*is deprecated")

        cols = list(self.columns)
        keys = list(self.grid)
        best = (-1.0, None, {})
        for values in product(*(self.grid[k] for k in keys)):
            params = dict(zip(keys, values))
            model = self._classifier(n_estimators=2000, **params)
            if X_val is not None:
                model.fit(X[cols], y, eval_set=[(X_val[cols], y_val)], eval_metric="auc",
                          callbacks=[lgb.early_stopping(100, verbose=False)])
                score = _auc(y_val, model.predict_proba(X_val[cols])[:, 1])
            else:
                model.set_params(n_estimators=300).fit(X[cols], y)
                score = 0.0
            if score > best[0]:
                best = (score, model, {**params, "n_estimators": model.best_iteration_ or 300})
            if X_val is None:
                break
        self.model = best[1]
        self.params = {**best[2], "val_auc": best[0]}
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        assert self.model is not None, "fit first"
        return self.model.predict_proba(X[list(self.columns)])[:, 1]

    def cross_fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray,
                  folds: int = 5) -> np.ndarray:
        """Out-of-fold probabilities with the chosen parameters: a stacker fitted on the fitted
        model's own training rows would learn to trust its overfit; folds keep a customer's
        snapshots together so no fold has seen the customer it predicts."""
        from sklearn.model_selection import GroupKFold

        assert self.params, "fit first: cross_fit reuses the chosen parameters"
        cols = list(self.columns)
        keep = ("num_leaves", "min_child_samples", "learning_rate", "n_estimators")
        oof = np.full(len(X), np.nan)
        for train_idx, test_idx in GroupKFold(folds).split(X, y, groups):
            model = self._classifier(**{k: self.params[k] for k in keep})
            model.fit(X.iloc[train_idx][cols], y[train_idx])
            oof[test_idx] = model.predict_proba(X.iloc[test_idx][cols])[:, 1]
        return oof


BASELINES = {"lightgbm": LightGBMBaseline, "logreg": LogRegBaseline, "recency": RecencyBaseline}
