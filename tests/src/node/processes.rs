//! A bound Pod's containers as local processes: started, supervised, stopped on request, and
//! their ends reported through the Pod's status as a kubelet reports them.

use super::*;

pub(super) struct Started {
    pub(super) prepared: Prepared,
    pub(super) child: Option<tokio::process::Child>,
    pub(super) started_at: String,
    /// Exit code (128 + signal when killed), once known.
    pub(super) exit: Option<i32>,
    /// Why it could not start.
    pub(super) start_error: Option<String>,
}

pub(super) fn spawn(p: Prepared) -> Started {
    let started_at = now();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.log);
    let child = log.and_then(|log| {
        let err = log.try_clone()?;
        let mut cmd = tokio::process::Command::new(&p.program);
        cmd.args(&p.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOSTNAME", &p.hostname)
            .envs(p.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&p.workdir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true);
        cmd.spawn()
    });
    match child {
        Ok(child) => Started {
            prepared: p,
            child: Some(child),
            started_at,
            exit: None,
            start_error: None,
        },
        Err(e) => {
            let message = format!("exec {}: {e}", p.program.display());
            Started {
                prepared: p,
                child: None,
                started_at,
                exit: Some(128),
                start_error: Some(message),
            }
        }
    }
}

pub(super) fn pids(started: &[Started]) -> Vec<u32> {
    started
        .iter()
        .filter(|s| s.exit.is_none())
        .filter_map(|s| s.child.as_ref()?.id())
        .collect()
}

/// Waits until every container has exited.
pub(super) async fn wait_all(started: &mut [Started]) {
    for s in started.iter_mut() {
        if s.exit.is_some() {
            continue;
        }
        if let Some(child) = s.child.as_mut() {
            let code = match child.wait().await {
                Ok(st) => st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(9)),
                Err(_) => 128,
            };
            s.exit = Some(code);
        }
    }
}

/// How a phase of containers ended.
pub(super) enum Ended {
    Exited,
    Stopped(StopCmd),
}

/// Waits for the containers, or ends them as `stop` says.
pub(super) async fn supervise(
    started: &mut [Started],
    stop: &mut watch::Receiver<Option<StopCmd>>,
) -> Ended {
    let cmd = {
        let current = *stop.borrow_and_update();
        match current {
            Some(cmd) => cmd,
            None => {
                tokio::select! {
                    () = wait_all(started) => return Ended::Exited,
                    changed = stop.changed() => match (changed, *stop.borrow_and_update()) {
                        (Ok(()), Some(cmd)) => cmd,
                        _ => StopCmd::Vanished,
                    },
                }
            }
        }
    };
    match cmd {
        StopCmd::Terminate(grace) => {
            for pid in pids(started) {
                signal(pid, "TERM");
            }
            if tokio::time::timeout(grace, wait_all(started))
                .await
                .is_err()
            {
                for pid in pids(started) {
                    signal(pid, "KILL");
                }
            }
        }
        StopCmd::Kill | StopCmd::Evict | StopCmd::Vanished => {
            for pid in pids(started) {
                signal(pid, "KILL");
            }
        }
    }
    wait_all(started).await;
    Ended::Stopped(cmd)
}

pub(super) fn container_status(s: &Started, running: bool) -> Value {
    let state = match (running, s.exit) {
        (true, None) => json!({"running": {"startedAt": s.started_at}}),
        (_, code) => {
            let code = code.unwrap_or(137);
            let reason = match (&s.start_error, code) {
                (Some(_), _) => "StartError",
                (None, 0) => "Completed",
                (None, _) => "Error",
            };
            let mut t = json!({
                "exitCode": code, "reason": reason,
                "startedAt": s.started_at, "finishedAt": now(),
                "containerID": format!("local://{}", s.child.as_ref().and_then(tokio::process::Child::id).unwrap_or(0)),
            });
            if let Some(m) = &s.start_error {
                t["message"] = json!(m);
            }
            // `running: null`: the terminated state replaces the running one under any patch
            // strategy.
            json!({"running": null, "waiting": null, "terminated": t})
        }
    };
    let ready = running && s.exit.is_none();
    json!({
        "name": s.prepared.name,
        "image": s.prepared.image,
        "imageID": format!("local://{}", s.prepared.program.display()),
        "containerID": format!("local://{}", s.child.as_ref().and_then(tokio::process::Child::id).unwrap_or(0)),
        "ready": ready,
        "started": ready,
        "restartCount": 0,
        "state": state,
    })
}

pub(super) fn stop_cmd(how: Stop) -> StopCmd {
    match how {
        Stop::Kill => StopCmd::Kill,
        Stop::Evict => StopCmd::Evict,
    }
}

