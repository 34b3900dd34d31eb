//! Generated files are committed and current: CRDs (`crds/`), JSON Schemas (`schemas/`),
//! and the CRDs are structural; example files carry a schema modeline that resolves.

use std::path::{Path, PathBuf};

use latchkey::controller::generate;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_crds_are_current() {
    let files = generate::crds().unwrap();
    assert_eq!(files.len(), 7, "one CRD per kind, and AccessRepository");
    let stale = generate::stale(&root().join("crds"), &files);
    assert!(
        stale.is_empty(),
        "crds/ is stale ({stale:?}); regenerate with `cargo run -- crds --out crds`"
    );
}

#[test]
fn committed_schemas_are_current() {
    let files = generate::schemas().unwrap();
    let stale = generate::stale(&root().join("schemas"), &files);
    assert!(
        stale.is_empty(),
        "schemas/ is stale ({stale:?}); regenerate with `cargo run -- schema --out schemas`"
    );
}

/// Kubernetes rejects non-structural schemas: every node needs a type, and free-form
/// objects must say `x-kubernetes-preserve-unknown-fields`.
fn assert_structural(path: &str, node: &Value) {
    let o = node
        .as_object()
        .unwrap_or_else(|| panic!("{path}: not an object"));
    for forbidden in ["$ref", "oneOf", "anyOf", "allOf", "not"] {
        assert!(!o.contains_key(forbidden), "{path}: uses {forbidden}");
    }
    let ty = o.get("type").and_then(Value::as_str);
    // Kubernetes' one untyped node: an int-or-string (it must carry no type).
    let int_or_string = o.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    assert!(ty.is_some() || int_or_string, "{path}: has no type");
    if ty == Some("object") && !o.contains_key("properties") {
        assert!(
            o.contains_key("additionalProperties")
                || o.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)),
            "{path}: free-form object without x-kubernetes-preserve-unknown-fields"
        );
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            assert_structural(&format!("{path}.{k}"), v);
        }
    }
    if let Some(items) = o.get("items") {
        assert_structural(&format!("{path}[]"), items);
    }
    if let Some(ap @ Value::Object(_)) = o.get("additionalProperties") {
        assert_structural(&format!("{path}{{}}"), ap);
    }
}

#[test]
fn crds_are_structural_with_status_subresource() {
    for f in generate::crds().unwrap() {
        let crd: Value = serde_yaml::from_str(&f.text).unwrap();
        let version = &crd["spec"]["versions"][0];
        assert_eq!(crd["spec"]["group"], "latchkey.dev", "{}", f.name);
        assert_eq!(crd["spec"]["scope"], "Namespaced", "{}", f.name);
        assert_eq!(version["name"], "v1alpha1");
        let schema = &version["schema"]["openAPIV3Schema"];
        assert_structural(&f.name, schema);
        if f.name.starts_with("accessrepositories") {
            assert!(version["subresources"]["status"].is_object());
        }
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

/// Each example starts with a modeline pointing at schemas/all.json, and its documents
/// fit the schema's shape: a known kind, and only properties the spec schema declares.
#[test]
fn examples_have_a_modeline_that_resolves_and_fits_the_schema() {
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schemas/all.json")).unwrap())
            .unwrap();
    let mut files = Vec::new();
    yaml_files(&root().join("examples"), &mut files);
    assert!(files.len() >= 5);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or("");
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: no modeline on line 1", path.display()));
        let resolved = path.parent().unwrap().join(target).canonicalize().unwrap();
        assert_eq!(
            resolved,
            root().join("schemas/all.json").canonicalize().unwrap()
        );
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
            let kind = doc["kind"].as_str().unwrap();
            let branch = all["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["properties"]["kind"]["const"] == kind)
                .unwrap_or_else(|| panic!("{}: kind {kind} not in all.json", path.display()));
            let spec_ref = branch["properties"]["spec"]["$ref"].as_str().unwrap();
            let spec = &all["$defs"][spec_ref.trim_start_matches("#/$defs/")];
            let declared = spec["properties"].as_object().unwrap();
            for key in doc["spec"].as_object().unwrap().keys() {
                assert!(
                    declared.contains_key(key),
                    "{}: spec.{key} is not in the {kind} schema",
                    path.display()
                );
            }
            for key in spec["required"].as_array().into_iter().flatten() {
                assert!(doc["spec"].get(key.as_str().unwrap()).is_some());
            }
        }
    }
}
