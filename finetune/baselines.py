"""The baselines every churn model must beat, on the RFM aggregates of ``features``.

Each is an estimator in the scikit-learn manner: ``fit(X, y, X_val, y_val)`` returns self and
``predict_proba(X)`` returns the churn probability. Validation data choose hyper-parameters and
stop boosting early; the test snapshot is never seen here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import product

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from finetune.btyd import BTYD_COLUMNS, RFM_COLUMNS, BTYDFeatures
from finetune.features import FEATURE_COLUMNS
from finetune.labels import labels_end_by

DEFAULT_HORIZON = 90.0


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


class ReadsBTYD:
    """What a model that may read BG/NBD's outputs shares: the columns it reads and the frame
    it is given (``columns`` and the fitted ``btyd_`` are the dataclass's fields)."""

    columns: tuple[str, ...]
    btyd_: BTYDFeatures | None

    @property
    def used_columns(self) -> tuple[str, ...]:
        return (*self.columns, *BTYD_COLUMNS) if self.btyd_ is not None else tuple(self.columns)

    def design(self, X: pd.DataFrame) -> pd.DataFrame:
        """The columns the fitted model reads, BG/NBD's included when it chose them."""
        if self.btyd_ is not None:
            X = self.btyd_.add(X)
        return X[list(self.used_columns)]


@dataclass
class LogRegBaseline(ReadsBTYD):
    """Logistic regression on signed-log, imputed, standardised aggregates; C chosen on validation."""

    cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    columns: tuple[str, ...] = FEATURE_COLUMNS
    horizon: float | None = None  # days; BG/NBD's chance of no purchase is over it
    btyd: bool | None = None  # BG/NBD features: None chooses on validation (``_fit_choosing``)
    model: object | None = None
    params: dict = field(default_factory=dict)
    btyd_: BTYDFeatures | None = None

    def _pipeline(self, c: float):
        return make_pipeline(FunctionTransformer(_signed_log),
                             SimpleImputer(strategy="median", add_indicator=True,
                                           keep_empty_features=True),
                             StandardScaler(), LogisticRegression(C=c, max_iter=2000))

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None) -> LogRegBaseline:
        return _fit_choosing(self, X, y, X_val, y_val)

    def _fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None,
             y_val: np.ndarray | None) -> LogRegBaseline:
        best = (-1.0, None, self.cs[-1])
        design = self.design(X).to_numpy()
        design_val = self.design(X_val).to_numpy() if X_val is not None else None
        for c in self.cs if X_val is not None else (1.0,):
            model = self._pipeline(c).fit(design, y)
            score = _auc(y_val, model.predict_proba(design_val)[:, 1]) \
                if design_val is not None else 0.0
            if score > best[0]:
                best = (score, model, c)
        self.model, self.params = best[1], {"C": best[2], "val_auc": best[0]}
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        assert self.model is not None, "fit first"
        return self.model.predict_proba(self.design(X).to_numpy())[:, 1]

    def estimator(self):
        """An unfitted pipeline with the chosen C (for purged refits and cross-fitting)."""
        assert self.params, "fit first"
        return self._pipeline(self.params["C"])

    def cross_fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray,
                  folds: int = 5, rows: np.ndarray | None = None) -> np.ndarray:
        """Out-of-fold probabilities with the chosen C, folds by customer (see LightGBM's)."""
        return _cross_fit(lambda: self.estimator(), self.design(X).to_numpy(), y, groups, folds,
                          rows)

    def linear(self) -> LinearForm:
        """The fitted pipeline as one linear form: exact per-feature log-odds, savable as JSON."""
        assert self.model is not None, "fit first"
        return LinearForm.from_pipeline(self.model, self.used_columns, self.btyd_)


