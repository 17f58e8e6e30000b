//! Mission-aware solvability: a declarative policy (TOML) of rules that say
//! what must be refused (not allowed) or abstained from (out of budget),
//! for whom. Rules combine predicates — keywords, regular expressions,
//! model-judged yes/no questions scored by token probability, a classifier
//! over sentence embeddings confirmed by the model when unsure, the user's
//! profile, expected cost — with all/any/not over their probabilities.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use metareason_core::{
    Embedder, GenerateRequest, LanguageModel, ModelError, Prompt, SamplingParams, Usage,
};
use regex::Regex;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::classifier::EmbeddingClassifier;
use crate::prompts;

/// The policy shipped with metareason (`policies/default.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../policies/default.toml");

/// Why a policy file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid policy; the position points at the problem.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not allowed: decline and say so.
    Refuse,
    /// Not worth it or not possible here: decline.
    Abstain,
}

/// Costs and values the decision weighs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Costs {
    /// Utility of a right answer.
    pub value_correct: f64,
    /// Cost of a wrong answer.
    pub cost_wrong: f64,
    /// Cost of abstaining.
    pub cost_abstain: f64,
    /// Cost of 1000 generated tokens.
    pub cost_per_1k_tokens: f64,
}

impl Default for Costs {
    fn default() -> Self {
        Self {
            value_correct: 1.0,
            cost_wrong: 3.0,
            cost_abstain: 0.5,
            cost_per_1k_tokens: 0.05,
        }
    }
}

impl Costs {
    /// The confidence below which abstaining beats answering (tokens
    /// already spent are sunk): answer iff c·v − (1−c)·w > −a.
    pub fn answer_threshold(&self) -> f64 {
        ((self.cost_wrong - self.cost_abstain) / (self.value_correct + self.cost_wrong))
            .clamp(0.0, 1.0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    costs: Costs,
    #[serde(default)]
    rule: Vec<Spanned<RuleSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    action: Action,
    reply: String,
    #[serde(default = "half")]
    threshold: f64,
    when: Spanned<PredicateSpec>,
}

fn half() -> f64 {
    0.5
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredicateSpec {
    keyword: Option<Vec<String>>,
    squashed: Option<Vec<String>>,
    regex: Option<Spanned<String>>,
    ask: Option<String>,
    classify: Option<ClassifySpec>,
    profile: Option<BTreeMap<String, String>>,
    tokens_over: Option<u64>,
    seconds_over: Option<f64>,
    all: Option<Vec<Spanned<PredicateSpec>>>,
    any: Option<Vec<Spanned<PredicateSpec>>>,
    not: Option<Box<Spanned<PredicateSpec>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifySpec {
    classifier: String,
    confirm: Option<String>,
    #[serde(default)]
    own_refusal: bool,
    #[serde(default = "default_band")]
    band: [f64; 2],
    #[serde(default = "one")]
    weight: f64,
    #[serde(default = "one")]
    classifier_weight: f64,
    #[serde(default)]
    offset: f64,
}

fn default_band() -> [f64; 2] {
    [0.2, 0.9]
}

fn one() -> f64 {
    1.0
}

/// A classifier's probability, confirmed by the model when unsure.
#[derive(Debug, Clone)]
pub struct Classify {
    /// The classifiers: every one whose embedder is at hand judges and the
    /// highest probability counts (say one over the local model's own reply
    /// state, read only where that model runs in process, and one over
    /// sentence embeddings, read for any model).
    pub classifiers: Vec<EmbeddingClassifier>,
    /// A yes/no question put to the model when the classifier's probability
    /// is inside `band`.
    pub confirm: Option<String>,
    /// Inside the band, also read the model's own reply: the probability
    /// that it begins with a refusal ("I'm sorry", "I can't"), when the
    /// model is given the request with its disguise taken off (the view
    /// or window the classifier found most harmful).
    pub own_refusal: bool,
    /// The unsure band: outside it the classifier decides alone.
    pub band: [f64; 2],
    /// How much the model's answer counts: its log-odds are added to the
    /// classifier's times this weight (1 treats P(Yes) as a calibrated
    /// likelihood ratio).
    pub weight: f64,
    /// Inside the band, the classifier's log-odds count this many times
    /// (1 by default; fitted with `weight` and `offset` by `bench
    /// fit-refusal`).
    pub classifier_weight: f64,
    /// Inside the band, added to the log-odds (0 by default): where the
    /// model's answers sit when it says nothing either way.
    pub offset: f64,
}

/// A condition on a task, evaluated to a probability.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// Any of the words or phrases occurs (whole words, any case): 0 or 1.
    Keyword(Vec<String>, Regex),
    /// Any of these letter strings occurs once case, spaces, punctuation
    /// and leetspeak are taken out of the request ("p.i.p.e b0mb" holds
    /// "pipebomb"): 0 or 1.
    Squashed(Vec<String>),
    /// The pattern matches: 0 or 1.
    Regex(Regex),
    /// The model's P(Yes) to this question about the request.
    Ask(String),
    /// An embedding classifier's probability over the request's views,
    /// combined with the model's answer when unsure.
    Classify(Box<Classify>),
    /// The profile has all these values: 0 or 1.
    Profile(BTreeMap<String, String>),
    /// The cheapest strategy is expected to generate more tokens: 0 or 1.
    TokensOver(u64),
    /// The cheapest strategy is expected to take longer: 0 or 1.
    SecondsOver(f64),
    /// Product of the parts (independent conjunction).
    All(Vec<Predicate>),
    /// 1 − product of (1 − part) (independent disjunction).
    Any(Vec<Predicate>),
    /// 1 − the part.
    Not(Box<Predicate>),
}

/// A rule of the policy.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name, quoted in refusals.
    pub name: String,
    /// Refuse or abstain.
    pub action: Action,
    /// The short, polite reply given when it fires.
    pub reply: String,
    /// Fires when the condition's probability reaches this.
    pub threshold: f64,
    /// The condition.
    pub when: Predicate,
}

/// A loaded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where it came from.
    pub source: String,
    /// Costs for the decision.
    pub costs: Costs,
    /// The rules, in file order (the first that fires decides).
    pub rules: Vec<Rule>,
}

/// What the policy is evaluated against.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolicyContext {
    /// The user's profile (for example `audience = "teen"`).
    pub profile: BTreeMap<String, String>,
    /// Expected tokens of the cheapest strategy.
    pub expected_tokens: u64,
    /// Expected seconds of the cheapest strategy.
    pub expected_seconds: f64,
}

