//! The operator's RBAC: exactly the API calls the code makes, one row per rule, with the call
//! that needs it. The chart's rules (`charts/minion-operator/templates/_rbac.tpl`) and the
//! table in docs/kubernetes.md are generated from these rows by
//! `minion-operator rbac --chart charts/minion-operator/templates/_rbac.tpl`; a test fails
//! when either is stale.
//!
//! Adding a Kubernetes call means adding its verb here, or the chart's ServiceAccount is
//! refused it.

/// One RBAC rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// API group (`""`: core).
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Why, for docs/kubernetes.md.
    pub why: &'static str,
}

/// Granted in every watched namespace (a ClusterRole when all are watched, else one Role per
/// namespace).
pub const WATCH_RULES: &[Rule] = &[
    // backend.rs `list`/`get` (`Api::list`, `Api::get_opt`) and cache.rs `spawn_watch`
    // (kube-runtime `watcher`: list + watch). Never written.
    Rule {
        group: "minion.dev",
        resources: &["tables", "miniontaskconfigs"],
        verbs: &["get", "list", "watch"],
        why: "Reconcile. The operator never writes a user's spec, labels or annotations",
    },
    // The same reads, plus backend.rs `create_run` (`Api::create`), `delete` (`Api::delete`,
    // runs beyond the history limits) and `set_finalizer` (`Api::patch`, a merge patch of
    // `metadata.finalizers`).
    Rule {
        group: "minion.dev",
        resources: &["taskruns"],
        verbs: &["get", "list", "watch", "create", "delete", "patch"],
        why: "Create scheduled runs, delete runs beyond the history limits, add and remove the finalizer that reverts a deleted run",
    },
    // backend.rs `apply_status`: `Api::patch_status` with server-side apply.
    Rule {
        group: "minion.dev",
        resources: &[
            "tables/status",
            "miniontaskconfigs/status",
            "taskruns/status",
        ],
        verbs: &["patch"],
        why: "Status only through the status subresource (server-side apply, one field manager)",
    },
    // backend.rs `create_run` (TaskRun owned by its MinionTaskConfig) and job.rs `build` (Job
    // owned by its TaskRun) set `blockOwnerDeletion`, which the
    // OwnerReferencesPermissionEnforcement admission plugin allows only with `update` on the
    // owner's finalizers.
    Rule {
        group: "minion.dev",
        resources: &["miniontaskconfigs/finalizers", "taskruns/finalizers"],
        verbs: &["update"],
        why: "Owner references with `blockOwnerDeletion` (MinionTaskConfig → TaskRun → Job) when the OwnerReferencesPermissionEnforcement admission plugin is on",
    },
    // backend.rs `launch` (`Api::create`), `delete_subtask` (`Api::delete`), `state`
    // (`Api::get_opt`) and cache.rs `spawn_watch` on the labelled Jobs (list + watch).
    Rule {
        group: "batch",
        resources: &["jobs"],
        verbs: &["get", "list", "watch", "create", "delete"],
        why: "One Job per subtask. Delete is for cancelled or timed-out runs",
    },
    // backend.rs `state`: `Api::list` of a failed Job's pods for the worker's exit code, and
    // of a Job's pods that have not started in time (stuck.rs) for why.
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &["list"],
        why: "The exit code of a failed subtask's pod (bad input or transient failure); why a pod has not started (image pull, missing Secret, unschedulable)",
    },
    // backend.rs `state`: `Api::list` of the Events about a Job that has created no pod in
    // time (the Job controller's `FailedCreate`, e.g. a missing ServiceAccount).
    Rule {
        group: "",
        resources: &["events"],
        verbs: &["list"],
        why: "Why a subtask's Job creates no pod (the Job controller's FailedCreate Event)",
    },
    // backend.rs `event`: kube-runtime's `Recorder::publish` creates an `events.k8s.io/v1`
    // Event and patches it (merge patch) when the same Event repeats.
    Rule {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        why: "Events for phase changes and failures (a repeat patches the Event's series)",
    },
    // secrets.rs `StorageSecrets::options`: `Api::get_opt` of the Secret a Table names.
    Rule {
        group: "",
        resources: &["secrets"],
        verbs: &["get"],
        why: "Object-store credentials named by `Table.spec.storageSecretRef`, used only when labelled `minion.dev/storage-credentials=true`. No list, no watch",
    },
];

/// Leader election, in the release namespace only. lease.rs `try_round`: `Api::create` of
/// the Lease (which cannot be limited by name).
pub const LEASE_CREATE: Rule = Rule {
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["create"],
    why: "Leader election: the first replica creates the Lease",
};

/// lease.rs `try_round`: `Api::get_opt` and `Api::replace` (PUT: `update`) of the operator's
/// own Lease, limited by `resourceNames`.
pub const LEASE_OWN: Rule = Rule {
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "update"],
    why: "Leader election: read and renew the operator's own Lease",
};

