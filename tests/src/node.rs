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
        heartbeat(&nodes, &options.name)
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
        let mut tasks = Vec::new();
        let name = options.name.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                if let Err(e) = heartbeat(&nodes, &name).await {
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
async fn heartbeat(nodes: &Api<KubeNode>, name: &str) -> Result<(), kube::Error> {
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

/// One container, ready to start.
struct Prepared {
    name: String,
    image: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    log: PathBuf,
    /// `HOSTNAME`: the Pod's name.
    hostname: String,
}

/// Where each volume is on this machine.
async fn materialise_volumes(
    shared: &Shared,
    namespace: &str,
    volumes: &[Volume],
    pod_dir: &Path,
) -> Result<HashMap<String, PathBuf>, String> {
    let mut out = HashMap::new();
    for v in volumes {
        let dir = pod_dir.join("volumes").join(&v.name);
        let path = if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(|e| format!("volume {}: {e}", v.name))?;
            dir
        } else if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            match h.type_.as_deref() {
                Some("DirectoryOrCreate") => {
                    std::fs::create_dir_all(&p).map_err(|e| format!("volume {}: {e}", v.name))?
                }
                Some("Directory") if !p.is_dir() => {
                    return Err(format!(
                        "volume {}: hostPath {} is not a directory",
                        v.name, h.path
                    ));
                }
                _ => {}
            }
            p
        } else if let Some(s) = &v.secret {
            let secret_name = s.secret_name.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(shared.client.clone(), namespace);
            let data: BTreeMap<String, Vec<u8>> = match api.get_opt(&secret_name).await {
                Ok(Some(secret)) => {
                    let mut data: BTreeMap<String, Vec<u8>> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in secret.string_data.unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    data
                }
                Ok(None) if s.optional == Some(true) => BTreeMap::new(),
                Ok(None) => return Err(format!("secret \"{secret_name}\" not found")),
                Err(e) => return Err(format!("secret \"{secret_name}\": {e}")),
            };
            write_keys(&dir, &data, s.items.as_deref())?;
            dir
        } else if let Some(c) = &v.config_map {
            let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), namespace);
            let data: BTreeMap<String, Vec<u8>> = match api.get_opt(&c.name).await {
                Ok(Some(cm)) => {
                    let mut data: BTreeMap<String, Vec<u8>> = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    for (k, v) in cm.binary_data.unwrap_or_default() {
                        data.insert(k, v.0);
                    }
                    data
                }
                Ok(None) if c.optional == Some(true) => BTreeMap::new(),
                Ok(None) => return Err(format!("configmap \"{}\" not found", c.name)),
                Err(e) => return Err(format!("configmap \"{}\": {e}", c.name)),
            };
            write_keys(&dir, &data, c.items.as_deref())?;
            dir
        } else {
            return Err(format!(
                "volume {}: only emptyDir, hostPath, secret and configMap volumes are supported by the node stand-in",
                v.name
            ));
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files: Vec<(String, &Vec<u8>)> = match items {
        Some(items) => items
            .iter()
            .map(|i| {
                data.get(&i.key)
                    .map(|v| (i.path.clone(), v))
                    .ok_or_else(|| format!("key {} not found", i.key))
            })
            .collect::<Result<_, _>>()?,
        None => data.iter().map(|(k, v)| (k.clone(), v)).collect(),
    };
    for (path, bytes) in files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&file, bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}

/// Container paths mapped to local ones, longest mount path first.
struct Mounts(Vec<(String, PathBuf)>);

