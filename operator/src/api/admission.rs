//! What the API server checks at `kubectl apply`, beyond the types the schema derives from
//! the Rust structs: CEL rules (`x-kubernetes-validations`) added to the generated CRDs, so a
//! spec the operator would refuse is refused at admission, each message naming the field.
//!
//! - every period (a string field documented as `(period)`) is `<n><unit>…` or `0`, every size
//!   (`(size…)`) a number with an optional `K`/`M`/`G`/`T`/`P` (`i`, `B`) unit;
//! - a schedule has 5 (crontab), 6 or 7 (Quartz) fields, or is a macro such as `@daily`;
//! - a MinionTaskConfig's task block matches its `taskType`; a TaskRun names its config by
//!   `configRef` or carries it inline in `config`, never both, and an inline block matches
//!   its `taskType`.
//!
//! The rules are a first line only: the operator validates every value fully (ranges, cron
//! fields, zero sizes) and reports what the rules cannot say in the object's conditions. Each
//! string a rule reads gets a `maxLength` and each list of such strings a `maxItems`, which
//! bound the rules' cost as the server estimates it (it refuses a CRD whose rules may cost
//! too much).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, ValidationRule,
};

/// Longest period or size string accepted.
const MAX_UNIT_STRING: i64 = 64;
/// Longest schedule accepted.
const MAX_SCHEDULE: i64 = 256;
/// Most items of a list whose items carry rules (merge levels: Pinot tables have 2–4).
const MAX_RULED_ITEMS: i64 = 16;

const PERIOD_RULE: &str = "self.matches('^(0|([0-9]+([mM][sS]|[dDhHmMsS]))+)$')";
const SIZE_RULE: &str = "self.matches('^[0-9]+([.][0-9]+)?[ ]?([kKmMgGtTpP][iI]?)?[bB]?$')";
const SCHEDULE_RULE: &str = "self.matches('^[ ]*(@[a-zA-Z]+|[^ ]+([ ]+[^ ]+){4,6})[ ]*$')";

/// The task blocks of a spec and the task type each belongs to.
const BLOCKS: [(&str, &str); 8] = [
    (
        "realtimeToOfflineSegmentsTask",
        "RealtimeToOfflineSegmentsTask",
    ),
    ("segmentImportTask", "SegmentImportTask"),
    ("mergeRollupTask", "MergeRollupTask"),
    ("segmentRefreshTask", "SegmentRefreshTask"),
    ("fileIngestionTask", "FileIngestionTask"),
    ("segmentBackfillTask", "SegmentBackfillTask"),
    ("purgeTask", "PurgeTask"),
    ("deltaIngestionTask", "DeltaIngestionTask"),
];

fn rule(rule: String, message: String) -> ValidationRule {
    ValidationRule {
        rule,
        message: Some(message),
        ..Default::default()
    }
}

fn push(schema: &mut JSONSchemaProps, r: ValidationRule) {
    schema
        .x_kubernetes_validations
        .get_or_insert_with(Vec::new)
        .push(r);
}

/// Adds the rules of the module docs to `crd` (any of the three).
pub fn add_rules(crd: &mut CustomResourceDefinition) {
    let kind = crd.spec.names.kind.clone();
    for version in &mut crd.spec.versions {
        let Some(spec) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
        else {
            continue;
        };
        formats(spec, "spec");
        match kind.as_str() {
            "MinionTaskConfig" => blocks_match(spec, "", "spec"),
            "TaskRun" => {
                push(
                    spec,
                    rule(
                        "has(self.config) != has(self.configRef)".into(),
                        "set exactly one of spec.configRef (the name of a MinionTaskConfig) and spec.config (an inline config)".into(),
                    ),
                );
                push(
                    spec,
                    rule(
                        "has(self.configRef) || (has(self.taskType) && has(self.table))".into(),
                        "an inline spec.config needs spec.taskType and spec.table (with spec.configRef both are taken from the config)".into(),
                    ),
                );
                blocks_match(spec, "config.", "spec.config");
            }
            _ => {}
        }
    }
}

/// A rule per task block of `spec` (at `prefix` below it): present only for its task type.
fn blocks_match(spec: &mut JSONSchemaProps, prefix: &str, at: &str) {
    for (block, task_type) in BLOCKS {
        let guard = match prefix.strip_suffix('.') {
            Some(parent) => format!("!has(self.{parent}) || !has(self.{prefix}{block})"),
            None => format!("!has(self.{block})"),
        };
        push(
            spec,
            rule(
                format!("{guard} || (has(self.taskType) && self.taskType == '{task_type}')"),
                format!(
                    "{at}.{block} is the block of {task_type}: set spec.taskType: {task_type}, or use the block of your task type"
                ),
            ),
        );
    }
}

