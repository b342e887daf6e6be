//! Spack's build-cache database (`BuildCacheDatabase`), written and merged in Rust.
//!
//! The bytes are those of `BuildCacheDatabase._write_to_file` (Spack v1.0–develop, database
//! version 8): `{"database":{"version":"8","installs":{hash: record, ...}}}` through
//! `json.dumps(separators=(",", ":"))`, one record per spec and per dependency of a spec,
//! in the order `Database._add` creates them (dependencies depth-first before their
//! dependents), each `{"spec": node, "ref_count": n, "in_buildcache": bool}`.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::node::{read_node, Node, NodeProblem, Targets};
use crate::registry::to_compact_json;

/// `spack.database._DB_VERSION` of every supported Spack.
pub const DB_VERSION: &str = "8";

/// The records one spec brings into a fresh database, in creation order (its dependencies
/// depth-first, itself last): hash, record node, and the hashes of its dependency edges.
#[derive(Clone, Debug)]
pub struct SpecRecords {
    root: String,
    nodes: Vec<(String, Value, Vec<String>)>,
}

impl SpecRecords {
    /// The dag hash of the spec.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Read a build-cache image config (its `spec` dict) as `Spec.from_dict` would.
    pub fn from_config(config: &Value, targets: &Targets) -> Result<Self, NodeProblem> {
        let spec = config
            .get("spec")
            .ok_or_else(|| NodeProblem::Invalid("the config has no \"spec\"".into()))?;
        let format = spec
            .get("_meta")
            .and_then(|m| m.get("version"))
            .and_then(Value::as_u64)
            .ok_or_else(|| NodeProblem::NeedsSpack("a spec dict of format 1".into()))?;
        if format < 4 {
            return Err(NodeProblem::NeedsSpack(format!(
                "a spec dict of format {format}"
            )));
        }
        let list = spec
            .get("nodes")
            .and_then(Value::as_array)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| NodeProblem::Invalid("the spec dict has no nodes".into()))?;
        let mut nodes: HashMap<String, Node> = HashMap::with_capacity(list.len());
        let mut root = None;
        for n in list {
            let node = read_node(n, targets)?;
            root.get_or_insert_with(|| node.hash.clone());
            nodes.insert(node.hash.clone(), node);
        }
        let root = root.unwrap_or_default();
        let lookup = |h: &str| {
            nodes.get(h).map(|n| {
                (
                    n.record.clone(),
                    n.edges.iter().map(|e| e.hash.clone()).collect(),
                )
            })
        };
        Self::walk(root, &lookup)
    }

    /// The records of `root` taken from an existing database (its records' dependencies).
    pub fn from_database(db: &Database, root: &str) -> Result<Self, NodeProblem> {
        let lookup = |h: &str| {
            db.installs.get(h).and_then(Record::spec).map(|node| {
                let deps = node.get("dependencies").and_then(Value::as_array);
                let children = deps.map_or_else(Vec::new, |d| {
                    d.iter()
                        .filter_map(|e| e.get("hash").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                });
                (node, children)
            })
        };
        Self::walk(root.to_owned(), &lookup)
    }

    /// Records made by Spack itself (the Python fallback):
    /// `{"root": hash, "records": [[hash, node, [child hash, ...]], ...]}` in creation order.
    pub fn from_spack_json(bytes: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Made {
            root: String,
            records: Vec<(String, Value, Vec<String>)>,
        }
        let made: Made = serde_json::from_slice(bytes).map_err(|e| format!("records: {e}"))?;
        if made.records.last().map(|r| &r.0) != Some(&made.root) {
            return Err("records: the spec itself is not the last record".into());
        }
        Ok(Self {
            root: made.root,
            nodes: made.records,
        })
    }

    /// Depth-first post-order from `root` over dependency edges, as `Database._add` recurses.
    fn walk(
        root: String,
        lookup: &dyn Fn(&str) -> Option<NodeAndChildren>,
    ) -> Result<Self, NodeProblem> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        // Explicit stack: (hash, record, children, next child index).
        let (record, children) = lookup(&root).ok_or_else(|| missing(&root))?;
        let mut stack = vec![(root.clone(), record, children, 0usize)];
        seen.insert(root.clone());
        while let Some(top) = stack.last_mut() {
            if let Some(child) = top.2.get(top.3).cloned() {
                top.3 += 1;
                if seen.insert(child.clone()) {
                    let (record, children) = lookup(&child).ok_or_else(|| missing(&child))?;
                    stack.push((child, record, children, 0));
                }
            } else if let Some((hash, record, children, _)) = stack.pop() {
                out.push((hash, record, children));
            }
        }
        Ok(Self { root, nodes: out })
    }
}

