//! Compute by difficulty: after a cheap first attempt, more replies are
//! drawn only while their expected worth exceeds their cost.
//!
//! The first attempt (the strategy with the best posterior, greedy) gets a
//! calibrated P(correct) p. Escalating — sampling replies from a mixture of
//! strategies (the chosen one and its second opinion, e.g. program-aided and
//! chain of thought), pooling their votes weighted by each reply's token
//! confidence (DeepConf) — turns a wrong leader right with probability r
//! and a right one wrong with probability l, both learned from feedback as
//! Beta posteriors. Its expected gain in P(correct) is (1 − p)·r − p·l;
//! worth (value of a right answer + cost of a wrong one) times that. A round
//! is drawn only while that worth exceeds the round's expected token cost
//! under the policy's costs; rounds stop earlier when the stopping rule is
//! sure of the weighted majority, when the leader is settled (the next
//! round's replies could not put another answer ahead of it, so they could
//! not change the answer), or at the budget. By default a round is one
//! reply (the mixture's strategies take turns) and the rules are asked
//! after every reply, so a first answer that the first escalated reply
//! confirms stops there instead of paying for the rest of a cycle. Every
//! round is recorded with the numbers that justified it.

use metareason_strategy::Definition;
use std::collections::BTreeMap;

use metareason_awareness::Costs;
use metareason_bayes::Beta;
use metareason_core::template::fill;
use metareason_core::{LanguageModel, Prompt, Usage};
use metareason_monitor::confidence::ConfidenceMeasure;
use metareason_monitor::search::unify_answers;
use metareason_monitor::stopping::{
    count_votes, rescaled_votes, settled, top_two, weighted_winner,
};
use metareason_monitor::SearchSettings;
use metareason_monitor::{Candidate, StopRule};
use metareason_reflection::{CalibrationFeatures, Calibrator};
use metareason_solver::{Attempt, SolveConfig, SolveError, Solver, Trace};
use metareason_strategy::answer::AnswerKind;
use metareason_strategy::StrategyKind;
use metareason_verify::Finding;
use serde::{Deserialize, Serialize};

use crate::prompts;

/// How the loop escalates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EscalationConfig {
    /// Escalate at all (off: the first attempt, with the cross-check of
    /// [`crate::CrossCheck`], decides).
    pub enabled: bool,
    /// Replies drawn at most, over all rounds.
    pub max_samples: usize,
    /// Replies per strategy of the mixture per turn.
    pub per_round: usize,
    /// When the weighted majority is sure enough to stop.
    pub rule: StopRule,
    /// Sampling temperature of the escalation's replies.
    pub temperature: f32,
    /// The token confidence that weighs each reply's vote.
    pub weight: ConfidenceMeasure,
    /// Stop once the next round cannot put another answer ahead of the
    /// leader (its replies, all for the runner-up, would at best draw
    /// level): such a round cannot change the answer, whatever the
    /// calibrated confidence says it might gain.
    pub stop_when_settled: bool,
    /// Ask the stopping rules after every reply (the mixture's strategies
    /// take turns, one per round) rather than after a whole cycle of the
    /// mixture. The look-ahead of the settled rule stays a whole cycle,
    /// and replies keep the seeds they have in cycles, so the two ways
    /// draw the same replies and differ only in where they stop.
    pub check_each_reply: bool,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_samples: 8,
            per_round: 1,
            rule: StopRule::Beta { threshold: 0.95 },
            temperature: 0.7,
            weight: ConfidenceMeasure::LowestGroup,
            stop_when_settled: true,
            check_each_reply: true,
        }
    }
}

/// What escalation does to an answer, learned from feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationBeliefs {
    /// P(the escalated answer is right | the first answer was wrong).
    pub recovers: Beta,
    /// P(the escalated answer is wrong | the first answer was right).
    pub loses: Beta,
}

