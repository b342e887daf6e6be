//! Spec nodes as Spack's build-cache database records them.
//!
//! Spack builds its index by reading each config's spec dict into `Spec` objects
//! (`Spec.from_dict`) and writing every node back with `node_dict_with_hashes()` after
//! `Database._add` copied it (`spec.copy(deps=False)` plus edges without `direct`). This
//! module does the same round trip on the JSON directly, for specfile format 5 (and 4 nodes
//! that carry `annotations`), which is what Spack ≥ 0.22 writes. Anything else (older
//! formats, version ranges, repeated dependency names, non-string multi-values) needs
//! Spack's spec logic and is reported as [`NodeProblem::NeedsSpack`].

use std::collections::HashMap;

use serde_json::{Map, Value};

/// The compiler flag types of `spack.spec._valid_compiler_flags`.
const FLAG_TYPES: [&str; 6] = [
    "cflags", "cppflags", "cxxflags", "fflags", "ldflags", "ldlibs",
];

/// Dependency types in Spack's flag order (`spack.deptypes`: build=1, link=2, run=4, test=8).
const DEPTYPES: [&str; 4] = ["build", "link", "run", "test"];

/// Why a spec could not be turned into records here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeProblem {
    /// Valid for Spack, but reading it needs Spack's spec logic (old format, ...).
    NeedsSpack(String),
    /// Not a concrete spec Spack could add to a database.
    Invalid(String),
}

impl std::fmt::Display for NodeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NeedsSpack(m) | Self::Invalid(m) => f.write_str(m),
        }
    }
}

type NodeResult<T> = std::result::Result<T, NodeProblem>;

fn needs(msg: impl Into<String>) -> NodeProblem {
    NodeProblem::NeedsSpack(msg.into())
}

fn invalid(msg: impl Into<String>) -> NodeProblem {
    NodeProblem::Invalid(msg.into())
}

/// Microarchitecture targets as the running Spack's archspec writes them (`name` → the
/// target's dict without `compilers`); names not here are generic and written as strings.
#[derive(Clone, Debug, Default)]
pub struct Targets(HashMap<String, Value>);

impl Targets {
    pub fn new(map: HashMap<String, Value>) -> Self {
        Self(map)
    }

    /// Parse `{"name": {...}, ...}`.
    pub fn from_json(bytes: &[u8]) -> std::result::Result<Self, String> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(Self(m.into_iter().collect())),
            Ok(_) => Err("the targets table is not a JSON object".into()),
            Err(e) => Err(format!("the targets table is not JSON: {e}")),
        }
    }

    fn target(&self, name: &str) -> Value {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| Value::String(name.to_owned()))
    }
}

/// One dependency edge of a node, as `Spec._add_dependency` keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Edge {
    pub name: String,
    pub hash: String,
    pub depflag: u8,
    pub virtuals: Vec<String>,
}

/// A node read from a spec dict: its record form and its edges in Spack's edge-map order.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub hash: String,
    pub record: Value,
    pub edges: Vec<Edge>,
}

fn str_field<'a>(node: &'a Map<String, Value>, key: &str) -> NodeResult<&'a str> {
    node.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("a spec node has no string \"{key}\"")))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `VersionList.from_dict(node).to_dict()` for a concrete version.
fn version(node: &Map<String, Value>) -> NodeResult<Option<Value>> {
    if node.contains_key("versions") {
        return Err(needs("a spec node has a version list"));
    }
    match node.get("version") {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(Value::String(s.clone()))),
        Some(_) => Err(needs("a spec node has a non-string version")),
    }
}

/// `ArchSpec.from_dict(node).to_dict()`: the target resolved through archspec.
fn arch(node: &Map<String, Value>, targets: &Targets) -> NodeResult<Option<Value>> {
    let Some(arch) = node.get("arch") else {
        return Ok(None);
    };
    let arch = arch
        .as_object()
        .ok_or_else(|| invalid("a spec node's \"arch\" is not an object"))?;
    let target = match arch.get("target") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(t)) => t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("a spec node's target has no name"))?,
        _ => return Err(invalid("a spec node's \"arch\" has no target")),
    };
    let field = |k: &str| {
        arch.get(k)
            .cloned()
            .ok_or_else(|| invalid(format!("a spec node's \"arch\" has no \"{k}\"")))
    };
    let mut out = Map::new();
    out.insert("platform".into(), field("platform")?);
    out.insert("platform_os".into(), field("platform_os")?);
    out.insert("target".into(), targets.target(target));
    Ok(Some(Value::Object(out)))
}

