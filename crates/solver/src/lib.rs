//! # metareason-solver
//!
//! Solving one task at the task level of the design: under a strategy F
//! the reasoning A is searched with every step scored (monitoring), the
//! chosen reply is checked by verifiers, which make the observation O
//! (evaluation), and revised from its first flagged step while that raises
//! the estimated probability of being right (regulation). When step rewards
//! collapse, the solver switches to the next strategy. Everything is
//! recorded in a [`Trace`] with a versioned schema (`docs/trace-schema.md`).
//!
//! ```no_run
//! use metareason_scripted::{Reply, ScriptedModel, When};
//! use metareason_solver::{SolveConfig, Solver};
//!
//! let model = ScriptedModel::new().on(When::Always, [Reply::text("6 * 7 = 42\nThe answer is 42.")]);
//! let trace = Solver::new(&model).solve("What is 6 * 7?", &SolveConfig::default())?;
//! assert_eq!(trace.answer.as_deref(), Some("42"));
//! # Ok::<(), metareason_solver::SolveError>(())
//! ```
#![deny(missing_docs)]

pub mod prompts;
mod trace;

use metareason_strategy::answer::Extract;
use metareason_strategy::Definition;
use std::time::Instant;

use metareason_core::{LanguageModel, Message, ModelError, Prompt, Usage};
use metareason_monitor::search::{
    best_by_score, majority, mean_reward, unify_answers, vote, Budget,
};
use metareason_monitor::{
    Candidate, ModelJudge, RewardWeights, SearchOutcome, SearchPolicy, SearchSettings, Searcher,
    StepJudge, StopRule, TreeSelection,
};
use metareason_sandbox::{Limits, Sandbox, SandboxError};
use metareason_strategy::answer::{Answer, AnswerKind};
use metareason_strategy::{AnswerSource, StrategyKind};
use metareason_verify::{
    check_arithmetic, format::check_format, program, Finding, Verdict, VerifierKind,
};
use serde::{Deserialize, Serialize};

pub use trace::{Attempt, Backtrack, Revision, Switch, Trace, TRACE_SCHEMA};

/// When step rewards count as collapsed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CollapseRule {
    /// A step below this reward collapses the chain.
    pub min_reward: f64,
    /// So does a fall of the running mean by more than this in one step.
    pub max_drop: f64,
}

impl Default for CollapseRule {
    fn default() -> Self {
        Self {
            min_reward: 0.2,
            max_drop: 0.35,
        }
    }
}

impl CollapseRule {
    /// The first collapsed step and a description of the numbers, if any.
    pub fn check(&self, rewards: &[f64]) -> Option<(usize, String)> {
        let mut sum = 0.0;
        for (i, &r) in rewards.iter().enumerate() {
            let before = if i == 0 { None } else { Some(sum / i as f64) };
            sum += r;
            let after = sum / (i + 1) as f64;
            if r < self.min_reward {
                return Some((
                    i,
                    format!("step {i} reward {r:.3} < {:.3}", self.min_reward),
                ));
            }
            if let Some(b) = before {
                if b - after > self.max_drop {
                    return Some((
                        i,
                        format!("running mean fell from {b:.3} to {after:.3} at step {i}"),
                    ));
                }
            }
        }
        None
    }
}

/// How to solve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SolveConfig {
    /// The first strategy.
    pub strategy: StrategyKind,
    /// Strategies to switch to, in order, when step rewards collapse or the
    /// answer cannot be found.
    pub fallbacks: Vec<StrategyKind>,
    /// The search policy.
    pub policy: SearchPolicy,
    /// Search settings (temperature, seed, token limits and budget).
    pub settings: SearchSettings,
    /// The kind of answer sought.
    pub answer_kind: AnswerKind,
    /// Step-reward weights.
    pub weights: RewardWeights,
    /// When rewards count as collapsed.
    pub collapse: CollapseRule,
    /// Rounds of revision at most.
    pub max_revisions: usize,
    /// On collapse, continuations resampled from the step before it (0: do
    /// not backtrack, switch strategy at once).
    pub backtrack_samples: usize,
    /// Switch to the next strategy when a verifier still flags the answer
    /// after revision.
    pub switch_on_flag: bool,
    /// Ask the model to critique its solution.
    pub critique: bool,
    /// Ask the model whether each step is correct; P(Yes) joins the step
    /// reward (one scoring call per step and answer).
    pub judge_steps: bool,
    /// Thought templates or solved examples for the example-guided strategy.
    pub examples: Vec<String>,
    /// Error notes from similar past failures, handed to the critique.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Limits of the sandbox that runs programs.
    pub sandbox: Limits,
}