/// One rule's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleEvaluation {
    /// The rule.
    pub rule: String,
    /// Probability of its condition.
    pub probability: f64,
    /// Its threshold.
    pub threshold: f64,
    /// Whether it fired.
    pub fired: bool,
    /// The model-judged questions asked, with P(Yes).
    pub asked: Vec<(String, f64)>,
    /// The classifiers' probabilities, by label, before any confirmation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classified: Vec<(String, f64)>,
}

/// The policy's verdict on a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVerdict {
    /// The first rule that fired, with its action and reply.
    pub fired: Option<(String, Action, String)>,
    /// Every rule evaluated (evaluation stops at the first that fires).
    pub evaluations: Vec<RuleEvaluation>,
    /// Cost of the model-judged predicates.
    pub usage: Usage,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

impl Policy {
    /// The default policy.
    pub fn default_policy() -> Self {
        Self::parse(DEFAULT_POLICY, "default policy").expect("the shipped policy is valid")
    }

    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses policy text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, PolicyError> {
        let invalid = |span: Option<Range<usize>>, message: String| {
            let (line, column) = line_col(text, span.map_or(0, |s| s.start));
            PolicyError::Invalid {
                path: source.to_string(),
                line,
                column,
                message,
            }
        };
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_string()))?;
        let mut rules = Vec::new();
        for spanned in file.rule {
            let span = spanned.span();
            let r = spanned.into_inner();
            if !(0.0..=1.0).contains(&r.threshold) {
                return Err(invalid(
                    Some(span),
                    format!(
                        "rule {}: threshold {} is not a probability in [0, 1]",
                        r.name, r.threshold
                    ),
                ));
            }
            if r.name.trim().is_empty() {
                return Err(invalid(Some(span), "a rule needs a name".into()));
            }
            let when = build(r.when, &invalid)?;
            rules.push(Rule {
                name: r.name,
                action: r.action,
                reply: r.reply,
                threshold: r.threshold,
                when,
            });
        }
        let c = file.costs;
        if [
            c.value_correct,
            c.cost_wrong,
            c.cost_abstain,
            c.cost_per_1k_tokens,
        ]
        .iter()
        .any(|x| !x.is_finite() || *x < 0.0)
        {
            return Err(invalid(
                text.find("[costs]").map(|s| s..s),
                "costs must be non-negative numbers".into(),
            ));
        }
        Ok(Self {
            source: source.to_string(),
            costs: c,
            rules,
        })
    }

    /// The names of the embedders its classifiers can read (so a caller
    /// loads only the readers some rule will use).
    pub fn classifier_embedders(&self) -> Vec<String> {
        fn walk(p: &Predicate, out: &mut Vec<String>) {
            match p {
                Predicate::Classify(c) => {
                    for k in &c.classifiers {
                        if !out.contains(&k.embedder) {
                            out.push(k.embedder.clone());
                        }
                    }
                }
                Predicate::All(parts) | Predicate::Any(parts) => {
                    parts.iter().for_each(|q| walk(q, out));
                }
                Predicate::Not(q) => walk(q, out),
                _ => {}
            }
        }
        let mut out = Vec::new();
        self.rules.iter().for_each(|r| walk(&r.when, &mut out));
        out
    }

    /// Evaluates the rules in order; the first that fires decides.
    /// Model-judged predicates are scored by `model`; classifiers read the
    /// vectors of whichever of `embedders` they were fitted on (without it
    /// they have nothing to read, and their predicates are 0).
    pub fn evaluate(
        &self,
        task: &str,
        context: &PolicyContext,
        model: &dyn LanguageModel,
        embedders: &[&dyn Embedder],
    ) -> Result<PolicyVerdict, ModelError> {
        let mut verdict = PolicyVerdict {
            fired: None,
            evaluations: Vec::new(),
            usage: Usage::default(),
        };
        let mut request = Request::new(task);
        let judges = Judges { model, embedders };
        for rule in &self.rules {
            let mut trail = Trail::default();
            let p = eval(
                &rule.when,
                &mut request,
                context,
                &judges,
                &mut verdict.usage,
                &mut trail,
            )?;
            let fired = p >= rule.threshold && p > 0.0;
            verdict.evaluations.push(RuleEvaluation {
                rule: rule.name.clone(),
                probability: p,
                threshold: rule.threshold,
                fired,
                asked: trail.asked,
                classified: trail.classified,
            });
            if fired {
                verdict.fired = Some((rule.name.clone(), rule.action, rule.reply.clone()));
                break;
            }
        }
        Ok(verdict)
    }
}

