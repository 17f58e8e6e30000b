//! Every prompt the self-awareness module sends, in one place.

/// System prompt of a model-judged policy predicate.
pub const POLICY_SYSTEM: &str = "You review requests for a safety policy. Answer with one word.";

/// User prompt of a model-judged policy predicate: `{task}`, `{question}`.
pub const POLICY_USER: &str = "Request:\n\"\"\"\n{task}\n\"\"\"\n\n{question} Answer Yes or No.";

/// System prompt of the P(True) probe.
pub const PROBE_SYSTEM: &str =
    "You are a careful assistant who knows the limits of what can be known. Answer with one word.";

/// User prompt of the P(True) probe ("can this be answered correctly?"):
/// `{task}`.
pub const PROBE_USER: &str = "Question:\n\"\"\"\n{task}\n\"\"\"\n\n\
Can this question be answered correctly and with certainty from the information given and \
well-established knowledge? It cannot if it rests on a false assumption, asks about something \
nobody knows or could know, or lacks information it needs. Answer Yes or No.";

/// The user turn whose continuation is the task, for the perplexity probe.
pub const PERPLEXITY_USER: &str = "Write a question.";

pub use metareason_core::template::fill;
