//! A Bayesian logistic classifier over sentence embeddings, used by the
//! mission policy as evidence that a request is harmful (predicate
//! `classify`).
//!
//! The weights have a Gaussian posterior fitted by Laplace's method on a
//! labelled set (harmful requests from public red-teaming sets, benign
//! look-alikes of our own; `metareason bench fit-harm`). The shipped file
//! keeps the posterior mean and the marginal variances only (the full
//! 385 × 385 covariance would be 150 000 numbers); the predictive
//! probability integrates the logit's variance under that diagonal
//! posterior with the probit approximation, so a request unlike anything
//! seen is pulled towards 0.5 instead of being judged with false certainty.
//!
//! A request is judged through every readable view of it (as written,
//! de-spaced, leetspeak read as letters, decoded base64/hex runs, rot13 when
//! that reads as English, a translation when given) and, for long texts, in
//! overlapping windows, since the embedder reads 256 tokens and a role-play
//! preamble can push the request itself out of that window. The highest
//! probability counts: a disguise must not lower it.

use metareason_bayes::{sigmoid, LogisticRegression};
use metareason_core::{EmbedError, Embedder};
use serde::{Deserialize, Serialize};

/// The shipped harm classifier (all-MiniLM-L6-v2 features).
pub const SHIPPED_HARM: &str = include_str!("../harm-classifier.json");

/// The shipped harm classifier over the default model's own state
/// (Qwen2.5-Coder-1.5B-Instruct Q4_K_M: its reply state at the output of
/// block 17, `llama-reply-state@17:qwen2.5-coder-1.5b-instruct-q4_k_m`).
pub const SHIPPED_HARM_MODEL_STATE: &str =
    include_str!("../harm-classifier-qwen2.5-coder-1.5b-l17.json");

/// Words per window when a text is judged in parts.
const WINDOW_WORDS: usize = 60;
/// Texts longer than this many words are also judged in windows.
const LONG_WORDS: usize = 80;

/// A fitted classifier: P(positive | embedding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingClassifier {
    /// What a positive is (for example "harmful request").
    pub label: String,
    /// The embedder whose vectors it reads (its [`Embedder::name`]).
    pub embedder: String,
    /// Posterior mean of the weights: bias first, then one per dimension.
    pub mean: Vec<f64>,
    /// Posterior marginal variances of the weights, in the same order.
    pub variance: Vec<f64>,
    /// The prior variance of each weight.
    pub prior_variance: f64,
    /// Where its training data came from.
    pub fitted_on: String,
    /// How each vector is standardised before the weights read it (none
    /// for unit-length sentence embeddings; a language model's hidden
    /// states have a few dimensions far larger than the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardize: Option<Standardize>,
    /// Whether a long text is also judged in windows: a sentence embedder
    /// reads 256 tokens, a language model's reply state reads the whole
    /// chat.
    #[serde(default = "judged_in_windows")]
    pub windows: bool,
    /// What the marginal variances' logit variance is multiplied by to
    /// match the full posterior's on the training vectors (the median
    /// ratio there). With a few hundred nearly independent dimensions it
    /// is about 1; over a language model's 1536 correlated ones the
    /// diagonal alone overstates the uncertainty many times over and would
    /// pull every judgement towards 0.5.
    #[serde(default = "unscaled", skip_serializing_if = "is_unscaled")]
    pub variance_scale: f64,
}

fn judged_in_windows() -> bool {
    true
}

fn unscaled() -> f64 {
    1.0
}

fn is_unscaled(x: &f64) -> bool {
    *x == 1.0
}

/// Per-dimension centring and scaling, fitted on the training vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardize {
    /// The mean of each dimension.
    pub center: Vec<f64>,
    /// The standard deviation of each dimension (at least a small floor).
    pub scale: Vec<f64>,
}

