//! The one token budget of a search: how many tokens it may still
//! generate, shared by every policy and by the solver's attempts.

use metareason_core::Usage;

/// A generation budget and what has been spent against it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budget {
    /// Tokens that may be generated in all (0: no limit).
    pub limit: u64,
    /// What has been used so far.
    pub used: Usage,
}

impl Budget {
    /// A fresh budget of `limit` generated tokens (0: no limit).
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: Usage::default(),
        }
    }

    /// A budget of `limit` of which `used` is spent.
    pub fn spent(limit: u64, used: Usage) -> Self {
        Self { limit, used }
    }

    /// Tokens left (None: no limit).
    pub fn left(&self) -> Option<u64> {
        (self.limit > 0).then(|| self.limit.saturating_sub(self.used.generated_tokens))
    }

    /// Whether nothing is left.
    pub fn exhausted(&self) -> bool {
        self.left() == Some(0)
    }

    /// At most `want` tokens for one sequence; at least 1.
    pub fn remaining(&self, want: u32) -> u32 {
        self.remaining_per(1, want)
    }

    /// At most `want` tokens for each of `n` sequences drawn at once, so
    /// that together they stay within what is left; at least 1.
    pub fn remaining_per(&self, n: usize, want: u32) -> u32 {
        match self.left() {
            None => want,
            Some(left) => {
                let each = left / n.max(1) as u64;
                want.min(each.min(u64::from(u32::MAX)) as u32).max(1)
            }
        }
    }

    /// No more sequences than tokens left (each gets at least one).
    pub fn sequences(&self, n: usize) -> usize {
        match self.left() {
            None => n,
            Some(left) => n.min(usize::try_from(left).unwrap_or(usize::MAX).max(1)),
        }
    }

    /// Charges `usage` to the budget.
    pub fn charge(&mut self, usage: Usage) {
        self.used += usage;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_shares_what_is_left_and_never_grants_zero() {
        let mut b = Budget::new(100);
        assert_eq!((b.left(), b.remaining(512)), (Some(100), 100));
        assert_eq!(b.remaining_per(4, 512), 25);
        b.charge(Usage {
            generated_tokens: 99,
            ..Usage::default()
        });
        assert_eq!((b.remaining_per(4, 512), b.sequences(8)), (1, 1));
        assert!(!b.exhausted());
        b.charge(Usage {
            generated_tokens: 5,
            ..Usage::default()
        });
        assert!(b.exhausted());
        assert_eq!(b.left(), Some(0));
        let free = Budget::new(0);
        assert_eq!(
            (free.left(), free.remaining(512), free.sequences(8)),
            (None, 512, 8)
        );
        assert!(!free.exhausted());
    }
}
