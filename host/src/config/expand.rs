//! `${VAR}` expansion of a config.d file's text, before YAML parsing.
//!
//! Owns the substitution syntax and the map from expanded lines back to source
//! lines; knows nothing about YAML. The seed ran Go's `os.ExpandEnv` over the whole
//! file and turned an unset variable into an empty secret; here an unset variable
//! is an error naming its line.
//!
//! Syntax, on each line:
//!
//! | text               | becomes                                                   |
//! |--------------------|-----------------------------------------------------------|
//! | `${VAR}`           | the value of `VAR` (empty if set but empty); unset = error |
//! | `${VAR:-default}`  | the value of `VAR`, or `default` when unset *or* empty     |
//! | `$$`               | a literal `$` (so `$${VAR}` is the literal text `${VAR}`)  |
//! | `$VAR`, `$1`, `$`  | left as is (Go would expand bare `$VAR`; config.d never relied on it, and secrets contain `$`) |
//!
//! `default` may itself contain `${...}` and `$$`; it is expanded only when used,
//! so `${A:-${B}}` does not need `B` when `A` is set. A default cannot contain a
//! literal `}` (a `}` closes the innermost open `${`).
//!
//! Lines whose first non-blank character is `#` are comments and are copied
//! verbatim, so a commented-out `# url: ${OLD_URL}` does not demand `OLD_URL`. A
//! trailing comment (`key: v  # see ${X}`) is still expanded: telling it apart from
//! a `#` inside a quoted value needs a YAML lexer.
//!
//! Expansion is textual, like the seed's: a value containing YAML syntax (`: `,
//! ` #`, a quote) can change the document's structure, so quote such values in the
//! file (`"Bearer ${TOKEN}"`).

use std::fmt;

/// The expanded text of one file plus, for every expanded line, its source line.
#[derive(Debug)]
pub(crate) struct Expanded {
    pub(crate) text: String,
    /// Every non-empty value taken from the environment, once each: `config`
    /// treats those that land in a subscription's `webhook` or `settings` as
    /// secrets. A `default` is not among them; it is written in the file.
    pub(crate) from_env: Vec<String>,
    /// `source_line[i]` is the 1-based source line of expanded line `i + 1`. A
    /// variable whose value contains a newline makes one source line several.
    source_line: Vec<usize>,
}

impl Expanded {
    /// Maps a 1-based line of the expanded text to its 1-based source line.
    pub(crate) fn source_line(&self, expanded_line: usize) -> usize {
        match self.source_line.get(expanded_line.saturating_sub(1)) {
            Some(&line) => line,
            // Past the end (a parser reporting end of input): keep the distance.
            None => {
                let last = self.source_line.last().copied().unwrap_or(0);
                last + (expanded_line - self.source_line.len())
            }
        }
    }
}

/// Why a line could not be expanded. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${VAR}` (or a used default referring to `VAR`) with `VAR` unset.
    Unset { line: usize, var: String },
    /// Malformed `${...}`.
    Syntax { line: usize, problem: Problem },
}

/// What is wrong with a `${...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// `${` without its `}` on the same line.
    Unterminated,
    /// `${}` or `${1X}`: the name is empty or does not start with a letter or `_`.
    BadName(String),
    /// `${VAR?x}`, `${VAR-x}`, `${VAR:=x}`, ...: an operator other than `:-`.
    Unsupported(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unterminated => {
                f.write_str("unterminated \"${\" (missing \"}\"; write \"$$\" for a literal \"$\")")
            }
            Problem::BadName(text) => write!(
                f,
                "invalid variable reference {text:?} (a name is letters, digits and '_', not starting with a digit)"
            ),
            Problem::Unsupported(text) => write!(
                f,
                "unsupported expansion {text:?} (only ${{VAR}} and ${{VAR:-default}} are supported)"
            ),
        }
    }
}

/// What expansion has produced so far: the text and the values it took from
/// the environment.
struct Output {
    text: String,
    from_env: Vec<String>,
}

impl Output {
    fn push_env(&mut self, value: String) {
        self.text.push_str(&value);
        if !value.is_empty() && !self.from_env.contains(&value) {
            self.from_env.push(value);
        }
    }
}

