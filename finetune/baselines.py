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
from finetune.labels import labels_end_by


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


def purged_rows(X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame,
                horizon: float | None) -> np.ndarray | None:
    """Rows whose label window ends before validation begins (None: keep all, because the
    horizon or the cutoffs are unknown, or too few rows of both classes would remain)."""
    if horizon is None or "cutoff" not in X.columns or "cutoff" not in X_val.columns:
        return None
    mask = labels_end_by(X["cutoff"], horizon, X_val["cutoff"].min())
    if mask.sum() < max(200, 0.2 * len(X)) or len(np.unique(y[mask])) < 2:
        return None
    return mask


@dataclass
class LightGBMBaseline:
    """Gradient-boosted trees, tuned on a small grid and early-stopped on validation AUC."""

    grid: dict[str, tuple] = field(default_factory=lambda: {
        "num_leaves": (7, 15, 31), "min_child_samples": (20, 100), "learning_rate": (0.03,)})
    guard: bool = True
    horizon: float | None = None  # days; purges the choice of rows sharing validation's future
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

    def _estimator(self, params: dict):
        """An unfitted classifier with chosen ``params``: the plain model's, or the grid's."""
        if params.get("plain"):
            return LightGBMPlain(self.columns, self.seed, self.n_jobs)._classifier()
        keep = ("num_leaves", "min_child_samples", "learning_rate", "n_estimators")
        return self._classifier(**{k: params[k] for k in keep if k in params})

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None) -> LightGBMBaseline:
        """Choose parameters and the number of trees on validation, then refit on all rows.

        The choice is made on purged rows: fit snapshots whose label window reaches into the
        validation window share their future with it (the same customer, the same weeks), so
        validation would reward trees that memorise customers. Only cutoffs at least one
        horizon before validation take part in the choice; the final model learns from all."""
        import warnings

        import lightgbm as lgb

        warnings.filterwarnings("ignore", message=".*eval_set.*is deprecated")

        cols = list(self.columns)
        if X_val is None:
            self.model = self._classifier(n_estimators=300).fit(X[cols], y)
            self.params = {"n_estimators": 300, "val_auc": 0.0}
            return self
        mask = purged_rows(X, np.asarray(y), X_val, self.horizon)
        Xp, yp = (X[mask], y[mask]) if mask is not None else (X, y)
        keys = list(self.grid)
        best: tuple[float, dict] = (-1.0, {})
        for values in product(*(self.grid[k] for k in keys)):
            params = dict(zip(keys, values))
            model = self._classifier(n_estimators=2000, **params)
            model.fit(Xp[cols], yp, eval_set=[(X_val[cols], y_val)], eval_metric="auc",
                      callbacks=[lgb.early_stopping(100, verbose=False)])
            score = _auc(y_val, model.predict_proba(X_val[cols])[:, 1])
            if score > best[0]:
                best = (score, {**params, "n_estimators": model.best_iteration_ or 2000})
        if self.guard:
            # The plain fixed-parameter model is a candidate too, so tuning can never choose
            # something that validates worse than no tuning at all.
            plain = LightGBMPlain(columns=self.columns, seed=self.seed, n_jobs=self.n_jobs)
            score = _auc(y_val, plain.fit(Xp, yp).predict_proba(X_val))
            if score > best[0]:
                best = (score, {**PLAIN_PARAMS, "plain": True})
        chosen = best[1]
        self.model = self._estimator(chosen).fit(X[cols], y)
        self.params = {**chosen, "val_auc": best[0],
                       "purged_rows": int(len(X) - len(Xp))}
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
        oof = np.full(len(X), np.nan)
        for train_idx, test_idx in GroupKFold(folds).split(X, y, groups):
            model = self._estimator(self.params)
            model.fit(X.iloc[train_idx][cols], y[train_idx])
            oof[test_idx] = model.predict_proba(X.iloc[test_idx][cols])[:, 1]
        return oof


# LightGBM's own defaults, fixed: the untuned reference that the tuned model must not lose to.
PLAIN_PARAMS: dict = {"num_leaves": 31, "min_child_samples": 20, "learning_rate": 0.1,
                      "n_estimators": 100}


@dataclass
class LightGBMPlain:
    """LightGBM with fixed default parameters, no grid and no early stopping (``lightgbm_plain``).

    It exists to catch the tuning: when the tuned ``lightgbm`` scores below this on the same
    features, the tuning (or its validation) is the problem, not the features."""

    columns: tuple[str, ...] = FEATURE_COLUMNS
    seed: int = 0
    n_jobs: int = 2
    model: object | None = None
    params: dict = field(default_factory=dict)

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None) -> LightGBMPlain:
        self.model = self._classifier().fit(X[list(self.columns)], y)
        self.params = dict(PLAIN_PARAMS)
        if X_val is not None and y_val is not None:
            self.params["val_auc"] = _auc(y_val, self.predict_proba(X_val))
        return self

    def _classifier(self):
        import lightgbm as lgb

        return lgb.LGBMClassifier(random_state=self.seed, n_jobs=self.n_jobs, verbose=-1,
                                  deterministic=True, force_row_wise=True, **PLAIN_PARAMS)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        assert self.model is not None, "fit first"
        return self.model.predict_proba(X[list(self.columns)])[:, 1]


@dataclass
class BGNBDBaseline:
    """BG/NBD's chance of no purchase in the horizon (``bgnbd``): the classical buy-till-you-die
    anchor, fitted without labels on the newest fit cutoff's customers (one row each, as the
    model assumes). ``horizon`` is set from the churn definition."""

    horizon: float = 90.0
    model: object | None = None
    params: dict = field(default_factory=dict)

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None) -> BGNBDBaseline:
        from finetune.btyd import BGNBD, rfm_from_features

        rows = X[X["cutoff"] == X["cutoff"].max()] if "cutoff" in X.columns else X
        self.model = BGNBD().fit(*rfm_from_features(rows))
        self.params = {k: v for k, v in self.model.params_.items() if k != "log_likelihood"}
        self.params["horizon"] = self.horizon
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        from finetune.btyd import rfm_from_features

        assert self.model is not None, "fit first"
        p = self.model.p_no_purchase(*rfm_from_features(X), horizon=self.horizon)  # type: ignore[attr-defined]
        return np.clip(p, 1e-6, 1 - 1e-6)


BASELINES = {"lightgbm": LightGBMBaseline, "lightgbm_plain": LightGBMPlain,
             "logreg": LogRegBaseline, "recency": RecencyBaseline, "bgnbd": BGNBDBaseline}


def make_baseline(name: str, horizon: int) -> object:
    """A fresh baseline of kind ``name``; the horizon reaches the kinds that predict over it."""
    cls = BASELINES[name]
    return cls(horizon=float(horizon)) if cls in (BGNBDBaseline, LightGBMBaseline) else cls()
