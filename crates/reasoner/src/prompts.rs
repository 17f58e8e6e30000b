//! Every prompt the loop itself sends (the modules keep their own).

/// System prompt of the same-meaning judgement.
pub const SAME_MEANING_SYSTEM: &str = "You compare answers to a question. Answer with one word.";

/// Do two short answers say the same thing? `{task}`, `{a}`, `{b}`.
pub const SAME_MEANING_USER: &str = "Question:\n\"\"\"\n{task}\n\"\"\"\n\nAnswer A: {a}\nAnswer B: {b}\n\nDo answers A and B give the same answer to the question (the same person, thing, place, number or fact, however worded)? Answer Yes or No.";