impl Default for EscalationBeliefs {
    /// Weak priors from 50 GSM8K training problems with the 1.5B model:
    /// self-consistency over 8 samples was right on 8 of the 21 problems
    /// greedy chain of thought got wrong, and wrong on 1 of the 29 it got
    /// right (adaptive consistency over programs: 10 of 21, 3 of 29).
    fn default() -> Self {
        Self {
            recovers: Beta::new(4.0, 6.0).expect("positive"),
            loses: Beta::new(1.0, 12.0).expect("positive"),
        }
    }
}

impl EscalationBeliefs {
    /// Expected change of P(correct) if the loop escalates from an answer
    /// right with probability `p`.
    pub fn expected_gain(&self, p: f64) -> f64 {
        (1.0 - p) * self.recovers.mean() - p * self.loses.mean()
    }

    /// Learns from one escalated episode: whether its first answer and its
    /// final answer were right (None where unknown).
    pub fn observe(&mut self, first_right: Option<bool>, final_right: bool) {
        match first_right {
            Some(false) => self
                .recovers
                .observe(u64::from(final_right), u64::from(!final_right)),
            Some(true) => self
                .loses
                .observe(u64::from(!final_right), u64::from(final_right)),
            None => {}
        }
    }
}

/// Whether drawing another round pays: the worth of the expected gain
/// against the round's token cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundValue {
    /// Calibrated P(correct) of the current leader.
    pub p_correct: f64,
    /// Expected change of P(correct) from escalating.
    pub expected_gain: f64,
    /// Its worth: gain × (value of a right answer + cost of a wrong one).
    pub worth: f64,
    /// Expected tokens of the round.
    pub tokens: f64,
    /// Their cost under the policy.
    pub cost: f64,
}

impl RoundValue {
    /// The value of a round of `tokens` expected tokens from `p`.
    pub fn of(p: f64, beliefs: &EscalationBeliefs, costs: &Costs, tokens: f64) -> Self {
        let expected_gain = beliefs.expected_gain(p);
        Self {
            p_correct: p,
            expected_gain,
            worth: expected_gain * (costs.value_correct + costs.cost_wrong),
            tokens,
            cost: tokens / 1000.0 * costs.cost_per_1k_tokens,
        }
    }

    /// Whether the round is worth its tokens.
    pub fn pays(&self) -> bool {
        self.worth > self.cost
    }
}

/// One reply in the pool of votes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PooledReply {
    /// The strategy that wrote it.
    pub strategy: StrategyKind,
    /// Its answer, normalised.
    pub answer: Option<String>,
    /// The weight of its vote (its token confidence).
    pub weight: f64,
    /// Tokens generated.
    pub tokens: u64,
}

/// One round of escalation, as the trace shows it: one reply of one
/// strategy of the mixture, or a whole cycle of the mixture (see
/// [`EscalationConfig::check_each_reply`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationRound {
    /// The cycle of the mixture the round belongs to (0 for the first).
    #[serde(default)]
    pub cycle: usize,
    /// What decided whether to draw it, before it was drawn.
    pub value: RoundValue,
    /// P(the leader is the majority) under the stopping rule, before it.
    pub majority_posterior: f64,
    /// Whether it was drawn, and if not why not.
    pub decision: String,
    /// The replies it drew.
    pub replies: Vec<PooledReply>,
    /// Weighted votes after it.
    pub votes: BTreeMap<String, f64>,
    /// The leading answer after it.
    pub leader: Option<String>,
}

/// The escalation of one episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationReport {
    /// The first attempt's answer.
    pub first_answer: Option<String>,
    /// Its calibrated P(correct).
    pub first_confidence: f64,
    /// The calibration features of the first answer (what the first
    /// confidence was read from); feedback teaches the calibrator the
    /// first answer's fate with them when it is known. Absent in traces
    /// stored before they were kept.
    #[serde(default)]
    pub first_features: Option<CalibrationFeatures>,
    /// Every round considered (the last one usually not drawn).
    pub rounds: Vec<EscalationRound>,
    /// The sampled attempts, in the order drawn.
    pub attempts: Vec<Attempt>,
    /// The answer after escalation.
    pub answer: Option<String>,
    /// Its calibrated P(correct).
    pub confidence: f64,
    /// Replies drawn in all.
    pub drawn: usize,
}