/// A record node and the hashes of its dependency edges.
type NodeAndChildren = (Value, Vec<String>);

fn missing(hash: &str) -> NodeProblem {
    NodeProblem::Invalid(format!("the spec dict has no node for dependency {hash}"))
}

/// How Spack's own code reads a spec the engine cannot (the Python fallback): config bytes to
/// [`SpecRecords::from_spack_json`] records.
pub type SpackReader<'a> = &'a (dyn Fn(&[u8]) -> Result<SpecRecords, String> + Sync);

/// Read one image config into records: in Rust, or through `spack` when it needs Spack's
/// spec logic. The error is the reason to skip it (names no tag; the caller adds it).
pub fn read_config(
    config: &[u8],
    targets: &Targets,
    spack: Option<SpackReader<'_>>,
) -> Result<SpecRecords, String> {
    let value: Value =
        serde_json::from_slice(config).map_err(|e| format!("config is not JSON: {e}"))?;
    if !value.as_object().is_some_and(|o| o.contains_key("spec")) {
        return Err("config has no \"spec\" key".into());
    }
    match SpecRecords::from_config(&value, targets) {
        Ok(r) => Ok(r),
        Err(NodeProblem::NeedsSpack(why)) => match spack {
            Some(read) => read(config),
            None => Err(format!("{why}, which needs Spack to read")),
        },
        Err(NodeProblem::Invalid(why)) => Err(why),
    }
}

/// One install record of a [`Database`].
#[derive(Clone, Debug)]
enum Record {
    /// As read from an index, kept as its bytes (a merge rewrites only the records it
    /// changes), with the one field a merge asks of every record.
    Raw {
        json: Box<RawValue>,
        in_buildcache: bool,
    },
    /// Made or changed here: always a JSON object.
    Value(Value),
}

impl Record {
    fn in_buildcache(&self) -> bool {
        match self {
            Self::Raw { in_buildcache, .. } => *in_buildcache,
            Self::Value(r) => r.get("in_buildcache").and_then(Value::as_bool) == Some(true),
        }
    }

    /// The record's `spec` node (parsed, for a record read from an index).
    fn spec(&self) -> Option<Value> {
        match self {
            Self::Raw { json, .. } => {
                let mut r: Map<String, Value> = serde_json::from_str(json.get()).ok()?;
                r.remove("spec")
            }
            Self::Value(r) => r.get("spec").cloned(),
        }
    }

    /// The record as a map, to change it.
    fn edit(&mut self) -> &mut Map<String, Value> {
        if let Self::Raw { json, .. } = self {
            // Read as a record by `Database::parse` already: a JSON object.
            *self = Self::Value(serde_json::from_str(json.get()).unwrap_or_default());
        }
        match self {
            Self::Value(Value::Object(r)) => r,
            _ => unreachable!("a record is a JSON object"),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Raw { json, .. } => out.extend_from_slice(json.get().as_bytes()),
            Self::Value(r) => out.extend_from_slice(&to_compact_json(r)),
        }
    }
}

/// What [`Database::parse`] checks of every record without building it.
#[derive(serde::Deserialize)]
struct RecordHead<'a> {
    #[serde(borrow)]
    spec: SpecHead<'a>,
    /// Required, and a non-negative integer.
    #[serde(rename = "ref_count")]
    _ref_count: u64,
    #[serde(default)]
    in_buildcache: bool,
}

#[derive(serde::Deserialize)]
struct SpecHead<'a> {
    #[serde(borrow)]
    hash: std::borrow::Cow<'a, str>,
}

