//! Every prompt the self-awareness module sends, in one place.

/// System prompt of a model-judged policy predicate.
pub const POLICY_SYSTEM: &str = "You review requests for a safety policy. Answer with one word.";

/// User prompt of a model-judged policy predicate: `{task}`, `{question}`.
pub const POLICY_USER: &str = "Request:\n\"\"\"\n{task}\n\"\"\"\n\n{question} Answer Yes or No.";

/// System prompt of the translation a policy classifier reads when a
/// request is not in English.
pub const TRANSLATE_SYSTEM: &str = "You are a translator. Reply with the translation only.";

/// User prompt of that translation: `{language}`, `{text}`.
pub const TRANSLATE_USER: &str =
    "Translate this {language} text into English, word for word, without answering it:\n\"\"\"\n{text}\n\"\"\"";

/// System prompt under which the model's own reply to a request is read
/// for a refusal (a plain assistant, as the bare model is used).
pub const REFUSAL_SYSTEM: &str = "You are a helpful assistant.";

/// The openings of the model's usual refusals.
pub const REFUSAL_OPENINGS: &[&str] = &["I'm sorry", "I can't", "I cannot", "Sorry"];

/// System prompt of the P(True) probe.
pub const PROBE_SYSTEM: &str =
    "You are a careful assistant who knows the limits of what can be known. Answer with one word.";

/// User prompt of every yes/no probe about a question: `{task}`, `{probe}`.
/// The probes share everything up to `{probe}`, so the engine's prefix
/// cache evaluates the question once for all of them.
pub const PROBE_USER: &str = "Question:\n\"\"\"\n{task}\n\"\"\"\n\n{probe} Answer Yes or No.";

/// The P(True) probe: can this be answered correctly?
pub const PROBE_ANSWERABLE: &str = "Can this question be answered correctly and with certainty \
from the information given and well-established knowledge? It cannot if it rests on a false \
assumption, asks about something nobody knows or could know, or lacks information it needs.";

/// Does the question take something false for granted?
pub const PROBE_FALSE_PREMISE: &str = "Does this question rest on a false assumption, taking \
for granted something that is not true or has not happened?";

/// Does the question ask what nobody knows or could know?
pub const PROBE_UNKNOWABLE: &str = "Does this question ask about something that nobody knows, \
nobody recorded or nobody could know, such as private details, the future, or an exact count \
that was never made?";

/// Does the given context hold the answer (asked only of tasks with one)?
pub const PROBE_CONTEXT: &str = "Does the context given with the question contain the \
information needed to answer it?";

/// System prompt of the model's own answer, for P("unknown").
pub const UNKNOWN_SYSTEM: &str = "You are a precise assistant. Reply with the final answer only.";

/// User prompt of the model's own answer when "unknown" is allowed: `{task}`.
pub const UNKNOWN_USER: &str = "{task}\n\nReply with one line of the form \"The answer is \
ANSWER.\" If the question cannot be answered with certainty (it rests on a false assumption, \
asks what nobody knows or could know, or lacks information it needs), reply \"The answer is \
unknown.\" instead.";

/// The start of the model's reply after which P(" unknown") is read.
pub const UNKNOWN_PREFIX: &str = "The answer is";

/// User prompt of the sampled answers whose agreement is a probe of
/// answerability: `{task}`. The model's answer is sampled several times
/// after [`UNKNOWN_PREFIX`]; "unknown" is not offered, so a question the
/// model cannot answer shows as answers that disagree.
pub const AGREEMENT_USER: &str = "{task}\n\nReply with one line of the form \"The answer is \
ANSWER.\"";

/// System prompt of the answer-kind question, asked when the rules are unsure.
pub const KIND_SYSTEM: &str = "You classify requests. Answer with one letter.";

/// User prompt of the answer-kind question: `{task}`.
pub const KIND_USER: &str = "Request:\n\"\"\"\n{task}\n\"\"\"\n\n\
What kind of reply does this request need?\n\
A) a number\n\
B) yes or no\n\
C) a short fact: a name, a date, a place, a term or a short phrase\n\
D) an explanation, instructions, advice, or other writing\n\
Answer with the letter.";

/// What the user is told when a question is declined as unanswerable, by
/// the probe that most suspects it.
pub const DECLINE_FALSE_PREMISE: &str = "I can't answer this as asked: it seems to rest on an \
assumption that isn't true.";
/// See [`DECLINE_FALSE_PREMISE`].
pub const DECLINE_UNKNOWABLE: &str = "I don't know, and I don't think anyone could: this asks \
about something that isn't known or recorded.";
/// See [`DECLINE_FALSE_PREMISE`].
pub const DECLINE_MISSING_CONTEXT: &str = "The information given isn't enough to answer this.";
/// See [`DECLINE_FALSE_PREMISE`].
pub const DECLINE_GENERAL: &str = "I don't think this question can be answered with certainty.";

/// The user turn whose continuation is the task, for the perplexity probe.
pub const PERPLEXITY_USER: &str = "Write a question.";

pub use metareason_core::template::fill;