impl Mounts {
    fn new(mounts: &[VolumeMount], volumes: &HashMap<String, PathBuf>) -> Result<Mounts, String> {
        let mut out = Vec::new();
        for m in mounts {
            let base = volumes
                .get(&m.name)
                .ok_or_else(|| format!("volumeMount {}: no such volume", m.name))?;
            let local = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => base.join(sub),
                None => base.clone(),
            };
            out.push((m.mount_path.trim_end_matches('/').to_string(), local));
        }
        out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(Mounts(out))
    }

    /// `path` under a mount, as a local path.
    fn local(&self, path: &str) -> Option<String> {
        self.0.iter().find_map(|(mount, local)| {
            if mount.is_empty() {
                return None;
            }
            let rest = path.strip_prefix(mount.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", local.display()))
        })
    }

    /// Rewrites a path, a `file://` URI or a `--flag=path` that falls under a mount.
    fn rewrite(&self, s: &str) -> String {
        if let Some(l) = self.local(s) {
            return l;
        }
        if let Some(path) = s.strip_prefix("file://")
            && let Some(l) = self.local(path)
        {
            return format!("file://{l}");
        }
        if let Some((flag, value)) = s.split_once('=')
            && !value.is_empty()
            && value != s
        {
            let v = self.rewrite(value);
            if v != value {
                return format!("{flag}={v}");
            }
        }
        s.to_string()
    }
}

/// Expands `$(NAME)` from `vars` (unknown references stay; `$$` is a literal `$`).
fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn field_ref(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let label = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| {
                map.as_ref()
                    .and_then(|m| m.get(k))
                    .cloned()
                    .unwrap_or_default()
            })
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.podIP" => "127.0.0.1".into(),
        _ => {
            if let Some(v) = label("metadata.labels['", &meta.labels) {
                v
            } else if let Some(v) = label("metadata.annotations['", &meta.annotations) {
                v
            } else {
                return Err(format!(
                    "fieldRef {path} is not supported by the node stand-in"
                ));
            }
        }
    })
}

async fn secret_data(
    shared: &Shared,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(s)) => {
            let mut out: BTreeMap<String, String> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            out.extend(s.string_data.unwrap_or_default());
            Ok(Some(out))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(format!("secret \"{name}\": {e}")),
    }
}

async fn config_map_data(
    shared: &Shared,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(c)) => Ok(Some(c.data.unwrap_or_default())),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("configmap \"{name}\": {e}")),
    }
}

/// The container's environment as Kubernetes builds it: `envFrom` first, then `env` in
/// order (later entries win; `$(VAR)` expands earlier ones); paths under mounts rewritten.
async fn environment(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    mounts: &Mounts,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        vars.retain(|(name, _)| *name != k);
        vars.push((k, v));
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &from.secret_ref {
            match secret_data(shared, &namespace, &s.name).await? {
                Some(d) => d,
                None if s.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("secret \"{}\" not found", s.name)),
            }
        } else if let Some(c) = &from.config_map_ref {
            match config_map_data(shared, &namespace, &c.name).await? {
                Some(d) => d,
                None if c.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("configmap \"{}\" not found", c.name)),
            }
        } else {
            BTreeMap::new()
        };
        for (k, v) in data {
            set(&mut vars, format!("{prefix}{k}"), v);
        }
    }
    for e in container.env.iter().flatten() {
        let known: HashMap<String, String> = vars.iter().cloned().collect();
        let value = if let Some(v) = &e.value {
            expand(v, &known)
        } else if let Some(from) = &e.value_from {
            if let Some(s) = &from.secret_key_ref {
                match secret_data(shared, &namespace, &s.name).await? {
                    Some(d) => match d.get(&s.key) {
                        Some(v) => v.clone(),
                        None if s.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                s.key, s.name
                            ));
                        }
                    },
                    None if s.optional == Some(true) => continue,
                    None => return Err(format!("secret \"{}\" not found", s.name)),
                }
            } else if let Some(c) = &from.config_map_key_ref {
                match config_map_data(shared, &namespace, &c.name).await? {
                    Some(d) => match d.get(&c.key) {
                        Some(v) => v.clone(),
                        None if c.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                c.key, c.name
                            ));
                        }
                    },
                    None if c.optional == Some(true) => continue,
                    None => return Err(format!("configmap \"{}\" not found", c.name)),
                }
            } else if let Some(f) = &from.field_ref {
                field_ref(pod, &f.field_path)?
            } else {
                return Err(format!(
                    "env {}: only value, secretKeyRef, configMapKeyRef and fieldRef are supported by the node stand-in",
                    e.name
                ));
            }
        } else {
            String::new()
        };
        set(&mut vars, e.name.clone(), value);
    }
    Ok(vars
        .into_iter()
        .map(|(k, v)| {
            let v = mounts.rewrite(&v);
            (k, v)
        })
        .collect())
}