/// Expands every non-comment line of `text` with values from `env`.
pub(crate) fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, ExpandError> {
    let mut out = Output {
        text: String::with_capacity(text.len()),
        from_env: Vec::new(),
    };
    let mut source_line = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let start = out.text.len();
        if line.trim_start().starts_with('#') {
            out.text.push_str(line);
        } else {
            expand_into(line, env, &mut out).map_err(|failure| match failure {
                Failure::Unset(var) => ExpandError::Unset { line: number, var },
                Failure::Syntax(problem) => ExpandError::Syntax {
                    line: number,
                    problem,
                },
            })?;
        }
        let produced = &out.text[start..];
        let breaks = produced.matches('\n').count();
        let lines = if produced.ends_with('\n') {
            breaks
        } else {
            breaks + 1
        };
        source_line.extend(std::iter::repeat_n(number, lines.max(1)));
    }
    Ok(Expanded {
        text: out.text,
        from_env: out.from_env,
        source_line,
    })
}

enum Failure {
    Unset(String),
    Syntax(Problem),
}

/// Appends the expansion of `s` (one line, or a default's text) to `out`.
fn expand_into(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Output,
) -> Result<(), Failure> {
    let mut rest = s;
    while let Some(dollar) = rest.find('$') {
        out.text.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.text.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            rest = substitute(inner, env, out)?;
        } else {
            out.text.push('$');
            rest = after;
        }
    }
    out.text.push_str(rest);
    Ok(())
}

/// Handles one `${...}` whose text after `${` is `inner`; returns what follows its `}`.
fn substitute<'a>(
    inner: &'a str,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Output,
) -> Result<&'a str, Failure> {
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, after_name) = inner.split_at(name_len);
    // The reference as written, for messages: `${NAME` plus a few following chars.
    let shown = || {
        let end = closing_brace(inner).map_or(inner.len(), |i| i + 1);
        format!("${{{}", &inner[..end])
    };
    if after_name.is_empty() || after_name.starts_with(['\n', '\r']) {
        return Err(Failure::Syntax(Problem::Unterminated));
    }
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(Failure::Syntax(Problem::BadName(shown())));
    }
    if let Some(tail) = after_name.strip_prefix('}') {
        match env(name) {
            Some(value) => out.push_env(value),
            None => return Err(Failure::Unset(name.to_owned())),
        }
        return Ok(tail);
    }
    if let Some(default_and_tail) = after_name.strip_prefix(":-") {
        let end = closing_brace(default_and_tail).ok_or(Failure::Syntax(Problem::Unterminated))?;
        let (default, tail) = (&default_and_tail[..end], &default_and_tail[end + 1..]);
        match env(name) {
            Some(value) if !value.is_empty() => out.push_env(value),
            _ => expand_into(default, env, out)?,
        }
        return Ok(tail);
    }
    if closing_brace(after_name).is_none() {
        return Err(Failure::Syntax(Problem::Unterminated));
    }
    if matches!(after_name.as_bytes()[0], b':' | b'-' | b'=' | b'?' | b'+') {
        Err(Failure::Syntax(Problem::Unsupported(shown())))
    } else {
        Err(Failure::Syntax(Problem::BadName(shown())))
    }
}

