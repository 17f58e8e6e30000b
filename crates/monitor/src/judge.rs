//! External judgement of a step, the optional part of the step reward: a
//! judge returns the probability that a step is correct given the question
//! and the steps before it.

use metareason_core::template::fill;
use metareason_core::{LanguageModel, ModelError, Prompt, Usage};

/// System prompt of the model judging a step.
pub const JUDGE_SYSTEM: &str = "You check one step of a solution at a time.";

/// User prompt of the model judging a step: `{task}`, `{before}` (the steps
/// so far, or "(none)"), `{step}`. Scored as P("Yes") against P("No").
pub const JUDGE_USER: &str = "Task:\n{task}\n\nSteps so far:\n{before}\n\nNext step:\n{step}\n\n\
Is the next step correct? Answer Yes or No.";

// The trait lives in core, so that a backend can implement it without
// depending on the monitor.
pub use metareason_core::StepJudge;

/// The language model as its own judge: asked whether the step is correct,
/// its answer read as P("Yes") from log-probabilities (renormalised over
/// "Yes" and "No").
pub struct ModelJudge<'a> {
    /// The judging model (often the same one that reasons).
    pub model: &'a dyn LanguageModel,
}

impl StepJudge for ModelJudge<'_> {
    fn judge(
        &self,
        question: &Prompt,
        earlier: &[String],
        step: &str,
    ) -> Result<(f64, Usage), ModelError> {
        let task = question.last_user();
        let before = if earlier.is_empty() {
            "(none)".to_string()
        } else {
            earlier.join("\n")
        };
        let prompt = Prompt::user(fill(
            JUDGE_USER,
            &[("task", task), ("before", &before), ("step", step)],
        ))
        .with_system(JUDGE_SYSTEM);
        let (p, usage) = self.model.choice_probabilities(&prompt, &["Yes", "No"])?;
        Ok((p[0], usage))
    }
}
