"""Uplift (heterogeneous effect) models of the historical programme, and their Qini evaluation.

Learners (Künzel et al., PNAS 2019;116:4156; Kennedy, arXiv:2004.14497), from EconML on LightGBM:
- t: one outcome model per arm; the effect is their difference;
- x: the T-learner's imputed effects regressed per arm, blended by the propensity;
- dr: doubly robust pseudo-outcomes (AIPW, cross-fitted) regressed on the features;
- proportional: one relative effect for everyone times each person's untreated risk (Dorresteijn et al.,
  BMJ 2011;343:d5888: individual absolute benefit from a trial's relative risk reduction and a risk model).
  The relative effect is the training people's difference-in-differences on ATT weights (the change in
  admissions from the prior span, treated minus reweighted comparators: it removes each person's fixed level,
  which the treated's unrecorded extra risk would otherwise put into the effect; the weights are
  evaluate_programme's DiD propensity on the characteristics, phm.impactability.effects) over the treated's
  counterfactual rate. With a few hundred treated, a heterogeneous learner's benefits are noise; this one
  ranks by untreated risk, which carries the signal when the effect is roughly proportional to risk.
  With `effect_modifiers` (prespecified groups, the PATH statement's "effect modelling": Kent et al., Ann
  Intern Med 2020;172:35) the relative effect is estimated in each group (a person is in the last group
  whose feature threshold they reach, or in none) and shrunk toward everyone's by empirical Bayes (Efron &
  Morris, JASA 1975;70:311): a group's estimate r_g keeps the share tau^2 / (tau^2 + v_g) of its distance
  from the overall one, where v_g is its bootstrap variance and tau^2 the spread between the groups that
  their noise does not explain (DerSimonian and Laird's estimator: 0 unless Cochran's Q exceeds its degrees
  of freedom). Noisy groups fall back to the overall effect (the plain proportional learner); so does any
  group with under MIN_GROUP_ARM treated or comparators.
Each is bagged (`bags` bootstrap fits, seeded): the mean is the prediction and the spread across bags
its model uncertainty, which targeting carries into its intervals. Benefit = minus the effect: the
reduction in the probability of an emergency admission over the follow-up if enrolled. The untreated
risk (the comparator-arm outcome model) turns it into a relative benefit that targeting applies to the
current risk score.

Qini (Radcliffe 2007): rank people by predicted benefit; at each depth k the admissions avoided among the
treated of the top k are g(k) = Y_C(k) * N_T(k) / N_C(k) - Y_T(k). In an observational trial comparators
are weighted by the odds of the propensity (ATT weights), so Y_C and N_C are weighted sums. The Qini
coefficient is the area between the curve and the straight line to g(n), per person; the oracle's Qini
ranks the same people by their true benefit (the truth store; evaluation only).
"""

from __future__ import annotations

from typing import Literal

import mlflow.pyfunc
import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from phm.config import StrictModel, load_definitions_folder
from phm.errors import ConfigError
from phm.impactability.effects import att_weights, did_ipw
from phm.models.specs import select_columns
from phm.person.definitions import Name

OUTPUT_COLUMNS = ("benefit", "benefit_sd", "untreated_risk")
MISSING = -1.0
# A group's relative effect is estimated only from at least this many treated and comparators (below it, a
# bootstrap of a DiD on a handful of people is not a variance the shrinkage can use).
MIN_GROUP_ARM = 10


class UpliftGate(StrictModel):
    """A candidate becomes champion if its held-out Qini is at least `min_qini` and it beats the champion's
    Qini on the same held-out people by `min_improvement`."""

    min_qini: float = 0.0
    min_improvement: float = Field(0.0, ge=0.0)


class EffectModifier(StrictModel):
    """A prespecified group whose relative effect may differ: the people whose `feature` is at least `at_least`."""

    name: Name
    feature: str
    at_least: float