/// Index of the `}` closing the `${` that `s` follows, skipping nested `${...}` and `$$`.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            b'\n' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.test".into()),
            "TOKEN" => Some("t0k$en".into()),
            "EMPTY" => Some(String::new()),
            "MULTI" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> String {
        expand(text, &env).unwrap().text
    }

    fn err(text: &str) -> ExpandError {
        expand(text, &env).unwrap_err()
    }

    #[test]
    fn plain_variables_and_defaults() {
        assert_eq!(
            ok("url: http://${HOST}/x\n"),
            "url: http://example.test/x\n"
        );
        assert_eq!(ok("a: ${HOST:-other}"), "a: example.test");
        assert_eq!(ok("a: ${UNSET:-fallback}"), "a: fallback");
        assert_eq!(ok("a: ${UNSET:-}"), "a: ");
        assert_eq!(ok("a: ${HOST}${HOST}"), "a: example.testexample.test");
    }

    #[test]
    fn empty_but_set_follows_shell_rules() {
        assert_eq!(ok("a: '${EMPTY}'"), "a: ''");
        assert_eq!(ok("a: ${EMPTY:-d}"), "a: d");
    }

    #[test]
    fn values_are_not_re_expanded() {
        // TOKEN's value contains `$`: it is inserted as is, not scanned again.
        assert_eq!(ok("a: ${TOKEN}"), "a: t0k$en");
    }

    #[test]
    fn dollar_escapes_and_bare_dollars() {
        assert_eq!(ok("a: $$"), "a: $");
        assert_eq!(ok("a: $${HOST}"), "a: ${HOST}");
        assert_eq!(ok("a: $$$${HOST}"), "a: $${HOST}");
        assert_eq!(ok("a: $$${HOST}"), "a: $example.test");
        assert_eq!(ok("a: $HOST $1 cost$ $"), "a: $HOST $1 cost$ $");
        assert_eq!(ok("a: ${UNSET:-$$5}"), "a: $5");
    }

    #[test]
    fn nested_defaults_expand_only_when_used() {
        assert_eq!(ok("a: ${UNSET:-${HOST}}"), "a: example.test");
        assert_eq!(ok("a: ${UNSET:-${ALSO_UNSET:-deep}}!"), "a: deep!");
        assert_eq!(
            ok("a: ${UNSET:-http://${HOST}:8091/x}"),
            "a: http://example.test:8091/x"
        );
        // HOST is set: the default, which names an unset variable, is never evaluated.
        assert_eq!(ok("a: ${HOST:-${ALSO_UNSET}}"), "a: example.test");
        // A `}` closes the innermost `${`; the rest of the line is literal text.
        assert_eq!(ok("a: ${UNSET:-{x}}"), "a: {x}");
        assert_eq!(ok("a: {b: ${HOST}}"), "a: {b: example.test}");
    }

    #[test]
    fn unset_without_default_names_line_and_variable() {
        assert_eq!(
            err("a: 1\nb: ${NOPE}\n"),
            ExpandError::Unset {
                line: 2,
                var: "NOPE".into()
            }
        );
        assert_eq!(
            err("b: ${UNSET:-${NOPE}}"),
            ExpandError::Unset {
                line: 1,
                var: "NOPE".into()
            }
        );
    }

    #[test]
    fn malformed_references() {
        let syntax = |text: &str| match err(text) {
            ExpandError::Syntax { problem, .. } => problem,
            other => panic!("expected a syntax error, got {other:?}"),
        };
        assert_eq!(syntax("a: ${HOST"), Problem::Unterminated);
        assert_eq!(syntax("a: ${HOST\nb: }"), Problem::Unterminated);
        assert_eq!(syntax("a: ${UNSET:-${HOST}"), Problem::Unterminated);
        assert_eq!(syntax("a: ${"), Problem::Unterminated);
        assert_eq!(syntax("a: ${}"), Problem::BadName("${}".into()));
        assert_eq!(syntax("a: ${1X}"), Problem::BadName("${1X}".into()));
        assert_eq!(syntax("a: ${A B}"), Problem::BadName("${A B}".into()));
        assert_eq!(syntax("a: ${A-x}"), Problem::Unsupported("${A-x}".into()));
        assert_eq!(syntax("a: ${A:?}"), Problem::Unsupported("${A:?}".into()));
        assert_eq!(syntax("a: ${A:=x}"), Problem::Unsupported("${A:=x}".into()));
    }

    #[test]
    fn comment_lines_are_not_expanded() {
        assert_eq!(ok("  # url: ${NOPE}\na: 1\n"), "  # url: ${NOPE}\na: 1\n");
        // A trailing comment is part of its line.
        assert!(matches!(
            err("a: 1 # ${NOPE}"),
            ExpandError::Unset { line: 1, .. }
        ));
    }

    #[test]
    fn line_map_survives_multiline_values() {
        let expanded = expand("a: 1\nb: \"${MULTI}\"\nc: ${HOST}\n", &env).unwrap();
        assert_eq!(expanded.text, "a: 1\nb: \"a\nb\"\nc: example.test\n");
        assert_eq!(
            (1..=5).map(|l| expanded.source_line(l)).collect::<Vec<_>>(),
            [1, 2, 2, 3, 4]
        );
    }

    #[test]
    fn values_from_the_environment_are_recorded_once_and_defaults_are_not() {
        let expanded = expand(
            "a: ${HOST}\nb: ${HOST}/${TOKEN}\nc: ${UNSET:-fallback}\nd: '${EMPTY}'\n# ${NOPE}\n",
            &env,
        )
        .unwrap();
        assert_eq!(expanded.from_env, ["example.test", "t0k$en"]);
        // A default that refers to a set variable takes its value from the environment.
        let nested = expand("a: ${UNSET:-${HOST}}", &env).unwrap();
        assert_eq!(nested.from_env, ["example.test"]);
    }

    #[test]
    fn crlf_and_missing_final_newline() {
        assert_eq!(ok("a: ${HOST}\r\nb: 2"), "a: example.test\r\nb: 2");
        let expanded = expand("a: 1\r\nb: 2", &env).unwrap();
        assert_eq!(expanded.source_line(2), 2);
    }
}