/// Resolves everything a container needs before it can start.
async fn prepare(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    pod_dir: &Path,
) -> Result<Prepared, String> {
    let image = image_of(shared, container).ok_or_else(|| {
        format!(
            "container {}: image {:?} is none of the node's images",
            container.name, container.image
        )
    })?;
    let mounts = Mounts::new(
        container.volume_mounts.as_deref().unwrap_or_default(),
        volumes,
    )?;
    let env = environment(shared, pod, container, &mounts).await?;
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    // Kubernetes: `command` replaces the entrypoint and drops the image's cmd; `args`
    // replaces the cmd.
    let (command, args) = match (&container.command, &container.args) {
        (Some(c), Some(a)) if !c.is_empty() => (c.clone(), a.clone()),
        (Some(c), _) if !c.is_empty() => (c.clone(), Vec::new()),
        (_, Some(a)) => (image.entrypoint.clone(), a.clone()),
        _ => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let mut argv: Vec<String> = command
        .iter()
        .chain(args.iter())
        .map(|a| mounts.rewrite(&expand(a, &vars)))
        .collect();
    if argv.is_empty() {
        return Err(format!("container {}: no command", container.name));
    }
    let program = argv.remove(0);
    let file = Path::new(&program)
        .file_name()
        .ok_or_else(|| format!("container {}: command {program:?}", container.name))?;
    let workdir = match container.working_dir.as_deref() {
        Some(w) => PathBuf::from(mounts.rewrite(w)),
        None => pod_dir.to_path_buf(),
    };
    Ok(Prepared {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        program: image.bin_dir.join(file),
        args: argv,
        env,
        workdir,
        log: pod_dir.join(format!("{}.log", container.name)),
        hostname: pod.metadata.name.clone().unwrap_or_default(),
    })
}

struct Started {
    prepared: Prepared,
    child: Option<tokio::process::Child>,
    started_at: String,
    /// Exit code (128 + signal when killed), once known.
    exit: Option<i32>,
    /// Why it could not start.
    start_error: Option<String>,
}

fn spawn(p: Prepared) -> Started {
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

fn pids(started: &[Started]) -> Vec<u32> {
    started
        .iter()
        .filter(|s| s.exit.is_none())
        .filter_map(|s| s.child.as_ref()?.id())
        .collect()
}

/// Waits until every container has exited.
async fn wait_all(started: &mut [Started]) {
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
enum Ended {
    Exited,
    Stopped(StopCmd),
}

/// Waits for the containers, or ends them as `stop` says.
async fn supervise(started: &mut [Started], stop: &mut watch::Receiver<Option<StopCmd>>) -> Ended {
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

fn container_status(s: &Started, running: bool) -> Value {
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

fn stop_cmd(how: Stop) -> StopCmd {
    match how {
        Stop::Kill => StopCmd::Kill,
        Stop::Evict => StopCmd::Evict,
    }
}

fn condition(type_: &str, status: bool, reason: Option<&str>) -> Value {
    let mut c = json!({"type": type_, "status": if status { "True" } else { "False" }, "lastTransitionTime": now()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// Takes the first armed kill that matches `pod`.
fn take_arm(shared: &Shared, pod: &Pod) -> Option<Arm> {
    let mut arms = shared.arms.lock().expect("arms");
    let i = arms.iter().position(|a| (a.matches)(pod))?;
    Some(arms.remove(i))
}

/// Whether `hold` (one of the node's holds) keeps `pod`.
fn held(hold: &Mutex<Option<Matcher>>, pod: &Pod) -> bool {
    hold.lock().expect("hold").as_ref().is_some_and(|m| m(pod))
}

/// Runs one bound Pod: waits out a hold, prepares its containers (retrying while that
/// fails), runs them, reports its status, and finishes its deletion when it was deleted.
async fn run_pod(shared: Arc<Shared>, pod: Pod, mut stop: watch::Receiver<Option<StopCmd>>) {
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
async fn finish_unstarted(
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
