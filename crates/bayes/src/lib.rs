//! # metareason-bayes
//!
//! The Bayesian building blocks of the meta level, all conjugate or closed
//! form so that every update is cheap, exact enough, and explainable:
//!
//! - [`Beta`]: success probabilities (a strategy's success rate in a task
//!   region), with quantiles and Thompson draws;
//! - [`Dirichlet`]: distributions over several outcomes;
//! - [`BetaBinomial`]: the predictive distribution of successes;
//! - [`LogisticRegression`]: a Gaussian-prior logistic regression updated
//!   online, one observation at a time, by an exact one-point Laplace step
//!   (used for calibration and for step-reward weights).
//!
//! Every random draw takes an explicit RNG, so results are reproducible from
//! a seed ([`seeded`]).
//!
//! ```
//! use metareason_bayes::{seeded, Beta};
//!
//! let mut b = Beta::uniform();
//! b.observe(7, 3);
//! assert!((b.mean() - 8.0 / 12.0).abs() < 1e-12);
//! let (lo, hi) = b.interval(0.9);
//! assert!(lo < b.mean() && b.mean() < hi);
//! let draw = b.sample(&mut seeded(1));
//! assert!((0.0..=1.0).contains(&draw));
//! ```
#![deny(missing_docs)]

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, StandardNormal};
use serde::{Deserialize, Serialize};
use statrs::function::beta::ln_beta;

/// A reproducible RNG from a seed.
pub fn seeded(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Parameters outside their domain.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct DomainError(pub String);

/// Beta(a, b) over a probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Beta {
    /// Pseudo-count of successes (> 0).
    pub a: f64,
    /// Pseudo-count of failures (> 0).
    pub b: f64,
}

impl Beta {
    /// Beta(a, b); both must be positive and finite.
    pub fn new(a: f64, b: f64) -> Result<Self, DomainError> {
        if !(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite()) {
            return Err(DomainError(format!("Beta needs a, b > 0, got ({a}, {b})")));
        }
        Ok(Self { a, b })
    }

    /// Beta(1, 1).
    pub fn uniform() -> Self {
        Self { a: 1.0, b: 1.0 }
    }

    /// Adds observed successes and failures.
    pub fn observe(&mut self, successes: u64, failures: u64) {
        self.a += successes as f64;
        self.b += failures as f64;
    }

    /// Adds fractional evidence (similarity-weighted outcomes).
    pub fn observe_weighted(&mut self, success_weight: f64, failure_weight: f64) {
        self.a += success_weight.max(0.0);
        self.b += failure_weight.max(0.0);
    }

    /// Posterior mean a / (a + b).
    pub fn mean(&self) -> f64 {
        self.a / (self.a + self.b)
    }

    /// Variance ab / ((a+b)^2 (a+b+1)).
    pub fn variance(&self) -> f64 {
        let s = self.a + self.b;
        self.a * self.b / (s * s * (s + 1.0))
    }

    /// The total pseudo-count a + b (how much evidence there is).
    pub fn strength(&self) -> f64 {
        self.a + self.b
    }

    /// The q-quantile (inverse CDF), by bisection on the exact CDF to 1e-13.
    pub fn quantile(&self, q: f64) -> f64 {
        let q = q.clamp(0.0, 1.0);
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if self.cdf(mid) < q {
                lo = mid;
            } else {
                hi = mid;
            }
            if hi - lo < 1e-13 {
                break;
            }
        }
        0.5 * (lo + hi)
    }

    /// P(X ≤ x).
    pub fn cdf(&self, x: f64) -> f64 {
        use statrs::distribution::ContinuousCDF;
        let d = statrs::distribution::Beta::new(self.a, self.b).expect("valid parameters");
        d.cdf(x.clamp(0.0, 1.0))
    }

    /// The central interval holding `mass` of the probability.
    pub fn interval(&self, mass: f64) -> (f64, f64) {
        let tail = (1.0 - mass.clamp(0.0, 1.0)) / 2.0;
        (self.quantile(tail), self.quantile(1.0 - tail))
    }

    /// A draw (for Thompson sampling).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let x = Gamma::new(self.a, 1.0).expect("a > 0").sample(rng);
        let y = Gamma::new(self.b, 1.0).expect("b > 0").sample(rng);
        if x + y == 0.0 {
            self.mean()
        } else {
            x / (x + y)
        }
    }

    /// Shrinks toward `prior` mean with `strength` pseudo-observations:
    /// partial pooling of a sparse local estimate toward a global one.
    pub fn pooled_with(&self, prior: &Beta, strength: f64) -> Beta {
        let m = prior.mean();
        Beta {
            a: self.a + strength * m,
            b: self.b + strength * (1.0 - m),
        }
    }
}

