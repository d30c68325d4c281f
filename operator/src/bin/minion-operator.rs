//! The `minion-operator` binary.
//!
//! - `minion-operator crds` prints the three CustomResourceDefinitions as multi-document
//!   YAML; `minion-operator crds --out crds --out charts/minion-operator/files/crds` writes one file
//!   per CRD (`tables.minion.dev.yaml`, …) into each directory.
//!
//! - `minion-operator rbac --chart charts/minion-operator/templates/_rbac.tpl` writes the
//!   chart's RBAC rules from `minion_operator::k8s::rbac`; `--docs-table` prints the table of
//!   docs/kubernetes.md.
//!
//! - `minion-operator run`: the operator (docs/kubernetes.md, "Runtime contract"): flags
//!   `--namespaces`, `--log-format`, `--metrics-addr`, `--leader-election-namespace`,
//!   `--lease-name`; environment `MINION_WATCH_NAMESPACES`, `MINION_LOG_FORMAT`,
//!   `POD_NAMESPACE`, `POD_NAME`, `MINION_LEADER_ELECTION`; worker defaults from
//!   `/etc/minion/worker-defaults.yaml`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use minion_operator::k8s::lease::LeaseConfig;
use minion_operator::k8s::operator::{OperatorOptions, run};

#[derive(Parser)]
#[command(
    name = "minion-operator",
    version,
    about = "Kubernetes operator for minion tasks over Parquet/Delta tables"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CRDs, or write them into directories.
    Crds {
        /// Directory to write `<plural>.minion.dev.yaml` files into (repeatable).
        #[arg(long = "out", value_name = "DIR")]
        out: Vec<PathBuf>,
    },
    /// Print the chart's RBAC rules (generated from the operator's calls), or write them.
    Rbac {
        /// File to write the chart's rule template into
        /// (`charts/minion-operator/templates/_rbac.tpl`).
        #[arg(long, value_name = "FILE")]
        chart: Option<PathBuf>,
        /// Print the RBAC table of docs/kubernetes.md instead.
        #[arg(long, conflicts_with = "chart")]
        docs_table: bool,
    },
    /// Run the operator against the cluster of the kubeconfig or the in-cluster account.
    Run(RunArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watched namespaces, comma-separated. Empty: all.
    #[arg(
        long,
        env = "MINION_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    namespaces: Vec<String>,
    /// URI prefixes Tables and task inputs must lie under, comma-separated (e.g.
    /// `s3://lake/,gs://lake/`); a Table elsewhere is `Ready=False/UriNotAllowed`, a run
    /// reading elsewhere fails. Empty: any (the chart allows object stores only by default).
    #[arg(
        long,
        env = "MINION_ALLOWED_URI_PREFIXES",
        value_delimiter = ',',
        default_value = ""
    )]
    allowed_uri_prefixes: Vec<String>,
    /// `json` (one object per line, with the TaskRun as a field) or `text`.
    #[arg(long, env = "MINION_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// One port for /metrics, /livez and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "minion-operator")]
    lease_name: String,
    /// Defaults of subtask Jobs (written by the chart).
    #[arg(long, default_value = minion_operator::k8s::job::WORKER_DEFAULTS_PATH)]
    worker_defaults: PathBuf,
    /// Resync period in milliseconds: the longest pause between ticks when no watched object
    /// changes and no schedule comes due (changes wake the loop at once).
    #[arg(long, default_value_t = 30_000)]
    poll_ms: u64,
    /// Seconds a subtask's Job may take to start its worker (image pulled, pod scheduled and
    /// created) before the attempt fails naming the cause.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pod_start_timeout: u64,
    /// Hold TaskRuns with the finalizer that reverts a deleted run (true/false). Default: only
    /// when watching every namespace (a namespaced install's Role goes with its namespace, so
    /// the finalizer could not be removed and would block the namespace's deletion).
    #[arg(long, value_name = "BOOL")]
    finalizers: Option<bool>,
}

/// Our progress at info; the Delta kernel's per-snapshot and per-scan lines only from warn
/// (they would bury the TaskRun lines in `kubectl logs`). `RUST_LOG` replaces it.
const DEFAULT_LOG_FILTER: &str = "info,buoyant_kernel=warn,delta_kernel=warn,deltalake_core=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => operate(args),
        Command::Rbac { chart, docs_table } => {
            use minion_operator::k8s::rbac;
            if docs_table {
                print!("{}", rbac::docs_table());
                return ExitCode::SUCCESS;
            }
            let text = rbac::chart_template();
            let Some(path) = chart else {
                print!("{text}");
                return ExitCode::SUCCESS;
            };
            match std::fs::write(&path, text) {
                Ok(()) => {
                    eprintln!("wrote {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("minion-operator rbac: cannot write {}: {e}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crds { out } => match crds(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("minion-operator crds: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn crds(out: &[PathBuf]) -> Result<(), Box<dyn std::error::Error>> {
    let files = minion_operator::api::crd_files()?;
    if out.is_empty() {
        let docs: Vec<&str> = files.iter().map(|(_, yaml)| yaml.as_str()).collect();
        print!("{}", docs.join("---\n"));
        return Ok(());
    }
    for dir in out {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (name, yaml) in &files {
            let path = dir.join(name);
            std::fs::write(&path, yaml)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

fn operate(args: RunArgs) -> ExitCode {
    init_logs(args.log_format);
    minion_operator::catalog::install_crypto_provider();
    // An environment variable, not a flag: a binary that does not read it ignores it.
    let election = std::env::var("MINION_LEADER_ELECTION").ok();
    let election_on = election.as_deref().is_none_or(|v| v != "false");
    let lease = match (&args.leader_election_namespace, election_on) {
        (Some(ns), true) => {
            let identity = std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("minion-operator-{}", std::process::id()));
            Some(LeaseConfig::new(ns, &args.lease_name, &identity))
        }
        (None, true) if election.as_deref() == Some("true") => {
            eprintln!(
                "minion-operator run: leader election needs --leader-election-namespace or POD_NAMESPACE"
            );
            return ExitCode::FAILURE;
        }
        _ => None,
    };
    let options = OperatorOptions {
        namespaces: args
            .namespaces
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect(),
        metrics_addr: args.metrics_addr,
        lease,
        worker_defaults: args.worker_defaults,
        poll_interval: std::time::Duration::from_millis(args.poll_ms.max(10)),
        instance: std::env::var("POD_NAME").ok(),
        pod_start_timeout: std::time::Duration::from_secs(args.pod_start_timeout.max(1)),
        finalizers: args.finalizers,
        allowed_uri_prefixes: args
            .allowed_uri_prefixes
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("minion-operator run: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(reason = e.reason(), error = %e, "minion-operator stopped");
            ExitCode::FAILURE
        }
    }
}
