//! What kind of answer a task asks for: the cheap rules of
//! [`metareason_strategy::infer`] first; when they are unsure, the model's
//! probabilities over the kinds, trusted when one kind takes most of them.

use metareason_core::{LanguageModel, ModelError, Prompt, Usage};
use metareason_strategy::answer::AnswerKind;
use metareason_strategy::infer::{guess_answer_kind, KindGuess};
use serde::{Deserialize, Serialize};

use crate::prompts;

/// The kind chosen and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindChoice {
    /// The answer kind the task is solved and graded under.
    pub kind: AnswerKind,
    /// How it was chosen: `given` (by the caller), `rule: ...` or `model`.
    pub how: String,
    /// The rules' guess (None when the kind was given).
    pub guess: Option<KindGuess>,
    /// The model's probabilities of number, yes/no, short text and free
    /// text, when it was asked.
    pub model_probabilities: Option<[f64; 4]>,
    /// Model calls made.
    pub usage: Usage,
}

impl KindChoice {
    /// A kind the caller set.
    pub fn given(kind: AnswerKind) -> Self {
        Self {
            kind,
            how: "given".into(),
            guess: None,
            model_probabilities: None,
            usage: Usage::default(),
        }
    }
}

/// The model's answer is trusted when its most likely kind has at least
/// this probability; below it, the rules' guess stands.
pub const MODEL_TRUST: f64 = 0.6;

/// Chooses the answer kind of `task`: the rules when they are sure, else
/// the model's choice when it is clear, else the rules' guess.
pub fn choose_answer_kind(model: &dyn LanguageModel, task: &str) -> Result<KindChoice, ModelError> {
    let guess = guess_answer_kind(task);
    if guess.sure {
        return Ok(KindChoice {
            kind: guess.kind.clone(),
            how: format!("rule: {}", guess.rule),
            guess: Some(guess),
            model_probabilities: None,
            usage: Usage::default(),
        });
    }
    let prompt = Prompt::user(prompts::fill(prompts::KIND_USER, &[("task", task)]))
        .with_system(prompts::KIND_SYSTEM);
    let (p, usage) = model.choice_probabilities(&prompt, &["A", "B", "C", "D"])?;
    let probabilities = [p[0], p[1], p[2], p[3]];
    let (best, top) = probabilities
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("four kinds");
    let (kind, how) = if top >= MODEL_TRUST {
        let kind = match best {
            0 => AnswerKind::Number,
            1 => AnswerKind::YesNo,
            2 => AnswerKind::Text,
            _ => AnswerKind::FreeText,
        };
        (
            kind,
            format!("model (P {top:.2}; rules unsure: {})", guess.rule),
        )
    } else {
        (
            guess.kind.clone(),
            format!("rule: {} (model unsure, top P {top:.2})", guess.rule),
        )
    };
    Ok(KindChoice {
        kind,
        how,
        guess: Some(guess),
        model_probabilities: Some(probabilities),
        usage,
    })
}
