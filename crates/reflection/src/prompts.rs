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

/// Fills `{name}` slots.
pub fn fill(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in slots {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}