pub(super) fn condition(type_: &str, status: bool, reason: Option<&str>) -> Value {
    let mut c = json!({"type": type_, "status": if status { "True" } else { "False" }, "lastTransitionTime": now()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// Takes the first armed kill that matches `pod`.
pub(super) fn take_arm(shared: &Shared, pod: &Pod) -> Option<Arm> {
    let mut arms = shared.arms.lock().expect("arms");
    let i = arms.iter().position(|a| (a.matches)(pod))?;
    Some(arms.remove(i))
}

/// Whether `hold` (one of the node's holds) keeps `pod`.
pub(super) fn held(hold: &Mutex<Option<Matcher>>, pod: &Pod) -> bool {
    hold.lock().expect("hold").as_ref().is_some_and(|m| m(pod))
}

/// Runs one bound Pod: waits out a hold, prepares its containers (retrying while that
/// fails), runs them, reports its status, and finishes its deletion when it was deleted.
pub(super) async fn run_pod(
    shared: Arc<Shared>,
    pod: Pod,
    mut stop: watch::Receiver<Option<StopCmd>>,
) {
    let (namespace, name, uid) = key(&pod);
    let pod_dir = shared.options.dir.join(&namespace).join(&name);
    let spec = pod.spec.clone().unwrap_or_default();
    // Held: bound, not started.
    loop {
        let released = shared.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        let stopped = *stop.borrow();
        if stopped.is_some() {
            return finish_unstarted(&shared, &namespace, &name, &uid, stopped).await;
        }
        if !held(&shared.hold, &pod) {
            break;
        }
        tokio::select! {
            () = &mut released => {}
            _ = stop.changed() => {}
        }
    }
    // Volumes and containers; a failure is reported and retried, as the kubelet does.
    let prepared = loop {
        let attempt = async {
            std::fs::create_dir_all(&pod_dir).map_err(|e| e.to_string())?;
            let volumes = materialise_volumes(
                &shared,
                &namespace,
                spec.volumes.as_deref().unwrap_or_default(),
                &pod_dir,
            )
            .await?;
            let mut init = Vec::new();
            for c in spec.init_containers.iter().flatten() {
                init.push(prepare(&shared, &pod, c, &volumes, &pod_dir).await?);
            }
            let mut main = Vec::new();
            for c in &spec.containers {
                main.push(prepare(&shared, &pod, c, &volumes, &pod_dir).await?);
            }
            Ok::<_, String>((init, main))
        };
        match attempt.await {
            Ok(p) => break p,
            Err(message) => {
                let first = !matches!(
                    shared.pods.lock().expect("pods").get(&uid).map(|e| &e.record.state),
                    Some(PodState::ConfigError(m)) if *m == message
                );
                if first {
                    eprintln!(
                        "node {}: Pod {namespace}/{name}: {message}",
                        shared.options.name
                    );
                    let waiting: Vec<Value> = spec
                        .containers
                        .iter()
                        .map(|c| json!({
                            "name": c.name, "image": c.image, "imageID": "", "ready": false,
                            "restartCount": 0, "started": false,
                            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}},
                        }))
                        .collect();
                    patch_status(
                        &shared,
                        &namespace,
                        &name,
                        json!({"phase": "Pending", "containerStatuses": waiting}),
                    )
                    .await;
                    set_state(&shared, &uid, PodState::ConfigError(message));
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                let stopped = *stop.borrow();
                if stopped.is_some() {
                    return finish_unstarted(&shared, &namespace, &name, &uid, stopped).await;
                }
            }
        }
    };
    let (init, main) = prepared;
    let start_time = now();
    let mut init_started = Vec::new();
    let mut stopped = None;
    // The processes' own exit codes, when the report differs (a kill at exit).
    let mut real_exit: Vec<i32> = Vec::new();
    set_state(&shared, &uid, PodState::Running);
    for p in init {
        let mut s = vec![spawn(p)];
        let ended = supervise(&mut s, &mut stop).await;
        let failed = s[0].exit != Some(0);
        init_started.extend(s);
        if let Ended::Stopped(cmd) = ended {
            stopped = Some(cmd);
            break;
        }
        if failed {
            break;
        }
    }
    let init_ok = stopped.is_none() && init_started.iter().all(|s| s.exit == Some(0));
    let mut started: Vec<Started> = Vec::new();
    if init_ok {
        started = main.into_iter().map(spawn).collect();
        let init_statuses: Vec<Value> = init_started
            .iter()
            .map(|s| container_status(s, false))
            .collect();
        let statuses: Vec<Value> = started.iter().map(|s| container_status(s, true)).collect();
        let mut status = json!({
            "phase": "Running",
            "startTime": start_time,
            "conditions": [
                condition("PodReadyToStartContainers", true, None),
                condition("Initialized", true, None),
                condition("ContainersReady", true, None),
                condition("Ready", true, None),
            ],
            "containerStatuses": statuses,
        });
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        patch_status(&shared, &namespace, &name, status).await;
        let mut at_exit = None;
        match take_arm(&shared, &pod) {
            Some(arm) if arm.at == KillAt::Exited => at_exit = Some(arm),
            Some(arm) => {
                let KillAt::Started(after) = arm.at else {
                    unreachable!()
                };
                let shared = shared.clone();
                let uid = uid.clone();
                let pod = pod.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let sent = {
                        let pods = shared.pods.lock().expect("pods");
                        pods.get(&uid).is_some_and(|e| {
                            e.record.state == PodState::Running
                                && e.stop.borrow().is_none()
                                && e.stop.send(Some(stop_cmd(arm.how))).is_ok()
                        })
                    };
                    if sent {
                        let _ = arm
                            .reply
                            .send(pod.metadata.name.clone().unwrap_or_default());
                    } else {
                        // Too late for this one: the next matching Pod is taken.
                        shared.arms.lock().expect("arms").insert(0, arm);
                    }
                });
            }
            None => {}
        }
        let mut ended = supervise(&mut started, &mut stop).await;
        if matches!(ended, Ended::Exited) && held(&shared.hold_result, &pod) {
            let codes = started.iter().map(|s| s.exit.unwrap_or(137)).collect();
            set_state(&shared, &uid, PodState::Exited { exit_codes: codes });
            loop {
                let released = shared.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if let Some(cmd) = *stop.borrow_and_update() {
                    ended = Ended::Stopped(cmd);
                    break;
                }
                if !held(&shared.hold_result, &pod) {
                    break;
                }
                tokio::select! {
                    () = &mut released => {}
                    _ = stop.changed() => {}
                }
            }
        }
        match ended {
            Ended::Stopped(cmd) => stopped = Some(cmd),
            Ended::Exited => {
                if let Some(arm) = at_exit {
                    // Lost with the work done: reported as killed.
                    real_exit = started.iter().map(|s| s.exit.unwrap_or(137)).collect();
                    for s in &mut started {
                        s.exit = Some(137);
                    }
                    stopped = Some(stop_cmd(arm.how));
                    let _ = arm.reply.send(name.clone());
                }
            }
        }
    }
    let mut exit_codes: Vec<i32> = init_started.iter().map(|s| s.exit.unwrap_or(137)).collect();
    if real_exit.is_empty() {
        exit_codes.extend(started.iter().map(|s| s.exit.unwrap_or(137)));
    } else {
        exit_codes.extend(real_exit);
    }
    let all_ok = init_ok && !started.is_empty() && started.iter().all(|s| s.exit == Some(0));
    let phase = if all_ok { "Succeeded" } else { "Failed" };
    set_state(
        &shared,
        &uid,
        PodState::Finished {
            exit_codes,
            phase: phase.into(),
            stopped: stopped.map(|s| format!("{s:?}")),
        },
    );
    if stopped == Some(StopCmd::Vanished) {
        return;
    }
    let mut conditions = vec![
        condition("PodReadyToStartContainers", false, None),
        condition("ContainersReady", false, Some("PodCompleted")),
        condition("Ready", false, Some("PodCompleted")),
    ];
    let mut status = json!({
        "phase": phase,
        "containerStatuses": started.iter().map(|s| container_status(s, false)).collect::<Vec<_>>(),
    });
    if !init_started.is_empty() {
        status["initContainerStatuses"] = json!(
            init_started
                .iter()
                .map(|s| container_status(s, false))
                .collect::<Vec<_>>()
        );
    }
    if stopped == Some(StopCmd::Evict) {
        let mut c = condition("DisruptionTarget", true, Some("TerminationByKubelet"));
        c["message"] = json!("The node was lost (minion-e2e node stand-in)");
        conditions.push(c);
        status["reason"] = json!("Evicted");
        status["message"] = json!("The node was lost (minion-e2e node stand-in)");
    }
    status["conditions"] = json!(conditions);
    patch_status(&shared, &namespace, &name, status).await;
    if matches!(stopped, Some(StopCmd::Terminate(_))) {
        finish_delete(shared.clone(), namespace, name, uid).await;
    }
}

/// A Pod stopped before its containers started: a terminal status when it was killed, the
/// deletion finished when it was deleted.
pub(super) async fn finish_unstarted(
    shared: &Arc<Shared>,
    namespace: &str,
    name: &str,
    uid: &str,
    cmd: Option<StopCmd>,
) {
    set_state(
        shared,
        uid,
        PodState::Finished {
            exit_codes: Vec::new(),
            phase: "Failed".into(),
            stopped: cmd.map(|c| format!("{c:?}")),
        },
    );
    match cmd {
        Some(StopCmd::Terminate(_)) => {
            // As the kubelet does: a terminal phase first (the Job controller only lets go
            // of a Pod, removing its tracking finalizer, once it is terminal), then the
            // deletion.
            patch_status(shared, namespace, name, json!({"phase": "Failed"})).await;
            finish_delete(shared.clone(), namespace.into(), name.into(), uid.into()).await;
        }
        Some(StopCmd::Kill | StopCmd::Evict) => {
            patch_status(shared, namespace, name, json!({"phase": "Failed"})).await;
        }
        _ => {}
    }
}