/// Dirichlet(alpha) over a distribution on K outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dirichlet {
    /// Concentrations (> 0), one per outcome.
    pub alpha: Vec<f64>,
}

impl Dirichlet {
    /// Dirichlet(alpha); every entry positive.
    pub fn new(alpha: Vec<f64>) -> Result<Self, DomainError> {
        if alpha.is_empty() || alpha.iter().any(|&a| !(a > 0.0 && a.is_finite())) {
            return Err(DomainError(format!(
                "Dirichlet needs positive concentrations, got {alpha:?}"
            )));
        }
        Ok(Self { alpha })
    }

    /// Symmetric Dirichlet(c, ..., c) over k outcomes.
    pub fn symmetric(k: usize, c: f64) -> Self {
        Self {
            alpha: vec![c; k.max(1)],
        }
    }

    /// Adds observed counts (one per outcome).
    pub fn observe(&mut self, counts: &[u64]) {
        for (a, &c) in self.alpha.iter_mut().zip(counts) {
            *a += c as f64;
        }
    }

    /// Posterior mean of each probability.
    pub fn mean(&self) -> Vec<f64> {
        let s: f64 = self.alpha.iter().sum();
        self.alpha.iter().map(|a| a / s).collect()
    }

    /// Variance of each probability.
    pub fn variance(&self) -> Vec<f64> {
        let s: f64 = self.alpha.iter().sum();
        self.alpha
            .iter()
            .map(|a| a * (s - a) / (s * s * (s + 1.0)))
            .collect()
    }

    /// A draw.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        let g: Vec<f64> = self
            .alpha
            .iter()
            .map(|&a| Gamma::new(a, 1.0).expect("a > 0").sample(rng))
            .collect();
        let s: f64 = g.iter().sum();
        if s == 0.0 {
            return self.mean();
        }
        g.into_iter().map(|x| x / s).collect()
    }

    /// P(outcome `i` has the largest probability), from `draws` draws.
    pub fn prob_largest<R: Rng + ?Sized>(&self, i: usize, draws: usize, rng: &mut R) -> f64 {
        let mut wins = 0;
        for _ in 0..draws {
            let x = self.sample(rng);
            if x.iter().enumerate().all(|(j, &v)| j == i || x[i] > v) {
                wins += 1;
            }
        }
        wins as f64 / draws.max(1) as f64
    }
}

/// Beta-Binomial(n, a, b): successes in n trials when the success rate is Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BetaBinomial {
    /// Trials.
    pub n: u64,
    /// The rate's prior.
    pub rate: Beta,
}

impl BetaBinomial {
    /// P(K = k) = C(n, k) B(k + a, n - k + b) / B(a, b).
    pub fn pmf(&self, k: u64) -> f64 {
        if k > self.n {
            return 0.0;
        }
        let (n, a, b) = (self.n as f64, self.rate.a, self.rate.b);
        let k = k as f64;
        let ln_choose = ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0);
        (ln_choose + ln_beta(k + a, n - k + b) - ln_beta(a, b)).exp()
    }

    /// Mean n a / (a + b).
    pub fn mean(&self) -> f64 {
        self.n as f64 * self.rate.mean()
    }

    /// Variance n a b (a + b + n) / ((a + b)^2 (a + b + 1)).
    pub fn variance(&self) -> f64 {
        let (n, a, b) = (self.n as f64, self.rate.a, self.rate.b);
        n * a * b * (a + b + n) / ((a + b).powi(2) * (a + b + 1.0))
    }
}

fn ln_gamma(x: f64) -> f64 {
    statrs::function::gamma::ln_gamma(x)
}

/// The log-odds of a probability, with `p` first clamped to
/// `[eps, 1 - eps]` so that a certainty stays a finite piece of evidence
/// (each caller's `eps` is part of what its fitted weights were fitted on).
pub fn logit(p: f64, eps: f64) -> f64 {
    let p = p.clamp(eps, 1.0 - eps);
    (p / (1.0 - p)).ln()
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Logistic regression with a Gaussian posterior N(mean, cov) over its
/// weights, updated online by an exact Laplace step per observation.
///
/// For one observation the likelihood depends on the weights only through
/// x·w, so the new mode lies on the line mean + t·cov·x; a scalar Newton
/// solve finds t, and the covariance is updated by Sherman–Morrison with the
/// curvature at the new mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticRegression {
    /// Posterior mean of the weights (the first feature is usually a constant 1).
    pub mean: Vec<f64>,
    /// Posterior covariance, row-major d × d.
    pub cov: Vec<f64>,
}

