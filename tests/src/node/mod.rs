//! A node stand-in for the real control plane (`scripts/control-plane.sh`), which runs no
//! scheduler and no kubelet: [`Node::start`] registers one `Ready` Node, binds the Pending
//! Pods of its namespaces to it (the `binding` subresource, as the scheduler does) and runs
//! each bound Pod's containers as local processes, reporting through the Pod's `status`
//! subresource what a kubelet reports, so the real Job controller completes, fails or
//! replaces the Pods' Jobs.
//!
//! # What a Pod gets
//! - **Images**: a container runs only when its image's repository is one of
//!   [`NodeOptions::images`]; its command (or the image's entrypoint and cmd, with Kubernetes'
//!   override rules) names a binary by path, and the binary of that file name in the image's
//!   `bin_dir` runs (`/usr/local/bin/minion-worker` → `target/<profile>/minion-worker`). Pods
//!   with another image are not bound: they stay Pending, as on a cluster without a fitting
//!   node.
//! - **Environment**: only the Pod's (`env` with `value`, `secretKeyRef`, `configMapKeyRef`,
//!   `fieldRef`; `envFrom` Secrets and ConfigMaps; `$(VAR)` references expanded), plus `PATH`
//!   and `HOSTNAME`; nothing of the test process leaks in.
//! - **Volumes**: `emptyDir` is a fresh directory, `hostPath` the path itself, `secret` and
//!   `configMap` are written out to a directory (keys as files, `items` honoured). Every
//!   container path that falls under a mount (`--spill-dir /tmp`, `TMPDIR=/tmp`,
//!   `file:///tmp/...`, `--flag=/tmp/x`, `workingDir`) is rewritten to the local directory.
//!   Other volume types fail the container (`CreateContainerConfigError`, retried).
//! - **Processes**: init containers one after the other, then every container at once; each
//!   one's stdout and stderr go to `<dir>/<namespace>/<pod>/<container>.log`
//!   ([`Node::log`]). `restartPolicy` is taken as `Never`; resources, security contexts and
//!   probes are not enforced.
//! - **Status**: `Running` (containers `running`, `Ready`) once started; then `Succeeded`
//!   when every container exited 0, else `Failed`, each container `terminated` with its exit
//!   code (128 + signal when killed) and reason `Completed` or `Error`.
//! - **Deletion**: a Pod deleted through the API (its Job deleted, garbage collection, a
//!   namespace deleted) gets SIGTERM, SIGKILL after its grace period, a terminal status, and
//!   then its deletion is finished (`gracePeriodSeconds: 0`, as the kubelet does). A Pod
//!   that vanishes at once has its processes killed.
//!
//! # What tests do with it
//! [`Node::kill`] SIGKILLs a Pod's processes now ([`Stop::Kill`]: exit code 137, what a lost
//! process looks like, counted by the Job's `backoffLimit`; [`Stop::Evict`]: the same plus the
//! `DisruptionTarget` condition a kubelet sets when it evicts, which a `podFailurePolicy` can
//! ignore); [`Node::arm`] does it to the next Pod that starts and matches, some time after it
//! started or when its processes have exited with their work done but before the result is
//! reported ([`KillAt`]: a node lost at the worst moment); [`Node::hold`] keeps matching Pods
//! bound but not started, and [`Node::hold_result`] keeps the result of matching Pods whose
//! processes exited unreported (still `Running`), until [`Node::release`]; [`Node::pods`]
//! tells what ran and how it ended.
//!
//! The Node's `Ready` condition is renewed every 10 s, so the node lifecycle controller
//! never taints it. [`Node::shutdown`] kills what still runs and deletes the Node; dropping
//! the [`Node`] kills the processes.
//!
//! Why this file is long: the Node's registration, heartbeat, watch loop and the API calls
//! it makes for a Pod (bind, status, finish a deletion) are one loop; what a Pod gets before
//! it starts and how its processes run are in `pod_setup` and `processes`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Node as KubeNode, Pod, Secret, Volume, VolumeMount,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot, watch};

