//! Stopping and voting rules replayed over recorded samples.
//!
//! A self-consistency run (`--config sc8`, say) records every reply it drew
//! for an item, in order, with its answer, tokens, step-reward score and
//! token confidence. Each rule here sees those replies as a live run would
//! have drawn them and decides when to stop, which replies to cut short and
//! how to vote; its accuracy and tokens follow without running the model
//! again. Every rule thus meets the same replies: a paired comparison.

use std::collections::BTreeMap;

use metareason_monitor::confidence::{quantile, ConfidenceMeasure};
use metareason_monitor::stopping::{count_votes, rescaled_votes, settled, weighted_winner};
use metareason_monitor::StopRule;

use crate::run::{ItemResult, SampleRecord};

/// How a replayed rule picks the answer from the replies it kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Vote {
    /// Most frequent answer; ties to the best step-reward score.
    Majority,
    /// Answer with the largest sum of a confidence measure.
    Weighted(ConfidenceMeasure),
    /// The reply with the best step-reward score answers (no vote).
    BestScore,
}

/// A rule to replay.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// The first `n` replies, voted.
    FirstN {
        /// Replies used.
        n: usize,
        /// How they are voted.
        vote: Vote,
    },
    /// Adaptive consistency: replies one at a time until the stopping rule
    /// is sure of the majority.
    Adaptive(StopRule),
    /// Adaptive consistency as the loop's escalation weighs it: each vote
    /// weighted by its reply's confidence (rescaled so the weights sum to
    /// the number of replies), the answer the weighted winner; with a
    /// `lookahead`, also stopped once that many more replies could not put
    /// another answer ahead (`monitor::stopping::settled`). Never stops on
    /// the first reply alone.
    AdaptiveWeighted {
        /// When the weighted majority is sure enough.
        stop: StopRule,
        /// The confidence that weighs a vote.
        measure: ConfidenceMeasure,
        /// Replies the settled rule looks ahead (0: not asked).
        lookahead: usize,
    },
    /// The `keep` share of replies with the highest confidence measure,
    /// voted by it (DeepConf's offline filtering).
    Filtered {
        /// Share kept, e.g. 0.1 (DeepConf-low) or 0.9 (DeepConf-high).
        keep: f64,
        /// The measure that ranks and weighs.
        measure: ConfidenceMeasure,
    },
    /// DeepConf online: the first `warmup` replies run to their end and set
    /// the threshold (the quantile `1 - keep` of their lowest group
    /// confidence); every later reply is cut where its group confidence
    /// falls below it and its vote dropped; sampling stops when the
    /// stopping rule is sure of the weighted majority.
    Online {
        /// Replies that run whole and set the threshold.
        warmup: usize,
        /// Share of warm-up confidence that passes (0.1 low, 0.9 high).
        keep: f64,
        /// When to stop.
        stop: StopRule,
    },
    /// The whole loop's escalation, round by round: the first attempt's
    /// replies, then each round's, voted by the loop's weight (lowest
    /// group confidence), stopped as [`LoopStop`] says.
    LoopRounds(LoopStop),
}

/// Where a replayed run of the whole loop stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopStop {
    /// After the first attempt (no escalation).
    FirstAttempt,
    /// After the first round at which the next round could not put
    /// another answer ahead of the leader (`monitor::stopping::settled`),
    /// asked after every whole round (the loop with `check_each_reply`
    /// off).
    Settled,
    /// The same rule asked after every escalated reply, with a whole round
    /// as its look-ahead (the loop's default, `check_each_reply`), less
    /// where the escalation's budget of replies leaves fewer.
    SettledEachReply {
        /// Most replies escalation may draw after the first attempt (the
        /// run's `escalation.max_samples`). Unknown, the budget is taken to
        /// end where the recorded replies do — right for a run that drew
        /// every round, too short a look-ahead for one that stopped early.
        budget: Option<usize>,
    },
    /// Where the run stopped: every recorded round.
    Recorded,
}