fn build(
    spec: Spanned<PredicateSpec>,
    invalid: &dyn Fn(Option<Range<usize>>, String) -> PolicyError,
) -> Result<Predicate, PolicyError> {
    let span = spanned_range(&spec);
    let s = spec.into_inner();
    let mut found: Vec<Predicate> = Vec::new();
    if let Some(words) = s.keyword {
        if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
            return Err(invalid(
                Some(span.clone()),
                "keyword needs a list of non-empty words".into(),
            ));
        }
        let alternation = words
            .iter()
            .map(|w| regex::escape(w.trim()))
            .collect::<Vec<_>>()
            .join("|");
        let re = Regex::new(&format!(r"(?i)\b(?:{alternation})\b")).expect("escaped words");
        found.push(Predicate::Keyword(words, re));
    }
    if let Some(words) = s.squashed {
        let words: Vec<String> = words.iter().map(|w| squash(w)).collect();
        if words.is_empty() || words.iter().any(|w| w.len() < 4) {
            return Err(invalid(
                Some(span.clone()),
                "squashed needs a list of words of at least 4 letters (shorter ones match by chance)"
                    .into(),
            ));
        }
        found.push(Predicate::Squashed(words));
    }
    if let Some(re) = s.regex {
        let at = re.span();
        let re = Regex::new(re.get_ref())
            .map_err(|e| invalid(Some(at), format!("invalid regex: {e}")))?;
        found.push(Predicate::Regex(re));
    }
    if let Some(q) = s.ask {
        if q.trim().is_empty() {
            return Err(invalid(Some(span.clone()), "ask needs a question".into()));
        }
        found.push(Predicate::Ask(q));
    }
    if let Some(c) = s.classify {
        let classifiers = if c.classifier == "harm" {
            EmbeddingClassifier::shipped_harm_alternatives()
        } else if c.classifier.ends_with(".json") {
            let text = std::fs::read_to_string(&c.classifier).map_err(|e| {
                invalid(
                    Some(span.clone()),
                    format!("cannot read classifier {}: {e}", c.classifier),
                )
            })?;
            vec![EmbeddingClassifier::parse(&text, &c.classifier)
                .map_err(|e| invalid(Some(span.clone()), e.to_string()))?]
        } else {
            return Err(invalid(
                Some(span.clone()),
                format!(
                    "unknown classifier '{}': use \"harm\" or the path of a .json classifier file",
                    c.classifier
                ),
            ));
        };
        let [lo, hi] = c.band;
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return Err(invalid(
                Some(span.clone()),
                "band needs two probabilities [low, high] with low <= high".into(),
            ));
        }
        if !c.weight.is_finite() || c.weight < 0.0 {
            return Err(invalid(
                Some(span.clone()),
                "weight must be a non-negative number".into(),
            ));
        }
        if !c.classifier_weight.is_finite() || c.classifier_weight < 0.0 {
            return Err(invalid(
                Some(span.clone()),
                "classifier_weight must be a non-negative number".into(),
            ));
        }
        if !c.offset.is_finite() {
            return Err(invalid(
                Some(span.clone()),
                "offset must be a number".into(),
            ));
        }
        if c.confirm.as_deref().is_some_and(|q| q.trim().is_empty()) {
            return Err(invalid(
                Some(span.clone()),
                "confirm needs a question".into(),
            ));
        }
        found.push(Predicate::Classify(Box::new(Classify {
            classifiers,
            confirm: c.confirm,
            own_refusal: c.own_refusal,
            band: c.band,
            weight: c.weight,
            classifier_weight: c.classifier_weight,
            offset: c.offset,
        })));
    }
    if let Some(p) = s.profile {
        found.push(Predicate::Profile(p));
    }
    if let Some(n) = s.tokens_over {
        found.push(Predicate::TokensOver(n));
    }
    if let Some(n) = s.seconds_over {
        found.push(Predicate::SecondsOver(n));
    }
    let list = |parts: Vec<Spanned<PredicateSpec>>, what: &str| {
        if parts.is_empty() {
            return Err(invalid(
                Some(span.clone()),
                format!("{what} needs at least one predicate"),
            ));
        }
        parts.into_iter().map(|p| build(p, invalid)).collect()
    };
    if let Some(parts) = s.all {
        found.push(Predicate::All(list(parts, "all")?));
    }
    if let Some(parts) = s.any {
        found.push(Predicate::Any(list(parts, "any")?));
    }
    if let Some(part) = s.not {
        found.push(Predicate::Not(Box::new(build(*part, invalid)?)));
    }
    match found.len() {
        1 => Ok(found.pop().expect("one")),
        0 => Err(invalid(
            Some(span),
            "empty predicate: use one of keyword, squashed, regex, ask, classify, profile, tokens_over, seconds_over, all, any, not".into(),
        )),
        _ => Err(invalid(
            Some(span),
            "a predicate has exactly one kind; combine several with all = [...] or any = [...]"
                .into(),
        )),
    }
}