/// `VariantValue.set(*values)`: more than one value is sorted and deduplicated.
fn multi_values(values: &[Value]) -> NodeResult<Value> {
    let mut strings = values
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| needs("a multi-valued variant has non-string values"))?;
    if strings.iter().any(|s| s == "*") {
        return Err(invalid("a variant has the reserved value '*'"));
    }
    if strings.len() > 1 {
        strings.sort();
        strings.dedup();
    }
    Ok(Value::Array(
        strings.into_iter().map(Value::String).collect(),
    ))
}

/// `VariantValue.from_node_dict(name, value).yaml_entry()[1]`.
fn variant_value(value: &Value) -> NodeResult<Value> {
    let as_text = match value {
        Value::Array(a) => return multi_values(a),
        Value::Bool(true) => "TRUE".to_owned(),
        Value::Bool(false) => "FALSE".to_owned(),
        Value::String(s) => s.to_uppercase(),
        _ => String::new(),
    };
    match as_text.as_str() {
        "TRUE" => Ok(Value::Bool(true)),
        "FALSE" => Ok(Value::Bool(false)),
        _ if value.as_str() == Some("*") => Err(invalid("a variant has the reserved value '*'")),
        _ => Ok(value.clone()),
    }
}

/// The `parameters` of `to_node_dict`: variants sorted by name, then flags sorted by type.
/// `patches` (the node's top-level list) sets the `patches` variant, as `from_node_dict` does.
fn parameters(
    node: &Map<String, Value>,
    patches: Option<&[Value]>,
) -> NodeResult<Map<String, Value>> {
    let empty = Map::new();
    let params = match node.get("parameters") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(invalid("a spec node's \"parameters\" is not an object")),
    };
    let mut variants: Vec<(String, Value)> = Vec::new();
    let mut flags: Vec<(String, Value)> = Vec::new();
    for (name, value) in params {
        if FLAG_TYPES.contains(&name.as_str()) {
            if !value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string))
            {
                return Err(needs(format!(
                    "compiler flags {name} are not a list of strings"
                )));
            }
            flags.push((name.clone(), value.clone()));
        } else if name != "patches" || patches.is_none() {
            variants.push((name.clone(), variant_value(value)?));
        }
    }
    if let Some(p) = patches {
        variants.push(("patches".into(), multi_values(p)?));
    }
    variants.sort_by(|a, b| a.0.cmp(&b.0));
    flags.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(variants.into_iter().chain(flags).collect())
}

/// Python's `syaml.sorted_dict`: dict keys sorted, recursively (lists walked too).
fn sorted_dict(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut items: Vec<_> = m.iter().collect();
            items.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                items
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_dict(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_dict).collect()),
        other => other.clone(),
    }
}

/// The `external` entry, when the node is external (a path or modules).
fn external(node: &Map<String, Value>) -> NodeResult<Option<Value>> {
    let Some(ext) = node.get("external").filter(|e| truthy(e)) else {
        return Ok(None);
    };
    let ext = ext
        .as_object()
        .ok_or_else(|| invalid("a spec node's \"external\" is not an object"))?;
    let path = ext.get("path").cloned().unwrap_or(Value::Null);
    let modules = match ext.get("module") {
        Some(Value::Bool(false)) | None => Value::Null,
        Some(m) => m.clone(),
    };
    if !truthy(&path) && !truthy(&modules) {
        return Ok(None);
    }
    let extra = ext
        .get("extra_attributes")
        .filter(|e| truthy(e))
        .map_or_else(|| Value::Object(Map::new()), sorted_dict);
    let mut out = Map::new();
    out.insert("path".into(), path);
    out.insert(
        "module".into(),
        if truthy(&modules) {
            modules
        } else {
            Value::Null
        },
    );
    out.insert("extra_attributes".into(), extra);
    Ok(Some(Value::Object(out)))
}

fn depflag(deptypes: &Value) -> NodeResult<u8> {
    let list = deptypes
        .as_array()
        .ok_or_else(|| invalid("a dependency's \"deptypes\" is not a list"))?;
    list.iter().try_fold(0u8, |flag, t| {
        let i = DEPTYPES
            .iter()
            .position(|d| Some(*d) == t.as_str())
            .ok_or_else(|| invalid(format!("unknown dependency type {t}")))?;
        Ok(flag | (1 << i))
    })
}

