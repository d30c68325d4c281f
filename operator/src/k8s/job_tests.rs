use super::*;

fn request() -> LaunchRequest {
    LaunchRequest {
        namespace: "analytics".into(),
        task_run: "events-import-manual-1".into(),
        subtask: 2,
        kind: Default::default(),
        attempt: 3,
        job: "events-import-manual-1-2-a3".into(),
        spec_uri: "s3://bucket/t/_minion/runs/r/2/spec.json".into(),
        memory_budget_bytes: 536_870_912,
        timeout_ms: 90_500,
    }
}

fn owner() -> TaskRun {
    let yaml = r#"
apiVersion: minion.dev/v1alpha1
kind: TaskRun
metadata:
  name: events-import-manual-1
  namespace: analytics
  uid: 0b1c-uid
  labels:
    argocd.argoproj.io/instance: analytics
    app.kubernetes.io/instance: gitops
  annotations:
    argocd.argoproj.io/tracking-id: "analytics:minion.dev/TaskRun:x"
spec:
  taskType: SegmentImportTask
  table: events-offline
  configRef: events-import
"#;
    serde_yaml::from_str(yaml).unwrap()
}

/// Worker defaults as a chart user may set them (docs/kubernetes.md, "Worker defaults").
const CHART_DEFAULTS: &str = r#"
activeDeadlineSeconds: 3600
backoffLimit: 3
extraEnv: [{name: AWS_REGION, value: eu-west-1}]
extraVolumeMounts: [{name: shared, mountPath: /data}]
extraVolumes: [{name: shared, hostPath: {path: /tmp/minion}}]
image: minion-operator:0.1.0
imagePullPolicy: IfNotPresent
imagePullSecrets: [{name: regcred}]
memoryBudget: 512Mi
nodeSelector: {pool: batch}
resources: {limits: {memory: 1Gi}, requests: {cpu: 500m, memory: 768Mi}}
serviceAccountName: minion-operator-worker
tolerations: [{key: dedicated, operator: Equal, value: batch, effect: NoSchedule}]
ttlSecondsAfterFinished: 86400
"#;

fn defaults() -> WorkerDefaults {
    WorkerDefaults::parse("worker-defaults.yaml", CHART_DEFAULTS).unwrap()
}

fn built() -> serde_json::Value {
    let job = build(
        &request(),
        &defaults(),
        None,
        &owner(),
        Some("s3-credentials"),
    )
    .unwrap();
    serde_json::to_value(job).unwrap()
}

#[test]
fn job_is_named_by_the_request_and_carries_only_our_labels() {
    let job = built();
    assert_eq!(job["metadata"]["name"], "events-import-manual-1-2-a3");
    assert_eq!(job["metadata"]["namespace"], "analytics");
    let expected = serde_json::json!({
        "app.kubernetes.io/managed-by": "minion-operator",
        "minion.dev/task-run": "events-import-manual-1",
        "minion.dev/subtask": "2",
        "minion.dev/attempt": "3",
    });
    assert_eq!(job["metadata"]["labels"], expected);
    assert_eq!(job["spec"]["template"]["metadata"]["labels"], expected);
    assert!(job["metadata"].get("annotations").is_none());
    assert!(
        job["spec"]["template"]["metadata"]
            .get("annotations")
            .is_none()
    );
}

#[test]
fn job_is_owned_by_its_task_run_as_controller() {
    let refs = &built()["metadata"]["ownerReferences"];
    assert_eq!(
        refs,
        &serde_json::json!([{
            "apiVersion": "minion.dev/v1alpha1", "kind": "TaskRun",
            "name": "events-import-manual-1", "uid": "0b1c-uid",
            "controller": true, "blockOwnerDeletion": true,
        }])
    );
    let mut run = owner();
    run.metadata.uid = None;
    assert_eq!(
        build(&request(), &defaults(), None, &run, None)
            .unwrap_err()
            .reason(),
        "OwnerWithoutUid"
    );
}

#[test]
fn pod_runs_the_worker_on_the_spec_with_budget_and_spill_dir() {
    let job = built();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "worker");
    assert_eq!(c["image"], "minion-operator:0.1.0");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        c["command"],
        serde_json::json!(["/usr/local/bin/minion-worker"])
    );
    assert_eq!(
        c["args"],
        serde_json::json!([
            "run",
            "--spec",
            "s3://bucket/t/_minion/runs/r/2/spec.json",
            "--memory-budget",
            "536870912",
            "--spill-dir",
            "/tmp"
        ])
    );
    assert_eq!(
        c["envFrom"],
        serde_json::json!([{"secretRef": {"name": "s3-credentials"}}])
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["TMPDIR", "AWS_REGION"]);
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, ["/tmp", "/data"]);
}

#[test]
fn pod_is_restricted_and_has_no_service_account_token() {
    let job = built();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["serviceAccountName"], "minion-operator-worker");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &pod["containers"][0]["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        pod["volumes"][0],
        serde_json::json!({"name": "spill", "emptyDir": {"sizeLimit": "8Gi"}}),
        "the spill space is bounded"
    );
    assert_eq!(
        pod["containers"][0]["resources"]["requests"]["ephemeral-storage"],
        "8Gi"
    );
    assert_eq!(pod["nodeSelector"]["pool"], "batch");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
}

