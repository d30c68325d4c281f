//! What a Pod's containers are given before they start: volumes written out, paths under
//! mounts rewritten, the environment resolved from the Pod's spec, Secrets and ConfigMaps.

use super::*;

/// One container, ready to start.
pub(super) struct Prepared {
    pub(super) name: String,
    pub(super) image: String,
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) workdir: PathBuf,
    pub(super) log: PathBuf,
    /// `HOSTNAME`: the Pod's name.
    pub(super) hostname: String,
}

/// Where each volume is on this machine.
pub(super) async fn materialise_volumes(
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

pub(super) fn write_keys(
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
pub(super) struct Mounts(pub(super) Vec<(String, PathBuf)>);

impl Mounts {
    pub(super) fn new(
        mounts: &[VolumeMount],
        volumes: &HashMap<String, PathBuf>,
    ) -> Result<Mounts, String> {
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
    pub(super) fn local(&self, path: &str) -> Option<String> {
        self.0.iter().find_map(|(mount, local)| {
            if mount.is_empty() {
                return None;
            }
            let rest = path.strip_prefix(mount.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", local.display()))
        })
    }

    /// Rewrites a path, a `file://` URI or a `--flag=path` that falls under a mount.
    pub(super) fn rewrite(&self, s: &str) -> String {
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
pub(super) fn expand(s: &str, vars: &HashMap<String, String>) -> String {
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

pub(super) fn field_ref(pod: &Pod, path: &str) -> Result<String, String> {
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

pub(super) async fn secret_data(
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

pub(super) async fn config_map_data(
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
pub(super) async fn environment(
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
pub(super) async fn prepare(
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
