//! Every prompt the solver sends besides the strategies' own templates
//! (`crates/strategy/strategies/*.toml`), in one place. Slots are `{name}`,
//! filled in one pass by [`fill`].

pub use metareason_core::template::fill;

/// System prompt of the model's critique of its own solution.
pub const CRITIQUE_SYSTEM: &str = "You are a strict reviewer of solutions.";

/// User prompt of the critique: `{question}`, `{steps}` (numbered, each with
/// its step reward), `{checks}` (the other verifiers' findings), `{past}`
/// ([`CRITIQUE_PAST`] or nothing). Scored as P("Yes") against P("No").
pub const CRITIQUE_USER: &str =
    "Problem: {question}\n\nProposed solution, step by step:\n{steps}\n\n\
Automatic checks:\n{checks}\n\n{past}Is the proposed solution correct? Answer Yes or No.";

/// Error notes from similar past failures, when memory has any: `{notes}`.
pub const CRITIQUE_PAST: &str = "Mistakes made on similar problems before:\n{notes}\n\n";

/// Appended to the task when a revision restarts from a flagged step:
/// `{task}`, `{step}` (1-based), `{finding}`.
pub const REVISION_USER: &str =
    "{task}\n\nA check of an earlier attempt found this problem at its step {step}: {finding}\nAvoid it.";