impl Rule {
    /// The rule's name in tables.
    pub fn name(&self) -> String {
        let stop = |r: &StopRule| match r {
            StopRule::Beta { threshold } => format!("Beta {threshold:.2}"),
            StopRule::Dirichlet { threshold, alpha } => {
                format!("Dirichlet {threshold:.2} (alpha {alpha})")
            }
        };
        match self {
            Rule::FirstN {
                n,
                vote: Vote::Majority,
            } => format!("self-consistency@{n}"),
            Rule::FirstN {
                n,
                vote: Vote::Weighted(m),
            } => format!("{n} replies, vote weighted by {} confidence", m.name()),
            Rule::FirstN {
                n,
                vote: Vote::BestScore,
            } => format!("best of {n} by step reward (no vote)"),
            Rule::Adaptive(r) => format!("adaptive consistency, {}", stop(r)),
            Rule::AdaptiveWeighted {
                stop: r,
                measure,
                lookahead,
            } => {
                let settled = if *lookahead > 0 {
                    format!(" or settled {lookahead} replies ahead")
                } else {
                    String::new()
                };
                format!(
                    "adaptive consistency, {}{settled}, votes weighted by {} confidence",
                    stop(r),
                    measure.name()
                )
            }
            Rule::Filtered { keep, measure } => format!(
                "DeepConf offline: top {:.0}% by {}, weighted vote",
                keep * 100.0,
                measure.name()
            ),
            Rule::Online {
                warmup,
                keep,
                stop: s,
            } => format!(
                "DeepConf online: warm-up {warmup}, keep {:.0}%, early cut, {}",
                keep * 100.0,
                stop(s)
            ),
            Rule::LoopRounds(LoopStop::FirstAttempt) => "the loop's first attempt alone".into(),
            Rule::LoopRounds(LoopStop::Recorded) => {
                "the loop's escalation, every recorded round".into()
            }
            Rule::LoopRounds(LoopStop::Settled) => {
                "the loop's escalation, stopped once the leader is settled".into()
            }
            Rule::LoopRounds(LoopStop::SettledEachReply { .. }) => {
                "the loop's escalation, settled asked after every reply".into()
            }
        }
    }
}

/// The rules `bench replay` reports when none are given.
pub fn default_rules(n: usize) -> Vec<Rule> {
    let beta = |t| StopRule::Beta { threshold: t };
    let mut rules = vec![
        Rule::FirstN {
            n: 1,
            vote: Vote::Majority,
        },
        Rule::FirstN {
            n,
            vote: Vote::Majority,
        },
        Rule::Adaptive(beta(0.95)),
        Rule::Adaptive(beta(0.90)),
        Rule::Adaptive(beta(0.80)),
        Rule::Adaptive(StopRule::Dirichlet {
            threshold: 0.95,
            alpha: 1.0,
        }),
        Rule::FirstN {
            n: 4.min(n),
            vote: Vote::BestScore,
        },
        Rule::FirstN {
            n,
            vote: Vote::BestScore,
        },
    ];
    for m in ConfidenceMeasure::ALL {
        rules.push(Rule::FirstN {
            n,
            vote: Vote::Weighted(m),
        });
    }
    for keep in [0.1, 0.5, 0.9] {
        rules.push(Rule::Filtered {
            keep,
            measure: ConfidenceMeasure::LowestGroup,
        });
    }
    for keep in [0.1, 0.9] {
        rules.push(Rule::Online {
            warmup: 2,
            keep,
            stop: beta(0.95),
        });
    }
    rules
}

/// The rules `bench replay` reports for a run of the whole loop (replies of
/// more than one strategy, in rounds).
pub fn loop_rules(budget: Option<usize>) -> Vec<Rule> {
    vec![
        Rule::LoopRounds(LoopStop::FirstAttempt),
        Rule::LoopRounds(LoopStop::Recorded),
        Rule::LoopRounds(LoopStop::Settled),
        Rule::LoopRounds(LoopStop::SettledEachReply { budget }),
    ]
}

/// The rules `bench replay --mix` reports over `n` replies interleaved
/// from two sampling runs (a mixture of `strategies` strategies taking
/// turns): all of them voted plainly and by confidence, adaptive
/// consistency with plain votes, and the loop's escalation rule (weighted
/// votes, stopped once sure or once a cycle of the mixture cannot overturn
/// the leader).
pub fn mixture_rules(n: usize, strategies: usize) -> Vec<Rule> {
    let beta = StopRule::Beta { threshold: 0.95 };
    vec![
        Rule::FirstN {
            n: strategies,
            vote: Vote::Weighted(ConfidenceMeasure::LowestGroup),
        },
        Rule::FirstN {
            n,
            vote: Vote::Majority,
        },
        Rule::FirstN {
            n,
            vote: Vote::Weighted(ConfidenceMeasure::LowestGroup),
        },
        Rule::Adaptive(beta),
        Rule::AdaptiveWeighted {
            stop: beta,
            measure: ConfidenceMeasure::LowestGroup,
            lookahead: 0,
        },
        Rule::AdaptiveWeighted {
            stop: beta,
            measure: ConfidenceMeasure::LowestGroup,
            lookahead: strategies,
        },
    ]
}

