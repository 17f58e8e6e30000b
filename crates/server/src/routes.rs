//! Which loop configuration a request's `model` field selects.

use metareason_reasoner::{Preset, ReasonerConfig};
use metareason_solver::{policy_by_name, POLICY_NAMES};

/// The name of the default loop.
pub const DEFAULT_ROUTE: &str = "metareason";

/// A resolved `model` field: the configuration's name and the configuration.
#[derive(Debug, Clone)]
pub struct Route {
    /// The canonical name (as listed by `/v1/models`).
    pub name: String,
    /// What it does.
    pub description: String,
    /// The configuration.
    pub config: ReasonerConfig,
}

/// The configurations a server offers: `metareason` (the whole loop),
/// `metareason-greedy` (greedy chain of thought, nothing else),
/// `metareason:<preset>` for every bench preset (`metareason:sc8`,
/// `metareason:mcts`, ...) and `metareason:<search>` for every search policy
/// that is not also a preset name (the whole loop with that policy for its
/// first attempt, e.g. `metareason:adaptive`).
pub struct ModelRoutes;

impl ModelRoutes {
    /// Every route, in the order `/v1/models` lists them.
    pub fn all() -> Vec<Route> {
        let mut out = vec![
            Route {
                name: DEFAULT_ROUTE.into(),
                description: "the whole loop: self-awareness, strategy choice, monitored \
                              solving, checks, escalation by expected value, calibrated \
                              confidence, answer/abstain/refuse"
                    .into(),
                config: Preset::Full.config(),
            },
            Route {
                name: "metareason-greedy".into(),
                description: "greedy chain of thought, no meta-reasoning (a baseline)".into(),
                config: Preset::GreedyCot.config(),
            },
        ];
        for p in Preset::ALL {
            if p == Preset::Assess {
                // Assessment alone answers nothing; it is a bench mode.
                continue;
            }
            out.push(Route {
                name: format!("{DEFAULT_ROUTE}:{}", p.name()),
                description: format!("the bench configuration `{}`", p.name()),
                config: p.config(),
            });
        }
        for name in POLICY_NAMES {
            if name.parse::<Preset>().is_ok() {
                continue;
            }
            if let Some(policy) = policy_by_name(name, 8) {
                let mut config = Preset::Full.config();
                config.solve.policy = policy;
                out.push(Route {
                    name: format!("{DEFAULT_ROUTE}:{name}"),
                    description: format!(
                        "the whole loop with the search policy `{name}` for its first attempt"
                    ),
                    config,
                });
            }
        }
        out
    }

    /// The route a `model` field names among [`ModelRoutes::all`], or an
    /// error listing the names.
    pub fn resolve(model: &str) -> Result<Route, String> {
        Self::resolve_in(&Self::all(), model)
    }

    /// The route a `model` field names among `all`.
    pub fn resolve_in(all: &[Route], model: &str) -> Result<Route, String> {
        all.iter()
            .find(|r| r.name == model.trim())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "unknown model '{model}': this server runs the metareason loop; use one of {}",
                    all.iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_their_configurations() {
        let full = ModelRoutes::resolve("metareason").unwrap();
        assert!(full.config.escalation.enabled);
        let greedy = ModelRoutes::resolve("metareason-greedy").unwrap();
        assert!(!greedy.config.escalation.enabled);
        assert_eq!(
            ModelRoutes::resolve("metareason:sc8")
                .unwrap()
                .config
                .solve
                .policy,
            Preset::Sc8.config().solve.policy
        );
        let adaptive = ModelRoutes::resolve("metareason:adaptive").unwrap();
        assert_eq!(adaptive.config.solve.policy.name(), "adaptive");
        assert!(adaptive.config.escalation.enabled);
        let err = ModelRoutes::resolve("gpt-4o").unwrap_err();
        assert!(err.contains("metareason-greedy"), "{err}");
        assert!(ModelRoutes::resolve("metareason:assess").is_err());
    }

    #[test]
    fn names_are_unique() {
        let all = ModelRoutes::all();
        let mut names: Vec<_> = all.iter().map(|r| r.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