class UpliftSpec(StrictModel):
    name: Name
    description: str
    learner: Literal["t", "x", "dr", "proportional"]
    features: list[str] = Field(min_length=1, description="Feature names or glob patterns over gold.features.")
    exclude: list[str] = Field(default_factory=list)
    params: dict = Field(default_factory=dict, description="LightGBM parameters of every model of the learner.")
    bags: int = Field(10, ge=1, le=100, description="Bootstrap fits; their spread is the model uncertainty.")
    effect_modifiers: list[EffectModifier] = Field(
        default_factory=list,
        description="Proportional learner only: groups with their own (shrunk) relative effect; the last met wins.",
    )
    modifier_resamples: int = Field(100, ge=10, le=2000, description="Bootstrap draws of each group's variance.")
    gate: UpliftGate = UpliftGate()

    @model_validator(mode="after")
    def _modifiers_need_the_proportional_learner(self) -> UpliftSpec:
        if self.effect_modifiers and self.learner != "proportional":
            raise ValueError(f"effect_modifiers are for the proportional learner, not the {self.learner}-learner")
        names = [m.name for m in self.effect_modifiers]
        if len(set(names)) < len(names) or "everyone_else" in names:
            raise ValueError(f"effect_modifiers need distinct names other than 'everyone_else': {names}")
        return self

    @property
    def registered_model(self) -> str:
        return f"phm_{self.name}"

    def __setstate__(self, state: dict) -> None:
        """A spec pickled with a model by an earlier release lacks the fields added since: they take their
        defaults (a registered champion must still load after an upgrade)."""
        super().__setstate__(state)
        for name, field in type(self).model_fields.items():
            if name not in self.__dict__:
                self.__dict__[name] = field.get_default(call_default_factory=True)

    @property
    def groups(self) -> list[str]:
        """The proportional learner's groups, as effect_group numbers them: 0 for people in no modifier's group."""
        return ["everyone_else", *(m.name for m in self.effect_modifiers)]

    def select_features(self, available: list[str], path: str) -> list[str]:
        columns = select_columns(self.features, self.exclude, available, path)
        for modifier in self.effect_modifiers:
            if modifier.feature not in columns:
                raise ConfigError(
                    f"config error: {path}: effect_modifiers: {modifier.name}: feature {modifier.feature!r} is not "
                    f"one of the model's features; add it to features (or take it out of exclude)"
                )
        return columns

    def effect_group(self, x: pd.DataFrame) -> np.ndarray:
        """Each person's group: the 1-based number of the last modifier they meet, else 0 (a missing value
        meets none)."""
        group = np.zeros(len(x), dtype=int)
        for number, modifier in enumerate(self.effect_modifiers, start=1):
            group = np.where(x[modifier.feature].to_numpy(dtype=float) >= modifier.at_least, number, group)
        return group


def load_uplift_specs(folder: str) -> dict[str, tuple[UpliftSpec, str]]:
    return load_definitions_folder(folder, UpliftSpec, "uplift model specs", "impactability.models")


def _learner(kind: str, params: dict, seed: int):
    from econml.dr import DRLearner
    from econml.metalearners import TLearner, XLearner
    from lightgbm import LGBMClassifier, LGBMRegressor

    settings = {"verbose": -1, "random_state": seed, "n_jobs": 1, **params}
    if kind == "t":
        return TLearner(models=LGBMRegressor(**settings))
    if kind == "x":
        return XLearner(models=LGBMRegressor(**settings), propensity_model=LGBMClassifier(**settings))
    return DRLearner(
        model_propensity=LGBMClassifier(**settings),
        model_regression=LGBMRegressor(**settings),
        model_final=LGBMRegressor(**settings),
        cv=3,
        random_state=seed,
    )


class BaggedUplift:
    """`bags` learners fit on bootstrap resamples, and untreated-risk models (comparators only) beside them."""

    def __init__(self, spec: UpliftSpec, columns: list[str]):
        self.spec, self.columns = spec, columns
        self.learners: list = []
        self.untreated: list = []

    def fit(
        self,
        x: pd.DataFrame,
        t: np.ndarray,
        y: np.ndarray,
        seed: int,
        prior: np.ndarray | None = None,
        did_propensity: np.ndarray | None = None,
    ) -> BaggedUplift:
        """Fit on features x, treatment t and outcome y; the proportional learner also needs each person's
        outcome over the prior span and the difference-in-differences' propensity (gold.programme_trial)."""
        from lightgbm import LGBMRegressor

        if self.spec.learner == "proportional" and (prior is None or did_propensity is None):
            raise ValueError("the proportional learner needs the prior outcomes and the DiD's propensities")
        rng = np.random.default_rng(seed)
        values, group = self._values(x), self.spec.effect_group(x)
        for bag in range(self.spec.bags):
            rows = rng.integers(0, len(t), len(t)) if self.spec.bags > 1 else np.arange(len(t))
            comparators = rows[t[rows] == 0]
            model = LGBMRegressor(verbose=-1, random_state=seed + bag, n_jobs=1, **self.spec.params)
            self.untreated.append(model.fit(values[comparators], y[comparators]))
            if self.spec.learner == "proportional":
                self.learners.append(shrunk_relative_benefits(
                    t[rows], y[rows], prior[rows], did_propensity[rows], group[rows],
                    groups=len(self.spec.groups), resamples=self.spec.modifier_resamples, seed=seed + bag,
                ))  # fmt: skip
                continue
            learner = _learner(self.spec.learner, self.spec.params, seed + bag)
            learner.fit(y[rows], t[rows], X=values[rows])
            self.learners.append(learner)
        return self

    def _values(self, x: pd.DataFrame) -> np.ndarray:
        """The feature matrix; missing values (e.g. no BP ever recorded) as MISSING, since EconML's
        cross-fitting refuses NaN (every feature of gold.features is a count, value or score >= 0)."""
        return np.nan_to_num(x[self.columns].to_numpy(dtype=float), nan=MISSING)

    def predict(self, x: pd.DataFrame) -> pd.DataFrame:
        values = self._values(x)
        risks = np.column_stack([np.clip(m.predict(values), 0.0, 1.0) for m in self.untreated])
        if self.spec.learner == "proportional":  # each bag: its group's relative benefit x its untreated risk
            benefits = risks * np.column_stack(self.learners)[self.spec.effect_group(x)]
        else:
            benefits = np.column_stack([-np.ravel(learner.effect(values)) for learner in self.learners])
        return pd.DataFrame(
            {
                "benefit": benefits.mean(axis=1),
                "benefit_sd": benefits.std(axis=1, ddof=1) if benefits.shape[1] > 1 else np.zeros(len(values)),
                "untreated_risk": np.clip(risks.mean(axis=1), 1e-4, 1.0),
            },
            index=x.index,
        )

    def relative_benefits(self) -> dict[str, float]:
        """The proportional learner's relative benefit per group (mean over the bags)."""
        if self.spec.learner != "proportional":
            return {}
        return dict(zip(self.spec.groups, np.mean(np.column_stack(self.learners), axis=1).tolist(), strict=True))


