//! How candidates' answers are grouped, counted and chosen between.

use metareason_strategy::answer::Extract;
use std::collections::BTreeMap;

use metareason_strategy::answer::AnswerKind;

use super::Candidate;
use crate::stopping::{count_votes, rescaled_votes};

/// Puts answers that say the same thing under one text, the first of their
/// group's ([`AnswerKind::meaning_groups`]), so that votes count meanings:
/// "shakespeare" and "william shakespeare" are one answer. The raw text of
/// each answer is kept.
pub fn unify_answers(kind: &AnswerKind, candidates: &mut [Candidate]) {
    let answers: Vec<(usize, String)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c.answer.as_ref()?.normalized.clone())))
        .collect();
    let texts: Vec<&str> = answers.iter().map(|(_, a)| a.as_str()).collect();
    let groups = kind.meaning_groups(&texts);
    for (j, &head) in groups.iter().enumerate() {
        if head != j {
            let text = answers[head].1.clone();
            if let Some(a) = candidates[answers[j].0].answer.as_mut() {
                a.normalized = text;
            }
        }
    }
}

/// Votes per answer weighted by each reply's lowest group confidence and
/// rescaled to the number of replies with an answer.
pub fn weighted_votes(candidates: &[Candidate]) -> BTreeMap<String, f64> {
    rescaled_votes(candidates.iter().filter_map(|c| {
        c.answer
            .as_ref()
            .map(|a| (a.normalized.as_str(), c.confidence.lowest_group.max(1e-3)))
    }))
}

/// The candidate of the answer with the largest confidence-weighted vote
/// (ties to the best step-reward score); the first candidate when none has
/// an answer.
pub fn weighted_majority(candidates: &[Candidate]) -> usize {
    crate::stopping::weighted_winner(
        candidates,
        |c| c.answer.as_ref().map(|a| a.normalized.as_str()),
        |c| c.confidence.lowest_group.max(1e-3),
        |c| c.score,
    )
    .unwrap_or(0)
}

/// Votes per (normalised) answer.
pub fn vote(candidates: &[Candidate]) -> BTreeMap<String, usize> {
    count_votes(
        candidates
            .iter()
            .filter_map(|c| c.answer.as_ref().map(|a| a.normalized.as_str())),
    )
}

/// The candidate with an answer and the best mean step reward.
pub fn best_by_score(c: &[Candidate]) -> usize {
    // Candidates with an answer first, then by score; ties to the earliest.
    let mut best = 0;
    for i in 1..c.len() {
        let key = |j: usize| (c[j].answer.is_some(), c[j].score);
        let (ha, sa) = key(i);
        let (hb, sb) = key(best);
        if (ha && !hb) || (ha == hb && sa > sb) {
            best = i;
        }
    }
    best
}

/// The best-scored candidate among those giving the most-voted answer.
pub fn majority(c: &[Candidate], votes: &BTreeMap<String, usize>) -> usize {
    let Some(top) = votes.values().copied().max() else {
        return best_by_score(c);
    };
    // Among answers with the most votes, the one whose best candidate scores
    // highest; the chosen candidate is that best one.
    let mut best: Option<usize> = None;
    for (i, cand) in c.iter().enumerate() {
        let Some(a) = &cand.answer else { continue };
        if votes[&a.normalized] != top {
            continue;
        }
        if best.is_none_or(|b| cand.score > c[b].score) {
            best = Some(i);
        }
    }
    best.unwrap_or(0)
}