impl EscalationReport {
    /// Whether any reply was drawn.
    pub fn escalated(&self) -> bool {
        self.drawn > 0
    }
}

/// The pool: every reply so far, with the findings of those that were
/// checked.
#[derive(Default)]
pub(crate) struct Pool {
    pub(crate) replies: Vec<(StrategyKind, Candidate, Vec<Finding>)>,
}

impl Pool {
    /// Adds an attempt's replies; only its chosen reply was verified, so
    /// only that one carries the findings.
    pub(crate) fn add(&mut self, attempt: &Attempt) {
        for (i, c) in attempt.outcome.candidates.iter().enumerate() {
            let findings = if i == attempt.outcome.chosen {
                attempt.findings.clone()
            } else {
                Vec::new()
            };
            self.replies.push((attempt.strategy, c.clone(), findings));
        }
    }

    /// Weighted votes, rescaled to the number of replies with an answer.
    pub(crate) fn votes(&self, measure: ConfidenceMeasure) -> BTreeMap<String, f64> {
        rescaled_votes(self.replies.iter().filter_map(|(_, c, _)| {
            c.answer
                .as_ref()
                .map(|a| (a.normalized.as_str(), weight(c, measure)))
        }))
    }

    /// The leading answer; ties to the reply with the higher weight.
    pub(crate) fn leader(&self, measure: ConfidenceMeasure) -> Option<String> {
        let w = |r: &(StrategyKind, Candidate, Vec<Finding>)| weight(&r.1, measure);
        let i = weighted_winner(
            &self.replies,
            |r| r.1.answer.as_ref().map(|a| a.normalized.as_str()),
            w,
            w,
        )?;
        self.replies[i]
            .1
            .answer
            .as_ref()
            .map(|a| a.normalized.clone())
    }

    /// The reply that speaks for `answer`: the checked one with the highest
    /// weight, else the highest weight.
    pub(crate) fn representative(
        &self,
        answer: &str,
        measure: ConfidenceMeasure,
    ) -> Option<&(StrategyKind, Candidate, Vec<Finding>)> {
        self.replies
            .iter()
            .filter(|(_, c, _)| c.answer.as_ref().is_some_and(|a| a.normalized == answer))
            .max_by(|x, y| {
                (!x.2.is_empty(), weight(&x.1, measure))
                    .partial_cmp(&(!y.2.is_empty(), weight(&y.1, measure)))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
    }

    /// Plain vote counts (one per reply with an answer).
    pub(crate) fn counts(&self) -> BTreeMap<String, usize> {
        count_votes(
            self.replies
                .iter()
                .filter_map(|(_, c, _)| c.answer.as_ref().map(|a| a.normalized.as_str())),
        )
    }

    /// How many replies gave an answer.
    pub(crate) fn answered(&self) -> usize {
        self.replies
            .iter()
            .filter(|(_, c, _)| c.answer.is_some())
            .count()
    }

    /// Share of replies giving `answer`.
    pub(crate) fn agreement(&self, answer: &str) -> f64 {
        if self.replies.is_empty() {
            return 0.0;
        }
        let n = self
            .replies
            .iter()
            .filter(|(_, c, _)| c.answer.as_ref().is_some_and(|a| a.normalized == answer))
            .count();
        n as f64 / self.replies.len() as f64
    }

    /// +1 when two strategies gave `answer`, −1 when another strategy
    /// answered and never gave it, 0 when only one strategy answered.
    pub(crate) fn cross_check(&self, answer: &str) -> f64 {
        let mut gave: BTreeMap<StrategyKind, bool> = BTreeMap::new();
        for (s, c, _) in &self.replies {
            if let Some(a) = &c.answer {
                *gave.entry(*s).or_default() |= a.normalized == answer;
            }
        }
        match (gave.len(), gave.values().filter(|&&g| g).count()) {
            (0 | 1, _) => 0.0,
            (_, n) if n >= 2 => 1.0,
            _ => -1.0,
        }
    }
}

/// What judges the pool: the calibration model, the strategies' priors,
/// the policy's costs and the learned effect of escalating.
pub(crate) struct Judgement<'j> {
    /// The model, asked whether two short answers mean the same.
    pub(crate) model: &'j dyn LanguageModel,
    pub(crate) calibration: &'j Calibrator,
    pub(crate) priors: &'j BTreeMap<StrategyKind, f64>,
    pub(crate) p_true: f64,
    pub(crate) costs: &'j Costs,
    pub(crate) beliefs: &'j EscalationBeliefs,
    /// Told of every round as it is decided.
    pub(crate) observer: Option<&'j dyn crate::TraceObserver>,
}

impl Judgement<'_> {
    fn emit(&self, round: usize, detail: &EscalationRound) {
        if let Some(o) = self.observer {
            o.on_event(&crate::TraceEvent::Escalation {
                round,
                detail: detail.clone(),
            });
        }
    }
}

