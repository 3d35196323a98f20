//! Where each key of a config file sits, so that every message can name its line.
//!
//! serde_yaml 0.9 keeps no positions for values it accepted, so the text is read a second time
//! with an event parser (`saphyr-parser`) into a small tree of nodes that know their line. The
//! tree serves the shape checks in `validate/shape.rs`; `Lines` maps key paths
//! (`routes[3].ttl_secs`) to lines for the semantic checks. If the second parser disagrees with
//! serde_yaml about the text, messages simply go without line numbers.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Nesting deeper than this is not a config file; give up on lines rather than recurse further.
const MAX_DEPTH: usize = 64;

/// One YAML node and the line (1-based) where it starts.
#[derive(Debug)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

/// What a node holds.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A scalar as written; `plain` is false for quoted and block scalars.
    Scalar { text: String, plain: bool },
    /// A mapping, entries in file order.
    Map(Vec<Entry>),
    /// A sequence.
    Seq(Vec<Node>),
    /// An alias (`*name`); its target is not followed.
    Alias,
}

/// One mapping entry; `line` is the line of the key.
#[derive(Debug)]
pub(crate) struct Entry {
    pub key: String,
    pub line: usize,
    pub value: Node,
}

/// Parses the first document of `yaml`. `None` on a syntax error or an empty document: serde_yaml
/// then reports the error, or the defaults apply.
pub(crate) fn parse(yaml: &str) -> Option<Node> {
    let mut events = Parser::new_from_str(yaml).map_while(Result::ok);
    loop {
        let (event, span) = events.next()?;
        match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => continue,
            Event::StreamEnd | Event::DocumentEnd => return None,
            event => return node(event, span, &mut events, 0),
        }
    }
}

/// Builds the node that starts with `event`, consuming its children from `events`.
fn node<'a>(
    event: Event<'a>,
    span: Span,
    events: &mut impl Iterator<Item = (Event<'a>, Span)>,
    depth: usize,
) -> Option<Node> {
    if depth > MAX_DEPTH {
        return None;
    }
    let line = span.start.line();
    let kind = match event {
        Event::Scalar(text, style, ..) => Kind::Scalar {
            text: text.into_owned(),
            plain: style == ScalarStyle::Plain,
        },
        Event::Alias(_) => Kind::Alias,
        Event::SequenceStart(..) => {
            let mut items = Vec::new();
            loop {
                let (event, span) = events.next()?;
                if event == Event::SequenceEnd {
                    break;
                }
                items.push(node(event, span, events, depth + 1)?);
            }
            Kind::Seq(items)
        }
        Event::MappingStart(..) => {
            let mut entries = Vec::new();
            loop {
                let (event, span) = events.next()?;
                if event == Event::MappingEnd {
                    break;
                }
                let key = node(event, span, events, depth + 1)?;
                let (event, span) = events.next()?;
                let value = node(event, span, events, depth + 1)?;
                let text = match key.kind {
                    Kind::Scalar { text, .. } => text,
                    // A complex key (a mapping or list used as a key) is never valid here; give it
                    // a name that no schema accepts so the shape check reports it.
                    _ => "<complex key>".to_owned(),
                };
                entries.push(Entry {
                    key: text,
                    line: key.line,
                    value,
                });
            }
            Kind::Map(entries)
        }
        _ => return None,
    };
    Some(Node { line, kind })
}

impl Node {
    /// The value of `key` if this node is a mapping that has it (the first one, if repeated).
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// The text of a scalar node.
    pub(crate) fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// Lines of key paths: `listen`, `upstream.address`, `routes[3]`, `routes[3].methods[1]`.
#[derive(Debug, Default)]
pub(crate) struct Lines(HashMap<String, usize>);

impl Lines {
    /// Indexes every mapping key and sequence item under `root`.
    pub(crate) fn index(root: &Node) -> Self {
        let mut lines = Lines::default();
        lines.walk(root, "");
        lines
    }

    fn walk(&mut self, node: &Node, path: &str) {
        match &node.kind {
            Kind::Map(entries) => {
                for e in entries {
                    let child = if path.is_empty() {
                        e.key.clone()
                    } else {
                        format!("{path}.{}", e.key)
                    };
                    // The first occurrence wins: a repeated key is reported where it first stood.
                    self.0.entry(child.clone()).or_insert(e.line);
                    self.walk(&e.value, &child);
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    self.0.insert(child.clone(), item.line);
                    self.walk(item, &child);
                }
            }
            Kind::Scalar { .. } | Kind::Alias => {}
        }
    }

    /// The line of `path`, or of its nearest ancestor that is in the file: a key that was left
    /// out (and defaulted) is reported at the line of the section or route that lacks it.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.0.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    /// The line of `path` only if that exact key or item is in the file.
    pub(crate) fn exact(&self, path: &str) -> Option<usize> {
        self.0.get(path).copied()
    }
}