@dataclass
class LinearForm:
    """``LogRegBaseline``'s pipeline (signed log, median imputation with missing indicators,
    standardisation, logistic regression) written out as numbers. The log-odds are a sum of one
    term per feature (its value's term plus its missing indicator's), so a served stack that
    includes logistic regression is attributed exactly, feature by feature."""

    columns: tuple[str, ...]
    medians: np.ndarray
    indicators: np.ndarray  # indices of the columns that have a missing indicator
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    btyd: BTYDFeatures | None = None  # computes the BG/NBD columns it reads, if any

    @classmethod
    def from_pipeline(cls, pipeline, columns: tuple[str, ...],
                      btyd: BTYDFeatures | None = None) -> LinearForm:
        imputer = pipeline.named_steps["simpleimputer"]
        scaler = pipeline.named_steps["standardscaler"]
        lr = pipeline.named_steps["logisticregression"]
        indicator = getattr(imputer, "indicator_", None)
        return cls(tuple(columns), np.asarray(imputer.statistics_, float),
                   np.asarray(indicator.features_ if indicator is not None else [], int),
                   np.asarray(scaler.mean_, float), np.asarray(scaler.scale_, float),
                   np.asarray(lr.coef_[0], float), float(lr.intercept_[0]), btyd)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Log-odds per feature (value and missing indicator together) plus ``bias``; each row
        sums to the model's logit."""
        if self.btyd is not None:
            X = self.btyd.add(X)
        raw = _signed_log(X[list(self.columns)].to_numpy(dtype=float))
        missing = np.isnan(raw)
        values = np.where(missing, self.medians, raw)
        design = np.hstack([values, missing[:, self.indicators].astype(float)])
        terms = (design - self.mean) / self.scale * self.coef
        n = len(self.columns)
        per_feature = terms[:, :n].copy()
        np.add.at(per_feature.T, self.indicators, terms[:, n:].T)
        out = pd.DataFrame(per_feature, columns=list(self.columns), index=X.index)
        out["bias"] = self.intercept
        return out

    def linear(self) -> LinearForm:
        """Itself: a loaded model answers like the fitted ``LogRegBaseline.linear``."""
        return self

    def logit(self, X: pd.DataFrame) -> np.ndarray:
        return self.contributions(X).sum(axis=1).to_numpy()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(X)))

    def to_dict(self) -> dict:
        return {"columns": list(self.columns), "medians": self.medians.tolist(),
                "indicators": self.indicators.tolist(), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept,
                "btyd": self.btyd.to_dict() if self.btyd is not None else None}

    @classmethod
    def from_dict(cls, data: dict) -> LinearForm:
        return cls(tuple(data["columns"]), np.asarray(data["medians"], float),
                   np.asarray(data["indicators"], int), np.asarray(data["mean"], float),
                   np.asarray(data["scale"], float), np.asarray(data["coef"], float),
                   float(data["intercept"]),
                   BTYDFeatures.from_dict(data["btyd"]) if data.get("btyd") else None)


def _fit_choosing(model, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None,
                  y_val: np.ndarray | None):
    """Fit ``model`` with the aggregates alone and with BG/NBD's two outputs added, and keep
    the one that validates better (ties: the aggregates alone). BG/NBD is fitted on the fit
    rows without labels; validation only chooses. ``btyd=False`` skips the choice, ``True``
    forces the features (bench/btyd_features.py measured them: +0.010 for logistic regression
    on Online Retail, about nothing on the demo data, mixed on Amazon)."""
    model.btyd_ = None
    if model.btyd is False or X_val is None or not set(RFM_COLUMNS) <= set(X.columns):
        return model._fit(X, y, X_val, y_val)
    try:
        feats = BTYDFeatures.fit(X, model.horizon or DEFAULT_HORIZON)
    except ValueError:  # too few customers with a history: the aggregates alone
        return model._fit(X, y, X_val, y_val)
    tries = [replace(model, btyd_=b, model=None, params={})
             for b in ([None, feats] if model.btyd is None else [feats])]
    for t in tries:
        t._fit(X, y, X_val, y_val)
    best = max(tries, key=lambda t: t.params["val_auc"])
    model.btyd_, model.model = best.btyd_, best.model
    model.params = {**best.params, "btyd_features": best.btyd_ is not None,
                    "val_auc_by_features": {("btyd" if t.btyd_ is not None else "aggregates"):
                                            t.params["val_auc"] for t in tries}}
    return model


MAX_HELD_OUT = 0.2  # of the rows, per cross-fitting model (5 folds when every row is wanted)