/// Items of two sampling runs of the same problems, their replies taken in
/// turns (`first`'s, then `second`'s, and so on; the longer run's rest at
/// the end), each run's in the order it drew them, at most `budget` in all:
/// what adaptive consistency over a mixture of the two runs' strategies
/// would have seen with that budget. Only items both runs recorded replies
/// for are kept, in `first`'s order.
pub fn interleave(first: &[ItemResult], second: &[ItemResult], budget: usize) -> Vec<ItemResult> {
    let by_id: BTreeMap<&str, &ItemResult> = second
        .iter()
        .filter(|r| !r.samples.is_empty())
        .map(|r| (r.id.as_str(), r))
        .collect();
    first
        .iter()
        .filter(|a| !a.samples.is_empty())
        .filter_map(|a| {
            let b = by_id.get(a.id.as_str())?;
            let mut samples = Vec::with_capacity(a.samples.len() + b.samples.len());
            for i in 0..a.samples.len().max(b.samples.len()) {
                samples.extend(a.samples.get(i).cloned());
                samples.extend(b.samples.get(i).cloned());
            }
            samples.truncate(budget);
            for s in &mut samples {
                s.round = None;
            }
            Some(ItemResult {
                samples,
                ..a.clone()
            })
        })
        .collect()
}

/// Splits a whole-loop item's replies into rounds: by their recorded
/// `round` when every reply has one; otherwise (runs recorded before
/// rounds were) the first attempt is the leading run of replies of the
/// first strategy, less its last reply when another strategy follows
/// (escalation's rounds draw the first strategy and then the others), and
/// the rest is cut into rounds of as many replies as there are strategies.
pub fn rounds_of(samples: &[SampleRecord]) -> Vec<&[SampleRecord]> {
    if samples.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if samples.iter().all(|s| s.round.is_some()) {
        let mut start = 0;
        for i in 1..=samples.len() {
            if i == samples.len() || samples[i].round != samples[start].round {
                out.push(&samples[start..i]);
                start = i;
            }
        }
        return out;
    }
    let lead = samples
        .iter()
        .take_while(|s| s.strategy == samples[0].strategy)
        .count();
    let first = if lead < samples.len() && lead > 1 {
        lead - 1
    } else if lead == samples.len() {
        1
    } else {
        lead
    };
    let mut strategies: Vec<_> = samples.iter().map(|s| s.strategy).collect();
    strategies.sort();
    strategies.dedup();
    out.push(&samples[..first]);
    out.extend(samples[first..].chunks(strategies.len().max(1)));
    out
}

/// What a rule did on one item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replayed {
    /// Whether its answer was right.
    pub correct: bool,
    /// Replies it drew (cut ones included).
    pub samples: usize,
    /// Tokens generated, cut replies counted up to the cut.
    pub tokens: u64,
}

/// The winner of weighted votes; ties to the best step-reward score.
fn winner<'a>(
    kept: &[&'a SampleRecord],
    weight: impl Fn(&SampleRecord) -> f64,
) -> Option<&'a SampleRecord> {
    weighted_winner(kept, |s| s.answer.as_deref(), |s| weight(s), |s| s.score).map(|i| kept[i])
}

/// The winner of votes weighted by `measure`, as the loop's escalation
/// picks it: ties to the reply of higher weight.
fn confidence_winner<'a>(
    kept: &[&'a SampleRecord],
    measure: ConfidenceMeasure,
) -> Option<&'a SampleRecord> {
    let w = |s: &&SampleRecord| measure.vote_weight(&s.confidence);
    weighted_winner(kept, |s| s.answer.as_deref(), w, w).map(|i| kept[i])
}