impl Standardize {
    /// The mean and standard deviation of each dimension of `vectors`.
    pub fn fit(vectors: &[Vec<f32>]) -> Self {
        let d = vectors.first().map_or(0, Vec::len);
        let n = vectors.len().max(1) as f64;
        let mut center = vec![0.0; d];
        for v in vectors {
            for (c, &x) in center.iter_mut().zip(v) {
                *c += f64::from(x) / n;
            }
        }
        let mut scale = vec![0.0; d];
        for v in vectors {
            for ((s, &x), c) in scale.iter_mut().zip(v).zip(&center) {
                *s += (f64::from(x) - c).powi(2) / n;
            }
        }
        let scale = scale.into_iter().map(|v| v.sqrt().max(1e-6)).collect();
        Self { center, scale }
    }

    /// The features of `embedding`: a constant 1 (the bias), then each
    /// dimension standardised.
    pub fn features(&self, embedding: &[f32]) -> Vec<f64> {
        std::iter::once(1.0)
            .chain(
                embedding
                    .iter()
                    .zip(self.center.iter().zip(&self.scale))
                    .map(|(&x, (c, s))| (f64::from(x) - c) / s),
            )
            .collect()
    }
}

/// Why a classifier cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    /// The file is not a classifier.
    #[error("{0}: not a classifier file: {1}")]
    Invalid(String, String),
    /// The embedder is not the one it was fitted on.
    #[error("the classifier reads {wanted} vectors, but the embedder is {got}: run `metareason models fetch {wanted}`")]
    WrongEmbedder {
        /// Its embedder.
        wanted: String,
        /// The one given.
        got: String,
    },
    /// Embedding failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