/// `{"database": {"version": ..., "installs": {...}}}`, the records left unparsed.
#[derive(serde::Deserialize)]
struct IndexFile {
    database: IndexSection,
}

#[derive(serde::Deserialize)]
struct IndexSection {
    version: Option<Value>,
    installs: Option<IndexMap<String, Box<RawValue>>>,
}

/// A build-cache database: install records by dag hash, in insertion order.
#[derive(Clone, Debug, Default)]
pub struct Database {
    installs: IndexMap<String, Record>,
}

impl Database {
    pub fn new() -> Self {
        Self::default()
    }

    /// Read an `index.json` (for a merge). Anything but a version-8 database whose records
    /// each have a `spec` node with its hash and a `ref_count` is refused: such an index is
    /// rebuilt. The records stay as their bytes until a merge changes one, so reading and
    /// writing back a large index costs a scan and a copy.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let file: IndexFile =
            serde_json::from_slice(bytes).map_err(|e| format!("not a Spack index: {e}"))?;
        let version = file.database.version;
        if version.as_ref().and_then(Value::as_str) != Some(DB_VERSION) {
            let shown = version.map_or_else(|| "missing".to_owned(), |v| v.to_string());
            return Err(format!("database version {shown} (expected {DB_VERSION})"));
        }
        let installs = file.database.installs.ok_or("no \"installs\" object")?;
        let mut out = IndexMap::with_capacity(installs.len());
        for (hash, json) in installs {
            let head: RecordHead<'_> = serde_json::from_str(json.get())
                .map_err(|e| format!("record {hash} is malformed: {e}"))?;
            if head.spec.hash != hash {
                return Err(format!(
                    "record {hash} is malformed: its spec is {}",
                    head.spec.hash
                ));
            }
            let in_buildcache = head.in_buildcache;
            out.insert(
                hash,
                Record::Raw {
                    json,
                    in_buildcache,
                },
            );
        }
        Ok(Self { installs: out })
    }

    pub fn len(&self) -> usize {
        self.installs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.installs.is_empty()
    }

    /// How many records are marked `in_buildcache` (the specs the cache has).
    pub fn specs(&self) -> usize {
        self.installs.values().filter(|r| r.in_buildcache()).count()
    }

    /// Whether the spec `hash` has a record marked `in_buildcache`.
    pub fn in_buildcache(&self, hash: &str) -> bool {
        self.installs.get(hash).is_some_and(Record::in_buildcache)
    }

    /// `db.add(spec); db.mark(spec, "in_buildcache", True)`.
    pub fn add(&mut self, spec: &SpecRecords) {
        for (hash, node, children) in &spec.nodes {
            if self.installs.contains_key(hash) {
                continue;
            }
            let record = serde_json::json!({"spec": node, "ref_count": 0, "in_buildcache": false});
            self.installs.insert(hash.clone(), Record::Value(record));
            for child in children {
                if let Some(r) = self.installs.get_mut(child).map(Record::edit) {
                    let n = r.get("ref_count").and_then(Value::as_u64).unwrap_or(0);
                    r.insert("ref_count".into(), Value::from(n + 1));
                }
            }
        }
        if let Some(r) = self.installs.get_mut(&spec.root).map(Record::edit) {
            r.insert("in_buildcache".into(), Value::Bool(true));
        }
    }

    /// The `index.json` bytes, as `_write_to_file` writes them.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.installs.len() * 1024 + 64);
        out.extend_from_slice(br#"{"database":{"version":""#);
        out.extend_from_slice(DB_VERSION.as_bytes());
        out.extend_from_slice(br#"","installs":{"#);
        for (i, (hash, record)) in self.installs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&to_compact_json(&Value::String(hash.clone())));
            out.push(b':');
            record.write(&mut out);
        }
        out.extend_from_slice(b"}}}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, hash: &str, deps: &[(&str, &str)]) -> Value {
        let deps: Vec<Value> = deps
            .iter()
            .map(|(n, h)| json!({"name": n, "hash": h, "parameters": {"deptypes": ["link"], "virtuals": []}}))
            .collect();
        json!({"name": name, "version": "1", "dependencies": deps,
               "annotations": {"original_specfile_version": 5}, "hash": hash})
    }

    fn config(nodes: Vec<Value>) -> Value {
        json!({"spec": {"_meta": {"version": 5}, "nodes": nodes}})
    }

    #[test]
    fn dependencies_first_and_ref_counts() {
        let t = Targets::default();
        let a = config(vec![
            node("a", "ha", &[("b", "hb"), ("c", "hc")]),
            node("b", "hb", &[("c", "hc")]),
            node("c", "hc", &[]),
        ]);
        let c = config(vec![node("c", "hc", &[])]);
        let mut db = Database::new();
        db.add(&SpecRecords::from_config(&a, &t).unwrap());
        db.add(&SpecRecords::from_config(&c, &t).unwrap());
        let keys: Vec<_> = db.installs.keys().cloned().collect();
        assert_eq!(keys, ["hc", "hb", "ha"]);
        assert_eq!(db.installs.get_mut("hc").unwrap().edit()["ref_count"], 2);
        assert!(db.in_buildcache("ha") && db.in_buildcache("hc") && !db.in_buildcache("hb"));
        // Round trip through the bytes, and replay from the records gives the same order.
        let again = Database::parse(&db.to_json()).unwrap();
        assert_eq!(again.to_json(), db.to_json());
        let replay = SpecRecords::from_database(&again, "ha").unwrap();
        let order: Vec<_> = replay.nodes.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(order, ["hc", "hb", "ha"]);
    }

    #[test]
    fn old_formats_and_missing_nodes_are_reported() {
        let t = Targets::default();
        let old = json!({"spec": {"_meta": {"version": 3}, "nodes": []}});
        assert!(matches!(
            SpecRecords::from_config(&old, &t),
            Err(NodeProblem::NeedsSpack(_))
        ));
        let broken = config(vec![node("a", "ha", &[("b", "hb")])]);
        let err = SpecRecords::from_config(&broken, &t).unwrap_err();
        assert!(err.to_string().contains("hb"), "{err}");
        assert!(Database::parse(br#"{"database":{"version":"7","installs":{}}}"#).is_err());
        assert!(Database::parse(b"{not json").is_err());
        for bad in [
            r#"{"ha":{"spec":{"hash":"hb"},"ref_count":0}}"#,
            r#"{"ha":{"spec":{"hash":"ha"},"ref_count":-1}}"#,
            r#"{"ha":{"spec":{"name":"a"},"ref_count":0}}"#,
            r#"{"ha":{"spec":{"hash":"ha"},"ref_count":0,"in_buildcache":"yes"}}"#,
        ] {
            let index = format!(r#"{{"database":{{"version":"8","installs":{bad}}}}}"#);
            let err = Database::parse(index.as_bytes()).unwrap_err();
            assert!(err.contains("record ha is malformed"), "{err}");
        }
    }

    #[test]
    fn a_merge_rewrites_only_the_records_it_changes() {
        // Records read from an index keep their bytes (key order, number spelling) unless
        // the merge changes them: here only hc's ref_count.
        let index = br#"{"database":{"version":"8","installs":{"hc":{"spec":{"name":"c","version":"1","hash":"hc"},"ref_count":0,"in_buildcache":true},"hx":{"ref_count":0,"spec":{"hash":"hx","n":1.5e3},"in_buildcache":false}}}}"#;
        let mut db = Database::parse(index).unwrap();
        assert_eq!(db.to_json(), index);
        assert!(db.in_buildcache("hc") && !db.in_buildcache("hx") && db.specs() == 1);
        let a = config(vec![node("a", "ha", &[("c", "hc")]), node("c", "hc", &[])]);
        db.add(&SpecRecords::from_config(&a, &Targets::default()).unwrap());
        let text = String::from_utf8(db.to_json()).unwrap();
        assert!(text.contains(r#""hc":{"spec":{"name":"c","version":"1","hash":"hc"},"ref_count":1,"in_buildcache":true}"#), "{text}");
        assert!(
            text.contains(
                r#""hx":{"ref_count":0,"spec":{"hash":"hx","n":1.5e3},"in_buildcache":false}"#
            ),
            "{text}"
        );
        assert_eq!((db.len(), db.specs()), (3, 2));
    }
}