fn counts(kept: &[&SampleRecord], weight: impl Fn(&SampleRecord) -> f64) -> BTreeMap<String, f64> {
    rescaled_votes(
        kept.iter()
            .filter_map(|s| s.answer.as_deref().map(|a| (a, weight(s)))),
    )
}

/// Replays `rule` on one item's recorded replies (None without replies).
pub fn replay_item(rule: &Rule, samples: &[SampleRecord]) -> Option<Replayed> {
    if samples.is_empty() {
        return None;
    }
    let right = |s: Option<&SampleRecord>| s.is_some_and(|s| s.correct == Some(true));
    let whole = |used: &[SampleRecord]| used.iter().map(|s| s.tokens).sum::<u64>();
    Some(match rule {
        Rule::FirstN { n, vote } => {
            let used = &samples[..(*n).min(samples.len())];
            let kept: Vec<&SampleRecord> = used.iter().collect();
            let pick = match vote {
                Vote::Majority => winner(&kept, |_| 1.0),
                Vote::Weighted(m) => winner(&kept, |s| m.of(&s.confidence)),
                Vote::BestScore => kept
                    .iter()
                    .filter(|s| s.answer.is_some())
                    .max_by(|a, b| a.score.total_cmp(&b.score))
                    .copied(),
            };
            Replayed {
                correct: right(pick),
                samples: used.len(),
                tokens: whole(used),
            }
        }
        Rule::Adaptive(stop) => {
            let mut kept = Vec::new();
            for s in samples {
                kept.push(s);
                if stop.should_stop_weighted(&counts(&kept, |_| 1.0)) {
                    break;
                }
            }
            Replayed {
                correct: right(winner(&kept, |_| 1.0)),
                samples: kept.len(),
                tokens: kept.iter().map(|s| s.tokens).sum(),
            }
        }
        Rule::AdaptiveWeighted {
            stop,
            measure,
            lookahead,
        } => {
            let w = |s: &SampleRecord| measure.vote_weight(&s.confidence);
            let mut kept = Vec::new();
            for (i, s) in samples.iter().enumerate() {
                kept.push(s);
                let left = samples.len() - i - 1;
                if kept.len() < 2 || left == 0 {
                    continue;
                }
                let plain: Vec<&str> = kept.iter().filter_map(|s| s.answer.as_deref()).collect();
                let settled_now =
                    *lookahead > 0 && settled(&count_votes(plain), (*lookahead).min(left));
                if settled_now || stop.should_stop_weighted(&counts(&kept, w)) {
                    break;
                }
            }
            Replayed {
                correct: right(confidence_winner(&kept, *measure)),
                samples: kept.len(),
                tokens: kept.iter().map(|s| s.tokens).sum(),
            }
        }
        Rule::Filtered { keep, measure } => {
            let mut ranked: Vec<&SampleRecord> = samples.iter().collect();
            ranked.sort_by(|a, b| {
                measure
                    .of(&b.confidence)
                    .total_cmp(&measure.of(&a.confidence))
            });
            let k = ((samples.len() as f64 * keep).ceil() as usize).clamp(1, samples.len());
            ranked.truncate(k);
            Replayed {
                correct: right(winner(&ranked, |s| measure.of(&s.confidence))),
                samples: samples.len(),
                tokens: whole(samples),
            }
        }
        Rule::Online { warmup, keep, stop } => {
            let w = (*warmup).clamp(1, samples.len());
            let warm: Vec<f64> = samples[..w]
                .iter()
                .map(|s| s.confidence.lowest_group)
                .collect();
            let threshold = quantile(&warm, 1.0 - keep).unwrap_or(f64::NEG_INFINITY);
            let measure = |s: &SampleRecord| s.confidence.lowest_group;
            let mut kept: Vec<&SampleRecord> = samples[..w].iter().collect();
            let (mut drawn, mut tokens) = (w, whole(&samples[..w]));
            if !stop.should_stop_weighted(&counts(&kept, measure)) {
                for s in &samples[w..] {
                    drawn += 1;
                    match s.confidence.stop_at(threshold) {
                        Some(cut) => tokens += u64::from(cut).min(s.tokens),
                        None => {
                            tokens += s.tokens;
                            kept.push(s);
                        }
                    }
                    if stop.should_stop_weighted(&counts(&kept, measure)) {
                        break;
                    }
                }
            }
            Replayed {
                correct: right(winner(&kept, measure)),
                samples: drawn,
                tokens,
            }
        }
        Rule::LoopRounds(stop) => {
            let rounds = rounds_of(samples);
            // How many of the recorded replies the rule keeps, in order.
            let used = match stop {
                LoopStop::FirstAttempt => rounds.first().map_or(0, |r| r.len()),
                LoopStop::Recorded => samples.len(),
                LoopStop::Settled => settled_after_rounds(&rounds),
                LoopStop::SettledEachReply { budget } => {
                    settled_after_replies(samples, &rounds, *budget)
                }
            };
            let kept: Vec<&SampleRecord> = samples[..used].iter().collect();
            Replayed {
                correct: right(confidence_winner(&kept, ConfidenceMeasure::LowestGroup)),
                samples: kept.len(),
                tokens: kept.iter().map(|s| s.tokens).sum(),
            }
        }
    })
}

