//! Every prompt the loop itself sends, and what it tells the user (the
//! modules keep their own).

/// System prompt of the same-meaning judgement.
pub const SAME_MEANING_SYSTEM: &str = "You compare answers to a question. Answer with one word.";

/// Do two short answers say the same thing? `{task}`, `{a}`, `{b}`.
pub const SAME_MEANING_USER: &str = "Question:\n\"\"\"\n{task}\n\"\"\"\n\nAnswer A: {a}\nAnswer B: {b}\n\nDo answers A and B give the same answer to the question (the same person, thing, place, number or fact, however worded)? Answer Yes or No.";

/// What the user is told when the attempt found no answer.
pub const NO_ANSWER: &str = "I could not find an answer to this.";

/// What the user is told when the model's own answer is that the question
/// cannot be answered.
pub const MODEL_SAYS_UNANSWERABLE: &str = "I don't know: this question cannot be answered with \
certainty (it may rest on a false assumption or ask what nobody knows).";

/// What the user is told when the answer found is withheld: `{answer}`,
/// `{confidence}`.
pub const NOT_SURE: &str =
    "I am not sure enough to answer (my best guess, {answer}, has confidence {confidence}).";

/// What the user is told when self-awareness declines without a reply of
/// its own.
pub const NOT_LIKELY: &str = "I don't know: I am not likely enough to answer this correctly.";