mod kubelet_api;
mod pod_setup;
mod processes;

use pod_setup::*;
use processes::*;

/// An image the node can run: its repository's last path segment (`minion-operator` for
/// `registry.example/minion-operator:0.1.0`), where its binaries are, and its entrypoint
/// and cmd (used when a container does not set `command` / `args`).
#[derive(Clone, Debug)]
pub struct Image {
    pub repository: String,
    pub bin_dir: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl Image {
    /// The project's image (see `Dockerfile`): `minion-operator`, `minion-worker` and
    /// `minion` from `bin_dir` (the cargo-built `target/<profile>/`); entrypoint
    /// `/usr/local/bin/minion-operator`, cmd `run`.
    pub fn minion(bin_dir: &Path) -> Image {
        Image {
            repository: "minion-operator".into(),
            bin_dir: bin_dir.to_path_buf(),
            entrypoint: vec!["/usr/local/bin/minion-operator".into()],
            cmd: vec!["run".into()],
        }
    }
}

/// How the node stand-in runs.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The Node's name (unique in the cluster: one per test).
    pub name: String,
    /// The namespaces whose Pods it binds and runs (other nodes may serve other namespaces).
    pub namespaces: Vec<String>,
    pub images: Vec<Image>,
    /// Volumes and logs of the Pods go under it.
    pub dir: PathBuf,
}

/// When an armed kill ([`Node::arm`]) strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillAt {
    /// This long after the Pod's processes started (if they still run then; otherwise the
    /// next matching Pod is taken).
    Started(Duration),
    /// When the processes have exited, before their result is reported: the node is lost
    /// with the work done (output written) but the Pod is reported as [`Stop`] says, exit
    /// code 137, as if it had been killed.
    Exited,
}

/// How [`Node::kill`] ends a Pod's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: the containers end with exit code 137 and the Pod `Failed`.
    Kill,
    /// SIGKILL, and the Pod's status carries the `DisruptionTarget` condition (reason
    /// `TerminationByKubelet`), as when a kubelet evicts it.
    Evict,
}

/// What the stand-in did with one Pod.
#[derive(Clone, Debug)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub state: PodState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Bound, waiting for [`Node::hold`] to let it start.
    Held,
    /// Its processes exited (their exit codes); [`Node::hold_result`] keeps the result
    /// unreported.
    Exited { exit_codes: Vec<i32> },
    /// Its processes run.
    Running,
    /// Ended; the exit code of each container (128 + signal when killed), the phase
    /// reported, and how it was stopped, if it was.
    Finished {
        exit_codes: Vec<i32>,
        phase: String,
        stopped: Option<String>,
    },
    /// Its containers could not be started (the message); retried while the Pod exists.
    ConfigError(String),
}

/// What a Pod's task is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopCmd {
    Kill,
    Evict,
    /// Deleted through the API: SIGTERM, SIGKILL after the grace period, finish the delete.
    Terminate(Duration),
    /// The Pod object is gone: kill, report nothing.
    Vanished,
}

struct Entry {
    namespace: String,
    name: String,
    stop: watch::Sender<Option<StopCmd>>,
    record: PodRecord,
    /// The deletion was finished (or is being).
    finalizing: bool,
}

type Matcher = Arc<dyn Fn(&Pod) -> bool + Send + Sync>;

struct Arm {
    matches: Matcher,
    at: KillAt,
    how: Stop,
    reply: oneshot::Sender<String>,
}

struct Shared {
    options: NodeOptions,
    client: kube::Client,
    /// By Pod uid.
    pods: Mutex<HashMap<String, Entry>>,
    binding: Mutex<HashSet<String>>,
    skipped: Mutex<HashSet<String>>,
    arms: Mutex<Vec<Arm>>,
    hold: Mutex<Option<Matcher>>,
    hold_result: Mutex<Option<Matcher>>,
    released: Notify,
}