impl Judgement<'_> {
    /// The calibration features of the pool's answer `answer`.
    fn features(
        &self,
        pool: &Pool,
        answer: &str,
        measure: ConfidenceMeasure,
    ) -> Option<CalibrationFeatures> {
        let (strategy, reply, findings) = pool.representative(answer, measure)?;
        let prior = self.priors.get(strategy).copied().unwrap_or(0.5);
        let mut f = CalibrationFeatures::from_reply(
            reply,
            pool.agreement(answer),
            findings,
            prior,
            self.p_true,
        );
        f.cross_check = pool.cross_check(answer);
        f.single_reply = if pool.answered() <= 1 { 1.0 } else { 0.0 };
        Some(f)
    }
}

/// What an escalation returns to the loop.
pub(crate) struct Escalated {
    pub(crate) report: EscalationReport,
    /// The calibration features of the final answer.
    pub(crate) features: CalibrationFeatures,
    /// The final answer as the model wrote it.
    pub(crate) raw_answer: Option<String>,
    pub(crate) usage: Usage,
}

/// Escalates from the first attempt's `trace` (see the module docs). The
/// replies of `mixture` are drawn in turn, `per_round` each per round.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    solver: &Solver<'_>,
    task: &str,
    trace: &Trace,
    solve: &SolveConfig,
    mixture: &[StrategyKind],
    config: &EscalationConfig,
    judge: &Judgement<'_>,
    first_confidence: f64,
) -> Result<Escalated, SolveError> {
    let measure = config.weight;
    let first = &trace.attempts[trace.final_attempt];
    let mut pool = Pool::default();
    pool.add(first);
    let kind = &solve.answer_kind;
    let mut features = CalibrationFeatures::from_trace(
        trace,
        None,
        judge.priors.get(&first.strategy).copied().unwrap_or(0.5),
        judge.p_true,
    );
    let mut leader = trace.answer.clone();
    let mut p = first_confidence;
    let mut report = EscalationReport {
        first_answer: trace.answer.clone(),
        first_confidence,
        first_features: Some(features.clone()),
        rounds: Vec::new(),
        attempts: Vec::new(),
        answer: leader.clone(),
        confidence: p,
        drawn: 0,
    };
    let mut usage = Usage::default();
    let mut same_cache: BTreeMap<(String, String), bool> = BTreeMap::new();
    // A cycle draws every strategy of the mixture `per_round` times; a
    // round is a cycle, or one strategy's turn in it.
    let cycle_size = mixture.len() * config.per_round;
    let turns = if config.check_each_reply {
        mixture.len().max(1)
    } else {
        1
    };
    let settings = SearchSettings {
        temperature: config.temperature,
        ..solve.settings.clone()
    };
    for round in 0.. {
        let cycle = round / turns;
        let (first_j, strategies) = if config.check_each_reply && !mixture.is_empty() {
            let j = round % mixture.len();
            (j, &mixture[j..=j])
        } else {
            (0, mixture)
        };
        let round_tokens: f64 = strategies
            .iter()
            .map(|s| f64::from(s.strategy().expected_tokens) * config.per_round as f64)
            .sum();
        let value = RoundValue::of(p, judge.beliefs, judge.costs, round_tokens);
        let majority_posterior = config.rule.confidence_weighted(&pool.votes(measure));
        let next = cycle_size.min(config.max_samples.saturating_sub(report.drawn));
        let counts = pool.counts();
        let stop = if cycle_size == 0 {
            Some("no strategy or no reply per turn to draw from".to_string())
        } else if report.drawn >= config.max_samples {
            Some(format!("budget of {} replies reached", config.max_samples))
        } else if round > 0 && config.stop_when_settled && settled(&counts, next) {
            let (a, b) = top_two(&counts);
            Some(format!(
                "settled: the leader has {a} votes to the runner-up's {b}, so the next {next} replies cannot put another answer ahead"
            ))
        } else if round > 0 && majority_posterior >= config.rule.threshold() {
            Some(format!(
                "the weighted majority is sure: P(leader is the majority) {majority_posterior:.3}"
            ))
        } else if !value.pays() {
            Some(format!(
                "not worth it: expected gain {:+.3} in P(correct) is worth {:.4}, a round costs {:.4}",
                value.expected_gain, value.worth, value.cost
            ))
        } else {
            None
        };
        if let Some(why) = stop {
            report.rounds.push(EscalationRound {
                cycle,
                value,
                majority_posterior,
                decision: format!("stop: {why}"),
                replies: Vec::new(),
                votes: pool.votes(measure),
                leader: leader.clone(),
            });
            judge.emit(round, report.rounds.last().expect("just pushed"));
            break;
        }
        let mut replies = Vec::new();
        for (k, &strategy) in strategies.iter().enumerate() {
            let j = first_j + k;
            let n = config
                .per_round
                .min(config.max_samples.saturating_sub(report.drawn));
            if n == 0 {
                break;
            }
            // Seeds depend on the cycle and the strategy's place in the
            // mixture only, so both ways of checking draw the same replies.
            let cfg = SolveConfig {
                settings: SearchSettings {
                    seed: settings
                        .seed
                        .wrapping_add(1_000 * (cycle as u64 + 1) + j as u64),
                    ..settings.clone()
                },
                ..solve.clone()
            };
            let attempt = solver.sample(task, strategy, n, &cfg)?;
            usage += attempt.outcome.usage;
            report.drawn += attempt.outcome.candidates.len();
            replies.extend(attempt.outcome.candidates.iter().map(|c| PooledReply {
                strategy,
                answer: c.answer.as_ref().map(|a| a.normalized.clone()),
                weight: weight(c, measure),
                tokens: c.tokens,
            }));
            pool.add(&attempt);
            report.attempts.push(attempt);
        }
        // Answers that mean the same are one answer: first by their words,
        // then, for short text, by the model's judgement.
        let mut candidates: Vec<Candidate> = pool.replies.iter().map(|r| r.1.clone()).collect();
        unify_answers(kind, &mut candidates);
        for (r, c) in pool.replies.iter_mut().zip(candidates) {
            r.1 = c;
        }
        if *kind == AnswerKind::Text {
            usage += merge_by_meaning(judge.model, task, &mut pool, &mut same_cache)?;
        }
        leader = pool.leader(measure);
        if let Some(f) = leader
            .as_deref()
            .and_then(|a| judge.features(&pool, a, measure))
        {
            p = judge.calibration.confidence(&f);
            features = f;
        }
        report.rounds.push(EscalationRound {
            cycle,
            value,
            majority_posterior,
            decision: "escalate".into(),
            replies,
            votes: pool.votes(measure),
            leader: leader.clone(),
        });
        judge.emit(round, report.rounds.last().expect("just pushed"));
    }
    report.answer = leader.clone();
    report.confidence = p;
    let raw_answer = leader.as_deref().and_then(|a| {
        pool.representative(a, measure)
            .and_then(|r| r.1.answer.as_ref())
            .map(|x| x.raw.trim().to_string())
    });
    Ok(Escalated {
        report,
        features,
        raw_answer,
        usage,
    })
}