/// The replies kept when the settled rule is asked after every whole
/// round: votes so far after each round, with the next round as the
/// look-ahead; the first attempt alone is never judged settled (the loop
/// waits for one round).
fn settled_after_rounds(rounds: &[&[SampleRecord]]) -> usize {
    let mut counts = BTreeMap::new();
    let mut kept = 0;
    for (j, round) in rounds.iter().enumerate() {
        kept += round.len();
        for (a, n) in count_votes(round.iter().filter_map(|s| s.answer.as_deref())) {
            *counts.entry(a).or_default() += n;
        }
        if j > 0 && j + 1 < rounds.len() && settled(&counts, rounds[j + 1].len()) {
            break;
        }
    }
    kept
}

/// The replies kept when the settled rule is asked after every escalated
/// reply: a whole round (a cycle of the mixture) is the look-ahead, less
/// where the budget leaves fewer replies (`budget`, or where the recorded
/// replies end when it is unknown); the first attempt alone is never
/// judged settled.
fn settled_after_replies(
    samples: &[SampleRecord],
    rounds: &[&[SampleRecord]],
    budget: Option<usize>,
) -> usize {
    let cycle = rounds.iter().skip(1).map(|r| r.len()).max().unwrap_or(1);
    let first = rounds.first().map_or(0, |r| r.len());
    let mut counts = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        if let Some(a) = s.answer.as_deref() {
            *counts.entry(a.to_string()).or_default() += 1;
        }
        let recorded_after = samples.len() - i - 1;
        let left = match budget {
            // Escalated replies drawn so far: those after the first attempt.
            Some(b) => b.saturating_sub((i + 1).saturating_sub(first)),
            None => recorded_after,
        };
        if i >= first && recorded_after > 0 && left > 0 && settled(&counts, cycle.min(left)) {
            return i + 1;
        }
    }
    samples.len()
}

/// One row of a replay table.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRow {
    /// The rule.
    pub rule: String,
    /// Items replayed.
    pub items: usize,
    /// Right answers.
    pub correct: usize,
    /// Mean replies drawn per item.
    pub samples: f64,
    /// Mean tokens generated per item.
    pub tokens: f64,
}

/// Replays every rule over the items that recorded replies.
pub fn replay(results: &[ItemResult], rules: &[Rule]) -> Vec<ReplayRow> {
    let items: Vec<&ItemResult> = results
        .iter()
        .filter(|r| !r.samples.is_empty() && r.reference.is_some())
        .collect();
    rules
        .iter()
        .map(|rule| {
            let (mut correct, mut samples, mut tokens) = (0, 0, 0u64);
            for r in &items {
                let x = replay_item(rule, &r.samples).expect("has samples");
                correct += usize::from(x.correct);
                samples += x.samples;
                tokens += x.tokens;
            }
            let n = items.len().max(1) as f64;
            ReplayRow {
                rule: rule.name(),
                items: items.len(),
                correct,
                samples: samples as f64 / n,
                tokens: tokens as f64 / n,
            }
        })
        .collect()
}

/// A replay as a markdown table.
pub fn markdown(rows: &[ReplayRow]) -> String {
    let mut out = String::from(
        "| rule | accuracy | replies / item | tokens generated / item |\n|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.3} ({}/{}) | {:.2} | {:.0} |\n",
            r.rule,
            r.correct as f64 / r.items.max(1) as f64,
            r.correct,
            r.items,
            r.samples,
            r.tokens
        ));
    }
    out
}