impl LogisticRegression {
    /// Prior N(mean, variance · I).
    pub fn new(mean: Vec<f64>, variance: f64) -> Self {
        let d = mean.len();
        let mut cov = vec![0.0; d * d];
        for i in 0..d {
            cov[i * d + i] = variance;
        }
        Self { mean, cov }
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    fn cov_times(&self, x: &[f64]) -> Vec<f64> {
        let d = self.dim();
        (0..d)
            .map(|i| (0..d).map(|j| self.cov[i * d + j] * x[j]).sum())
            .collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Mean and variance of the logit x·w under the posterior.
    pub fn logit(&self, x: &[f64]) -> (f64, f64) {
        let sx = self.cov_times(x);
        (Self::dot(&self.mean, x), Self::dot(x, &sx).max(0.0))
    }

    /// P(y = 1 | x) integrated over the posterior (probit approximation:
    /// σ(μ / sqrt(1 + π s² / 8))).
    pub fn predict(&self, x: &[f64]) -> f64 {
        let (mu, s2) = self.logit(x);
        sigmoid(mu / (1.0 + std::f64::consts::PI * s2 / 8.0).sqrt())
    }

    /// P(y = 1 | x) at the posterior mean (no uncertainty).
    pub fn predict_at_mean(&self, x: &[f64]) -> f64 {
        sigmoid(Self::dot(&self.mean, x))
    }

    /// Updates on one observation `y` (true for 1) at features `x`, with
    /// weight `w` (1 for an ordinary observation).
    pub fn observe(&mut self, x: &[f64], y: bool, w: f64) {
        assert_eq!(x.len(), self.dim(), "feature length");
        let target = if y { 1.0 } else { 0.0 };
        let sx = self.cov_times(x);
        let v = Self::dot(x, &sx).max(1e-12);
        let z0 = Self::dot(&self.mean, x);
        // Mode along mean + t·S·x: solve t = w (y - σ(z0 + t v)) by Newton.
        let mut t = 0.0;
        for _ in 0..50 {
            let p = sigmoid(z0 + t * v);
            let g = t - w * (target - p);
            let h = 1.0 + w * p * (1.0 - p) * v;
            let step = g / h;
            t -= step;
            if step.abs() < 1e-12 {
                break;
            }
        }
        for (m, s) in self.mean.iter_mut().zip(&sx) {
            *m += t * s;
        }
        let p = sigmoid(z0 + t * v);
        let c = w * p * (1.0 - p);
        let d = self.dim();
        let k = c / (1.0 + c * v);
        for i in 0..d {
            for j in 0..d {
                self.cov[i * d + j] -= k * sx[i] * sx[j];
            }
        }
    }

    /// The Laplace posterior of a batch of observations under the prior
    /// N(0, `prior_variance` · I): the mode by Newton's method (iteratively
    /// reweighted least squares), the covariance the inverse Hessian there.
    /// Exact where the online update is order-dependent; used to fit shipped
    /// models from labelled data.
    pub fn fit(xs: &[Vec<f64>], ys: &[bool], prior_variance: f64) -> Result<Self, DomainError> {
        Self::fit_weighted(xs, ys, &vec![1.0; xs.len()], prior_variance)
    }

    /// [`Self::fit`] with a weight per observation (an observation of
    /// weight 2 counts as two; used to balance classes).
    pub fn fit_weighted(
        xs: &[Vec<f64>],
        ys: &[bool],
        weights: &[f64],
        prior_variance: f64,
    ) -> Result<Self, DomainError> {
        let Some(d) = xs.first().map(Vec::len) else {
            return Err(DomainError("no observations to fit".into()));
        };
        if weights.len() != xs.len() || weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(DomainError(
                "every observation needs a finite, non-negative weight".into(),
            ));
        }
        Self::check_batch(xs, ys, d, prior_variance)?;
        if xs.len() < d {
            return Self::fit_dual(xs, ys, weights, prior_variance);
        }
        Self::fit_primal(xs, ys, weights, &vec![0.0; d], prior_variance)
    }

    /// The Laplace posterior of a batch of observations under the prior
    /// N(`prior_mean`, `prior_variance` · I): how an earlier model's weights
    /// become the prior of a refit, so that what the new data does not
    /// speak to (a feature that never varies in it) keeps the earlier
    /// weight instead of falling to zero.
    pub fn fit_around(
        xs: &[Vec<f64>],
        ys: &[bool],
        prior_mean: &[f64],
        prior_variance: f64,
    ) -> Result<Self, DomainError> {
        if xs.is_empty() {
            return Err(DomainError("no observations to fit".into()));
        }
        Self::check_batch(xs, ys, prior_mean.len(), prior_variance)?;
        if prior_mean.iter().any(|m| !m.is_finite()) {
            return Err(DomainError("the prior weights must be finite".into()));
        }
        Self::fit_primal(xs, ys, &vec![1.0; xs.len()], prior_mean, prior_variance)
    }

    /// That every observation has `d` features and a label, and the prior
    /// variance is positive.
    fn check_batch(
        xs: &[Vec<f64>],
        ys: &[bool],
        d: usize,
        prior_variance: f64,
    ) -> Result<(), DomainError> {
        if xs.len() != ys.len() || xs.iter().any(|x| x.len() != d) {
            return Err(DomainError(
                "every observation needs the same number of features (one per prior weight) \
                 and a label"
                    .into(),
            ));
        }
        if prior_variance.is_nan() || prior_variance <= 0.0 {
            return Err(DomainError("the prior variance must be positive".into()));
        }
        Ok(())
    }

    /// Newton's method over the d weights: O(n d² + d³) per step.
    fn fit_primal(
        xs: &[Vec<f64>],
        ys: &[bool],
        weights: &[f64],
        prior_mean: &[f64],
        prior_variance: f64,
    ) -> Result<Self, DomainError> {
        let d = xs[0].len();
        // The negative log posterior, for the step-halving below.
        let objective = |w: &[f64]| -> f64 {
            let prior: f64 = w
                .iter()
                .zip(prior_mean)
                .map(|(wi, mi)| (wi - mi).powi(2))
                .sum::<f64>()
                / (2.0 * prior_variance);
            let data: f64 = xs
                .iter()
                .zip(ys)
                .zip(weights)
                .map(|((x, &y), &weight)| {
                    // -log σ(±z), computed stably.
                    let z = Self::dot(w, x) * if y { 1.0 } else { -1.0 };
                    weight
                        * (if z > 0.0 {
                            (-z).exp().ln_1p()
                        } else {
                            -z + z.exp().ln_1p()
                        })
                })
                .sum();
            prior + data
        };
        let mut w = prior_mean.to_vec();
        let mut hessian = vec![0.0; d * d];
        for _ in 0..100 {
            // Gradient and Hessian of the negative log posterior.
            let mut g: Vec<f64> = w
                .iter()
                .zip(prior_mean)
                .map(|(wi, mi)| (wi - mi) / prior_variance)
                .collect();
            hessian.iter_mut().for_each(|h| *h = 0.0);
            for i in 0..d {
                hessian[i * d + i] = 1.0 / prior_variance;
            }
            for ((x, &y), &weight) in xs.iter().zip(ys).zip(weights) {
                let p = sigmoid(Self::dot(&w, x));
                let r = weight * (p - if y { 1.0 } else { 0.0 });
                let c = weight * p * (1.0 - p);
                for i in 0..d {
                    g[i] += r * x[i];
                    let cx = c * x[i];
                    // The Hessian is symmetric: fill one triangle, mirror below.
                    for j in i..d {
                        hessian[i * d + j] += cx * x[j];
                    }
                }
            }
            for i in 0..d {
                for j in 0..i {
                    hessian[i * d + j] = hessian[j * d + i];
                }
            }
            let step = solve_spd(&hessian, &g, d)
                .ok_or_else(|| DomainError("the Hessian is not positive definite".into()))?;
            // A full Newton step can overshoot where the start saturates
            // (a prior mean that predicts 0 or 1 with a flat Hessian):
            // halve it until the objective does not rise.
            let before = objective(&w);
            let mut scale = 1.0;
            let mut next: Vec<f64> = w.iter().zip(&step).map(|(wi, si)| wi - si).collect();
            while objective(&next) > before + 1e-12 && scale > 1e-6 {
                scale /= 2.0;
                next = w
                    .iter()
                    .zip(&step)
                    .map(|(wi, si)| wi - scale * si)
                    .collect();
            }
            let size: f64 = scale * step.iter().map(|s| s * s).sum::<f64>().sqrt();
            w = next;
            if size < 1e-10 {
                break;
            }
        }
        // The covariance at the mode: the Hessian's inverse, column by column.
        let l = cholesky_strict(&hessian, d)
            .ok_or_else(|| DomainError("the Hessian is not positive definite".into()))?;
        let mut cov = vec![0.0; d * d];
        for j in 0..d {
            let mut e = vec![0.0; d];
            e[j] = 1.0;
            let col = solve_factored(&l, &e, d);
            for i in 0..d {
                cov[i * d + j] = col[i];
            }
        }
        Ok(Self { mean: w, cov })
    }

    /// The same posterior found through the n logits of the observations
    /// (the weight-space prior N(0, v I) is a linear-kernel Gaussian process
    /// over them, K = v X Xᵀ; Newton's method as in Rasmussen and Williams,
    /// algorithm 3.1): O(n² d + n³) per step, so with fewer observations
    /// than features (a probe over a model's 1536 dimensions fitted on a
    /// few hundred questions) it is far cheaper. The mean is v Xᵀ a at the
    /// mode; the covariance v I − v² Xᵀ W^½ B⁻¹ W^½ X with
    /// B = I + W^½ K W^½ (Woodbury).
    fn fit_dual(
        xs: &[Vec<f64>],
        ys: &[bool],
        weights: &[f64],
        prior_variance: f64,
    ) -> Result<Self, DomainError> {
        let (n, d) = (xs.len(), xs[0].len());
        let v = prior_variance;
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let kij = v * Self::dot(&xs[i], &xs[j]);
                k[i * n + j] = kij;
                k[j * n + i] = kij;
            }
        }
        let k_times = |a: &[f64]| -> Vec<f64> {
            (0..n)
                .map(|i| (0..n).map(|j| k[i * n + j] * a[j]).sum())
                .collect()
        };
        let target = |i: usize| if ys[i] { 1.0 } else { 0.0 };
        // W^½ and the Cholesky factor of B at latent values f.
        let factor = |f: &[f64]| -> Result<(Vec<f64>, Vec<f64>), DomainError> {
            let sw: Vec<f64> = (0..n)
                .map(|i| {
                    let p = sigmoid(f[i]);
                    (weights[i] * p * (1.0 - p)).sqrt()
                })
                .collect();
            let mut b = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    b[i * n + j] = sw[i] * k[i * n + j] * sw[j] + if i == j { 1.0 } else { 0.0 };
                }
            }
            let l = cholesky_strict(&b, n)
                .ok_or_else(|| DomainError("the Hessian is not positive definite".into()))?;
            Ok((sw, l))
        };
        let mut f = vec![0.0; n];
        let mut a = vec![0.0; n];
        for _ in 0..100 {
            let (sw, l) = factor(&f)?;
            let b: Vec<f64> = (0..n)
                .map(|i| {
                    let p = sigmoid(f[i]);
                    sw[i] * sw[i] * f[i] + weights[i] * (target(i) - p)
                })
                .collect();
            let kb = k_times(&b);
            let inner = solve_factored(&l, &(0..n).map(|i| sw[i] * kb[i]).collect::<Vec<_>>(), n);
            a = (0..n).map(|i| b[i] - sw[i] * inner[i]).collect();
            let next = k_times(&a);
            let change = next
                .iter()
                .zip(&f)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            f = next;
            if change < 1e-10 {
                break;
            }
        }
        let mean: Vec<f64> = (0..d)
            .map(|c| v * (0..n).map(|i| xs[i][c] * a[i]).sum::<f64>())
            .collect();
        // V = L⁻¹ W^½ X v (n × d), by forward substitution per column;
        // then the covariance v I − Vᵀ V.
        let (sw, l) = factor(&f)?;
        let mut vm = vec![0.0; n * d];
        for c in 0..d {
            for i in 0..n {
                let s: f64 = (0..i).map(|m| l[i * n + m] * vm[m * d + c]).sum();
                vm[i * d + c] = (sw[i] * xs[i][c] * v - s) / l[i * n + i];
            }
        }
        let mut cov = vec![0.0; d * d];
        for r in 0..d {
            for c in r..d {
                let s: f64 = (0..n).map(|i| vm[i * d + r] * vm[i * d + c]).sum();
                let value = if r == c { v - s } else { -s };
                cov[r * d + c] = value;
                cov[c * d + r] = value;
            }
        }
        Ok(Self { mean, cov })
    }

    /// A draw of the weights (for Thompson sampling), by Cholesky of the covariance.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        let d = self.dim();
        let l = cholesky(&self.cov, d);
        let z: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        (0..d)
            .map(|i| self.mean[i] + (0..=i).map(|j| l[i * d + j] * z[j]).sum::<f64>())
            .collect()
    }
}

