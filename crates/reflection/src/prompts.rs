//! Every prompt meta-reflection sends, in one place.

/// System prompt of distillation.
pub const DISTILL_SYSTEM: &str =
    "You turn worked solutions into short, reusable lessons. Be concise.";

/// Distils a solved task into a thought template: `{task}`, `{solution}`.
pub const TEMPLATE_USER: &str = "Problem:\n{task}\n\nA correct solution:\n{solution}\n\n\
Write the method of this solution as a short numbered plan (at most 5 steps) that would solve \
any problem of the same kind. Do not use the specific numbers or names of this problem. \
Start with \"Plan:\".";

/// Distils a failed task into an error note: `{task}`, `{solution}`,
/// `{reference}`.
pub const ERROR_NOTE_USER: &str = "Problem:\n{task}\n\nAn attempted solution that turned out \
wrong{reference}:\n{solution}\n\nIn one sentence, warn a solver of similar problems about the \
mistake most likely made here. Do not use the specific numbers of this problem. Start with \
\"Watch out:\".";

pub use metareason_core::template::fill;

/// System prompt of the baseline confidence questions.
pub const BASELINE_SYSTEM: &str = "You grade answers to questions. Be brief.";

/// Verbalised confidence (Tian et al., 2023): `{task}`, `{answer}`.
pub const VERBALIZED_USER: &str =
    "Question:\n\"\"\"\n{task}\n\"\"\"\n\nProposed answer: {answer}\n\n\
What is the probability, from 0 to 100, that the proposed answer is correct? Reply with the \
number only.";

/// P(True) of a proposed answer (Kadavath et al., 2022): `{task}`,
/// `{answer}`.
pub const P_TRUE_USER: &str = "Question:\n\"\"\"\n{task}\n\"\"\"\n\nProposed answer: {answer}\n\n\
Is the proposed answer True or False? Answer with one word.";