fn spanned_range<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

/// A request as the policy reads it: every view of it (see
/// [`crate::normalize`]), their squashed letters, and the text the model
/// judge is shown.
struct Request {
    views: Vec<String>,
    squashed: Vec<String>,
    judged: String,
    /// The views a classifier reads (readable text only), filled on first
    /// use, with a translation when the request is not in English.
    readable: Option<Vec<String>>,
    /// The model's English translation, when the request is in another
    /// language (known once `readable` is filled).
    translation: Option<String>,
}

impl Request {
    fn new(task: &str) -> Self {
        let views = crate::normalize::views(task);
        let squashed = views.iter().map(|v| squash(v)).collect();
        // The judge sees what a disguise hid: decoded runs and the
        // de-spaced, de-leeted text when they differ from the original.
        let mut judged = task.to_string();
        let mut hidden: Vec<String> = crate::normalize::encoded_runs(task);
        let plain = crate::normalize::despaced(&crate::normalize::unleet(task));
        if !plain.eq_ignore_ascii_case(task) {
            hidden.push(plain);
        }
        if !hidden.is_empty() {
            judged.push_str("\n\n(The same request decoded: ");
            judged.push_str(&hidden.join(" / "));
            judged.push(')');
        }
        Self {
            views,
            squashed,
            judged,
            readable: None,
            translation: None,
        }
    }

