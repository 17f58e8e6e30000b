//! Named configurations of the loop and the modules that can be switched
//! off: what `metareason bench --config NAME --ablate MODULE` runs, typed,
//! so that "sc8" means one thing wherever it is used.
//!
//! Two families: the whole loop (`full`, `assess`) and *one solve
//! configuration* run bare (a single strategy under one search policy, no
//! self-awareness, cross-check, revision or withholding): the baselines and
//! search comparisons. Both run through the same [`crate::Reasoner`], so
//! they are graded, costed and calibrated alike.

use std::fmt;
use std::str::FromStr;

use metareason_monitor::{SearchPolicy, StopRule, TreeSelection};
use metareason_strategy::StrategyKind;
use serde::{Deserialize, Serialize};

use crate::{CrossCheck, ReasonerConfig};

/// A named configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// The whole loop with its defaults.
    Full,
    /// Self-awareness alone: would the loop attempt the task? Nothing is
    /// solved; the answerability features are recorded.
    Assess,
    /// The mission policy alone: would the loop refuse the task? No probes,
    /// no answer-kind question, nothing solved (for measuring refusals).
    Policy,
    /// Greedy chain of thought.
    GreedyCot,
    /// Greedy program-aided solving.
    Pal,
    /// Self-consistency: 8 chain-of-thought samples, majority vote.
    Sc8,
    /// Self-consistency over 8 program-aided samples.
    Sc8Pal,
    /// Adaptive consistency over chain-of-thought samples (Beta rule at
    /// 0.95, at most 8).
    AdaptiveCot,
    /// Adaptive consistency over program-aided samples.
    AdaptivePal,
    /// DeepConf online over chain of thought: 2 warm-up replies set the
    /// confidence floor (keeping 90%), later replies cut below it,
    /// confidence-weighted votes, Beta rule at 0.95, at most 8.
    DeepconfCot,
    /// The same over program-aided replies.
    DeepconfPal,
    /// Best of 4 chain-of-thought samples by mean step reward.
    Bon4,
    /// Step-level beam search (width 2, 2 expansions).
    Beam,
    /// Monte Carlo tree search over steps, UCT.
    Mcts,
    /// Monte Carlo tree search over steps, PUCT with step-reward priors.
    MctsPuct,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 15] = [
        Preset::Full,
        Preset::Assess,
        Preset::Policy,
        Preset::GreedyCot,
        Preset::Pal,
        Preset::Sc8,
        Preset::Sc8Pal,
        Preset::AdaptiveCot,
        Preset::AdaptivePal,
        Preset::DeepconfCot,
        Preset::DeepconfPal,
        Preset::Bon4,
        Preset::Beam,
        Preset::Mcts,
        Preset::MctsPuct,
    ];

    /// The name on the command line and in result directories.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Full => "full",
            Preset::Assess => "assess",
            Preset::Policy => "policy",
            Preset::GreedyCot => "greedy_cot",
            Preset::Pal => "pal",
            Preset::Sc8 => "sc8",
            Preset::Sc8Pal => "sc8_pal",
            Preset::AdaptiveCot => "adaptive_cot",
            Preset::AdaptivePal => "adaptive_pal",
            Preset::DeepconfCot => "deepconf_cot",
            Preset::DeepconfPal => "deepconf_pal",
            Preset::Bon4 => "bon4",
            Preset::Beam => "beam",
            Preset::Mcts => "mcts",
            Preset::MctsPuct => "mcts_puct",
        }
    }

    /// Every name, comma-separated (for help and errors).
    pub fn names() -> String {
        Self::ALL.map(Preset::name).join(", ")
    }

    /// The configuration.
    pub fn config(self) -> ReasonerConfig {
        let adaptive = SearchPolicy::Adaptive {
            max_samples: 8,
            batch: 1,
            rule: StopRule::Beta { threshold: 0.95 },
        };
        let deepconf = SearchPolicy::DeepConf {
            warmup: 2,
            max_samples: 8,
            keep: 0.9,
            rule: StopRule::Beta { threshold: 0.95 },
        };
        let tree = |selection| SearchPolicy::Mcts {
            iterations: 6,
            expansions: 2,
            exploration: 1.0,
            max_steps: 16,
            selection,
        };
        match self {
            Preset::Full => ReasonerConfig::default(),
            Preset::Assess => ReasonerConfig {
                assess_only: true,
                ..ReasonerConfig::default()
            },
            Preset::Policy => {
                let mut c = ReasonerConfig {
                    assess_only: true,
                    infer_answer_kind: false,
                    distill: false,
                    ..ReasonerConfig::default()
                };
                c.awareness.probes = false;
                c
            }
            Preset::GreedyCot => bare(StrategyKind::ChainOfThought, SearchPolicy::Greedy),
            Preset::Pal => bare(StrategyKind::ProgramAided, SearchPolicy::Greedy),
            Preset::Sc8 => bare(
                StrategyKind::ChainOfThought,
                SearchPolicy::SelfConsistency { n: 8 },
            ),
            Preset::Sc8Pal => bare(
                StrategyKind::ProgramAided,
                SearchPolicy::SelfConsistency { n: 8 },
            ),
            Preset::AdaptiveCot => bare(StrategyKind::ChainOfThought, adaptive),
            Preset::AdaptivePal => bare(StrategyKind::ProgramAided, adaptive),
            Preset::DeepconfCot => bare(StrategyKind::ChainOfThought, deepconf),
            Preset::DeepconfPal => bare(StrategyKind::ProgramAided, deepconf),
            Preset::Bon4 => bare(StrategyKind::ChainOfThought, SearchPolicy::BestOfN { n: 4 }),
            Preset::Beam => bare(
                StrategyKind::ChainOfThought,
                SearchPolicy::Beam {
                    width: 2,
                    expansions: 2,
                    max_steps: 16,
                },
            ),
            Preset::Mcts => bare(StrategyKind::ChainOfThought, tree(TreeSelection::Uct)),
            Preset::MctsPuct => bare(StrategyKind::ChainOfThought, tree(TreeSelection::Puct)),
        }
    }
}