/// Merges distinct short-text answers of the pool that the model judges to
/// mean the same (clusters as in semantic entropy): each answer, in the
/// order first seen, joins the first earlier cluster whose representative
/// the model says it matches (P(Yes) ≥ 0.5), else starts its own.
/// Judgements are cached per pair across rounds.
pub(crate) fn merge_by_meaning(
    model: &dyn LanguageModel,
    task: &str,
    pool: &mut Pool,
    cache: &mut BTreeMap<(String, String), bool>,
) -> Result<Usage, SolveError> {
    let mut usage = Usage::default();
    let mut distinct: Vec<String> = Vec::new();
    for (_, c, _) in &pool.replies {
        if let Some(a) = &c.answer {
            if !distinct.contains(&a.normalized) {
                distinct.push(a.normalized.clone());
            }
        }
    }
    let mut heads: Vec<String> = Vec::new();
    let mut rename: BTreeMap<String, String> = BTreeMap::new();
    for a in distinct {
        let mut joined = None;
        for h in &heads {
            let key = (h.clone(), a.clone());
            let same = match cache.get(&key) {
                Some(&s) => s,
                None => {
                    let prompt = Prompt::user(fill(
                        prompts::SAME_MEANING_USER,
                        &[("task", task), ("a", h), ("b", &a)],
                    ))
                    .with_system(prompts::SAME_MEANING_SYSTEM);
                    let (p, u) = model.choice_probabilities(&prompt, &["Yes", "No"])?;
                    usage += u;
                    let s = p[0] >= 0.5;
                    cache.insert(key, s);
                    s
                }
            };
            if same {
                joined = Some(h.clone());
                break;
            }
        }
        match joined {
            Some(h) => {
                rename.insert(a, h);
            }
            None => heads.push(a),
        }
    }
    for (_, c, _) in &mut pool.replies {
        if let Some(ans) = c.answer.as_mut() {
            if let Some(h) = rename.get(&ans.normalized) {
                ans.normalized = h.clone();
            }
        }
    }
    Ok(usage)
}