impl Default for SolveConfig {
    fn default() -> Self {
        Self {
            strategy: StrategyKind::ChainOfThought,
            fallbacks: vec![StrategyKind::ProgramAided],
            policy: SearchPolicy::Greedy,
            settings: SearchSettings::default(),
            answer_kind: AnswerKind::Number,
            weights: RewardWeights::default(),
            collapse: CollapseRule::default(),
            max_revisions: 1,
            backtrack_samples: 3,
            switch_on_flag: true,
            critique: false,
            judge_steps: false,
            examples: Vec::new(),
            notes: Vec::new(),
            sandbox: Limits::default(),
        }
    }
}

/// The names [`policy_by_name`] knows (the command line offers these).
pub const POLICY_NAMES: [&str; 9] = [
    "greedy",
    "bon",
    "sc",
    "adaptive",
    "adaptive_dirichlet",
    "deepconf",
    "beam",
    "mcts",
    "mcts_puct",
];

/// Named search configurations for the command line and benchmarks;
/// `samples` is the number of samples, the most samples or the iterations.
pub fn policy_by_name(name: &str, samples: usize) -> Option<SearchPolicy> {
    let n = samples.max(1);
    Some(match name {
        "deepconf" => SearchPolicy::DeepConf {
            warmup: 2.min(n),
            max_samples: n,
            keep: 0.9,
            rule: StopRule::Beta { threshold: 0.95 },
        },
        "greedy" => SearchPolicy::Greedy,
        "bon" | "best_of_n" => SearchPolicy::BestOfN { n },
        "sc" | "self_consistency" => SearchPolicy::SelfConsistency { n },
        "adaptive" => SearchPolicy::Adaptive {
            max_samples: n,
            batch: 1,
            rule: StopRule::Beta { threshold: 0.95 },
        },
        "adaptive_dirichlet" => SearchPolicy::Adaptive {
            max_samples: n,
            batch: 1,
            rule: StopRule::Dirichlet {
                threshold: 0.95,
                alpha: 1.0,
            },
        },
        "beam" => SearchPolicy::Beam {
            width: 2,
            expansions: 2,
            max_steps: 12,
        },
        "mcts" => SearchPolicy::Mcts {
            iterations: n,
            expansions: 2,
            exploration: 1.0,
            max_steps: 12,
            selection: TreeSelection::Uct,
        },
        "mcts_puct" => SearchPolicy::Mcts {
            iterations: n,
            expansions: 2,
            exploration: 1.0,
            max_steps: 12,
            selection: TreeSelection::Puct,
        },
        _ => return None,
    })
}

/// Why solving failed.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The sandbox could not run a program.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// The solve's configuration with the token budget that is left (None when
/// it is spent; unchanged without a budget).
fn budgeted(config: &SolveConfig, usage: &Usage) -> Option<SolveConfig> {
    match Budget::spent(config.settings.budget_tokens, *usage).left() {
        None => Some(config.clone()),
        Some(0) => None,
        Some(left) => {
            let mut c = config.clone();
            c.settings.budget_tokens = left;
            Some(c)
        }
    }
}

/// Solves tasks with one model.
pub struct Solver<'a> {
    model: &'a dyn LanguageModel,
    judge: Option<&'a dyn StepJudge>,
    scorer: &'a dyn AttemptScorer,
}

