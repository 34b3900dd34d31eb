//! The Helm chart without helm: every template parses as YAML once template actions
//! are removed, every `.Values.x.y` it references exists in values.yaml, the RBAC rules
//! are exactly what the code needs (`controller::rbac::REQUIRED`), the Deployment is
//! hardened, and the chart's CRDs are the generated ones.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use latchkey::controller::{generate, rbac};
use serde_yaml::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/latchkey")
}

/// Removes `{{ ... }}` actions: a line holding only actions (control flow, `include |
/// nindent`, `toYaml`) is dropped, an action inside a line becomes a placeholder scalar.
fn strip_actions(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut rest = line;
        let mut kept = String::new();
        let mut had_action = false;
        while let Some(start) = rest.find("{{") {
            kept.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .map(|e| start + e + 2)
                .unwrap_or_else(|| panic!("unclosed action in line {line:?}"));
            kept.push('x');
            had_action = true;
            rest = &rest[end..];
        }
        kept.push_str(rest);
        if had_action && kept.replace('x', "").trim().is_empty() {
            continue;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

fn templates() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Every document of every YAML template, after stripping.
fn documents() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    for (name, text) in templates() {
        if !name.ends_with(".yaml") {
            continue;
        }
        let stripped = strip_actions(&text);
        for d in serde_yaml::Deserializer::from_str(&stripped) {
            let v: Value = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{name} does not parse: {e}\n{stripped}"));
            if !v.is_null() {
                docs.push((name.clone(), v));
            }
        }
    }
    docs
}

fn values() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap()).unwrap()
}

#[test]
fn every_template_parses_as_kubernetes_objects() {
    let docs = documents();
    let kinds: BTreeSet<&str> = docs
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains(kind), "no {kind} in the chart: {kinds:?}");
    }
    for (name, d) in &docs {
        assert!(d["apiVersion"].is_string(), "{name}: no apiVersion");
        assert!(
            d["metadata"]["name"].is_string(),
            "{name}: no metadata.name"
        );
    }
}

#[test]
fn every_referenced_value_exists_in_values_yaml() {
    let values = values();
    let mut referenced = BTreeSet::new();
    for (name, text) in templates() {
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".Values.") {
            rest = &rest[i + ".Values.".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            referenced.insert((name.clone(), path.trim_end_matches('.').to_string()));
        }
    }
    assert!(referenced.len() > 10, "{referenced:?}");
    for (name, path) in referenced {
        let mut node = &values;
        for key in path.split('.') {
            node = node
                .get(key)
                .unwrap_or_else(|| panic!("{name}: .Values.{path} is not in values.yaml"));
        }
    }
}