/// Rules on the periods, sizes and schedule found below `schema` (at `path`); whether any
/// was added.
fn formats(schema: &mut JSONSchemaProps, path: &str) -> bool {
    let Some(properties) = schema.properties.as_mut() else {
        return false;
    };
    let mut added = false;
    for (name, sub) in properties.iter_mut() {
        let at = format!("{path}.{name}");
        let description = sub.description.clone().unwrap_or_default();
        let is_string = sub.type_.as_deref() == Some("string");
        let check = if !is_string {
            None
        } else if name == "schedule" {
            Some((
                SCHEDULE_RULE,
                MAX_SCHEDULE,
                format!(
                    "{at} must be a cron expression of 5 fields (crontab: minute hour day-of-month month day-of-week), 6 or 7 (Quartz, seconds first), or a macro such as @daily"
                ),
            ))
        } else if description.contains("(period") {
            Some((
                PERIOD_RULE,
                MAX_UNIT_STRING,
                format!(
                    "{at} must be a period: one or more <number><unit> with unit d, h, m, s or ms (e.g. 1d, 90m, 1d12h), or 0"
                ),
            ))
        } else if description.contains("(size") {
            Some((
                SIZE_RULE,
                MAX_UNIT_STRING,
                format!(
                    "{at} must be a size: a number with an optional unit K, M, G, T or P (powers of 1024; Ki, Mi, Gi… alike), e.g. 500M or 512Mi"
                ),
            ))
        } else {
            None
        };
        if let Some((r, max, message)) = check {
            sub.max_length.get_or_insert(max);
            push(sub, rule(r.into(), message));
            added = true;
        }
        if sub.type_.as_deref() == Some("object") {
            added |= formats(sub, &at);
        }
        if sub.type_.as_deref() == Some("array")
            && let Some(JSONSchemaPropsOrArray::Schema(items)) = sub.items.as_mut()
            && formats(items, &format!("{at}[*]"))
        {
            // The server's cost estimate multiplies a rule by the items it may run on.
            sub.max_items.get_or_insert(MAX_RULED_ITEMS);
            added = true;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_of(crd: &CustomResourceDefinition, path: &[&str]) -> Vec<String> {
        let mut s = crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap();
        for p in path {
            s = match s.properties.as_ref().and_then(|m| m.get(*p)) {
                Some(s) => s,
                None => match s.items.as_ref() {
                    Some(JSONSchemaPropsOrArray::Schema(items)) => {
                        items.properties.as_ref().unwrap().get(*p).unwrap()
                    }
                    _ => panic!("no {p}"),
                },
            };
        }
        s.x_kubernetes_validations
            .iter()
            .flatten()
            .map(|r| r.rule.clone())
            .collect()
    }

    #[test]
    fn periods_sizes_schedules_and_blocks_get_rules_with_bounded_strings() {
        let crds = super::super::crds();
        let config = &crds[1];
        assert_eq!(rules_of(config, &["spec", "runTimeout"]), vec![PERIOD_RULE]);
        assert_eq!(rules_of(config, &["spec", "memoryBudget"]), vec![SIZE_RULE]);
        assert_eq!(rules_of(config, &["spec", "schedule"]), vec![SCHEDULE_RULE]);
        assert_eq!(
            rules_of(
                config,
                &["spec", "mergeRollupTask", "levels", "bucketTimePeriod"]
            ),
            vec![PERIOD_RULE]
        );
        let spec_rules = rules_of(config, &["spec"]);
        assert_eq!(spec_rules.len(), BLOCKS.len());
        assert!(spec_rules.contains(
            &"!has(self.purgeTask) || (has(self.taskType) && self.taskType == 'PurgeTask')".into()
        ));
        let run_rules = rules_of(&crds[2], &["spec"]);
        assert!(run_rules.contains(&"has(self.config) != has(self.configRef)".into()));
        assert!(
            run_rules
                .contains(&"has(self.configRef) || (has(self.taskType) && has(self.table))".into())
        );
        assert!(
            run_rules.contains(
                &"!has(self.config) || !has(self.config.purgeTask) || (has(self.taskType) && self.taskType == 'PurgeTask')"
                    .into()
            )
        );
        assert_eq!(
            rules_of(&crds[0], &["spec", "replacedSegmentRetention"]),
            vec![PERIOD_RULE]
        );
    }

    /// The rules' regular expressions agree with the operator's parsers on typical values.
    #[test]
    fn the_patterns_accept_what_the_parsers_accept() {
        use crate::validate::units::{parse_period, parse_size};
        let pattern = |rule: &str| {
            let inner = rule
                .strip_prefix("self.matches('")
                .and_then(|r| r.strip_suffix("')"))
                .unwrap();
            regex::Regex::new(inner).unwrap()
        };
        let (period, size, schedule) = (
            pattern(PERIOD_RULE),
            pattern(SIZE_RULE),
            pattern(SCHEDULE_RULE),
        );
        for v in [
            "0", "1d", "90m", "1d12h", "500ms", "30S", "12H", "soon", "1 d", "d1", "",
        ] {
            assert_eq!(period.is_match(v), parse_period(v).is_ok(), "period {v:?}");
        }
        for v in [
            "500M", "1G", "512Mi", "100K", "1048576", "1.5G", "2GB", "10 MiB", "big", "M",
        ] {
            assert_eq!(size.is_match(v), parse_size(v).is_ok(), "size {v:?}");
        }
        for (v, ok) in [
            ("*/10 * * * *", true),
            ("0 0/10 * * * ?", true),
            ("0 0 0 * * ? 2026", true),
            ("@daily", true),
            ("every day", false),
            ("* * * *", false),
        ] {
            assert_eq!(schedule.is_match(v), ok, "schedule {v:?}");
        }
    }
}