/// What is known about a finished attempt when its confidence is scored.
#[derive(Debug, Clone, Copy)]
pub struct AttemptEvidence<'e> {
    /// The strategy that produced it.
    pub strategy: StrategyKind,
    /// The chosen reply.
    pub candidate: &'e Candidate,
    /// Share of the attempt's replies agreeing with its answer.
    pub agreement: f64,
    /// How many of the attempt's replies gave an answer (the pool the
    /// agreement is a share of).
    pub replies: usize,
    /// What the verifiers found.
    pub findings: &'e [Finding],
    /// The model's own P(correct) from a critique, when one ran.
    pub critique: Option<f64>,
}

/// How many of `candidates` gave an answer (the pool an agreement is a
/// share of).
pub fn answered(candidates: &[Candidate]) -> usize {
    candidates.iter().filter(|c| c.answer.is_some()).count()
}

/// P(an attempt's answer is right). The solver picks between attempts and
/// accepts a revision by it, so it should be the calibrated confidence that
/// also decides abstention: the meta level injects its calibration model
/// ([`Solver::with_scorer`]); alone, the solver uses [`HandSetScorer`].
pub trait AttemptScorer: Send + Sync {
    /// The probability that the attempt's answer is right.
    fn p_correct(&self, evidence: &AttemptEvidence<'_>) -> f64;
}

/// Hand-set logistic weights over the attempt's evidence: the solver's
/// stand-in when no calibrated model is injected.
#[derive(Debug, Clone, Copy, Default)]
pub struct HandSetScorer;

impl AttemptScorer for HandSetScorer {
    fn p_correct(&self, e: &AttemptEvidence<'_>) -> f64 {
        let c = e.candidate;
        let min_reward = c.steps.iter().map(|s| s.reward).fold(1.0, f64::min);
        let mut z = -1.5 + 2.0 * c.score + 1.0 * min_reward + 2.0 * e.agreement;
        if c.answer.is_none() {
            z -= 4.0;
        }
        for f in e.findings {
            let w = match f.verifier {
                VerifierKind::Arithmetic | VerifierKind::Program => 2.5,
                VerifierKind::Format => 1.5,
                VerifierKind::Critique => 1.0,
            };
            match f.verdict {
                Verdict::Fail => z -= w * f.confidence,
                Verdict::Pass => z += 0.3 * w * f.confidence,
            }
        }
        if let Some(p) = e.critique {
            z += 2.0 * (p - 0.5);
        }
        1.0 / (1.0 + (-z).exp())
    }
}

impl<'a> Solver<'a> {
    /// A solver on `model`.
    pub fn new(model: &'a dyn LanguageModel) -> Self {
        Self {
            model,
            judge: None,
            scorer: &HandSetScorer,
        }
    }

    /// Scores attempts with `scorer` (the meta level's calibrated model)
    /// instead of the hand-set weights.
    pub fn with_scorer(mut self, scorer: &'a dyn AttemptScorer) -> Self {
        self.scorer = scorer;
        self
    }

    fn score(
        &self,
        strategy: StrategyKind,
        candidate: &Candidate,
        (agreement, replies): (f64, usize),
        findings: &[Finding],
        critique: Option<f64>,
    ) -> f64 {
        self.scorer.p_correct(&AttemptEvidence {
            strategy,
            candidate,
            agreement,
            replies,
            findings,
            critique,
        })
    }

    /// Judges every step with `judge` (for example a process reward model
    /// behind a server): its P(correct) joins each step's reward, whatever
    /// [`SolveConfig::judge_steps`] says.
    pub fn with_step_judge(mut self, judge: &'a dyn StepJudge) -> Self {
        self.judge = Some(judge);
        self
    }

