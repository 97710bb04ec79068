//! The one bounded reader of every YAML or JSON document mirror-sync reads (request bodies,
//! `/import`, `projects_dir` files, `mirrorctl`'s files): a hostile document costs at most its
//! own size and a bounded time, and is refused with a message that names what is wrong and where.
//!
//! - **Size**: the caller gives the limit that fits the document (a project file is kilobytes).
//! - **Aliases** (`*name`) are refused: they are how a few kilobytes expand to gigabytes, and no
//!   document of ours needs them. Anchors alone are harmless and ignored; tags other than the core
//!   schema's are refused.
//! - **Depth** and **node count** are bounded; the parse stops at the first node past them.
//! - **Duplicate keys** are refused at every level, naming the key and its place (`users[0].role`),
//!   instead of the later one silently winning.
//! - **Time**: a deadline is checked as the document is read.
//!
//! YAML is read as an event stream (yaml-rust2's parser, which keeps its own state on a heap stack,
//! bounds flow nesting, and builds nothing itself), so nothing is expanded or built before it is
//! checked. Plain scalars are typed as YAML 1.2's core schema types them (null, booleans,
//! integers, floats), as the YAML reader we used before (serde_norway) did.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// What a document may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    /// Nesting of sequences and mappings (the top level is depth 1).
    pub max_depth: usize,
    /// Scalars, sequences and mappings in all.
    pub max_nodes: usize,
    pub max_time: Duration,
}

impl Limits {
    /// A request body of the API (a project, a user: a few kilobytes; 256 KiB at most).
    pub const REQUEST: Limits =
        Limits { max_bytes: 256 * 1024, max_depth: 32, max_nodes: 20_000, max_time: Duration::from_secs(1) };
    /// One project's file (`projects_dir`, `mirrorctl edit`): a few kilobytes.
    pub const PROJECT_FILE: Limits =
        Limits { max_bytes: 256 * 1024, max_depth: 32, max_nodes: 20_000, max_time: Duration::from_secs(1) };
    /// A whole configuration (`/import`, `mirrorctl import`): thousands of projects, users and
    /// slaves; at about fifty nodes a project, 20,000 projects.
    pub const CONFIGURATION: Limits =
        Limits { max_bytes: 8 * 1024 * 1024, max_depth: 32, max_nodes: 1_000_000, max_time: Duration::from_secs(5) };
}

/// Why a document was refused. `place` is the path of the node at fault (`projects[3].dest`),
/// `None` for the document as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{message}")]
    Refused { place: Option<String>, message: String },
}

impl DocError {
    fn at(path: &Path, message: impl Into<String>) -> DocError {
        let place = path.render();
        DocError::Refused { place: (!place.is_empty()).then_some(place), message: message.into() }
    }