/// The edges of a node in `_EdgeMap` order, which with one edge per child name (anything
/// else is left to Spack) is the order of the node's list.
fn edges(node: &Map<String, Value>) -> NodeResult<Vec<Edge>> {
    let Some(deps) = node.get("dependencies") else {
        return Ok(Vec::new());
    };
    let deps = deps
        .as_array()
        .ok_or_else(|| needs("a spec node's dependencies are not a list (old format)"))?;
    let mut out: Vec<Edge> = Vec::with_capacity(deps.len());
    for dep in deps {
        let dep = dep
            .as_object()
            .ok_or_else(|| invalid("a dependency is not an object"))?;
        let name = str_field(dep, "name")?.to_owned();
        if out.iter().any(|e| e.name == name) {
            return Err(needs(format!("more than one dependency named {name}")));
        }
        let params = dep
            .get("parameters")
            .and_then(Value::as_object)
            .ok_or_else(|| needs("a dependency has no \"parameters\" (old format)"))?;
        let mut virtuals = match params.get("virtuals") {
            None => Vec::new(),
            Some(v) => serde_json::from_value::<Vec<String>>(v.clone())
                .map_err(|_| invalid("a dependency's virtuals are not strings"))?,
        };
        virtuals.sort();
        virtuals.dedup();
        out.push(Edge {
            name,
            hash: str_field(dep, "hash")?.to_owned(),
            depflag: depflag(params.get("deptypes").unwrap_or(&Value::Null))?,
            virtuals,
        });
    }
    Ok(out)
}

fn edge_record(e: &Edge) -> Value {
    let deptypes: Vec<Value> = (0..DEPTYPES.len())
        .filter(|i| e.depflag & (1 << i) != 0)
        .map(|i| Value::String(DEPTYPES[i].to_owned()))
        .collect();
    serde_json::json!({
        "name": e.name,
        "hash": e.hash,
        "parameters": {"deptypes": deptypes, "virtuals": e.virtuals},
    })
}

/// `annotations`: kept as `Spec` keeps them (format ≥ 5, or a re-serialized older spec).
fn annotations(node: &Map<String, Value>) -> NodeResult<Value> {
    let ann = node
        .get("annotations")
        .and_then(Value::as_object)
        .ok_or_else(|| needs("a spec node has no annotations (specfile format 4 or older)"))?;
    let version = ann
        .get("original_specfile_version")
        .and_then(Value::as_u64)
        .ok_or_else(|| needs("a spec node's annotations have no specfile version"))?;
    let mut out = Map::new();
    out.insert("original_specfile_version".into(), Value::from(version));
    if version < 5 {
        match ann.get("compiler") {
            Some(Value::String(c)) => out.insert("compiler".into(), Value::String(c.clone())),
            _ => return Err(needs("an old spec node's annotations have no compiler")),
        };
    }
    Ok(Value::Object(out))
}

/// Read one node of a spec dict (`nodes[i]`) as `Database._add` records it.
pub(crate) fn read_node(node: &Value, targets: &Targets) -> NodeResult<Node> {
    let node = node
        .as_object()
        .ok_or_else(|| invalid("a spec node is not an object"))?;
    if node.get("concrete").is_some_and(|c| !truthy(c)) {
        return Err(invalid("the spec is not concrete"));
    }
    let hash = str_field(node, "hash")?.to_owned();
    let patches = node
        .get("patches")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty());
    let edges = edges(node)?;
    let mut d = Map::new();
    d.insert(
        "name".into(),
        Value::String(str_field(node, "name")?.to_owned()),
    );
    if let Some(v) = version(node)? {
        d.insert("version".into(), v);
    }
    if let Some(a) = arch(node, targets)? {
        d.insert("arch".into(), a);
    }
    if let Some(ns) = node.get("namespace").filter(|n| truthy(n)) {
        d.insert("namespace".into(), ns.clone());
    }
    let params = parameters(node, patches.map(Vec::as_slice))?;
    if !params.is_empty() {
        d.insert("parameters".into(), Value::Object(params));
    }
    if let Some(e) = external(node)? {
        d.insert("external".into(), e);
    }
    if let Some(p) = patches {
        d.insert("patches".into(), Value::Array(p.clone()));
    }
    if let Some(ph) = node.get("package_hash").filter(|p| truthy(p)) {
        d.insert("package_hash".into(), ph.clone());
    }
    let mut sorted: Vec<&Edge> = edges.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if !sorted.is_empty() {
        d.insert(
            "dependencies".into(),
            sorted.into_iter().map(edge_record).collect(),
        );
    }
    if let Some(bs) = node.get("build_spec") {
        let bs = bs
            .as_object()
            .ok_or_else(|| invalid("a \"build_spec\" is not an object"))?;
        let mut b = Map::new();
        b.insert(
            "name".into(),
            Value::String(str_field(bs, "name")?.to_owned()),
        );
        b.insert(
            "hash".into(),
            Value::String(str_field(bs, "hash")?.to_owned()),
        );
        d.insert("build_spec".into(), Value::Object(b));
    }
    d.insert("annotations".into(), annotations(node)?);
    d.insert("hash".into(), Value::String(hash.clone()));
    Ok(Node {
        hash,
        record: Value::Object(d),
        edges,
    })
}