    /// The judge of this attempt's steps: the external one, else the model
    /// itself when [`SolveConfig::judge_steps`] asks for it.
    fn step_judge<'j>(
        &'j self,
        config: &SolveConfig,
        model_judge: &'j ModelJudge<'a>,
    ) -> Option<&'j dyn StepJudge> {
        match self.judge {
            Some(j) => Some(j),
            None => config.judge_steps.then_some(model_judge as &dyn StepJudge),
        }
    }

    /// Solves `question` and returns the whole trace.
    pub fn solve(&self, question: &str, config: &SolveConfig) -> Result<Trace, SolveError> {
        let started = Instant::now();
        let mut usage = Usage::default();
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut switches = Vec::new();
        let mut backtracks = Vec::new();
        let mut plan = vec![config.strategy];
        plan.extend(
            config
                .fallbacks
                .iter()
                .copied()
                .filter(|s| *s != config.strategy),
        );
        let is_program = |k: &StrategyKind| k.strategy().answer_source == AnswerSource::Program;
        let sandbox = if plan.iter().any(is_program) {
            match Sandbox::new(config.sandbox.clone()) {
                Ok(s) => Some(s),
                Err(e) if is_program(&config.strategy) => return Err(e.into()),
                Err(_) => {
                    // Without a sandbox, program-aided fallbacks are dropped.
                    plan.retain(|k| !is_program(k));
                    None
                }
            }
        } else {
            None
        };
        let rewards_of =
            |a: &Attempt| -> Vec<f64> { a.outcome.best().steps.iter().map(|s| s.reward).collect() };
        for (i, &kind) in plan.iter().enumerate() {
            // The token budget bounds the whole solve: each step gets what
            // is left, and none starts once it is spent.
            let Some(cfg) = budgeted(config, &usage) else {
                break;
            };
            let mut attempt = self.attempt(question, kind, &cfg, sandbox.as_ref(), &mut usage)?;
            let mut rewards = rewards_of(&attempt);
            let mut collapsed = config.collapse.check(&rewards);
            if let (Some((at, why)), Some(cfg)) = (collapsed.clone(), budgeted(config, &usage)) {
                if let Some(bt) =
                    self.backtrack(&attempt, at, &cfg, sandbox.as_ref(), &mut usage)?
                {
                    let after = rewards_of(&bt);
                    let recovered = config.collapse.check(&after).is_none();
                    backtracks.push(Backtrack {
                        strategy: kind,
                        at_step: at,
                        reason: why,
                        rewards_before: rewards.clone(),
                        rewards_after: after.clone(),
                        accepted: recovered,
                    });
                    if recovered {
                        attempt = bt;
                        rewards = after;
                        collapsed = None;
                    }
                }
            }
            let unanswered = attempt.outcome.best().answer.is_none();
            // A sandbox that cannot start fails every program: say so, or
            // the user sees only "no answer" and never learns why.
            let sandbox_failure = attempt
                .findings
                .iter()
                .find(|f| f.message.starts_with(SANDBOX_FAILED))
                .map(|f| f.message.clone());
            attempts.push(attempt);
            let Some(&next) = plan.get(i + 1) else { break };
            let reason = match (collapsed, unanswered) {
                (Some((step, why)), _) => format!("step rewards collapsed: {why} (step {step})"),
                (None, true) => match sandbox_failure {
                    Some(why) => format!("no answer could be extracted: {why}"),
                    None => "no answer could be extracted".to_string(),
                },
                (None, false) => break,
            };
            switches.push(Switch {
                from: kind,
                to: next,
                reason,
                rewards,
            });
        }
        let tried = attempts.len();
        // The attempt with the highest estimated confidence answers.
        let best = (0..attempts.len())
            .max_by(|&a, &b| attempts[a].confidence.total_cmp(&attempts[b].confidence))
            .expect("at least one attempt");
        let mut revisions = Vec::new();
        let mut final_attempt = best;
        for round in 0..config.max_revisions {
            let Some(cfg) = budgeted(config, &usage) else {
                break;
            };
            let Some(rev) = self.revise(
                &attempts[final_attempt],
                &cfg,
                sandbox.as_ref(),
                round,
                &mut usage,
            )?
            else {
                break;
            };
            let accepted = rev.accepted;
            if let Some(a) = rev.attempt.clone() {
                if accepted {
                    attempts.push(a);
                    final_attempt = attempts.len() - 1;
                }
            }
            revisions.push(rev);
            if !accepted {
                break;
            }
        }
        // A fault that a verifier still flags after revision: the next
        // untried strategy takes the task on, and the more confident attempt
        // answers. (On 50 GSM8K problems the arithmetic check flagged 5
        // chains, all wrong; revision mended none of them.)
        let mut untried = plan
            .iter()
            .skip(if config.switch_on_flag {
                tried
            } else {
                plan.len()
            })
            .copied();
        while let Some(flag) = attempts[final_attempt]
            .findings
            .iter()
            .find(|f| f.is_failure())
            .cloned()
        {
            let Some(next) = untried.next() else { break };
            let Some(cfg) = budgeted(config, &usage) else {
                break;
            };
            let from = &attempts[final_attempt];
            switches.push(Switch {
                from: from.strategy,
                to: next,
                reason: format!(
                    "the {} check still fails{}: {}",
                    flag.verifier.name(),
                    flag.step
                        .map(|s| format!(" at step {}", s + 1))
                        .unwrap_or_default(),
                    flag.message
                ),
                rewards: rewards_of(from),
            });
            let attempt = self.attempt(question, next, &cfg, sandbox.as_ref(), &mut usage)?;
            attempts.push(attempt);
            let new = attempts.len() - 1;
            if attempts[new].confidence > attempts[final_attempt].confidence {
                final_attempt = new;
            }
        }
        let chosen = &attempts[final_attempt];
        Ok(Trace {
            schema: TRACE_SCHEMA.to_string(),
            question: question.to_string(),
            model: self.model.info(),
            answer_kind: config.answer_kind.clone(),
            answer: chosen
                .outcome
                .best()
                .answer
                .as_ref()
                .map(|a| a.normalized.clone()),
            confidence: chosen.confidence,
            final_attempt,
            attempts,
            switches,
            backtracks,
            revisions,
            usage: {
                let mut u = usage;
                u.wall_time = started.elapsed();
                u
            },
        })
    }

    /// `n` replies of `strategy` drawn at the configured temperature (one
    /// request; programs run in the sandbox), scored as one attempt: the
    /// escalation step of a cascade.
    pub fn sample(
        &self,
        question: &str,
        strategy: StrategyKind,
        n: usize,
        config: &SolveConfig,
    ) -> Result<Attempt, SolveError> {
        let config = SolveConfig {
            policy: SearchPolicy::SelfConsistency { n: n.max(1) },
            ..config.clone()
        };
        let sandbox = if strategy.strategy().answer_source == AnswerSource::Program {
            Some(Sandbox::new(config.sandbox.clone())?)
        } else {
            None
        };
        let mut usage = Usage::default();
        self.attempt(question, strategy, &config, sandbox.as_ref(), &mut usage)
    }

    fn attempt(
        &self,
        question: &str,
        kind: StrategyKind,
        config: &SolveConfig,
        sandbox: Option<&Sandbox>,
        usage: &mut Usage,
    ) -> Result<Attempt, SolveError> {
        let strategy = kind.strategy();
        let prompt = strategy.prompt(question, &config.answer_kind, &config.examples);
        let judge = ModelJudge { model: self.model };
        let searcher = Searcher {
            model: self.model,
            strategy,
            kind: &config.answer_kind,
            weights: &config.weights,
            settings: &config.settings,
            judge: self.step_judge(config, &judge),
        };
        let mut outcome = searcher.run(&config.policy, &prompt)?;
        *usage += outcome.usage;
        let mut programs = Vec::new();
        let mut failures = Vec::new();
        if strategy.answer_source == AnswerSource::Program {
            let sandbox = sandbox.expect("program strategies run only with a sandbox");
            for (i, c) in outcome.candidates.iter_mut().enumerate() {
                let run = run_or_fail(sandbox, &c.text, i, &mut failures);
                c.answer = program_answer(run.as_ref(), &config.answer_kind);
                programs.push((i, run));
            }
            recount(&mut outcome, &config.answer_kind);
        }
        let best = outcome.best().clone();
        let mut findings = self.verify(&best, strategy.answer_source, config);
        if let Some((_, Some(p))) = programs.iter().find(|(i, _)| *i == outcome.chosen) {
            findings.push(p.finding.clone());
        }
        findings.extend(
            failures
                .into_iter()
                .filter(|(i, _)| *i == outcome.chosen)
                .map(|(_, f)| f),
        );
        let critique = if config.critique {
            let (p, u) = self.critique(question, &best, &findings, &config.notes)?;
            *usage += u;
            findings.push(Finding {
                verifier: VerifierKind::Critique,
                verdict: if p >= 0.5 {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
                step: None,
                message: format!("the model judges its solution correct with probability {p:.2}"),
                confidence: (p - 0.5).abs() * 2.0,
            });
            Some(p)
        } else {
            None
        };
        let confidence = self.score(
            kind,
            &best,
            (outcome.agreement, answered(&outcome.candidates)),
            &findings,
            critique,
        );
        Ok(Attempt {
            strategy: kind,
            prompt,
            outcome,
            findings,
            confidence,
            program: programs
                .into_iter()
                .find_map(|(_, r)| r)
                .map(|r| (r.program, r.run)),
        })
    }

    fn verify(&self, c: &Candidate, source: AnswerSource, config: &SolveConfig) -> Vec<Finding> {
        let steps: Vec<String> = c.steps.iter().map(|s| s.text.clone()).collect();
        let mut findings = check_arithmetic(&steps);
        if source == AnswerSource::Text {
            findings.push(check_format(&config.answer_kind, &c.text));
        }
        findings
    }

    /// The model's own judgement of its solution: the step rewards and the
    /// verifiers' findings are in the prompt; P(" Yes") is read from
    /// log-probabilities.
    fn critique(
        &self,
        question: &str,
        c: &Candidate,
        findings: &[Finding],
        notes: &[String],
    ) -> Result<(f64, Usage), ModelError> {
        let steps = c
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {} (confidence {:.2})", i + 1, s.text, s.reward))
            .collect::<Vec<_>>()
            .join("\n");
        let checks = if findings.is_empty() {
            "none".to_string()
        } else {
            findings
                .iter()
                .map(|f| format!("- {:?} check: {:?}: {}", f.verifier, f.verdict, f.message))
                .collect::<Vec<_>>()
                .join("\n")
        };
        // Mistakes made on similar problems before, when memory has any.
        let past = if notes.is_empty() {
            String::new()
        } else {
            let notes = notes
                .iter()
                .map(|n| format!("- {n}"))
                .collect::<Vec<_>>()
                .join("\n");
            prompts::fill(prompts::CRITIQUE_PAST, &[("notes", &notes)])
        };
        let prompt = Prompt::user(prompts::fill(
            prompts::CRITIQUE_USER,
            &[
                ("question", question),
                ("steps", &steps),
                ("checks", &checks),
                ("past", &past),
            ],
        ))
        .with_system(prompts::CRITIQUE_SYSTEM);
        let (p, u) = self.model.choice_probabilities(&prompt, &["Yes", "No"])?;
        Ok((p[0], u))
    }

    fn revise(
        &self,
        attempt: &Attempt,
        config: &SolveConfig,
        sandbox: Option<&Sandbox>,
        round: usize,
        usage: &mut Usage,
    ) -> Result<Option<Revision>, SolveError> {
        let Some(flag) = attempt.findings.iter().find(|f| f.is_failure()) else {
            return Ok(None);
        };
        let strategy = attempt.strategy.strategy();
        let best = attempt.outcome.best();
        let from_step = flag.step.unwrap_or(best.steps.len().saturating_sub(1));
        let kept: String = best
            .steps
            .iter()
            .take(from_step)
            .map(|s| format!("{}{}", s.text, strategy.step_delimiter))
            .collect();
        let mut prompt = attempt.prompt.clone();
        if let Some(last) = prompt
            .messages
            .iter_mut()
            .rev()
            .find(|m| m.role == metareason_core::Role::User)
        {
            *last = Message::user(prompts::fill(
                prompts::REVISION_USER,
                &[
                    ("task", &last.content),
                    ("step", &(from_step + 1).to_string()),
                    ("finding", &flag.message),
                ],
            ));
        }
        let (outcome, findings, program_run) = self.continue_from(
            &prompt,
            &best.steps[..from_step],
            &SearchPolicy::Greedy,
            config.settings.seed.wrapping_add(1 + round as u64),
            attempt.strategy,
            config,
            sandbox,
            usage,
        )?;
        let continued = outcome.best().clone();
        let prompt = Prompt {
            assistant_prefix: kept,
            ..prompt
        };
        // Agreement with the attempt's other candidates still counts.
        let agreement = continued
            .answer
            .as_ref()
            .and_then(|a| attempt.outcome.votes.get(&a.normalized))
            .map_or(0.0, |&v| v as f64 / attempt.outcome.candidates.len() as f64);
        let confidence = self.score(
            attempt.strategy,
            &continued,
            (agreement, answered(&attempt.outcome.candidates)),
            &findings,
            None,
        );
        let accepted = confidence > attempt.confidence;
        Ok(Some(Revision {
            round,
            from_step,
            finding: flag.clone(),
            confidence_before: attempt.confidence,
            confidence_after: confidence,
            accepted,
            attempt: Some(Attempt {
                strategy: attempt.strategy,
                prompt,
                outcome,
                findings,
                confidence,
                program: program_run.map(|r| (r.program, r.run)),
            }),
        }))
    }

    /// Continues a reply after `kept` steps under `policy`, and scores,
    /// runs (program strategies) and verifies the continued replies as whole
    /// replies. Used by revision and by backtracking.
    #[allow(clippy::too_many_arguments)]
    fn continue_from(
        &self,
        prompt: &Prompt,
        kept: &[metareason_monitor::ScoredStep],
        policy: &SearchPolicy,
        seed: u64,
        kind: StrategyKind,
        config: &SolveConfig,
        sandbox: Option<&Sandbox>,
        usage: &mut Usage,
    ) -> Result<(SearchOutcome, Vec<Finding>, Option<program::ProgramOutcome>), SolveError> {
        let strategy = kind.strategy();
        let prefix: String = kept
            .iter()
            .map(|s| format!("{}{}", s.text, strategy.step_delimiter))
            .collect();
        let prompt = Prompt {
            assistant_prefix: prefix.clone(),
            ..prompt.clone()
        };
        let settings = SearchSettings {
            seed,
            ..config.settings.clone()
        };
        let searcher = Searcher {
            model: self.model,
            strategy,
            kind: &config.answer_kind,
            weights: &config.weights,
            settings: &settings,
            judge: None,
        };
        let mut outcome = searcher.run(policy, &prompt)?;
        *usage += outcome.usage;
        let mut runs = Vec::new();
        let mut failures = Vec::new();
        for (i, c) in outcome.candidates.iter_mut().enumerate() {
            // Each candidate continues the kept steps: it is scored whole.
            c.steps = kept.iter().cloned().chain(c.steps.drain(..)).collect();
            c.text = format!("{prefix}{}", c.text);
            c.answer = config.answer_kind.extract(&c.text);
            c.score = mean_reward(&c.steps);
            if strategy.answer_source == AnswerSource::Program {
                if let Some(sb) = sandbox {
                    let run = run_or_fail(sb, &c.text, i, &mut failures);
                    c.answer = program_answer(run.as_ref(), &config.answer_kind);
                    runs.push(run);
                }
            }
        }
        // Re-rank on whole-reply scores.
        outcome.chosen = best_by_score(&outcome.candidates);
        recount(&mut outcome, &config.answer_kind);
        let best = outcome.best().clone();
        let program_run = runs.into_iter().nth(outcome.chosen).flatten();
        let mut findings = self.verify(&best, strategy.answer_source, config);
        if let Some(p) = &program_run {
            findings.push(p.finding.clone());
        }
        findings.extend(
            failures
                .into_iter()
                .filter(|(i, _)| *i == outcome.chosen)
                .map(|(_, f)| f),
        );
        Ok((outcome, findings, program_run))
    }

    /// On collapse at step `at`: resample from the steps before it and keep
    /// the best continuation when its rewards no longer collapse.
    fn backtrack(
        &self,
        attempt: &Attempt,
        at: usize,
        config: &SolveConfig,
        sandbox: Option<&Sandbox>,
        usage: &mut Usage,
    ) -> Result<Option<Attempt>, SolveError> {
        if config.backtrack_samples == 0 {
            return Ok(None);
        }
        let best = attempt.outcome.best();
        let (outcome, findings, program_run) = self.continue_from(
            &attempt.prompt,
            &best.steps[..at.min(best.steps.len())],
            &SearchPolicy::BestOfN {
                n: config.backtrack_samples,
            },
            config.settings.seed.wrapping_add(7_777),
            attempt.strategy,
            config,
            sandbox,
            usage,
        )?;
        let c = outcome.best().clone();
        let confidence = self.score(
            attempt.strategy,
            &c,
            (outcome.agreement, answered(&outcome.candidates)),
            &findings,
            None,
        );
        Ok(Some(Attempt {
            strategy: attempt.strategy,
            prompt: Prompt {
                assistant_prefix: String::new(),
                ..attempt.prompt.clone()
            },
            outcome,
            findings,
            confidence,
            program: program_run.map(|r| (r.program, r.run)),
        }))
    }
}

