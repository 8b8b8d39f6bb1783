//! Where each field of the YAML file is, by its serde path (`routes[1].match.prefix`).
//!
//! serde_yaml reports a line only for the first error it meets, and none for problems found
//! after parsing (an upstream URL that does not parse, two routes with one name). This index,
//! built from yaml-rust2's marked events, gives every problem a line and column, so `check`
//! can list them all at once.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the (expanded) text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Locations {
    keys: HashMap<String, Position>,
    values: HashMap<String, Position>,
}

impl Locations {
    /// Indexes `text`; a syntax error ends the index early (serde_yaml reports it).
    pub fn index(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut builder, false);
        builder.locations
    }

    /// The position of the value at `path`, else of its key, else of its nearest parent.
    pub fn value(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(p) = self.values.get(path).or_else(|| self.keys.get(path)) {
                return Some(*p);
            }
            path = parent(path)?;
        }
    }

    /// The position of the key at `path` (where an unknown field was written).
    pub fn key(&self, path: &str) -> Option<Position> {
        self.keys.get(path).copied()
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

enum Frame {
    /// `start` is where the mapping began, used only if it has no key: for a block mapping
    /// the parser marks the first `:`, so the first key is the better place to point at.
    Map {
        path: String,
        key: Option<String>,
        start: Option<Position>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    locations: Locations,
}

impl Builder {
    /// The path of the node that the next value event fills, if any.
    fn child_path(&self) -> Option<String> {
        match self.stack.last()? {
            Frame::Map {
                path,
                key: Some(key),
                ..
            } => Some(join(path, key)),
            Frame::Map { key: None, .. } => None,
            Frame::Seq { path, index } => Some(format!("{path}[{index}]")),
        }
    }

    /// A value was completed: the parent moves on to its next key or item.
    fn advance(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn position(mark: Marker) -> Position {
    // yaml-rust2 counts columns from 0 and lines from 1.
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let at = position(mark);
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map {
                    path,
                    key: key @ None,
                    start,
                }) = self.stack.last_mut()
                {
                    if start.take().is_some() {
                        self.locations.values.entry(path.clone()).or_insert(at);
                    }
                    let full = join(path, &value);
                    *key = Some(value);
                    self.locations.keys.insert(full, at);
                    return;
                }
                if let Some(path) = self.child_path() {
                    self.locations.values.insert(path, at);
                }
                self.advance();
            }
            Event::Alias(_) => self.advance(),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                let path = match self.stack.last() {
                    None => String::new(),
                    Some(_) => match self.child_path() {
                        Some(path) => path,
                        // A collection used as a mapping key: index nothing below it.
                        None => "?".to_string(),
                    },
                };
                self.stack.push(if is_map {
                    Frame::Map {
                        path,
                        key: None,
                        start: Some(at),
                    }
                } else {
                    self.locations.values.entry(path.clone()).or_insert(at);
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(Frame::Map {
                    path,
                    start: Some(start),
                    ..
                }) = self.stack.pop()
                {
                    self.locations.values.entry(path).or_insert(start);
                }
                self.advance();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
listen: 1.2.3.4:80
routes:
  - name: a
    match: { prefix: /api, methods: [GET] }
    upstream: http://x
  - name: b
    match:
      exact: /b
";

    #[test]
    fn finds_nested_keys_and_values_by_serde_path() {
        let l = Locations::index(DOC);
        assert_eq!(l.value("listen"), Some(Position { line: 1, column: 9 }));
        assert_eq!(
            l.key("routes[0].name"),
            Some(Position { line: 3, column: 5 })
        );
        assert_eq!(
            l.value("routes[0].match.prefix"),
            Some(Position {
                line: 4,
                column: 22
            })
        );
        assert_eq!(
            l.value("routes[0].match.methods[0]"),
            Some(Position {
                line: 4,
                column: 38
            })
        );
        assert_eq!(
            l.value("routes[1].match.exact"),
            Some(Position {
                line: 8,
                column: 14
            })
        );
    }

    #[test]
    fn unknown_path_falls_back_to_its_nearest_parent() {
        let l = Locations::index(DOC);
        assert_eq!(l.value("routes[1].timeout"), l.value("routes[1]"));
        assert_eq!(l.value("routes[1]"), Some(Position { line: 6, column: 5 }));
    }
}