    pub fn place(&self) -> Option<&str> {
        match self {
            DocError::TooLarge(_) => None,
            DocError::Refused { place, .. } => place.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Where the reader is, as a field path: `users[0].role`.
#[derive(Debug, Default)]
struct Path(Vec<Segment>);

impl Path {
    fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Segment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

/// The running costs of one read.
struct Budget {
    limits: Limits,
    nodes: usize,
    started: Instant,
}

impl Budget {
    fn new(limits: Limits) -> Budget {
        Budget { limits, nodes: 0, started: Instant::now() }
    }

    /// One more node at `depth`.
    fn node(&mut self, path: &Path, depth: usize) -> Result<(), DocError> {
        self.nodes += 1;
        if depth > self.limits.max_depth {
            return Err(DocError::at(path, format!("is nested deeper than {} levels", self.limits.max_depth)));
        }
        if self.nodes > self.limits.max_nodes {
            return Err(DocError::at(path, format!("the document has more than {} values", self.limits.max_nodes)));
        }
        if self.nodes.is_multiple_of(4096) && self.started.elapsed() > self.limits.max_time {
            return Err(DocError::at(
                path,
                format!("the document took longer than {:?} to read", self.limits.max_time),
            ));
        }
        Ok(())
    }
}

fn check_size(bytes: &[u8], limits: &Limits) -> Result<(), DocError> {
    if bytes.len() > limits.max_bytes { Err(DocError::TooLarge(limits.max_bytes)) } else { Ok(()) }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Reads a JSON document within `limits`.
pub fn read_json(bytes: &[u8], limits: &Limits) -> Result<Value, DocError> {
    check_size(bytes, limits)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut state = JsonState { budget: Budget::new(*limits), path: Path::default(), fault: None };
    let read = JsonNode { state: &mut state, depth: 1 }.deserialize(&mut de);
    let value = match read {
        Ok(v) => v,
        // A limit or a duplicate found by the visitor; serde_json's own message otherwise.
        Err(e) => {
            return Err(state
                .fault
                .take()
                .unwrap_or_else(|| DocError::Refused { place: None, message: strip_position(&e.to_string()) }));
        }
    };
    de.end().map_err(|e| DocError::Refused { place: None, message: strip_position(&e.to_string()) })?;
    Ok(value)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

struct JsonState {
    budget: Budget,
    path: Path,
    /// The refusal the visitor raised (serde's error type carries only text).
    fault: Option<DocError>,
}

struct JsonNode<'a> {
    state: &'a mut JsonState,
    depth: usize,
}

impl JsonNode<'_> {
    fn refuse<E: serde::de::Error>(&mut self, fault: DocError) -> E {
        let message = fault.to_string();
        self.state.fault = Some(fault);
        E::custom(message)
    }

    fn count<E: serde::de::Error>(&mut self) -> Result<(), E> {
        let JsonState { budget, path, .. } = &mut *self.state;
        match budget.node(path, self.depth) {
            Ok(()) => Ok(()),
            Err(fault) => Err(self.refuse(fault)),
        }
    }
}

impl<'de> DeserializeSeed<'de> for JsonNode<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonNode<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(mut self, v: bool) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(mut self, v: i64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(mut self, v: u64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(mut self, v: f64) -> Result<Value, E> {
        self.count()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.visit_string(v.to_owned())
    }

    fn visit_string<E: serde::de::Error>(mut self, v: String) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(mut self) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.count()?;
        let mut out = Vec::new();
        loop {
            self.state.path.0.push(Segment::Index(out.len()));
            let next = seq.next_element_seed(JsonNode { state: &mut *self.state, depth: self.depth + 1 })?;
            self.state.path.0.pop();
            match next {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.count()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.state.path.0.push(Segment::Key(key.clone()));
            if out.contains_key(&key) {
                let fault = DocError::at(&self.state.path, format!("the key '{}' is given twice", key.escape_debug()));
                return Err(self.refuse(fault));
            }
            let value = map.next_value_seed(JsonNode { state: &mut *self.state, depth: self.depth + 1 })?;
            self.state.path.0.pop();
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

// ---------------------------------------------------------------------------------------------
// YAML (and so JSON, which YAML reads too)

/// Reads a YAML (or JSON) document within `limits`.
pub fn read_yaml(bytes: &[u8], limits: &Limits) -> Result<Value, DocError> {
    check_size(bytes, limits)?;
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DocError::Refused { place: None, message: format!("the document is not UTF-8: {e}") })?;
    YamlReader { parser: Parser::new_from_str(text), budget: Budget::new(*limits), path: Path::default() }.document()
}

/// Reads JSON when the document starts as JSON does, YAML otherwise (a JSON document read as
/// YAML would be typed the same, but JSON's reader is several times faster).
pub fn read_yaml_or_json(bytes: &[u8], limits: &Limits) -> Result<Value, DocError> {
    if !matches!(bytes.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'[')) {
        return read_yaml(bytes, limits);
    }
    // Flow-style YAML starts the same way: if it is not JSON, it may still be YAML; if it is
    // neither, JSON's reason is the one to give.
    match read_json(bytes, limits) {
        Ok(v) => Ok(v),
        Err(json) => read_yaml(bytes, limits).map_err(|_| json),
    }
}

struct YamlReader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    budget: Budget,
    path: Path,
}

/// A mapping or sequence being read.
enum Open {
    Seq(Vec<Value>),
    /// The mapping, its keys so far, and the key whose value comes next.
    Map(Map<String, Value>, HashSet<String>, Option<String>),
}

impl YamlReader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), DocError> {
        self.parser.next_token().map_err(|e| {
            let m = e.marker();
            let why = match e.info() {
                // The scanner's own bound on flow collections ([[[...).
                "recursion limit exceeded" => "is nested too deeply",
                other => other,
            };
            DocError::at(&self.path, format!("not YAML: {why} (line {}, column {})", m.line(), m.col() + 1))
        })
    }

    fn refuse(&self, mark: &Marker, message: impl std::fmt::Display) -> DocError {
        DocError::at(&self.path, format!("{message} (line {}, column {})", mark.line(), mark.col() + 1))
    }

    fn document(mut self) -> Result<Value, DocError> {
        let mut value = None;
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart if value.is_some() => {
                    return Err(self.refuse(&mark, "holds more than one document"));
                }
                Event::DocumentStart => value = Some(self.node()?),
                Event::StreamEnd => return Ok(value.unwrap_or(Value::Null)),
                _ => return Err(self.refuse(&mark, "is not one YAML document")),
            }
        }
    }

    /// One whole node (with what it holds), iteratively: the nesting lives on a heap stack.
    fn node(&mut self) -> Result<Value, DocError> {
        let mut stack: Vec<Open> = Vec::new();
        loop {
            let (event, mark) = self.next()?;
            let done = match event {
                Event::Alias(_) => {
                    return Err(self.refuse(&mark, "an alias (*name): aliases are not accepted, write the value out"));
                }
                Event::Scalar(text, style, _, tag) => {
                    // A mapping waiting for a key takes this scalar as its key.
                    if let Some(Open::Map(_, keys, pending @ None)) = stack.last_mut() {
                        if keys.contains(&text) {
                            self.path.0.push(Segment::Key(text.clone()));
                            return Err(
                                self.refuse(&mark, format_args!("the key '{}' is given twice", text.escape_debug()))
                            );
                        }
                        keys.insert(text.clone());
                        self.path.0.push(Segment::Key(text.clone()));
                        *pending = Some(text);
                        continue;
                    }
                    self.budget.node(&self.path, stack.len() + 1)?;
                    scalar(text, style, tag.as_ref()).map_err(|m| self.refuse(&mark, m))?
                }
                Event::SequenceStart(_, ref tag) | Event::MappingStart(_, ref tag) => {
                    if let Some(Open::Map(_, _, None)) = stack.last() {
                        return Err(self.refuse(&mark, "a key must be a plain value, not a list or a mapping"));
                    }
                    if let Some(t) = tag.as_ref().filter(|t| !is_core(t, &["seq", "map"])) {
                        return Err(
                            self.refuse(&mark, format_args!("the tag !{}{} is not accepted", t.handle, t.suffix))
                        );
                    }
                    self.budget.node(&self.path, stack.len() + 1)?;
                    let seq = matches!(event, Event::SequenceStart(..));
                    if seq {
                        self.path.0.push(Segment::Index(0));
                        stack.push(Open::Seq(Vec::new()));
                    } else {
                        stack.push(Open::Map(Map::new(), HashSet::new(), None));
                    }
                    continue;
                }
                Event::SequenceEnd => {
                    self.path.0.pop();
                    match stack.pop() {
                        Some(Open::Seq(items)) => Value::Array(items),
                        _ => return Err(self.refuse(&mark, "a list ends where none began")),
                    }
                }
                Event::MappingEnd => match stack.pop() {
                    Some(Open::Map(map, _, None)) => Value::Object(map),
                    _ => return Err(self.refuse(&mark, "a mapping ends where none began")),
                },
                Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {
                    return Err(self.refuse(&mark, "the document ends inside a value"));
                }
            };
            // `done` is a whole value: it goes into what holds it, or it is the document.
            match stack.last_mut() {
                None => return Ok(done),
                Some(Open::Seq(items)) => {
                    items.push(done);
                    self.path.0.pop();
                    self.path.0.push(Segment::Index(items.len()));
                }
                Some(Open::Map(map, _, pending)) => {
                    if let Some(key) = pending.take() {
                        map.insert(key, done);
                        self.path.0.pop();
                    }
                }
            }
        }
    }
}

/// Whether `tag` is one of YAML's core tags (`!!str`, `tag:yaml.org,2002:str`) named in `kinds`.
fn is_core(tag: &Tag, kinds: &[&str]) -> bool {
    let core = tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:";
    core && kinds.contains(&tag.suffix.as_str())
}

/// A scalar's value: quoted and block scalars are strings; a plain one is typed by YAML 1.2's
/// core schema.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(t) = tag {
        if is_core(t, &["str"]) {
            return Ok(Value::String(text));
        }
        if !is_core(t, &["null", "bool", "int", "float"]) {
            return Err(format!("the tag !{}{} is not accepted", t.handle, t.suffix));
        }
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text));
    }
    Ok(match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN"
        | ".NAN" => return Err(format!("{text} is not a number JSON can hold")),
        t => match number(t) {
            Some(n) => Value::Number(n),
            None => Value::String(text),
        },
    })
}