/// How a finding of a sandbox that could not run a program begins.
const SANDBOX_FAILED: &str = "the sandbox could not run the program";

/// Runs the program of reply `i`; when the sandbox itself fails, the reply
/// has no answer and a finding says why (one reply's failed sandbox run is
/// a failed attempt, not an aborted solve). The finding carries no weight
/// as evidence about the answer (confidence 0).
fn run_or_fail(
    sandbox: &Sandbox,
    reply: &str,
    i: usize,
    failures: &mut Vec<(usize, Finding)>,
) -> Option<program::ProgramOutcome> {
    match program::run_program(sandbox, reply) {
        Ok(run) => run,
        Err(e) => {
            failures.push((
                i,
                Finding {
                    verifier: VerifierKind::Program,
                    verdict: Verdict::Fail,
                    step: None,
                    message: format!("{SANDBOX_FAILED}: {e}"),
                    confidence: 0.0,
                },
            ));
            None
        }
    }
}

/// The answer a generated program printed, when it ran to a clean exit and
/// printed something: a program that prints nothing has no answer (its empty
/// output once became the text answer "answer is").
pub fn program_answer(run: Option<&program::ProgramOutcome>, kind: &AnswerKind) -> Option<Answer> {
    let run = run.filter(|r| r.run.succeeded())?;
    let printed = run.run.stdout.trim();
    if printed.is_empty() {
        return None;
    }
    // The last line printed is the answer; earlier lines are working.
    let last = printed.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    kind.extract(&format!("The answer is {last}"))
}