/// One strategy under one search policy, run bare: no self-awareness
/// probes, no declining, no cross-check, no fallback, no revision, nothing
/// distilled; the baseline confidences are computed in the same run.
fn bare(strategy: StrategyKind, policy: SearchPolicy) -> ReasonerConfig {
    let mut c = ReasonerConfig {
        strategies: vec![strategy],
        cross_check: CrossCheck::Never,
        abstain_after: false,
        distill: false,
        baselines: true,
        ..ReasonerConfig::default()
    };
    c.solve.strategy = strategy;
    c.solve.policy = policy;
    c.escalation.enabled = false;
    c.awareness.probes = false;
    c.awareness.allow_abstain = false;
    c.solve.fallbacks = Vec::new();
    c.solve.max_revisions = 0;
    c.solve.backtrack_samples = 0;
    c
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A name that is not a preset or a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{name}': use one of {choices}")]
pub struct UnknownName {
    what: &'static str,
    name: String,
    choices: String,
}

impl FromStr for Preset {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.trim().to_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|p| p.name() == n)
            .ok_or_else(|| UnknownName {
                what: "configuration",
                name: s.to_string(),
                choices: Self::names(),
            })
    }
}

/// A module of the loop that an ablation switches off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    /// Self-awareness: no probes, no declining before the task, no mission
    /// policy, the configured first strategy always.
    Awareness,
    /// Monitoring and control of compute: greedy search, no escalation,
    /// no collapse detection, backtracking or fallback strategies.
    Monitor,
    /// Regulation: no revision, critique, switching on a flag or
    /// cross-check.
    Regulation,
    /// Memory: nothing retrieved, stored or learned.
    Memory,
}