/// A running node stand-in; dropping it kills the processes it started.
pub struct Node {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        kill_all(&self.shared);
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn key(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The repository's last path segment of an image reference (no registry, tag or digest).
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last)
}

/// Runs `kill -<signal> <pid>` (no libc binding in this crate).
fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

fn kill_all(shared: &Shared) {
    let pods = shared.pods.lock().expect("pods");
    for e in pods.values() {
        let _ = e.stop.send(Some(StopCmd::Vanished));
    }
}

impl Node {
    /// Registers the Node (or renews it when it exists) and starts binding and running the
    /// Pods of `options.namespaces`.
    ///
    /// # Panics
    /// The Node cannot be registered.
    pub async fn start(client: kube::Client, options: NodeOptions) -> Node {
        std::fs::create_dir_all(&options.dir).expect("the node's directory");
        let nodes: Api<KubeNode> = Api::all(client.clone());
        let node: KubeNode = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": options.name,
                "labels": {
                    "kubernetes.io/hostname": options.name,
                    "kubernetes.io/os": "linux",
                    "minion.dev/node-stand-in": "true",
                },
            },
            "spec": {},
        }))
        .expect("a Node");
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => panic!("register Node {}: {e}", options.name),
        }
        let (kubelet_port, kubelet_task) = kubelet_api::serve(options.dir.clone()).await;
        heartbeat(&nodes, &options.name, kubelet_port)
            .await
            .unwrap_or_else(|e| panic!("Node {} status: {e}", options.name));
        let shared = Arc::new(Shared {
            options: options.clone(),
            client: client.clone(),
            pods: Mutex::default(),
            binding: Mutex::default(),
            skipped: Mutex::default(),
            arms: Mutex::default(),
            hold: Mutex::default(),
            hold_result: Mutex::default(),
            released: Notify::new(),
        });
        let mut tasks = vec![kubelet_task];
        let name = options.name.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                if let Err(e) = heartbeat(&nodes, &name, kubelet_port).await {
                    eprintln!("node {name}: heartbeat: {e}");
                }
            }
        }));
        for ns in &options.namespaces {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let mut events = watcher::watcher(pods, watcher::Config::default()).boxed();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                            on_pod(&shared, pod);
                        }
                        Ok(watcher::Event::Delete(pod)) => on_deleted(&shared, &pod),
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("node {}: pod watch: {e}", shared.options.name);
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }));
        }
        Node { shared, tasks }
    }

    pub fn name(&self) -> &str {
        &self.shared.options.name
    }

    /// Ends the running processes of Pod `namespace/name` now; false when none run.
    pub fn kill(&self, namespace: &str, name: &str, how: Stop) -> bool {
        let pods = self.shared.pods.lock().expect("pods");
        let Some(e) = pods
            .values()
            .find(|e| e.namespace == namespace && e.name == name)
        else {
            return false;
        };
        if e.record.state != PodState::Running {
            return false;
        }
        e.stop.send(Some(stop_cmd(how))).is_ok()
    }

    /// Kills the next Pod that starts and `matches`, `at` the given moment. The receiver
    /// gets the killed Pod's name.
    pub fn arm(
        &self,
        matches: impl Fn(&Pod) -> bool + Send + Sync + 'static,
        at: KillAt,
        how: Stop,
    ) -> oneshot::Receiver<String> {
        let (reply, rx) = oneshot::channel();
        self.shared.arms.lock().expect("arms").push(Arm {
            matches: Arc::new(matches),
            at,
            how,
            reply,
        });
        rx
    }

    /// Pods that `matches` are bound but not started until [`Node::release`].
    pub fn hold(&self, matches: impl Fn(&Pod) -> bool + Send + Sync + 'static) {
        *self.shared.hold.lock().expect("hold") = Some(Arc::new(matches));
    }

    /// The processes of Pods that `matches` run, but when they exit their result is not
    /// reported (the Pod stays `Running`) until [`Node::release`].
    pub fn hold_result(&self, matches: impl Fn(&Pod) -> bool + Send + Sync + 'static) {
        *self.shared.hold_result.lock().expect("hold") = Some(Arc::new(matches));
    }

    /// Lifts both holds: the held Pods start, held results are reported.
    pub fn release(&self) {
        *self.shared.hold.lock().expect("hold") = None;
        *self.shared.hold_result.lock().expect("hold") = None;
        self.shared.released.notify_waiters();
    }

    /// Every Pod it ran or runs (deleted ones included).
    pub fn pods(&self) -> Vec<PodRecord> {
        let mut out: Vec<PodRecord> = self
            .shared
            .pods
            .lock()
            .expect("pods")
            .values()
            .map(|e| e.record.clone())
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    /// What the containers of Pod `namespace/name` wrote (stdout and stderr), container by
    /// container.
    pub fn log(&self, namespace: &str, name: &str) -> String {
        let dir = self.shared.options.dir.join(namespace).join(name);
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return out;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        for f in files {
            out.push_str(&format!("== {}\n", f.display()));
            out.push_str(&std::fs::read_to_string(&f).unwrap_or_default());
        }
        out
    }

    /// Kills what still runs and deletes the Node.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        kill_all(&self.shared);
        let nodes: Api<KubeNode> = Api::all(self.shared.client.clone());
        let _ = nodes
            .delete(&self.shared.options.name, &DeleteParams::default())
            .await;
    }
}