def _cross_fit(make, X, y: np.ndarray, groups: np.ndarray, folds: int,
               rows: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold probabilities of ``rows`` (all by default; NaN elsewhere), folds keeping
    each group (customer) together. Each model learns from every row outside its fold, and a
    fold holds at most ``MAX_HELD_OUT`` of the rows, so only as many models are fitted as the
    wanted rows need: all rows, ``folds``; 20,000 stacking rows out of 2.4 million, one (#17: at
    250,000 customers five full-size fits per model were most of the stacking stage)."""
    from sklearn.model_selection import GroupKFold

    wanted = np.ones(len(X), bool) if rows is None else np.asarray(rows, bool)
    oof = np.full(len(X), np.nan)
    if not wanted.any():
        return oof
    take = (lambda idx: X.iloc[idx]) if isinstance(X, pd.DataFrame) else (lambda idx: X[idx])
    k = int(min(folds, max(1, np.ceil(wanted.sum() / (MAX_HELD_OUT * len(X)) - 1e-9))))
    where = np.flatnonzero(wanted)
    if k == 1:
        splits = [where]
    else:
        splits = [where[test] for _, test in GroupKFold(k).split(where, y[where], groups[where])]
    codes, uniques = pd.factorize(np.asarray(groups))  # np.isin on customer-id strings took
    for test_idx in splits:                              # 75 s per model at 243,140 rows
        held = np.zeros(len(uniques), bool)
        held[codes[test_idx]] = True
        train_idx = np.flatnonzero(~held[codes])
        model = make().fit(take(train_idx), y[train_idx])
        oof[test_idx] = model.predict_proba(take(test_idx))[:, 1]
    return oof


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


# LightGBM's grid (six settings, each early-stopped, twice: with and without BG/NBD's features)
# learns from at most this many purged fit rows, whole customers sampled; the chosen model then
# learns from every fit row. At 250,000 customers the grid on all 2.2 million purged rows took
# 1,752 of the run's 3,308 s; the 25,000-customer logs and every real log reported stay below it.
MAX_TUNING_ROWS = 300_000


@dataclass
class LightGBMBaseline(ReadsBTYD):
    """Gradient-boosted trees, tuned on a small grid and early-stopped on validation AUC."""

    grid: dict[str, tuple] = field(default_factory=lambda: {
        "num_leaves": (7, 15, 31), "min_child_samples": (20, 100), "learning_rate": (0.03,)})
    guard: bool = True
    horizon: float | None = None  # days; purges the choice of rows sharing validation's future
    columns: tuple[str, ...] = FEATURE_COLUMNS
    seed: int = 0
    n_jobs: int = 2
    btyd: bool | None = None  # BG/NBD features: None chooses on validation (``_fit_choosing``)
    max_tuning_rows: int | None = MAX_TUNING_ROWS
    model: object | None = None
    params: dict = field(default_factory=dict)
    btyd_: BTYDFeatures | None = None

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
        return _fit_choosing(self, X, y, X_val, y_val)

    def _fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None,
             y_val: np.ndarray | None) -> LightGBMBaseline:
        """Choose parameters and the number of trees on validation, then refit on all rows.

        The choice is made on purged rows: fit snapshots whose label window reaches into the
        validation window share their future with it (the same customer, the same weeks), so
        validation would reward trees that memorise customers. Only cutoffs at least one
        horizon before validation take part in the choice, at most ``max_tuning_rows`` of them
        (whole customers); the final model learns from all."""
        import warnings

        import lightgbm as lgb

        warnings.filterwarnings("ignore", message=".*eval_set.*is deprecated")

        if X_val is None:
            self.model = self._classifier(n_estimators=300).fit(self.design(X), y)
            self.params = {"n_estimators": 300, "val_auc": 0.0}
            return self
        from finetune.sampling import cap_customers

        mask = purged_rows(X, np.asarray(y), X_val, self.horizon)
        tune = cap_customers(X, np.ones(len(X), bool) if mask is None else mask,
                             self.max_tuning_rows, self.seed)
        Xp, yp = X[tune], np.asarray(y)[tune]
        Dp, D_val = self.design(Xp), self.design(X_val)
        keys = list(self.grid)
        best: tuple[float, dict] = (-1.0, {})
        for values in product(*(self.grid[k] for k in keys)):
            params = dict(zip(keys, values))
            model = self._classifier(n_estimators=2000, **params)
            model.fit(Dp, yp, eval_set=[(D_val, y_val)], eval_metric="auc",
                      callbacks=[lgb.early_stopping(100, verbose=False)])
            score = _auc(y_val, model.predict_proba(D_val)[:, 1])
            if score > best[0]:
                best = (score, {**params, "n_estimators": model.best_iteration_ or 2000})
        if self.guard:
            # The plain fixed-parameter model is a candidate too (on the same columns), so
            # tuning can never choose something that validates worse than no tuning at all.
            plain = LightGBMPlain(columns=self.used_columns, seed=self.seed, n_jobs=self.n_jobs)
            score = _auc(y_val, plain.fit(Dp, yp).predict_proba(D_val))
            if score > best[0]:
                best = (score, {**PLAIN_PARAMS, "plain": True})
        chosen = best[1]
        self.model = self._estimator(chosen).fit(self.design(X), y)
        self.params = {**chosen, "val_auc": best[0],
                       "purged_rows": int(len(X) - (len(X) if mask is None else mask.sum())),
                       "tuning_rows": int(tune.sum())}
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        assert self.model is not None, "fit first"
        return self.model.predict_proba(self.design(X))[:, 1]

    def cross_fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray,
                  folds: int = 5, rows: np.ndarray | None = None) -> np.ndarray:
        """Out-of-fold probabilities with the chosen parameters: a stacker fitted on the fitted
        model's own training rows would learn to trust its overfit; folds keep a customer's
        snapshots together so no fold has seen the customer it predicts. ``rows``: only those
        are wanted (the stacking rows), which bounds how many models are fitted."""
        assert self.params, "fit first: cross_fit reuses the chosen parameters"
        return _cross_fit(lambda: self.estimator(), self.design(X), np.asarray(y),
                          np.asarray(groups), folds, rows)

    def estimator(self):
        """An unfitted classifier with the chosen parameters (purged refits, cross-fitting)."""
        assert self.params, "fit first"
        return self._estimator(self.params)


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


# The facts BG/NBD reads (recency and the mean gap state "recency", the count "orders"), keyed
# by the feature each share is credited to: its logit is split between them.
BGNBD_PLAYERS: dict[str, tuple[str, ...]] = {"recency_days": ("recency_days", "gap_mean"),
                                             "frequency": ("frequency",)}


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
        # the typical customer its attributions are measured against
        self.params["reference"] = {c: float(np.nan_to_num(rows[c].median()))
                                    for c in ("frequency", "recency_days", "gap_mean")}
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        from finetune.btyd import rfm_from_features

        assert self.model is not None, "fit first"
        p = self.model.p_no_purchase(*rfm_from_features(X), horizon=self.horizon)  # type: ignore[attr-defined]
        return np.clip(p, 1e-6, 1 - 1e-6)

    def cross_fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray,
                  folds: int = 5, rows: np.ndarray | None = None) -> np.ndarray:
        """Its own predictions: it reads no labels, so a fit row is out-of-sample already."""
        return self.predict_proba(X)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Its logit split exactly between recency and order count (two-player Shapley values
        against the typical customer of its fit, ``reference``), plus ``bias``: the logit of
        that typical customer. Rows sum to the logit of ``predict_proba``."""
        from finetune.calibration import logit

        ref = self.params["reference"]
        names = list(BGNBD_PLAYERS)

        def f(on: set[str]) -> np.ndarray:
            frame = X[["frequency", "recency_days", "gap_mean"]].astype(float).copy()
            for name in names:
                if name not in on:
                    for col in BGNBD_PLAYERS[name]:
                        frame[col] = ref[col]
            return logit(self.predict_proba(frame))

        both, none = f(set(names)), f(set())
        a, b = names
        only_a, only_b = f({a}), f({b})
        out = pd.DataFrame(index=X.index)
        out[a] = 0.5 * ((only_a - none) + (both - only_b))
        out[b] = 0.5 * ((only_b - none) + (both - only_a))
        out["bias"] = none
        return out

    def to_dict(self) -> dict:
        return dict(self.params)

    @classmethod
    def from_dict(cls, data: dict) -> BGNBDBaseline:
        from finetune.btyd import BGNBD

        model = BGNBD(params_={k: data[k] for k in ("r", "alpha", "a", "b")})
        return cls(horizon=float(data["horizon"]), model=model, params=dict(data))


BASELINES = {"lightgbm": LightGBMBaseline, "lightgbm_plain": LightGBMPlain,
             "logreg": LogRegBaseline, "recency": RecencyBaseline, "bgnbd": BGNBDBaseline}


def make_baseline(name: str, horizon: int, btyd: bool | None = None) -> object:
    """A fresh baseline of kind ``name``; the horizon reaches the kinds that predict over it,
    the BG/NBD feature setting the kinds that can read them (None: chosen on validation)."""
    cls = BASELINES[name]
    if cls in (LightGBMBaseline, LogRegBaseline):
        return cls(horizon=float(horizon), btyd=btyd)
    return cls(horizon=float(horizon)) if cls is BGNBDBaseline else cls()