def relative_benefit(t: np.ndarray, y: np.ndarray, prior: np.ndarray, propensity: np.ndarray) -> float:
    """The relative reduction in the outcome among the treated: minus the difference-in-differences effect
    on ATT weights (phm.impactability.effects, did_ipw) over the treated's counterfactual rate (their rate
    less that effect). Negative when the treated fared worse; 0 when there is no counterfactual rate."""
    if (t == 1).sum() == 0 or (t == 0).sum() == 0:
        raise ValueError("the proportional learner needs treated and comparators in every bag")
    return _relative(t, y, prior, att_weights(t, propensity))


def _relative(t: np.ndarray, y: np.ndarray, prior: np.ndarray, w: np.ndarray) -> float:
    effect = did_ipw(t, y, prior, w)
    counterfactual = y[t == 1].mean() - effect
    return float(-effect / counterfactual) if counterfactual > 0 else 0.0


def shrunk_relative_benefits(
    t: np.ndarray,
    y: np.ndarray,
    prior: np.ndarray,
    propensity: np.ndarray,
    group: np.ndarray,
    groups: int,
    resamples: int,
    seed: int,
) -> np.ndarray:
    """The relative benefit of each group 0..groups-1, shrunk toward everyone's by empirical Bayes (module
    docstring); the groups' variances by a bootstrap stratified by arm. With one group: everyone's."""
    overall = relative_benefit(t, y, prior, propensity)
    result = np.full(groups, overall)
    w = att_weights(t, propensity)
    rng = np.random.default_rng(seed)
    estimates, variances, members = [], [], []
    for g in range(groups):
        treated, comparators = np.flatnonzero((group == g) & (t == 1)), np.flatnonzero((group == g) & (t == 0))
        if groups == 1 or min(len(treated), len(comparators)) < MIN_GROUP_ARM:
            continue
        rows = np.concatenate([treated, comparators])
        draws = []
        for _ in range(resamples):
            drawn = np.concatenate([rng.choice(treated, len(treated)), rng.choice(comparators, len(comparators))])
            draws.append(_relative(t[drawn], y[drawn], prior[drawn], w[drawn]))
        estimates.append(_relative(t[rows], y[rows], prior[rows], w[rows]))
        variances.append(np.var(draws, ddof=1))
        members.append(g)
    if len(members) < 2:  # one group's estimate alone says nothing of the spread between groups
        return result
    spread = between_group_variance(np.asarray(estimates), np.asarray(variances))
    for g, estimate, variance in zip(members, estimates, variances, strict=True):
        kept = spread / (spread + variance) if spread + variance > 0 else 0.0
        result[g] = overall + kept * (estimate - overall)
    return result


class UpliftModel(mlflow.pyfunc.PythonModel):
    """The bagged model as an MLflow pyfunc: predict returns a DataFrame of OUTPUT_COLUMNS."""

    def __init__(self, fitted: BaggedUplift):
        self.fitted = fitted

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.fitted.predict(model_input)