/// Writes the Node's status: Ready, with capacity, allocatable and a fresh heartbeat.
async fn heartbeat(
    nodes: &Api<KubeNode>,
    name: &str,
    kubelet_port: u16,
) -> Result<(), kube::Error> {
    let t = now();
    let resources =
        json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let patch = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "the minion-e2e node stand-in runs Pods as local processes",
             "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
             "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
             "lastHeartbeatTime": t, "lastTransitionTime": t},
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "minion-e2e",
            "containerRuntimeVersion": "local://0", "kubeletVersion": "v0.0.0-stand-in",
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
        },
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map(|_| ())
}

/// The image of the node that runs `container`, if any.
fn image_of<'a>(shared: &'a Shared, container: &Container) -> Option<&'a Image> {
    let repo = repository(container.image.as_deref()?);
    shared.options.images.iter().find(|i| i.repository == repo)
}

fn runnable(shared: &Shared, pod: &Pod) -> Result<(), String> {
    let Some(spec) = &pod.spec else {
        return Err("no spec".into());
    };
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        if image_of(shared, c).is_none() {
            return Err(format!(
                "container {}: image {:?} is none of the node's images",
                c.name, c.image
            ));
        }
    }
    Ok(())
}

fn on_pod(shared: &Arc<Shared>, pod: Pod) {
    let (namespace, name, uid) = key(&pod);
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let deleting = pod.metadata.deletion_timestamp.is_some();
    match node_name {
        None => {
            if deleting || is_terminal(&pod) {
                return;
            }
            if let Err(why) = runnable(shared, &pod) {
                if shared.skipped.lock().expect("skipped").insert(uid) {
                    eprintln!(
                        "node {}: not binding Pod {namespace}/{name}: {why}",
                        shared.options.name
                    );
                }
                return;
            }
            if !shared.binding.lock().expect("binding").insert(uid.clone()) {
                return;
            }
            let shared = shared.clone();
            tokio::spawn(async move {
                let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
                let binding = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "uid": uid},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": shared.options.name},
                });
                let bound: Result<Value, _> = pods
                    .create_subresource("binding", &name, &PostParams::default(), &binding)
                    .await;
                match bound {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {}
                    Err(e) => {
                        eprintln!(
                            "node {}: bind Pod {namespace}/{name}: {e}",
                            shared.options.name
                        );
                        shared.binding.lock().expect("binding").remove(&uid);
                    }
                }
            });
        }
        Some(n) if n == shared.options.name => {
            let mut pods = shared.pods.lock().expect("pods");
            if let Some(e) = pods.get_mut(&uid) {
                if deleting && !e.finalizing {
                    e.finalizing = true;
                    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
                    if !matches!(e.record.state, PodState::Finished { .. }) {
                        let _ = e.stop.send(Some(StopCmd::Terminate(Duration::from_secs(
                            grace.max(0) as u64,
                        ))));
                    } else {
                        tokio::spawn(finish_delete(shared.clone(), namespace, name, uid));
                    }
                }
                return;
            }
            if is_terminal(&pod) && !deleting {
                return;
            }
            let (stop, rx) = watch::channel(None);
            let record = PodRecord {
                namespace: namespace.clone(),
                name: name.clone(),
                uid: uid.clone(),
                labels: pod.metadata.labels.clone().unwrap_or_default(),
                state: PodState::Held,
            };
            pods.insert(
                uid.clone(),
                Entry {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    stop,
                    record,
                    finalizing: deleting,
                },
            );
            drop(pods);
            if deleting {
                // Deleted before it ever started here: finish the deletion.
                tokio::spawn(finish_delete(shared.clone(), namespace, name, uid));
                return;
            }
            tokio::spawn(run_pod(shared.clone(), pod, rx));
        }
        Some(_) => {}
    }
}

