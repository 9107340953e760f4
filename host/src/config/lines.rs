//! Where each key of a YAML document sits, for messages about values that parsed
//! but failed validation (a duplicate name, a missing plugin file, ...).
//!
//! serde_yaml reports a line for its own errors only; this index is built from the
//! yaml-rust2 event stream of the same text. Paths use serde_yaml's notation
//! (`subscriptions[0].webhook.url`) so both kinds of message read alike. Best
//! effort: on text the scanner rejects, the index keeps what it saw before.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// Key path -> 1-based line of the key (or, for a list item, of the item).
#[derive(Debug, Default)]
pub(crate) struct KeyLines {
    keys: HashMap<String, usize>,
    /// (line, path) of every scalar value, in document order.
    values: Vec<(usize, String)>,
}

struct Frame {
    path: String,
    kind: Kind,
    /// A mapping or list used as a mapping key (`? [a, b]: c`).
    is_key: bool,
}

enum Kind {
    Map { key: Option<String> },
    Seq { index: usize },
}

impl KeyLines {
    pub(crate) fn parse(text: &str) -> Self {
        let mut index = KeyLines::default();
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        while let Ok((event, marker)) = parser.next_token() {
            let line = marker.line();
            match event {
                Event::StreamEnd => break,
                Event::Scalar(value, ..) => {
                    match index.place(&stack, line) {
                        Place::Key => {
                            if let Some(Frame {
                                path,
                                kind: Kind::Map { key },
                                ..
                            }) = stack.last_mut()
                            {
                                index.keys.insert(join(path, &value), line);
                                *key = Some(value);
                            }
                            continue;
                        }
                        Place::Node(path) => index.values.push((line, path)),
                    }
                    finish(&mut stack);
                }
                Event::Alias(_) => {
                    if let Place::Key = index.place(&stack, line) {
                        set_key(&mut stack, "?");
                        continue;
                    }
                    finish(&mut stack);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let (path, is_key) = match index.place(&stack, line) {
                        // A mapping or list used as a key: nothing to point at.
                        Place::Key => {
                            set_key(&mut stack, "?");
                            ("?".to_owned(), true)
                        }
                        Place::Node(path) => (path, false),
                    };
                    let kind = if matches!(event, Event::MappingStart(..)) {
                        Kind::Map { key: None }
                    } else {
                        Kind::Seq { index: 0 }
                    };
                    stack.push(Frame { path, kind, is_key });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    let closed = stack.pop();
                    // After a key the map awaits its value: nothing is finished yet.
                    if closed.is_some_and(|frame| !frame.is_key) {
                        finish(&mut stack);
                    }
                }
                _ => {}
            }
        }
        index
    }

    /// Decides whether the node starting at `line` is a mapping key or a node
    /// with a path (recording a list item's line).
    fn place(&mut self, stack: &[Frame], line: usize) -> Place {
        match stack.last() {
            None => Place::Node(String::new()),
            Some(Frame {
                kind: Kind::Map { key: None },
                ..
            }) => Place::Key,
            Some(Frame {
                path,
                kind: Kind::Map { key: Some(key) },
                ..
            }) => Place::Node(join(path, key)),
            Some(Frame {
                path,
                kind: Kind::Seq { index },
                ..
            }) => {
                let path = format!("{path}[{index}]");
                self.keys.insert(path.clone(), line);
                Place::Node(path)
            }
        }
    }

    /// Line of `path`; for a key written twice, the later one.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        self.keys.get(path).copied()
    }

    /// Line of `path`, or of its nearest recorded ancestor
    /// (`a[0].b.c` -> `a[0].b` -> `a[0]` -> `a`).
    pub(crate) fn line_or_parent(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(&line) = self.keys.get(path) {
                return Some(line);
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }

    /// Path of the first scalar value that starts on `line`.
    pub(crate) fn value_path_on_line(&self, line: usize) -> Option<&str> {
        self.values
            .iter()
            .find(|(l, path)| *l == line && !path.is_empty())
            .map(|(_, path)| path.as_str())
    }
}

enum Place {
    Key,
    Node(String),
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn set_key(stack: &mut [Frame], key: &str) {
    if let Some(Frame {
        kind: Kind::Map { key: slot },
        ..
    }) = stack.last_mut()
    {
        *slot = Some(key.to_owned());
    }
}

/// A node under the top frame is complete: a map goes back to expecting a key,
/// a list moves to its next item.
fn finish(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame {
            kind: Kind::Map { key },
            ..
        }) => *key = None,
        Some(Frame {
            kind: Kind::Seq { index },
            ..
        }) => *index += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
stream:
  name: s
  subjects: [a.>,
    b.>]
subscriptions:
  - name: one
    webhook:
      url: http://x
      headers: {A: b}
  # a comment
  - name: two
    settings:
      nested:
        - k: v
";

    #[test]
    fn records_keys_and_items() {
        let lines = KeyLines::parse(DOC);
        let at = |p: &str| lines.line_or_parent(p);
        assert_eq!(at("stream"), Some(1));
        assert_eq!(at("stream.name"), Some(2));
        assert_eq!(at("stream.subjects[1]"), Some(4));
        assert_eq!(at("subscriptions[0]"), Some(6));
        assert_eq!(at("subscriptions[0].webhook.url"), Some(8));
        assert_eq!(at("subscriptions[0].webhook.headers.A"), Some(9));
        assert_eq!(at("subscriptions[1]"), Some(11));
        assert_eq!(at("subscriptions[1].settings.nested[0].k"), Some(14));
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let lines = KeyLines::parse(DOC);
        assert_eq!(lines.line_or_parent("subscriptions[1].ack_wait"), Some(11));
        assert_eq!(
            lines.line_or_parent("subscriptions[0].webhook.x.y"),
            Some(7)
        );
        assert_eq!(lines.line_or_parent("nothing"), None);
    }

    #[test]
    fn finds_the_value_on_a_line() {
        let lines = KeyLines::parse(DOC);
        assert_eq!(
            lines.value_path_on_line(8),
            Some("subscriptions[0].webhook.url")
        );
        assert_eq!(lines.value_path_on_line(3), Some("stream.subjects[0]"));
        assert_eq!(lines.value_path_on_line(10), None);
    }

    #[test]
    fn complex_keys_do_not_shift_paths() {
        let lines = KeyLines::parse("? [a, b]\n: c\nd: 1\n");
        assert_eq!(lines.line_or_parent("d"), Some(3));
    }

    #[test]
    fn broken_yaml_keeps_what_came_before() {
        let lines = KeyLines::parse("a:\n  b: 1\n c: [\n");
        assert_eq!(lines.line_or_parent("a.b"), Some(2));
    }
}