/// Properties over generated input. `make test` runs proptest's default 256
/// cases per property (`PROPTEST_CASES` overrides); `make fuzz` runs 100,000.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    /// A few set variables, one of them empty; everything else is unset.
    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "B" => Some("b$${X}".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// Text rich in the characters the syntax cares about.
    fn tricky() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("$".to_owned()),
            Just("$$".to_owned()),
            Just("${".to_owned()),
            Just("}".to_owned()),
            Just(":-".to_owned()),
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("#".to_owned()),
            Just(" ".to_owned()),
            Just("${A}".to_owned()),
            Just("${UNSET:-".to_owned()),
            Just("${EMPTY:-d}".to_owned()),
            "[A-Z_]{1,3}",
            "\\PC{0,4}",
        ];
        prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    /// A line that is not a comment: its first non-blank character is not `#`.
    fn non_comment_line() -> impl Strategy<Value = String> {
        "[^\n]*".prop_filter("not a comment", |l| !l.trim_start().starts_with('#'))
    }

    /// Every expanded line maps to a source line within the input, in order.
    fn check_line_map(text: &str, expanded: &Expanded) -> Result<(), TestCaseError> {
        let lines = expanded.text.split_inclusive('\n').count().max(1);
        let source_lines = text.split_inclusive('\n').count().max(1);
        let mut previous = 1;
        for line in 1..=lines {
            let source = expanded.source_line(line);
            prop_assert!(source >= previous && source <= source_lines);
            previous = source;
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            if let Ok(expanded) = expand(&text, &env) {
                check_line_map(&text, &expanded)?;
            }
        }

        #[test]
        fn syntax_heavy_text_never_panics_and_errors_name_a_real_line(text in tricky()) {
            match expand(&text, &env) {
                Ok(expanded) => check_line_map(&text, &expanded)?,
                Err(ExpandError::Unset { line, .. } | ExpandError::Syntax { line, .. }) => {
                    prop_assert!(line >= 1 && line <= text.split_inclusive('\n').count().max(1));
                }
            }
        }

        #[test]
        fn text_without_dollar_is_unchanged(text in "[^$]*") {
            let expanded = expand(&text, &env).unwrap();
            prop_assert_eq!(&expanded.text, &text);
            for line in 1..=text.split_inclusive('\n').count() {
                prop_assert_eq!(expanded.source_line(line), line);
            }
        }

        #[test]
        fn escaping_every_dollar_round_trips(line in non_comment_line()) {
            let escaped = line.replace('$', "$$");
            prop_assert_eq!(expand(&escaped, &env).unwrap().text, line);
        }

        #[test]
        fn comment_lines_are_copied_verbatim(indent in "[ \t]{0,3}", rest in "[^\n]*") {
            let line = format!("{indent}#{rest}\n");
            prop_assert_eq!(expand(&line, &env).unwrap().text, line);
        }

        #[test]
        fn a_set_variable_is_replaced_by_its_value_verbatim(
            prefix in "[^$#\n]*",
            value in "[^\n]*",
            suffix in "[^$\n]*",
        ) {
            let lookup = |name: &str| (name == "V").then(|| value.clone());
            let text = format!("{prefix}${{V}}{suffix}");
            prop_assert_eq!(expand(&text, &lookup).unwrap().text, format!("{prefix}{value}{suffix}"));
        }

        #[test]
        fn a_default_is_used_only_when_unset_or_empty(
            set in proptest::option::of("[^\n]*"),
            default in "[^$}\n]*",
        ) {
            let lookup = |name: &str| (name == "V").then(|| set.clone()).flatten();
            let text = format!("x: ${{V:-{default}}}");
            let want = match &set {
                Some(value) if !value.is_empty() => value.clone(),
                _ => default.clone(),
            };
            prop_assert_eq!(expand(&text, &lookup).unwrap().text, format!("x: {want}"));
        }

        #[test]
        fn an_unset_variable_names_its_line_and_itself(
            before in prop::collection::vec("[^$#\n]*", 0..5),
            name in "[A-Z_][A-Z0-9_]{0,8}",
        ) {
            prop_assume!(env(&name).is_none());
            let text = format!("{}x: ${{{name}}}\n", before.iter().map(|l| format!("{l}\n")).collect::<String>());
            prop_assert_eq!(
                expand(&text, &env).unwrap_err(),
                ExpandError::Unset { line: before.len() + 1, var: name }
            );
        }
    }
}
