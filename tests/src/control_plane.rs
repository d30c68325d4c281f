//! The real control plane of `scripts/control-plane.sh` as the `control_plane` suite uses it:
//! found through the environment `control-plane.sh env` exports, driven with the kubectl and
//! helm of `target/tools` (`scripts/lib/tools.sh`), the chart rendered with `helm template`
//! and applied with `kubectl` as a user would, and the operator run out of cluster as the
//! chart's ServiceAccount (`control-plane.sh sa-kubeconfig`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::fixtures::workspace_binary;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// A client for the kubeconfig at `path` (its current context).
///
/// # Panics
/// The kubeconfig cannot be read or used.
pub async fn client_for(path: &Path) -> kube::Client {
    minion_operator::catalog::install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    kube::Client::try_from(config).expect("a client")
}

/// The running control plane, as its administrator.
pub struct ControlPlane {
    /// The admin kubeconfig (`system:masters`).
    pub kubeconfig: PathBuf,
    pub client: kube::Client,
    /// `MINION_CONTROL_PLANE_DIR`, when set (`control-plane.sh`'s `MINION_CP_DIR`).
    dir: Option<PathBuf>,
    tools: PathBuf,
}

impl ControlPlane {
    /// The control plane `scripts/control-plane.sh start` runs: its kubeconfig from
    /// `MINION_CONTROL_PLANE_KUBECONFIG`, or from `KUBECONFIG` when `MINION_CONTROL_PLANE=1`
    /// says it is the control plane's (`eval "$(scripts/control-plane.sh env)"` sets both).
    /// A plain `KUBECONFIG` is never used: the suite installs CRDs and registers Nodes.
    ///
    /// # Panics
    /// Neither is set, or the API server does not answer.
    pub async fn from_env() -> ControlPlane {
        let kubeconfig = std::env::var_os("MINION_CONTROL_PLANE_KUBECONFIG")
            .or_else(|| {
                (std::env::var("MINION_CONTROL_PLANE").as_deref() == Ok("1"))
                    .then(|| std::env::var_os("KUBECONFIG"))
                    .flatten()
            })
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "no control plane: run `eval \"$(scripts/control-plane.sh start)\"` (it exports KUBECONFIG and \
                     MINION_CONTROL_PLANE=1), or set MINION_CONTROL_PLANE_KUBECONFIG; scripts/e2e-control-plane.sh does both"
                )
            });
        let client = client_for(&kubeconfig).await;
        let version = client.apiserver_version().await.unwrap_or_else(|e| {
            panic!(
                "the API server of {} does not answer: {e}",
                kubeconfig.display()
            )
        });
        eprintln!(
            "control plane: {} ({})",
            version.git_version,
            kubeconfig.display()
        );
        let tools = std::env::var_os("MINION_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/tools"));
        ControlPlane {
            kubeconfig,
            client,
            dir: std::env::var_os("MINION_CONTROL_PLANE_DIR").map(PathBuf::from),
            tools,
        }
    }

    fn tool(&self, name: &str) -> PathBuf {
        let p = self.tools.join("bin").join(name);
        if p.exists() { p } else { PathBuf::from(name) }
    }

    /// `kubectl` as `kubeconfig` (the admin's when `None`), with `stdin` fed when given.
    pub fn kubectl_as(
        &self,
        kubeconfig: Option<&Path>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        let mut cmd = Command::new(self.tool("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(kubeconfig.unwrap_or(&self.kubeconfig))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "kubectl ({}) does not start: {e}",
                self.tool("kubectl").display()
            )
        });
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write kubectl's stdin");
        }
        child.wait_with_output().expect("kubectl runs")
    }

    /// `kubectl` as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(None, args, None)
    }

    /// [`Self::kubectl`] with `stdin`, asserting success; stdout (stderr is printed).
    ///
    /// # Panics
    /// kubectl failed.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_as(None, args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        if !stderr.trim().is_empty() {
            eprintln!("kubectl {args:?}: {}", stderr.trim());
        }
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `helm template <release> charts/minion-operator -n <namespace> <values...>`.
    ///
    /// # Panics
    /// helm failed.
    pub fn helm_template(&self, release: &str, namespace: &str, args: &[String]) -> String {
        let out = Command::new(self.tool("helm"))
            .arg("template")
            .arg(release)
            .arg(repo_root().join("charts/minion-operator"))
            .args(["-n", namespace])
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("helm ({}) does not start: {e}", self.tool("helm").display())
            });
        assert!(
            out.status.success(),
            "helm template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `kubectl apply --server-side -f crds/` (as docs/kubernetes.md says), then waits until
    /// the CRDs are Established.
    pub fn install_crds(&self) {
        let crds = repo_root().join("crds");
        self.kubectl_ok(
            &[
                "apply",
                "--server-side",
                // The CRDs of this checkout win over what an earlier install applied.
                "--force-conflicts",
                "-f",
                crds.to_str().expect("utf-8 path"),
            ],
            None,
        );
        self.kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/tables.minion.dev",
                "crd/miniontaskconfigs.minion.dev",
                "crd/taskruns.minion.dev",
            ],
            None,
        );
    }

    /// Creates namespace `name` (nothing when it exists).
    ///
    /// # Panics
    /// It cannot be created.
    pub async fn create_namespace(&self, name: &str) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
        }))
        .expect("a Namespace");
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => panic!("create namespace {name}: {e}"),
        }
    }

    /// Installs the chart's RBAC, ServiceAccounts and worker-defaults ConfigMap (no CRDs, no
    /// Deployment: the operator runs out of cluster) as release `release` in `namespace`,
    /// with the `--set`-style `args`; `edit` may change the rendered text before it is
    /// applied (a narrowed role, say).
    ///
    /// # Panics
    /// Rendering or applying failed.
    pub async fn install(
        &self,
        release: &str,
        namespace: &str,
        args: &[String],
        edit: impl FnOnce(String) -> String,
    ) -> Release {
        self.create_namespace(namespace).await;
        let mut all = vec!["--set".to_string(), "crds.install=false".to_string()];
        all.extend(args.iter().cloned());
        for t in ["rbac", "serviceaccount", "configmap"] {
            all.push("--show-only".into());
            all.push(format!("templates/{t}.yaml"));
        }
        let rendered = edit(self.helm_template(release, namespace, &all));
        // The worker account lives in other namespaces too: they must exist.
        for line in rendered.lines() {
            if let Some(ns) = line.trim().strip_prefix("namespace: ") {
                self.create_namespace(ns.trim_matches('"')).await;
            }
        }
        self.kubectl_ok(&["apply", "-f", "-"], Some(&rendered));
        let fullname = if release.contains("minion-operator") {
            release.to_string()
        } else {
            format!("{release}-minion-operator")
        };
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let cm = cms
            .get(&format!("{fullname}-worker-defaults"))
            .await
            .expect("the worker-defaults ConfigMap");
        let worker_defaults = cm
            .data
            .and_then(|d| d.get("worker-defaults.yaml").cloned())
            .expect("worker-defaults.yaml in the ConfigMap");
        Release {
            name: release.into(),
            namespace: namespace.into(),
            operator_sa: fullname.clone(),
            worker_sa: format!("{fullname}-worker"),
            lease_name: "minion-operator".into(),
            worker_defaults,
            rendered,
            fullname,
        }
    }

    /// A kubeconfig at `out` that authenticates as ServiceAccount `namespace/name`
    /// (`scripts/control-plane.sh sa-kubeconfig`).
    ///
    /// # Panics
    /// The script failed.
    pub fn sa_kubeconfig(&self, namespace: &str, name: &str, out: &Path) {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/control-plane.sh"))
            .args(["sa-kubeconfig", namespace, name])
            .arg(out)
            .arg("2h");
        if let Some(dir) = &self.dir {
            cmd.env("MINION_CP_DIR", dir);
        }
        let res = cmd.output().expect("control-plane.sh runs");
        assert!(
            res.status.success(),
            "control-plane.sh sa-kubeconfig {namespace} {name}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
}

/// The chart's objects of one release, as applied.
#[derive(Clone, Debug)]
pub struct Release {
    pub name: String,
    /// The release namespace (the operator's ServiceAccount and Lease).
    pub namespace: String,
    pub fullname: String,
    pub operator_sa: String,
    pub worker_sa: String,
    pub lease_name: String,
    /// `worker-defaults.yaml` of the chart's ConfigMap.
    pub worker_defaults: String,
    /// What was applied.
    pub rendered: String,
}

/// A `minion-operator run` process out of cluster, with the flags and environment the
/// chart's Deployment gives it; killed (SIGKILL) when dropped.
pub struct OperatorProcess {
    child: Child,
    pub identity: String,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `minion-operator run` as the ServiceAccount of `kubeconfig`, leader election
    /// on the release's Lease as `identity` (the pod name), watching `namespaces`, with the
    /// worker defaults file `defaults`; output to `log`.
    ///
    /// # Panics
    /// It does not start.
    pub fn start(
        release: &Release,
        kubeconfig: &Path,
        namespaces: &[&str],
        defaults: &Path,
        identity: &str,
        log: &Path,
        extra_args: &[String],
    ) -> OperatorProcess {
        let out = std::fs::File::create(log).expect("operator log");
        let err = out.try_clone().expect("operator log");
        let mut cmd = Command::new(workspace_binary("minion-operator", "minion-operator"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", &release.namespace)
            .env("MINION_LEADER_ELECTION", "true")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| {
                    "info,buoyant_kernel=warn,delta_kernel=warn,deltalake_core=warn".into()
                }),
            )
            .arg("run")
            .arg("--metrics-addr=127.0.0.1:0")
            .arg("--log-format=text")
            .arg(format!("--leader-election-namespace={}", release.namespace))
            .arg(format!("--lease-name={}", release.lease_name))
            .arg("--worker-defaults")
            .arg(defaults)
            .stdout(out)
            .stderr(err);
        if !namespaces.is_empty() {
            cmd.arg(format!("--namespaces={}", namespaces.join(",")));
        }
        cmd.args(extra_args);
        let child = cmd.spawn().expect("minion-operator starts");
        OperatorProcess {
            child,
            identity: identity.into(),
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL (a lost pod: no clean shutdown, the Lease is not released).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every `every` until it returns `Some`, at most `timeout`.
///
/// # Panics
/// Time is up; the message says what was awaited and the last `describe()`.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            describe()
        );
        tokio::time::sleep(every).await;
    }
}