/// Solves A x = b for a symmetric positive definite A by Cholesky; `None`
/// when A is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], d: usize) -> Option<Vec<f64>> {
    Some(solve_factored(&cholesky_strict(a, d)?, b, d))
}

/// Lower Cholesky factor of a symmetric positive definite matrix; `None`
/// when it is not positive definite.
fn cholesky_strict(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = a[i * d + i] - s;
                if v <= 0.0 {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = (a[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// Solves L Lᵀ x = b for a lower Cholesky factor L.
fn solve_factored(l: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut y = vec![0.0; d];
    for i in 0..d {
        y[i] = (b[i] - (0..i).map(|k| l[i * d + k] * y[k]).sum::<f64>()) / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        x[i] = (y[i] - (i + 1..d).map(|k| l[k * d + i] * x[k]).sum::<f64>()) / l[i * d + i];
    }
    x
}

/// Lower Cholesky factor of a symmetric positive semi-definite matrix
/// (tiny negative pivots from rounding are clamped to zero).
fn cholesky(a: &[f64], d: usize) -> Vec<f64> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                l[i * d + i] = (a[i * d + i] - s).max(0.0).sqrt();
            } else if l[j * d + j] > 0.0 {
                l[i * d + j] = (a[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    l
}

/// Thompson sampling: one draw per arm, the arm with the largest draw.
pub fn thompson<R: Rng + ?Sized>(arms: &[Beta], rng: &mut R) -> Option<usize> {
    arms.iter()
        .map(|b| b.sample(rng))
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logit_inverts_sigmoid_and_stays_finite_at_certainty() {
        for p in [0.01, 0.3, 0.5, 0.9] {
            assert!((sigmoid(logit(p, 1e-4)) - p).abs() < 1e-12);
        }
        assert!((logit(1.0, 1e-3) - (0.999f64 / 0.001).ln()).abs() < 1e-9);
        assert!((logit(0.0, 1e-4) + (0.9999f64 / 0.0001).ln()).abs() < 1e-9);
    }

    #[test]
    fn beta_moments_and_quantiles_match_known_values() {
        let b = Beta::new(2.0, 3.0).unwrap();
        assert!((b.mean() - 0.4).abs() < 1e-12);
        assert!((b.variance() - 0.04).abs() < 1e-12);
        assert!((Beta::new(2.0, 2.0).unwrap().quantile(0.5) - 0.5).abs() < 1e-9);
        // Beta(1, 1) is uniform: the 0.9-quantile is 0.9.
        assert!((Beta::uniform().quantile(0.9) - 0.9).abs() < 1e-9);
        // Beta(2, 1) has CDF x^2: the median is sqrt(1/2).
        assert!((Beta::new(2.0, 1.0).unwrap().quantile(0.5) - 0.5f64.sqrt()).abs() < 1e-9);
        assert!(Beta::new(0.0, 1.0).is_err());
    }

    #[test]
    fn beta_draws_are_seeded_and_centred() {
        let b = Beta::new(30.0, 10.0).unwrap();
        let draw = |seed| {
            let mut r = seeded(seed);
            (0..2000).map(|_| b.sample(&mut r)).collect::<Vec<_>>()
        };
        assert_eq!(draw(4), draw(4));
        let mean = draw(4).iter().sum::<f64>() / 2000.0;
        assert!((mean - 0.75).abs() < 0.01, "{mean}");
    }

    #[test]
    fn pooling_shrinks_sparse_estimates_toward_the_prior() {
        let mut local = Beta::uniform();
        local.observe(2, 0);
        let global = Beta::new(30.0, 70.0).unwrap();
        let pooled = local.pooled_with(&global, 10.0);
        assert!(pooled.mean() < local.mean() && pooled.mean() > global.mean());
        assert!((pooled.a - (3.0 + 3.0)).abs() < 1e-12);
    }

    #[test]
    fn dirichlet_moments_and_updates() {
        let mut d = Dirichlet::symmetric(3, 1.0);
        d.observe(&[2, 0, 1]);
        let m = d.mean();
        assert!((m[0] - 0.5).abs() < 1e-12 && (m[1] - 1.0 / 6.0).abs() < 1e-12);
        let v = d.variance();
        // alpha = (3, 1, 2), s = 6: var_0 = 3 * 3 / (36 * 7)
        assert!((v[0] - 9.0 / 252.0).abs() < 1e-12);
        let x = d.sample(&mut seeded(2));
        assert!((x.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(Dirichlet::new(vec![1.0, 0.0]).is_err());
        let p = d.prob_largest(0, 4000, &mut seeded(3));
        assert!(p > 0.5 && p < 0.95, "{p}");
    }

    #[test]
    fn beta_binomial_matches_closed_forms() {
        // Beta(1,1) prior: every count in 0..=n equally likely.
        let bb = BetaBinomial {
            n: 2,
            rate: Beta::uniform(),
        };
        for k in 0..=2 {
            assert!((bb.pmf(k) - 1.0 / 3.0).abs() < 1e-12);
        }
        let bb = BetaBinomial {
            n: 10,
            rate: Beta::new(2.0, 3.0).unwrap(),
        };
        let total: f64 = (0..=10).map(|k| bb.pmf(k)).sum();
        assert!((total - 1.0).abs() < 1e-10);
        let mean: f64 = (0..=10).map(|k| k as f64 * bb.pmf(k)).sum();
        assert!((mean - bb.mean()).abs() < 1e-10);
        let var: f64 = (0..=10)
            .map(|k| (k as f64 - mean).powi(2) * bb.pmf(k))
            .sum();
        assert!((var - bb.variance()).abs() < 1e-9);
        assert_eq!(bb.pmf(11), 0.0);
    }

    #[test]
    fn one_logistic_update_is_the_exact_one_point_laplace_step() {
        // d = 1, prior N(0, 1), observe y = 1 at x = 1: the mode solves
        // w = 1 - σ(w), and the posterior variance is 1 / (1 + σ(w)(1 - σ(w))).
        let mut m = LogisticRegression::new(vec![0.0], 1.0);
        m.observe(&[1.0], true, 1.0);
        let w = m.mean[0];
        assert!((w - (1.0 - sigmoid(w))).abs() < 1e-10, "{w}");
        let p = sigmoid(w);
        assert!((m.cov[0] - 1.0 / (1.0 + p * (1.0 - p))).abs() < 1e-10);
    }

    #[test]
    fn online_logistic_regression_recovers_the_generating_weights() {
        let truth = [-0.5, 2.0];
        let mut rng = seeded(11);
        let mut m = LogisticRegression::new(vec![0.0, 0.0], 10.0);
        for _ in 0..4000 {
            let x = [1.0, rng.gen::<f64>() * 4.0 - 2.0];
            let p = sigmoid(truth[0] * x[0] + truth[1] * x[1]);
            m.observe(&x, rng.gen::<f64>() < p, 1.0);
        }
        assert!((m.mean[0] - truth[0]).abs() < 0.2, "{:?}", m.mean);
        assert!((m.mean[1] - truth[1]).abs() < 0.25, "{:?}", m.mean);
        // Uncertainty shrank and the covariance stays symmetric.
        assert!(m.cov[0] < 0.05 && (m.cov[1] - m.cov[2]).abs() < 1e-12);
        // Predictions with uncertainty are pulled toward 1/2, never past it.
        let wide = LogisticRegression::new(vec![0.0, 2.0], 25.0);
        let x = [1.0, 1.0];
        assert!(wide.predict(&x) < wide.predict_at_mean(&x));
        assert!(wide.predict(&x) > 0.5);
        let draw = m.sample(&mut seeded(5));
        assert_eq!(draw.len(), 2);
    }

    #[test]
    fn a_fit_around_earlier_weights_keeps_what_the_data_cannot_tell() {
        // The second feature never varies (always 0): the data say nothing
        // about its weight, which stays at the prior mean; the first is
        // learned from the data even from a saturating start.
        let mut rng = seeded(4);
        let xs: Vec<Vec<f64>> = (0..300)
            .map(|_| vec![1.0, 0.0, rng.gen::<f64>() * 4.0 - 2.0])
            .collect();
        let ys: Vec<bool> = xs
            .iter()
            .map(|x| rng.gen::<f64>() < sigmoid(1.5 * x[2]))
            .collect();
        let around = LogisticRegression::fit_around(&xs, &ys, &[8.0, -4.0, -6.0], 3.0).unwrap();
        assert!((around.mean[1] + 4.0).abs() < 1e-9, "{:?}", around.mean);
        assert!((around.mean[2] - 1.5).abs() < 0.5, "{:?}", around.mean);
        let zero = LogisticRegression::fit(&xs, &ys, 3.0).unwrap();
        assert!(zero.mean[1].abs() < 1e-9);
        // Around a zero mean it is the ordinary fit.
        let same = LogisticRegression::fit_around(&xs, &ys, &[0.0; 3], 3.0).unwrap();
        for (a, b) in same.mean.iter().zip(&zero.mean) {
            assert!((a - b).abs() < 1e-8);
        }
        assert!(LogisticRegression::fit_around(&xs, &ys, &[0.0; 2], 3.0).is_err());
        assert!(LogisticRegression::fit_around(&xs, &ys, &[f64::NAN; 3], 3.0).is_err());
    }

    #[test]
    fn thompson_sampling_prefers_the_better_arm_and_is_reproducible() {
        let arms = [
            Beta::new(80.0, 20.0).unwrap(),
            Beta::new(30.0, 70.0).unwrap(),
        ];
        let mut r = seeded(9);
        let picks: Vec<usize> = (0..200).map(|_| thompson(&arms, &mut r).unwrap()).collect();
        assert!(picks.iter().filter(|&&p| p == 0).count() > 195);
        let mut r2 = seeded(9);
        let again: Vec<usize> = (0..200)
            .map(|_| thompson(&arms, &mut r2).unwrap())
            .collect();
        assert_eq!(picks, again);
    }

    #[test]
    fn a_batch_fit_recovers_the_weights_and_matches_the_online_updates_in_the_limit() {
        use rand::Rng;
        let truth = [-0.5, 2.0];
        let mut r = seeded(11);
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for _ in 0..2000 {
            let x = vec![1.0, r.gen_range(-2.0..2.0)];
            let p = sigmoid(truth[0] + truth[1] * x[1]);
            ys.push(r.gen::<f64>() < p);
            xs.push(x);
        }
        let m = LogisticRegression::fit(&xs, &ys, 10.0).unwrap();
        assert!((m.mean[0] - truth[0]).abs() < 0.2, "{:?}", m.mean);
        assert!((m.mean[1] - truth[1]).abs() < 0.25, "{:?}", m.mean);
        assert!(m.cov[0] > 0.0 && m.cov[0] < 0.01 && (m.cov[1] - m.cov[2]).abs() < 1e-9);
        let mut online = LogisticRegression::new(vec![0.0, 0.0], 10.0);
        for (x, &y) in xs.iter().zip(&ys) {
            online.observe(x, y, 1.0);
        }
        assert!((online.mean[1] - m.mean[1]).abs() < 0.1);
        // Separable data stays finite: the prior holds the weights.
        let sep = LogisticRegression::fit(&[vec![1.0, -1.0], vec![1.0, 1.0]], &[false, true], 1.0)
            .unwrap();
        assert!(sep.mean[1].is_finite() && sep.mean[1] > 0.0 && sep.mean[1] < 5.0);
        assert!(LogisticRegression::fit(&[], &[], 1.0).is_err());
        assert!(LogisticRegression::fit(&[vec![1.0]], &[true, false], 1.0).is_err());
    }

    #[test]
    fn the_fit_through_the_observations_logits_is_the_same_posterior() {
        use rand::Rng;
        // Fewer observations (6) than features (9): fit_weighted takes the
        // dual path; the primal one must agree on mean and covariance.
        let mut r = seeded(5);
        let xs: Vec<Vec<f64>> = (0..6)
            .map(|_| (0..9).map(|_| r.gen_range(-1.5..1.5)).collect())
            .collect();
        let ys = [true, false, true, true, false, false];
        let weights = [1.0, 2.0, 0.5, 1.0, 1.5, 1.0];
        let dual = LogisticRegression::fit_weighted(&xs, &ys, &weights, 0.7).unwrap();
        let primal = LogisticRegression::fit_primal(&xs, &ys, &weights, &[0.0; 9], 0.7).unwrap();
        for (a, b) in dual.mean.iter().zip(&primal.mean) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
        for (a, b) in dual.cov.iter().zip(&primal.cov) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
        let x = vec![0.3; 9];
        assert!((dual.predict(&x) - primal.predict(&x)).abs() < 1e-9);
    }
}