/// For people, not the operator: the ClusterRole aggregated into the built-in `view` (and
/// `edit`, `admin`) roles, so a namespace's readers see Tables, configs and runs.
pub const USER_VIEW_RULES: &[Rule] = &[Rule {
    group: "minion.dev",
    resources: &[
        "tables",
        "miniontaskconfigs",
        "taskruns",
        "tables/status",
        "miniontaskconfigs/status",
        "taskruns/status",
    ],
    verbs: &["get", "list", "watch"],
    why: "Users bound to view read Tables, configs and runs with their status",
}];

/// For people: the ClusterRole aggregated into the built-in `edit` and `admin` roles, so a
/// namespace's editors apply Tables, configs and runs (never their status: the operator's).
pub const USER_EDIT_RULES: &[Rule] = &[Rule {
    group: "minion.dev",
    resources: &["tables", "miniontaskconfigs", "taskruns"],
    verbs: &["create", "update", "patch", "delete", "deletecollection"],
    why: "Users bound to edit or admin apply Tables, configs and runs",
}];

/// The file [`chart_template`] is written to, relative to the repository root.
pub const CHART_TEMPLATE_PATH: &str = "charts/minion-operator/templates/_rbac.tpl";

/// The command that regenerates [`CHART_TEMPLATE_PATH`].
pub const REGENERATE: &str = "cargo run -p minion-operator --bin minion-operator -- rbac --chart charts/minion-operator/templates/_rbac.tpl";

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

fn rule_yaml(out: &mut String, rule: &Rule, names: Option<&str>) {
    out.push_str(&format!("- apiGroups: {}\n", list(&[rule.group])));
    out.push_str(&format!("  resources: {}\n", list(rule.resources)));
    if let Some(names) = names {
        out.push_str(&format!("  resourceNames: [{names}]\n"));
    }
    out.push_str(&format!("  verbs: {}\n", list(rule.verbs)));
}

/// The chart's helper template with the rules: `minion-operator.watchRules` (every watched
/// namespace), `minion-operator.leaseRules` (the release namespace) and the user roles'
/// `minion-operator.userViewRules` and `minion-operator.userEditRules`.
pub fn chart_template() -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{{{{/*\nGenerated from operator/src/k8s/rbac.rs: do not edit. Regenerate with\n  {REGENERATE}\ndocs/kubernetes.md (RBAC) has the reason for each rule.\n*/}}}}\n"
    ));
    out.push_str("{{- define \"minion-operator.watchRules\" -}}\n");
    for rule in WATCH_RULES {
        rule_yaml(&mut out, rule, None);
    }
    out.push_str("{{- end }}\n\n");
    out.push_str("{{- define \"minion-operator.leaseRules\" -}}\n");
    rule_yaml(&mut out, &LEASE_CREATE, None);
    rule_yaml(
        &mut out,
        &LEASE_OWN,
        Some("{{ .Values.leaderElection.leaseName | quote }}"),
    );
    out.push_str("{{- end }}\n\n");
    out.push_str("{{- define \"minion-operator.userViewRules\" -}}\n");
    for rule in USER_VIEW_RULES {
        rule_yaml(&mut out, rule, None);
    }
    out.push_str("{{- end }}\n\n");
    out.push_str("{{- define \"minion-operator.userEditRules\" -}}\n");
    for rule in USER_EDIT_RULES {
        rule_yaml(&mut out, rule, None);
    }
    out.push_str("{{- end }}\n");
    out
}

/// The RBAC table of docs/kubernetes.md.
pub fn docs_table() -> String {
    let code = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("| API group | resource | verbs | why |\n|---|---|---|---|\n");
    let mut row = |rule: &Rule, verbs: String| {
        let group = if rule.group.is_empty() {
            "core".to_string()
        } else {
            format!("`{}`", rule.group)
        };
        out.push_str(&format!(
            "| {group} | {} | {verbs} | {} |\n",
            code(rule.resources),
            rule.why
        ));
    };
    for rule in WATCH_RULES {
        row(rule, rule.verbs.join(", "));
    }
    row(&LEASE_CREATE, LEASE_CREATE.verbs.join(", "));
    row(
        &LEASE_OWN,
        format!(
            "{} (only `resourceNames: [<leaseName>]`)",
            LEASE_OWN.verbs.join(", ")
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_wildcards_and_each_resource_once() {
        let mut seen = std::collections::BTreeSet::new();
        for rule in WATCH_RULES {
            for r in rule.resources {
                assert!(seen.insert((rule.group, *r)), "{r} twice");
                assert_ne!(*r, "*");
            }
            assert!(!rule.verbs.contains(&"*"));
        }
    }

    #[test]
    fn the_chart_template_quotes_every_list() {
        let t = chart_template();
        assert!(t.contains("  resources: [\"jobs\"]\n  verbs: [\"get\", \"list\", \"watch\", \"create\", \"delete\"]\n"), "{t}");
        assert!(t.contains("resourceNames: [{{ .Values.leaderElection.leaseName | quote }}]"));
    }
}