/// A reply's vote weight: its token confidence (at least a small positive
/// floor, so that a reply without tokens still counts).
pub(crate) fn weight(c: &Candidate, measure: ConfidenceMeasure) -> f64 {
    measure.vote_weight(&c.confidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_pays_when_unsure_and_not_when_sure() {
        let b = EscalationBeliefs::default();
        let costs = Costs::default();
        // A round of two replies of ~200 tokens costs 0.02.
        let unsure = RoundValue::of(0.4, &b, &costs, 400.0);
        assert!(unsure.pays(), "{unsure:?}");
        let sure = RoundValue::of(0.97, &b, &costs, 400.0);
        assert!(!sure.pays(), "{sure:?}");
        // Tokens that cost more than any gain is worth: never.
        let dear = Costs {
            cost_per_1k_tokens: 100.0,
            ..Costs::default()
        };
        assert!(!RoundValue::of(0.1, &b, &dear, 400.0).pays());
    }

    #[test]
    fn feedback_moves_the_beliefs() {
        let mut b = EscalationBeliefs::default();
        let before = b.expected_gain(0.5);
        for _ in 0..20 {
            b.observe(Some(false), false);
        }
        assert!(b.expected_gain(0.5) < before);
        let r = b.recovers.mean();
        b.observe(None, true);
        assert_eq!(b.recovers.mean(), r);
    }
}