impl EmbeddingClassifier {
    /// The shipped harm classifier.
    pub fn shipped_harm() -> &'static Self {
        static SHIPPED: std::sync::OnceLock<EmbeddingClassifier> = std::sync::OnceLock::new();
        SHIPPED.get_or_init(|| {
            Self::parse(SHIPPED_HARM, "shipped harm classifier").expect("the shipped file is valid")
        })
    }

    /// The shipped harm classifier over the default model's own state.
    pub fn shipped_harm_model_state() -> &'static Self {
        static SHIPPED: std::sync::OnceLock<EmbeddingClassifier> = std::sync::OnceLock::new();
        SHIPPED.get_or_init(|| {
            Self::parse(
                SHIPPED_HARM_MODEL_STATE,
                "shipped model-state harm classifier",
            )
            .expect("the shipped file is valid")
        })
    }

    /// What a policy's `classifier = "harm"` stands for, in the order they
    /// are tried: the default model's own state (judged only where that
    /// model runs in process, so its state can be read), then the
    /// sentence-embedding classifier that serves any model.
    pub fn shipped_harm_alternatives() -> Vec<Self> {
        vec![
            Self::shipped_harm_model_state().clone(),
            Self::shipped_harm().clone(),
        ]
    }

    /// Whether it reads `embedder`'s vectors (the embedder it was fitted on).
    pub fn reads(&self, embedder: &dyn Embedder) -> bool {
        embedder.name() == self.embedder && embedder.dim() == self.dim()
    }

    /// Parses a classifier file's text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, ClassifierError> {
        let c: Self = serde_json::from_str(text)
            .map_err(|e| ClassifierError::Invalid(source.into(), e.to_string()))?;
        if c.mean.len() < 2 || c.variance.len() != c.mean.len() {
            return Err(ClassifierError::Invalid(
                source.into(),
                "mean and variance need the same length, a bias and at least one weight".into(),
            ));
        }
        if let Some(z) = &c.standardize {
            if z.center.len() != c.mean.len() - 1
                || z.scale.len() != z.center.len()
                || z.center.iter().any(|x| !x.is_finite())
                || z.scale.iter().any(|s| !s.is_finite() || *s <= 0.0)
            {
                return Err(ClassifierError::Invalid(
                    source.into(),
                    "standardize needs a finite center and a positive scale per dimension".into(),
                ));
            }
        }
        if c.mean.iter().chain(&c.variance).any(|x| !x.is_finite())
            || c.variance.iter().any(|v| *v < 0.0)
            || !c.variance_scale.is_finite()
            || c.variance_scale < 0.0
        {
            return Err(ClassifierError::Invalid(
                source.into(),
                "weights must be finite, variances and variance_scale non-negative".into(),
            ));
        }
        Ok(c)
    }

    /// The dimension of the vectors it reads.
    pub fn dim(&self) -> usize {
        self.mean.len() - 1
    }

    /// The classifier of a fitted posterior over [`Self::features`] (its
    /// covariance kept as marginal variances).
    pub fn from_posterior(
        label: &str,
        embedder: &str,
        posterior: &LogisticRegression,
        prior_variance: f64,
        fitted_on: &str,
    ) -> Self {
        let d = posterior.dim();
        Self {
            label: label.into(),
            embedder: embedder.into(),
            mean: posterior.mean.clone(),
            variance: (0..d).map(|i| posterior.cov[i * d + i]).collect(),
            prior_variance,
            fitted_on: fitted_on.into(),
            standardize: None,
            windows: true,
            variance_scale: 1.0,
        }
    }

    /// The same classifier with its logit variance scaled to match the
    /// full `posterior`'s on the feature vectors `xs` it was fitted on
    /// (the median ratio of full to diagonal; see
    /// [`Self::variance_scale`]).
    pub fn matching_variance(mut self, posterior: &LogisticRegression, xs: &[Vec<f64>]) -> Self {
        let mut ratios: Vec<f64> = xs
            .iter()
            .filter_map(|x| {
                let diagonal: f64 = self.variance.iter().zip(x).map(|(v, x)| v * x * x).sum();
                let (_, full) = posterior.logit(x);
                (diagonal > 1e-12).then(|| (full / diagonal).max(0.0))
            })
            .collect();
        if !ratios.is_empty() {
            ratios.sort_by(f64::total_cmp);
            self.variance_scale = ratios[ratios.len() / 2];
        }
        self
    }

    /// The same classifier reading vectors standardised by `z` (which its
    /// posterior must have been fitted on).
    pub fn standardized_by(mut self, z: Standardize) -> Self {
        self.standardize = Some(z);
        self
    }

    /// The same classifier judging long texts whole (`false`) or also in
    /// windows (`true`).
    pub fn in_windows(mut self, windows: bool) -> Self {
        self.windows = windows;
        self
    }

    /// The features of an embedding: a constant 1 (the bias), then the vector.
    pub fn features(embedding: &[f32]) -> Vec<f64> {
        std::iter::once(1.0)
            .chain(embedding.iter().map(|&x| f64::from(x)))
            .collect()
    }

    /// The features its weights read: [`Self::features`], standardised
    /// when the classifier was fitted on standardised vectors.
    pub fn features_of(&self, embedding: &[f32]) -> Vec<f64> {
        match &self.standardize {
            Some(z) => z.features(embedding),
            None => Self::features(embedding),
        }
    }

    /// P(positive) of one embedding, integrated over the weights' posterior.
    pub fn probability(&self, embedding: &[f32]) -> f64 {
        let x = self.features_of(embedding);
        let mu: f64 = self.mean.iter().zip(&x).map(|(w, x)| w * x).sum();
        let s2: f64 = self.variance_scale
            * self
                .variance
                .iter()
                .zip(&x)
                .map(|(v, x)| v * x * x)
                .sum::<f64>();
        sigmoid(mu / (1.0 + std::f64::consts::PI * s2 / 8.0).sqrt())
    }

    /// P(positive) of a request: the highest over `views` of it (the
    /// request itself first) and over windows of the request when long.
    pub fn judge(&self, embedder: &dyn Embedder, views: &[String]) -> Result<f64, ClassifierError> {
        Ok(self.judge_with_text(embedder, views)?.0)
    }

    /// [`Self::judge`], with the text (a view or a window) that scored
    /// highest: the request with its disguise taken off.
    pub fn judge_with_text(
        &self,
        embedder: &dyn Embedder,
        views: &[String],
    ) -> Result<(f64, String), ClassifierError> {
        if !self.reads(embedder) {
            return Err(ClassifierError::WrongEmbedder {
                wanted: self.embedder.clone(),
                got: embedder.name().to_string(),
            });
        }
        // Every view whole; the request as written also in windows (the
        // decoded views of a long text are rarely different enough to pay
        // for windowing them too).
        let mut texts: Vec<String> = views.to_vec();
        if let Some(first) = views.first().filter(|_| self.windows) {
            texts.extend(windows(first));
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = embedder.embed(&refs)?;
        let (best, p) = vectors
            .iter()
            .map(|v| self.probability(v))
            .enumerate()
            .fold((0, 0.0), |acc, (i, p)| if p > acc.1 { (i, p) } else { acc });
        Ok((
            p,
            texts.swap_remove(best.min(texts.len().saturating_sub(1))),
        ))
    }
}