    /// The views a classifier reads: the request, its de-spaced and
    /// de-leeted text, decoded runs, rot13 when that reads as English, and
    /// an English translation (by the model) when the request is in another
    /// language; the translation is added to the judged text too.
    fn readable(&mut self, judges: &Judges, usage: &mut Usage) -> Result<&[String], ModelError> {
        if self.readable.is_none() {
            let original = &self.views[0];
            let mut out = crate::normalize::readable_views(original);
            if let Some(translation) = translate(judges.model, original, usage)? {
                self.judged
                    .push_str(&format!("\n\n(The same request in English: {translation})"));
                out.push(translation.clone());
                self.translation = Some(translation);
            }
            self.readable = Some(out);
        }
        Ok(self.readable.as_deref().unwrap_or_default())
    }
}

/// The model and embedders that judge predicates.
struct Judges<'a> {
    model: &'a dyn LanguageModel,
    embedders: &'a [&'a dyn Embedder],
}

/// What the predicates of one rule asked and classified.
#[derive(Default)]
struct Trail {
    asked: Vec<(String, f64)>,
    classified: Vec<(String, f64)>,
}

/// An English translation of `text` when it is written in another language
/// (none for English, or for text too short to tell).
fn translate(
    model: &dyn LanguageModel,
    text: &str,
    usage: &mut Usage,
) -> Result<Option<String>, ModelError> {
    let Some(language) = crate::normalize::foreign_language(text) else {
        return Ok(None);
    };
    let prompt = Prompt::user(prompts::fill(
        prompts::TRANSLATE_USER,
        &[("language", language), ("text", text)],
    ))
    .with_system(prompts::TRANSLATE_SYSTEM);
    let generation = model.generate(&GenerateRequest::new(prompt, SamplingParams::greedy(160)))?;
    *usage += generation.usage;
    let reply = generation
        .sequences
        .first()
        .map(|s| s.text.trim().to_string())
        .unwrap_or_default();
    Ok((!reply.is_empty()).then_some(reply))
}