fn on_deleted(shared: &Shared, pod: &Pod) {
    let (_, _, uid) = key(pod);
    shared.binding.lock().expect("binding").remove(&uid);
    let pods = shared.pods.lock().expect("pods");
    if let Some(e) = pods.get(&uid) {
        let _ = e.stop.send(Some(StopCmd::Vanished));
    }
}

fn set_state(shared: &Shared, uid: &str, state: PodState) {
    if let Some(e) = shared.pods.lock().expect("pods").get_mut(uid) {
        e.record.state = state;
    }
}

/// Finishes a Pod's deletion as the kubelet does once its containers are gone.
async fn finish_delete(shared: Arc<Shared>, namespace: String, name: String, uid: String) {
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
        Err(e) => eprintln!(
            "node {}: finish deleting Pod {namespace}/{name}: {e}",
            shared.options.name
        ),
    }
}

/// Patches the Pod's status (strategic merge, as the kubelet's status manager does).
async fn patch_status(shared: &Shared, namespace: &str, name: &str, status: Value) {
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), namespace);
    let patch = json!({"status": status});
    match pods
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => eprintln!(
            "node {}: status of Pod {namespace}/{name}: {e}",
            shared.options.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_mounts_are_rewritten_in_every_form() {
        let mounts = Mounts(vec![
            ("/tmp/x".into(), PathBuf::from("/local/x")),
            ("/tmp".into(), PathBuf::from("/local/spill")),
        ]);
        assert_eq!(mounts.rewrite("/tmp"), "/local/spill");
        assert_eq!(mounts.rewrite("/tmp/a/b"), "/local/spill/a/b");
        assert_eq!(mounts.rewrite("/tmp/x/y"), "/local/x/y");
        assert_eq!(mounts.rewrite("/tmpfoo"), "/tmpfoo");
        assert_eq!(mounts.rewrite("file:///tmp/a"), "file:///local/spill/a");
        assert_eq!(mounts.rewrite("--dir=/tmp/a"), "--dir=/local/spill/a");
        assert_eq!(mounts.rewrite("file:///data/a"), "file:///data/a");
        assert_eq!(mounts.rewrite("run"), "run");
    }

    #[test]
    fn references_expand_as_kubernetes_does() {
        let vars = HashMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("a$b", &vars), "a$b");
    }

    #[test]
    fn image_references_name_their_repository() {
        assert_eq!(repository("minion-operator:0.1.0"), "minion-operator");
        assert_eq!(
            repository("ghcr.io/x/minion-operator@sha256:ab"),
            "minion-operator"
        );
        assert_eq!(repository("localhost:5000/busybox"), "busybox");
    }
}