#[test]
fn values_are_documented_in_the_readme() {
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v.as_mapping() {
            Some(m) if !m.is_empty() && !prefix.ends_with("resources") => {
                for (k, v) in m {
                    let k = k.as_str().unwrap();
                    let p = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&p, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut all = Vec::new();
    leaves("", &values(), &mut all);
    for key in all {
        assert!(
            readme.contains(&format!("`{key}`")),
            "charts/latchkey/README.md does not document `{key}`"
        );
    }
}

/// (group, resource, verb) triples of the chart's roles, and whether namespaced.
fn chart_rules() -> BTreeSet<(String, String, String, bool)> {
    let mut out = BTreeSet::new();
    for (_, d) in documents() {
        let namespaced = match d["kind"].as_str() {
            Some("ClusterRole") => false,
            Some("Role") => true,
            _ => continue,
        };
        for r in d["rules"].as_sequence().unwrap() {
            let list = |k: &str| -> Vec<String> {
                r[k].as_sequence()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            };
            for g in list("apiGroups") {
                for res in list("resources") {
                    for v in list("verbs") {
                        assert_ne!(v, "*", "no wildcard verbs");
                        assert_ne!(res, "*", "no wildcard resources");
                        out.insert((g.clone(), res.clone(), v, namespaced));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn rbac_is_exactly_what_the_code_uses() {
    let needed: BTreeSet<(String, String, String, bool)> = rbac::REQUIRED
        .iter()
        .flat_map(|r| {
            r.verbs.iter().map(move |v| {
                (
                    r.group.to_string(),
                    r.resource.to_string(),
                    v.to_string(),
                    r.own_namespace,
                )
            })
        })
        .collect();
    let granted = chart_rules();
    let missing: Vec<_> = needed.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&needed).collect();
    assert!(missing.is_empty(), "the chart lacks {missing:?}");
    assert!(
        extra.is_empty(),
        "the chart grants more than the code uses: {extra:?}"
    );
}

#[test]
fn the_deployment_is_hardened_and_probed() {
    let docs = documents();
    let (_, deploy) = docs
        .iter()
        .find(|(_, d)| d["kind"] == "Deployment")
        .unwrap();
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["args"][0], "operator");
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert!(mounts.contains(&"/var/cache/latchkey"));
    let cache = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "cache")
        .unwrap();
    assert!(cache["emptyDir"].is_mapping());
    // Requests come from values.yaml through toYaml.
    let v = values();
    assert!(v["resources"]["requests"]["cpu"].is_string());
    assert!(v["resources"]["requests"]["memory"].is_string());
}

#[test]
fn the_chart_crds_are_the_generated_ones() {
    let files = generate::crds().unwrap();
    let stale = generate::stale(&chart().join("crds"), &files);
    assert!(
        stale.is_empty(),
        "charts/latchkey/crds is stale ({stale:?}); regenerate with \
         `cargo run -- crds --out charts/latchkey/crds`"
    );
}

#[test]
fn stripping_keeps_structure() {
    let t = "{{- if .Values.a }}\nkind: X\nmetadata:\n  name: {{ include \"n\" . }}\n  labels:\n    {{- include \"l\" . | nindent 4 }}\n{{- end }}\n";
    let s = strip_actions(t);
    assert_eq!(s, "kind: X\nmetadata:\n  name: x\n  labels:\n");
}

#[test]
fn the_self_service_page_is_a_hardened_deployment_of_its_own() {
    let docs = documents();
    let serve = docs
        .iter()
        .find(|(_, d)| {
            d["kind"] == "Deployment"
                && d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "serve"
        })
        .map(|(_, d)| d)
        .expect("a Deployment running `latchkey serve`");
    let pod = &serve["spec"]["template"]["spec"];
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "the page needs no Kubernetes API token"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    // The client secret comes from a Secret, never from a value in the chart.
    let secret = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "LATCHKEY_OIDC_CLIENT_SECRET")
        .expect("LATCHKEY_OIDC_CLIENT_SECRET");
    assert!(
        secret["valueFrom"]["secretKeyRef"].is_mapping(),
        "{secret:?}"
    );
    assert_eq!(values()["serve"]["enabled"], false, "off unless asked for");

    // Each Service selects only its own pods: the helpers differ in their component,
    // and each template uses its own (selector labels come from `include`, which the
    // stripped documents do not show).
    let text: std::collections::BTreeMap<String, String> = templates().into_iter().collect();
    let helpers = &text["_helpers.tpl"];
    for (helper, component) in [
        ("latchkey.selectorLabels", "operator"),
        ("latchkey.serveSelectorLabels", "serve"),
    ] {
        let body = helpers
            .split(&format!("define \"{helper}\""))
            .nth(1)
            .and_then(|b| b.split("{{- end -}}").next())
            .unwrap_or_else(|| panic!("no {helper} in _helpers.tpl"));
        assert!(
            body.contains(&format!("app.kubernetes.io/component: {component}")),
            "{helper}: {body}"
        );
    }
    for (file, own, other) in [
        (
            "deployment.yaml",
            "latchkey.selectorLabels",
            "latchkey.serveSelectorLabels",
        ),
        (
            "service.yaml",
            "latchkey.selectorLabels",
            "latchkey.serveSelectorLabels",
        ),
        (
            "servicemonitor.yaml",
            "latchkey.selectorLabels",
            "latchkey.serveSelectorLabels",
        ),
        (
            "serve-deployment.yaml",
            "latchkey.serveSelectorLabels",
            "latchkey.selectorLabels",
        ),
        (
            "serve-service.yaml",
            "latchkey.serveSelectorLabels",
            "latchkey.selectorLabels",
        ),
    ] {
        let t = &text[file];
        assert!(
            t.contains(&format!("include \"{own}\"")),
            "{file} uses {own}"
        );
        assert!(
            !t.contains(&format!("include \"{other}\"")),
            "{file} must not use {other}"
        );
    }
    // The operator's Service (and its ServiceMonitor) find the operator's Service by
    // its component label.
    assert!(text["service.yaml"].contains("app.kubernetes.io/component: operator"));
}