/// Recomputes votes, the chosen candidate and agreement after answers changed.
fn recount(outcome: &mut SearchOutcome, kind: &AnswerKind) {
    unify_answers(kind, &mut outcome.candidates);
    outcome.votes = vote(&outcome.candidates);
    if !outcome.votes.is_empty() {
        let top = majority(&outcome.candidates, &outcome.votes);
        // Score-based policies keep their pick unless it has no answer.
        let by_score = matches!(
            outcome.policy,
            SearchPolicy::Greedy | SearchPolicy::BestOfN { .. } | SearchPolicy::Beam { .. }
        );
        if !by_score || outcome.candidates[outcome.chosen].answer.is_none() {
            outcome.chosen = top;
        }
    }
    outcome.agreement = outcome.candidates[outcome.chosen]
        .answer
        .as_ref()
        .and_then(|a| outcome.votes.get(&a.normalized))
        .map_or(0.0, |&c| c as f64 / outcome.candidates.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_policy_name_resolves() {
        for name in POLICY_NAMES {
            let p = policy_by_name(name, 4).unwrap_or_else(|| panic!("{name}"));
            // The name a policy reports maps back to its family.
            assert!(!p.name().is_empty());
        }
        assert!(policy_by_name("wisdom", 4).is_none());
    }
}