#[test]
fn job_limits_come_from_the_subtask_timeout_and_the_defaults() {
    let job = built();
    let spec = &job["spec"];
    assert_eq!(spec["activeDeadlineSeconds"], 91, "90.5 s rounds up");
    assert_eq!(spec["backoffLimit"], 3);
    assert_eq!(spec["ttlSecondsAfterFinished"], 86400);
    let rules = &spec["podFailurePolicy"]["rules"];
    assert_eq!(rules[0]["action"], "Ignore");
    assert_eq!(rules[0]["onPodConditions"][0]["type"], "DisruptionTarget");
    assert_eq!(rules[1]["action"], "FailJob");
    assert_eq!(
        rules[1]["onExitCodes"]["values"],
        serde_json::json!([EXIT_BAD_INPUT])
    );
    let mut req = request();
    req.timeout_ms = 0;
    let bare = build(&req, &WorkerDefaults::default(), None, &owner(), None).unwrap();
    let bare = serde_json::to_value(bare).unwrap();
    assert_eq!(
        bare["spec"]["backoffLimit"], 0,
        "the control loop counts attempts"
    );
    assert!(bare["spec"].get("activeDeadlineSeconds").is_none());
    assert!(
        bare["spec"]["template"]["spec"]["containers"][0]
            .get("envFrom")
            .is_none()
    );
    assert_eq!(
        bare["spec"]["template"]["spec"]["containers"][0]["image"],
        DEFAULT_IMAGE
    );
}

#[test]
fn worker_defaults_refuse_an_unknown_key_naming_it() {
    let e =
        WorkerDefaults::parse("f.yaml", "backoffLimit: 1\nimagePullPolcy: Always\n").unwrap_err();
    assert_eq!(e.reason(), "WorkerDefaultsInvalid");
    assert!(e.to_string().contains("imagePullPolcy"), "{e}");
    let e = WorkerDefaults::parse("f.yaml", "backoffLimit: many\n").unwrap_err();
    assert!(e.to_string().contains("backoffLimit"), "{e}");
    assert_eq!(
        WorkerDefaults::parse("f.yaml", "\n").unwrap(),
        WorkerDefaults::default()
    );
    let missing = WorkerDefaults::load(Path::new("/nonexistent/worker-defaults.yaml")).unwrap();
    assert_eq!(missing, WorkerDefaults::default());
}

fn job_with(status: serde_json::Value) -> Job {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": status,
    }))
    .unwrap()
}

#[test]
fn job_state_follows_the_jobs_conditions() {
    assert_eq!(
        job_state(&job_with(serde_json::json!({})), None),
        JobState::Pending
    );
    assert_eq!(
        job_state(&job_with(serde_json::json!({"active": 1})), None),
        JobState::Running
    );
    let done = job_with(serde_json::json!({"conditions": [
        {"type": "SuccessCriteriaMet", "status": "True"},
        {"type": "Complete", "status": "True"},
    ]}));
    assert!(matches!(job_state(&done, None), JobState::Succeeded { .. }));
    let deadline = job_with(serde_json::json!({"conditions": [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
         "message": "Job was active longer than specified deadline"},
    ]}));
    assert_eq!(
        job_state(&deadline, Some(137)),
        JobState::Failed {
            exit_code: Some(137),
            message: "Job failed (DeadlineExceeded): Job was active longer than specified deadline"
                .into()
        }
    );
    let bad_input = job_with(serde_json::json!({"conditions": [
        {"type": "Failed", "status": "True", "reason": "PodFailurePolicy"},
    ]}));
    assert!(matches!(
        job_state(&bad_input, None),
        JobState::Failed {
            exit_code: Some(EXIT_BAD_INPUT),
            ..
        }
    ));
}

#[test]
fn a_configs_worker_settings_merge_over_the_chart_defaults() {
    let overrides: WorkerPodSpec = serde_yaml::from_str(
        "resources: {requests: {cpu: '2'}, limits: {memory: 3Gi, cpu: '4'}}\n\
         nodeSelector: {pool: spot, zone: a}\n\
         tolerations: [{key: spot, operator: Exists, effect: NoSchedule}]\n",
    )
    .unwrap();
    let job = build(&request(), &defaults(), Some(&overrides), &owner(), None).unwrap();
    let pod = serde_json::to_value(job).unwrap()["spec"]["template"]["spec"].clone();
    assert_eq!(
        pod["containers"][0]["resources"],
        serde_json::json!({
            "requests": {"cpu": "2", "memory": "768Mi", "ephemeral-storage": "8Gi"},
            "limits": {"cpu": "4", "memory": "3Gi"},
        })
    );
    assert_eq!(
        pod["nodeSelector"],
        serde_json::json!({"pool": "spot", "zone": "a"})
    );
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert_eq!(
        tolerations.len(),
        2,
        "the config's are added to the defaults'"
    );
    assert_eq!(tolerations[1]["key"], "spot");

    // Without any memory request the pod asks for the budget plus the worker's overhead, and
    // for its spill space.
    let bare = build(&request(), &WorkerDefaults::default(), None, &owner(), None).unwrap();
    let bare = serde_json::to_value(bare).unwrap();
    assert_eq!(
        bare["spec"]["template"]["spec"]["containers"][0]["resources"],
        serde_json::json!({"requests": {"memory": "576Mi", "ephemeral-storage": "8Gi"}})
    );
    // A chart that sets the spill limit sets the request with it.
    let small = WorkerDefaults {
        spill_size_limit: Some("2Gi".into()),
        ..WorkerDefaults::default()
    };
    let job =
        serde_json::to_value(build(&request(), &small, None, &owner(), None).unwrap()).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["emptyDir"]["sizeLimit"], "2Gi");
    assert_eq!(
        pod["containers"][0]["resources"]["requests"]["ephemeral-storage"],
        "2Gi"
    );
}
