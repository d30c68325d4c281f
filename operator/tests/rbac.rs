//! The chart's RBAC rules and the table in docs/kubernetes.md are exactly what
//! `minion_operator::k8s::rbac` (the operator's calls) says, and the chart uses them.

use std::path::PathBuf;

use minion_operator::k8s::rbac;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_default()
}

#[test]
fn the_chart_rules_are_generated_from_the_code() {
    assert!(
        read(rbac::CHART_TEMPLATE_PATH) == rbac::chart_template(),
        "{} is stale or missing; regenerate with:\n  {}",
        rbac::CHART_TEMPLATE_PATH,
        rbac::REGENERATE
    );
}

#[test]
fn the_chart_grants_no_rule_of_its_own() {
    let dir = root().join("charts/minion-operator/templates");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("_rbac.tpl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for word in ["verbs:", "apiGroups:", "resourceNames:"] {
            assert!(
                !text.contains(word),
                "{} writes RBAC rules by hand ({word}); add them to operator/src/k8s/rbac.rs",
                path.display()
            );
        }
    }
    let rbac_yaml = read("charts/minion-operator/templates/rbac.yaml");
    assert_eq!(
        rbac_yaml
            .matches(r#"include "minion-operator.watchRules""#)
            .count(),
        2,
        "the ClusterRole and the per-namespace Role"
    );
    assert_eq!(
        rbac_yaml
            .matches(r#"include "minion-operator.leaseRules""#)
            .count(),
        1
    );
}

#[test]
fn the_docs_table_matches() {
    let docs = read("docs/kubernetes.md");
    assert!(
        docs.contains(&rbac::docs_table()),
        "docs/kubernetes.md (RBAC) must contain this table, from\n  \
         cargo run -p minion-operator --bin minion-operator -- rbac --docs-table\n{}",
        rbac::docs_table()
    );
}