/// Overlapping windows of a long text (none for a short one): each window
/// is read whole by the embedder, so a request after a long preamble is
/// still seen.
pub fn windows(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() <= LONG_WORDS {
        return Vec::new();
    }
    let step = WINDOW_WORDS / 2;
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + WINDOW_WORDS).min(words.len());
        out.push(words[start..end].join(" "));
        if end == words.len() {
            break;
        }
        start += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_have_no_windows_and_long_ones_cover_the_end() {
        assert!(windows("how do I bake bread").is_empty());
        let long: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        let w = windows(&long.join(" "));
        assert!(w.len() >= 6);
        assert!(w.last().unwrap().ends_with("w199"));
        assert!(w[0].starts_with("w0 "));
    }

    #[test]
    fn the_shipped_classifier_parses() {
        let c = EmbeddingClassifier::shipped_harm();
        assert_eq!(c.embedder, "all-minilm-l6-v2");
        assert_eq!(c.dim(), 384);
    }

    #[test]
    fn uncertainty_pulls_towards_one_half() {
        let sure = EmbeddingClassifier {
            label: "x".into(),
            embedder: "e".into(),
            mean: vec![0.0, 4.0],
            variance: vec![0.0, 0.0],
            prior_variance: 1.0,
            fitted_on: String::new(),
            standardize: None,
            windows: true,
            variance_scale: 1.0,
        };
        let unsure = EmbeddingClassifier {
            variance: vec![0.0, 50.0],
            ..sure.clone()
        };
        let p = sure.probability(&[1.0]);
        let q = unsure.probability(&[1.0]);
        assert!((p - sigmoid(4.0)).abs() < 1e-12);
        assert!(q > 0.5 && q < p, "{q} vs {p}");
        // A variance scale below 1 pulls less; 0 judges at the mean.
        let scaled = EmbeddingClassifier {
            variance_scale: 0.1,
            ..unsure.clone()
        };
        let r = scaled.probability(&[1.0]);
        assert!(r > q && r < p, "{r}: between {q} and {p}");
        let at_mean = EmbeddingClassifier {
            variance_scale: 0.0,
            ..unsure.clone()
        };
        assert!((at_mean.probability(&[1.0]) - p).abs() < 1e-12);
    }

    #[test]
    fn harm_stands_for_the_default_models_state_probe_and_the_sentence_embedder() {
        let alternatives = EmbeddingClassifier::shipped_harm_alternatives();
        assert_eq!(alternatives.len(), 2);
        let state = &alternatives[0];
        assert_eq!(
            state.embedder,
            "llama-reply-state@17:qwen2.5-coder-1.5b-instruct-q4_k_m"
        );
        assert_eq!(state.dim(), 1536);
        // Read whole, standardised, its diagonal scaled to the full
        // posterior (over 1536 correlated dimensions, well below 1).
        assert!(!state.windows && state.standardize.is_some());
        assert!(
            state.variance_scale > 0.0 && state.variance_scale < 1.0,
            "{}",
            state.variance_scale
        );
        assert_eq!(&alternatives[1], EmbeddingClassifier::shipped_harm());
        assert_eq!(alternatives[1].embedder, "all-minilm-l6-v2");
    }

    #[test]
    fn the_variance_scale_matches_the_full_posterior_on_the_training_vectors() {
        // Two weights, strongly anti-correlated: along (1, 1) the full
        // posterior is nearly certain, the diagonal alone is not.
        let posterior = LogisticRegression {
            mean: vec![0.0, 1.0, 1.0],
            cov: vec![
                0.0, 0.0, 0.0, //
                0.0, 1.0, -0.9, //
                0.0, -0.9, 1.0,
            ],
        };
        let c = EmbeddingClassifier::from_posterior("x", "e", &posterior, 1.0, "");
        assert_eq!(c.variance_scale, 1.0);
        // Features as the classifier reads them: the bias, then the vector.
        let xs = vec![vec![1.0, 1.0, 1.0]; 3];
        let c = c.matching_variance(&posterior, &xs);
        // Full: 1 + 1 - 2 * 0.9 = 0.2; diagonal: 2.
        assert!(
            (c.variance_scale - 0.1).abs() < 1e-12,
            "{}",
            c.variance_scale
        );
        let full = posterior.predict(&xs[0]);
        assert!((c.probability(&[1.0, 1.0]) - full).abs() < 1e-12);
        // Kept through the file; a negative scale is refused.
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(EmbeddingClassifier::parse(&text, "f").unwrap(), c);
        let mut bad: serde_json::Value = serde_json::from_str(&text).unwrap();
        bad["variance_scale"] = serde_json::json!(-1.0);
        assert!(EmbeddingClassifier::parse(&bad.to_string(), "f").is_err());
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let e = EmbeddingClassifier::parse("{}", "x.json").unwrap_err();
        assert!(e.to_string().contains("x.json"));
        let e = EmbeddingClassifier::parse(
            r#"{"label":"a","embedder":"e","mean":[0,1],"variance":[1],"prior_variance":1,"fitted_on":""}"#,
            "y.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("same length"), "{e}");
        // A standardisation must match the weights and scale by a positive number.
        for z in [
            r#"{"center":[0,0],"scale":[1,1]}"#,
            r#"{"center":[0],"scale":[0]}"#,
            r#"{"center":[0],"scale":[-1]}"#,
        ] {
            let text = format!(
                r#"{{"label":"a","embedder":"e","mean":[0,1],"variance":[1,1],"prior_variance":1,"fitted_on":"","standardize":{z}}}"#
            );
            let e = EmbeddingClassifier::parse(&text, "z.json").unwrap_err();
            assert!(e.to_string().contains("standardize"), "{e}");
        }
    }

    #[test]
    fn standardising_centres_and_scales_each_dimension() {
        let z = Standardize::fit(&[vec![1.0, 10.0], vec![3.0, 10.0]]);
        assert_eq!(z.center, vec![2.0, 10.0]);
        assert_eq!(z.scale[0], 1.0);
        // A constant dimension keeps a small floor instead of dividing by 0.
        assert!(z.scale[1] > 0.0 && z.scale[1] < 1e-3);
        assert_eq!(z.features(&[3.0, 10.0]), vec![1.0, 1.0, 0.0]);
        let c = EmbeddingClassifier {
            label: "x".into(),
            embedder: "e".into(),
            mean: vec![0.0, 2.0, 0.0],
            variance: vec![0.0; 3],
            prior_variance: 1.0,
            fitted_on: String::new(),
            standardize: None,
            windows: true,
            variance_scale: 1.0,
        }
        .standardized_by(z);
        assert!((c.probability(&[3.0, 10.0]) - sigmoid(2.0)).abs() < 1e-12);
        assert!((c.probability(&[1.0, 10.0]) - sigmoid(-2.0)).abs() < 1e-12);
        // The standardisation survives a round trip through its file.
        let back = EmbeddingClassifier::parse(&serde_json::to_string(&c).unwrap(), "c").unwrap();
        assert_eq!(back, c);
    }
}