def trial_outcomes(part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(treatment, outcome, ATT weight) of programme trial people, what a Qini is measured on."""
    t = part["treated"].to_numpy(dtype=int)
    return t, part["outcome"].to_numpy(dtype=float), att_weights(t, part["propensity"].to_numpy(dtype=float))


def qini_curve(score: np.ndarray, t: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of people, admissions avoided among the treated of the top share), best predicted benefit first."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    t, y, w = np.asarray(t)[order], np.asarray(y, dtype=float)[order], np.asarray(w, dtype=float)[order]
    n_t, y_t = np.cumsum(t == 1), np.cumsum(np.where(t == 1, y, 0.0))
    n_c, y_c = np.cumsum(np.where(t == 0, w, 0.0)), np.cumsum(np.where(t == 0, w * y, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(n_c > 0, y_c * n_t / n_c, 0.0) - y_t
    share = np.arange(1, len(t) + 1) / len(t)
    return np.concatenate([[0.0], share]), np.concatenate([[0.0], gain])


def qini_coefficient(score: np.ndarray, t: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Area between the Qini curve and the random-targeting line, per person (admissions avoided per person
    targeted, averaged over every depth)."""
    share, gain = qini_curve(score, t, y, w)
    return float(np.trapezoid(gain - share * gain[-1], share)) / len(t)


def expected_qini(score: np.ndarray, true_benefit: np.ndarray) -> float:
    """The Qini area with each person's true benefit in place of observed outcomes (truth store only)."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    gain = np.concatenate([[0.0], np.cumsum(np.asarray(true_benefit, dtype=float)[order])])
    share = np.arange(len(gain)) / (len(gain) - 1)
    return float(np.trapezoid(gain - share * gain[-1], share)) / (len(gain) - 1)


def qini_standard_error(
    score: np.ndarray, t: np.ndarray, y: np.ndarray, w: np.ndarray, resamples: int = 200, seed: int = 0
) -> float:
    """The bootstrap standard error of the Qini coefficient over the people (resampled with replacement)."""
    rng = np.random.default_rng(seed)
    score, t, y, w = (np.asarray(a) for a in (score, t, y, w))
    draws = []
    for _ in range(resamples):
        rows = rng.integers(0, len(t), len(t))
        draws.append(qini_coefficient(score[rows], t[rows], y[rows], w[rows]))
    return float(np.std(draws, ddof=1))


def between_group_variance(estimates: np.ndarray, variances: np.ndarray) -> float:
    """DerSimonian-Laird tau^2 (Control Clin Trials 1986;7:177): the spread of the groups' true values beyond
    their noise, from Cochran's Q on inverse-variance weights; 0 when Q is no larger than its degrees of freedom."""
    weights = 1.0 / np.maximum(variances, 1e-12)
    pooled = float(np.sum(weights * estimates) / np.sum(weights))
    q = float(np.sum(weights * (estimates - pooled) ** 2))
    scale = float(np.sum(weights) - np.sum(weights**2) / np.sum(weights))
    return max(0.0, (q - (len(estimates) - 1)) / scale) if scale > 0 else 0.0


def select_uplift_model(
    benefits: dict[str, np.ndarray],
    t: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    preferred: str | None,
    min_z: float,
    resamples: int,
    seed: int,
) -> tuple[str, dict[str, float], str]:
    """(the model to target with, every model's held-out Qini, why) from each model's predicted benefits of
    the same held-out people.

    The preferred (prespecified) model is kept unless a challenger's Qini beats it by at least `min_z`
    standard errors of their difference; both Qinis are taken on the same bootstrap resamples of the people,
    so the outcome noise they share cancels from the difference (at 100k people each Qini's own SE is as
    large as the Qinis). Among challengers that clear it, the largest difference wins. Without a preferred
    model (or if it has no champion) the best held-out Qini wins, as the gate compares versions.
    """
    qinis = {name: qini_coefficient(b, t, y, w) for name, b in benefits.items()}
    if preferred not in benefits:
        best = max(qinis, key=lambda name: qinis[name])
        why = "no preferred uplift model" if preferred is None else f"the preferred {preferred} has no champion"
        return best, qinis, f"{why}: the best held-out Qini ({qinis[best]:.4f})"
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in benefits if name != preferred}
    for _ in range(resamples):
        rows = rng.integers(0, len(t), len(t))
        reference = qini_coefficient(benefits[preferred][rows], t[rows], y[rows], w[rows])
        for name in draws:
            draws[name].append(qini_coefficient(benefits[name][rows], t[rows], y[rows], w[rows]) - reference)
    scored = []
    for name, values in draws.items():
        difference, se = qinis[name] - qinis[preferred], float(np.std(values, ddof=1))
        scored.append((difference / se if se > 0 else 0.0, difference, name))
    winners = [s for s in scored if s[0] >= min_z]
    if winners:
        z, difference, name = max(winners, key=lambda s: s[1])
        why = f"{name}'s held-out Qini beats the preferred {preferred}'s by {difference:+.4f} ({z:.2f} SE)"
        return name, qinis, why
    closest = max(scored, key=lambda s: s[0], default=None)
    versus = f" (closest: {closest[2]} {closest[1]:+.4f}, {closest[0]:.2f} SE)" if closest else ""
    return preferred, qinis, f"the preferred model: no challenger beats its held-out Qini by {min_z:g} SE{versus}"
