//! Prompt templates: `{name}` slots filled in one pass.

/// Fills the `{name}` slots of `template` with `slots`.
///
/// One pass over the template: a slot's value is never scanned again, so a
/// task that itself contains `{task}` or `{answer}` cannot inject text into
/// another slot. Unknown `{...}` spans are left as they are.
///
/// ```
/// use metareason_core::template::fill;
/// assert_eq!(fill("Q: {task} A: {answer}", &[("task", "{answer}?"), ("answer", "4")]),
///            "Q: {answer}? A: 4");
/// ```
pub fn fill(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let slot = after.find('}').and_then(|close| {
            let name = &after[..close];
            slots
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (close, *v))
        });
        match slot {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fills_every_occurrence_and_leaves_unknown_slots() {
        assert_eq!(
            fill("{a}+{a}={b} {c} {", &[("a", "1"), ("b", "2")]),
            "1+1=2 {c} {"
        );
    }

    #[test]
    fn values_are_not_expanded_again() {
        assert_eq!(fill("{x}|{y}", &[("x", "{y}"), ("y", "Y")]), "{y}|Y");
    }
}