fn number(t: &str) -> Option<Number> {
    let (negative, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let radix = |prefix: &str, radix: u32| {
        digits.strip_prefix(prefix).filter(|d| !d.is_empty()).and_then(|d| u64::from_str_radix(d, radix).ok())
    };
    let whole = if let Some(v) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        Some(v)
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<u64>().ok()
    } else {
        None
    };
    if let Some(v) = whole {
        return if negative {
            i64::try_from(v).ok().map(|v| Number::from(-v)).or_else(|| Number::from_f64(-(v as f64)))
        } else {
            Some(Number::from(v))
        };
    }
    // [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
    let b = digits.as_bytes();
    let mut i = 0;
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp == 0 {
            return None;
        }
        i += exp;
    }
    if i != b.len() {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const L: Limits = Limits::CONFIGURATION;

    fn refused(r: Result<Value, DocError>) -> (Option<String>, String) {
        match r {
            Err(DocError::Refused { place, message }) => (place, message),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn yaml_reads_as_the_core_schema_types_it() {
        let v = read_yaml(
            b"a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: '1'\ng: 0x10\nh: hello world\ni: [1, x]\nj: {k: v}\nk: 1e3\nl: \"no\"\n",
            &L,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": 1, "b": -2, "c": 1.5, "d": true, "e": null, "f": "1", "g": 16, "h": "hello world",
                   "i": [1, "x"], "j": {"k": "v"}, "k": 1000.0, "l": "no"})
        );
        assert_eq!(read_yaml(b"- a\n- - b\n  - c\n- {}\n", &L).unwrap(), json!(["a", ["b", "c"], {}]));
        assert_eq!(read_yaml(b"", &L).unwrap(), Value::Null);
        assert_eq!(read_yaml(b"x: !!str 12\n", &L).unwrap(), json!({"x": "12"}));
        assert_eq!(read_yaml_or_json(br#"{"a": [1, 2]}"#, &L).unwrap(), json!({"a": [1, 2]}));
    }

    #[test]
    fn aliases_are_refused_before_anything_is_expanded() {
        let bomb = b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b]\n";
        let (place, message) = refused(read_yaml(bomb, &L));
        assert_eq!(place.as_deref(), Some("b[0]"));
        assert!(message.contains("alias"), "{message}");
    }

    #[test]
    fn duplicate_keys_are_refused_at_every_level_with_their_place() {
        let (place, m) = refused(read_yaml(b"projects: []\nusers: [{username: a, role: user, role: root}]\n", &L));
        assert_eq!(place.as_deref(), Some("users[0].role"));
        assert!(m.contains("'role' is given twice"), "{m}");
        let (place, _) = refused(read_yaml(b"projects: []\nprojects: []\n", &L));
        assert_eq!(place.as_deref(), Some("projects"));
        let (place, _) = refused(read_json(br#"{"users": [{"role": "user", "role": "root"}]}"#, &L));
        assert_eq!(place.as_deref(), Some("users[0].role"));
        let (place, _) = refused(read_json(br#"{"a": 1, "a": 2}"#, &L));
        assert_eq!(place.as_deref(), Some("a"));
    }

    #[test]
    fn depth_nodes_and_size_are_bounded() {
        let deep_json = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let (_, m) = refused(read_json(deep_json.as_bytes(), &Limits { max_bytes: 1 << 20, ..L }));
        assert!(m.contains("deeper than 32"), "{m}");
        let deep_flow = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(read_yaml(deep_flow.as_bytes(), &Limits { max_bytes: 1 << 20, ..L }).is_err());
        let mut deep_block = String::new();
        for i in 0..100 {
            deep_block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        let (_, m) = refused(read_yaml(deep_block.as_bytes(), &L));
        assert!(m.contains("deeper than 32"), "{m}");
        let many = format!("[{}1]", "1,".repeat(30_000));
        let (_, m) = refused(read_json(many.as_bytes(), &Limits::REQUEST));
        assert!(m.contains("more than 20000 values"), "{m}");
        assert_eq!(read_json(&vec![b' '; 300 * 1024], &Limits::REQUEST), Err(DocError::TooLarge(256 * 1024)));
    }

    #[test]
    fn other_tags_and_several_documents_are_refused() {
        assert!(read_yaml(b"a: !!python/object:os.system x\n", &L).is_err());
        assert!(read_yaml(b"a: 1\n---\nb: 2\n", &L).is_err());
        assert!(read_yaml(b"? [a]\n: 1\n", &L).is_err());
    }
}