impl Module {
    /// Every module.
    pub const ALL: [Module; 4] = [
        Module::Awareness,
        Module::Monitor,
        Module::Regulation,
        Module::Memory,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Module::Awareness => "awareness",
            Module::Monitor => "monitor",
            Module::Regulation => "regulation",
            Module::Memory => "memory",
        }
    }

    /// Switches the module off in `c`. What lives outside the
    /// configuration (the mission policy, the memory file) is the caller's
    /// to leave out: see [`Ablations::uses_policy`] and
    /// [`Ablations::uses_memory`].
    pub fn switch_off(self, c: &mut ReasonerConfig) {
        match self {
            Module::Awareness => {
                c.awareness.probes = false;
                c.awareness.allow_abstain = false;
                c.strategies = vec![c.solve.strategy];
            }
            Module::Monitor => {
                c.solve.policy = SearchPolicy::Greedy;
                c.escalation.enabled = false;
                c.solve.collapse.min_reward = 0.0;
                c.solve.collapse.max_drop = 1.0;
                c.solve.backtrack_samples = 0;
                c.solve.fallbacks = Vec::new();
            }
            Module::Regulation => {
                c.solve.max_revisions = 0;
                c.solve.switch_on_flag = false;
                c.solve.critique = false;
                c.cross_check = CrossCheck::Never;
            }
            Module::Memory => {
                c.retrieve = 0;
                c.distill = false;
                c.learn = false;
            }
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Module {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.trim().to_lowercase();
        Self::ALL
            .into_iter()
            .find(|m| m.name() == n)
            .ok_or_else(|| UnknownName {
                what: "module",
                name: s.to_string(),
                choices: Self::ALL.map(Module::name).join(", "),
            })
    }
}

/// The modules switched off in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ablations(Vec<Module>);

impl Ablations {
    /// The given modules (repeats count once).
    pub fn new(modules: impl IntoIterator<Item = Module>) -> Self {
        let mut m: Vec<Module> = modules.into_iter().collect();
        m.sort();
        m.dedup();
        Self(m)
    }

    /// Switches every module off in `c`.
    pub fn apply(&self, c: &mut ReasonerConfig) {
        for m in &self.0 {
            m.switch_off(c);
        }
    }

    /// Whether the mission policy applies (not with self-awareness off).
    pub fn uses_policy(&self) -> bool {
        !self.0.contains(&Module::Awareness)
    }

    /// Whether a memory file is opened.
    pub fn uses_memory(&self) -> bool {
        !self.0.contains(&Module::Memory)
    }

    /// Whether nothing is switched off.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The run's name suffix: `-no-awareness-no-memory`.
    pub fn suffix(&self) -> String {
        self.0.iter().map(|m| format!("-no-{m}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_back_from_its_name() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>(), Ok(p));
        }
        let e = "sc9".parse::<Preset>().unwrap_err().to_string();
        assert!(e.contains("sc9") && e.contains("adaptive_pal"), "{e}");
    }

    #[test]
    fn baselines_are_bare_and_the_full_loop_is_not() {
        let sc8 = Preset::Sc8.config();
        assert_eq!(sc8.strategies, vec![StrategyKind::ChainOfThought]);
        assert_eq!(sc8.solve.policy, SearchPolicy::SelfConsistency { n: 8 });
        assert!(!sc8.abstain_after && !sc8.awareness.probes);
        assert_eq!(sc8.cross_check, CrossCheck::Never);
        assert_eq!(sc8.solve.max_revisions, 0);
        assert!(!sc8.escalation.enabled && Preset::Full.config().escalation.enabled);
        let pal = Preset::AdaptivePal.config();
        assert_eq!(pal.solve.strategy, StrategyKind::ProgramAided);
        assert_eq!(Preset::Full.config(), ReasonerConfig::default());
        assert!(Preset::Assess.config().assess_only);
    }

    #[test]
    fn ablations_switch_modules_off_and_name_the_run() {
        let a = Ablations::new(["memory", "awareness", "memory"].map(|m| m.parse().unwrap()));
        assert_eq!(a.suffix(), "-no-awareness-no-memory");
        assert!(!a.uses_policy() && !a.uses_memory());
        let mut c = ReasonerConfig::default();
        a.apply(&mut c);
        assert!(!c.awareness.probes && !c.learn && c.retrieve == 0);
        assert_eq!(c.strategies, vec![c.solve.strategy]);
        assert!("planning".parse::<Module>().is_err());
    }
}