/// Lowercase letters and digits only, leetspeak read as letters.
fn squash(text: &str) -> String {
    crate::normalize::unleet(&text.to_lowercase())
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

fn eval(
    p: &Predicate,
    task: &mut Request,
    ctx: &PolicyContext,
    judges: &Judges,
    usage: &mut Usage,
    trail: &mut Trail,
) -> Result<f64, ModelError> {
    let model = judges.model;
    let bit = |b: bool| if b { 1.0 } else { 0.0 };
    Ok(match p {
        Predicate::Keyword(_, re) | Predicate::Regex(re) => {
            bit(task.views.iter().any(|v| re.is_match(v)))
        }
        Predicate::Squashed(words) => bit(task
            .squashed
            .iter()
            .any(|v| words.iter().any(|w| v.contains(w.as_str())))),
        Predicate::Ask(q) => {
            let p = ask(model, &task.judged, q, usage)?;
            trail.asked.push((q.clone(), p));
            p
        }
        Predicate::Classify(c) => classify(c, task, judges, usage, trail)?,
        Predicate::Profile(want) => bit(want.iter().all(|(k, v)| {
            ctx.profile
                .get(k)
                .is_some_and(|x| x.eq_ignore_ascii_case(v))
        })),
        Predicate::TokensOver(n) => bit(ctx.expected_tokens > *n),
        Predicate::SecondsOver(s) => bit(ctx.expected_seconds > *s),
        Predicate::All(parts) => {
            let mut prod = 1.0;
            for part in parts {
                prod *= eval(part, task, ctx, judges, usage, trail)?;
                if prod == 0.0 {
                    break; // later parts (model calls) are not needed
                }
            }
            prod
        }
        Predicate::Any(parts) => {
            let mut none = 1.0;
            for part in parts {
                none *= 1.0 - eval(part, task, ctx, judges, usage, trail)?;
                if none == 0.0 {
                    break;
                }
            }
            1.0 - none
        }
        Predicate::Not(part) => 1.0 - eval(part, task, ctx, judges, usage, trail)?,
    })
}

/// The classifiers' probability over the request's readable views: every
/// classifier of the predicate whose embedder is loaded judges, and the
/// highest counts (as across views: a reading that misses a disguise must
/// not lower what another saw). Inside the unsure band the model's answer
/// to the confirming question is added as evidence on the log-odds scale.
/// Without any embedder a classifier was fitted on there is nothing to
/// read and the predicate is 0 (the other rules still apply).
fn classify(
    c: &Classify,
    task: &mut Request,
    judges: &Judges,
    usage: &mut Usage,
    trail: &mut Trail,
) -> Result<f64, ModelError> {
    let readers: Vec<(&EmbeddingClassifier, &dyn Embedder)> = c
        .classifiers
        .iter()
        .filter_map(|classifier| {
            judges
                .embedders
                .iter()
                .find(|e| classifier.reads(**e))
                .map(|e| (classifier, *e))
        })
        .collect();
    if readers.is_empty() {
        // Debug, not warn: the caller said once that the embedder is missing.
        if let Some(first) = c.classifiers.first() {
            tracing::debug!(
                "the {} classifier reads {} vectors and no such embedder is loaded; it is off",
                first.label,
                first.embedder
            );
        }
        return Ok(0.0);
    }
    let views = task.readable(judges, usage)?.to_vec();
    let mut best: Option<(f64, String, &str)> = None;
    for (classifier, embedder) in readers {
        match classifier.judge_with_text(embedder, &views) {
            Ok((p, text)) => {
                if best.as_ref().is_none_or(|b| p > b.0) {
                    best = Some((p, text, classifier.label.as_str()));
                }
            }
            Err(err) => tracing::warn!("{err}; the {} classifier is off", classifier.label),
        }
    }
    let Some((p, plain, label)) = best else {
        return Ok(0.0);
    };
    trail.classified.push((label.to_string(), p));
    if !(p >= c.band[0] && p < c.band[1]) {
        return Ok(p);
    }
    let logit = |x: f64| metareason_bayes::logit(x, 1e-4);
    let mut log_odds = c.classifier_weight * logit(p) + c.offset;
    if let Some(question) = &c.confirm {
        let q = ask(judges.model, &task.judged, question, usage)?;
        trail.asked.push((question.clone(), q));
        log_odds += c.weight * logit(q);
    }
    if c.own_refusal {
        let mut q = refusal_probability(judges.model, &plain, usage)?;
        // A small model refuses reliably only in the language it mostly
        // learned from: a request that came in another language is also
        // put to it in English, and the readier refusal counts (as across
        // views, a reading that misses what another saw must not lower it).
        if let Some(english) = task.translation.clone().filter(|t| *t != plain) {
            q = q.max(refusal_probability(judges.model, &english, usage)?);
        }
        trail.asked.push((OWN_REFUSAL.to_string(), q));
        log_odds += c.weight * logit(q);
    }
    Ok(metareason_bayes::sigmoid(log_odds))
}

/// How an own-refusal reading is named in a rule's evaluation.
pub const OWN_REFUSAL: &str = "(the model's own reply begins with a refusal)";

/// The probability that the model's reply to `request` begins with one of
/// its usual refusals (the openings are disjoint, so their probabilities add).
fn refusal_probability(
    model: &dyn LanguageModel,
    request: &str,
    usage: &mut Usage,
) -> Result<f64, ModelError> {
    let prompt = Prompt::user(request).with_system(prompts::REFUSAL_SYSTEM);
    let mut total = 0.0;
    for opening in prompts::REFUSAL_OPENINGS {
        let scored = model.score(&metareason_core::ScoreRequest {
            prompt: prompt.clone(),
            continuation: (*opening).to_string(),
            top_logprobs: 0,
        })?;
        *usage += scored.usage;
        total += scored.total_logprob().exp();
    }
    Ok(total.clamp(0.0, 1.0))
}

/// The model's P(Yes) to `question` about `task` (renormalised over Yes/No).
pub fn ask(
    model: &dyn LanguageModel,
    task: &str,
    question: &str,
    usage: &mut Usage,
) -> Result<f64, ModelError> {
    let prompt = Prompt::user(prompts::fill(
        prompts::POLICY_USER,
        &[("task", task), ("question", question)],
    ))
    .with_system(prompts::POLICY_SYSTEM);
    let (p, u) = model.choice_probabilities(&prompt, &["Yes", "No"])?;
    *usage += u;
    Ok(p[0])
}
