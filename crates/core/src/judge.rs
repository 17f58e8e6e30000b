//! The seam for judging single reasoning steps: the model itself (in the
//! monitor), a process reward model behind a server (in the HTTP backend),
//! or a test's script.

use crate::{ModelError, Prompt, Usage};

/// Judges single reasoning steps.
pub trait StepJudge: Send + Sync {
    /// P(the last step is correct | question, earlier steps), with what it cost.
    fn judge(
        &self,
        question: &Prompt,
        earlier: &[String],
        step: &str,
    ) -> Result<(f64, Usage), ModelError>;
}
