//! The `minion` CLI (also installable as the kubectl plugin `kubectl-minion`): argument
//! definitions and one module per group of subcommands. Commands act on a local state
//! directory (`--state-dir`, env `MINION_STATE_DIR`, default `.minion/state`), or with
//! `--cluster` (env `MINION_CLUSTER`; the default when run as `kubectl-minion` without a state
//! directory) on the cluster of the kubeconfig: see [`target`].
//!
//! Output: tables for people, `-o json|yaml` for scripts; errors on stderr with a non-zero
//! exit code ([`CliError::exit_code`]).

mod apply;
pub mod convert;
mod describe;
mod get;
mod ops;
mod push;
mod table_fmt;
mod target;
mod up;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Input the user must fix (bad manifests, unknown names); every problem is listed.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// Stable reason (for scripts that parse stderr).
    pub fn reason(&self) -> &'static str {
        match self {
            CliError::Invalid(_) => "Invalid",
            CliError::NotFound(_) => "NotFound",
            CliError::Failed(_) => "Failed",
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Failed(_) => 1,
        }
    }

    pub(crate) fn failed(e: impl std::fmt::Display) -> Self {
        CliError::Failed(e.to_string())
    }
}

#[derive(Parser)]
#[command(
    name = "minion",
    version,
    about = "Run minion tasks locally and inspect them"
)]
pub struct Cli {
    /// State directory of local mode (resources, status, events, worker logs); default
    /// `.minion/state`.
    #[arg(long, global = true, env = "MINION_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Act on the cluster of the kubeconfig (KUBECONFIG, ~/.kube/config) instead of a local
    /// state directory; the default when run as `kubectl-minion` without --state-dir.
    #[arg(
        long,
        global = true,
        env = "MINION_CLUSTER",
        conflicts_with = "state_dir"
    )]
    pub cluster: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of `get`, `describe` and `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build a REALTIME table of synthetic events, move it to an OFFLINE table and merge/roll
    /// it up with the samples of config/, all on this machine; then check count(*) and sum().
    Demo {
        /// Directory for the demo's tables (recreated).
        #[arg(long, default_value = ".minion/demo")]
        dir: PathBuf,
        /// Days of events.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Rows per REALTIME segment.
        #[arg(long, default_value_t = 2_000)]
        rows_per_segment: usize,
    },
    /// Validate manifests (files or directories) and store them; nothing is stored if any
    /// document is invalid.
    Apply {
        /// A manifest file, or a directory of them (its own *.yaml, *.yml, *.json); repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Also read the manifests in sub-directories of the directories given with -f.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
    /// List tables, taskconfigs (mtc) or taskruns (tr).
    Get {
        kind: String,
        name: Option<String>,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
    },
    /// Show one resource with its status, conditions, subtasks and events.
    Describe {
        kind: String,
        name: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
    },
    /// Create TaskRuns with an inline config (Pinot's execute: FileIngestion, SegmentBackfill);
    /// `local up` runs them.
    Execute {
        /// A manifest file, or a directory of them (its own *.yaml, *.yml, *.json); repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Also read the manifests in sub-directories of the directories given with -f.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
    /// Add Parquet/CSV/JSON files to a table as segments (coerced to its schema, one commit).
    Push {
        table: String,
        #[arg(required = true)]
        files: Vec<String>,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Start a run of a MinionTaskConfig now (a TaskRun named `<config>-manual-<time>`).
    Run {
        config: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Show what a run of a MinionTaskConfig would do now, without doing it.
    Plan {
        config: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
    },
    /// Committed segments of a table, its lineage entries and the watermarks of its configs.
    Segments {
        table: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Cancel a TaskRun: what it staged is reverted and it ends Cancelled (a commit already
    /// under way finishes).
    Cancel {
        run: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Start a new TaskRun with the spec of a Failed, TimedOut or Cancelled one
    /// (`<run>-retry-<n>`).
    Retry {
        run: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Suspend a MinionTaskConfig: no scheduled run starts until it is resumed.
    Suspend {
        config: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Resume a suspended MinionTaskConfig.
    Resume {
        config: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Print the worker output of a TaskRun's subtask Job (default: the first failed
    /// subtask, else the last one started).
    Logs {
        run: String,
        /// The subtask's index.
        #[arg(long, conflicts_with = "validity")]
        subtask: Option<u32>,
        /// The run's validity Job (upsert compaction) instead of a subtask.
        #[arg(long)]
        validity: bool,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Convert configs of another system into manifests (printed as YAML on stdout;
    /// warnings on stderr).
    Convert {
        #[command(subcommand)]
        command: ConvertCommand,
    },
    /// Local mode.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// Run one subtask (what each local job executes).
    #[command(hide = true)]
    Worker {
        #[command(subcommand)]
        command: WorkerCommand,
    },
}

#[derive(Subcommand)]
pub enum ConvertCommand {
    /// Pinot/StarTree table configs (and schema) into Table and MinionTaskConfig manifests:
    /// every task in task.taskTypeConfigsMap, with a warning for each key left out.
    Pinot {
        /// The OFFLINE table config (JSON, as GET /tables/<name> returns one table type).
        #[arg(long)]
        table_config: PathBuf,
        /// The REALTIME table config, for a hybrid table (RealtimeToOfflineSegmentsTask
        /// lives there in Pinot).
        #[arg(long)]
        realtime_config: Option<PathBuf>,
        /// The schema (JSON): columns, time column format, primary key.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Namespace of the manifests.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Tables are placed at <prefix><name>.
        #[arg(long, default_value = "file:///tmp/minion/")]
        uri_prefix: String,
        /// Write the manifests to this file instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum LocalCommand {
    /// Run the control loop: schedules, runs, commits.
    Up {
        /// Stop when no run is pending or running and no schedule came due.
        #[arg(long)]
        until_idle: bool,
        /// Pretend the clock reads this time at start (RFC3339); time still passes.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        /// Stop after this many run steps (to test resuming).
        #[arg(long)]
        max_steps: Option<u64>,
        /// Milliseconds between ticks while waiting.
        #[arg(long, default_value_t = 250)]
        poll_ms: u64,
        /// Manifest files or directories to apply at start and again whenever they change
        /// (a GitOps-style directory of Tables and MinionTaskConfigs).
        #[arg(short = 'f', long = "filename")]
        watch: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum WorkerCommand {
    /// Run the subtask described by a spec.
    Run {
        /// URI of the subtask spec.
        #[arg(long)]
        spec: String,
        /// Where to write the exit code and message when done (local jobs).
        #[arg(long)]
        exit_file: Option<PathBuf>,
        /// Memory budget in bytes (overrides the spec).
        #[arg(long)]
        memory_budget: Option<u64>,
        /// Directory for spill files.
        #[arg(long, env = "MINION_SPILL_DIR")]
        spill_dir: Option<PathBuf>,
    },
}

/// The arguments of `minion worker run`.
#[derive(Clone, Debug)]
pub struct WorkerRun {
    pub spec: String,
    pub exit_file: Option<PathBuf>,
    pub memory_budget: Option<u64>,
    pub spill_dir: Option<PathBuf>,
}

/// What runs `minion worker run`: the worker's engine, which this crate does not link (the
/// `minion` binary of crate `minion-cli` passes it).
pub type WorkerMain = fn(WorkerRun) -> Pin<Box<dyn Future<Output = ExitCode>>>;

/// The process entry point of `minion` and `kubectl-minion`: logs to stderr (`RUST_LOG`,
/// default `warn`), parses the arguments and runs the command.
pub async fn run_process(worker: WorkerMain) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    main(Cli::parse(), worker).await
}

/// Names and namespaces typed on the command line, checked like those of manifests before
/// any of them is looked up in the state directory.
fn check_args(command: &Command) -> Result<(), CliError> {
    use crate::local::{check_name, check_namespace};
    let kind_of = |kind: &str| match Kind::parse(kind) {
        Ok(Kind::Table) => "Table",
        Ok(Kind::TaskConfig) => "MinionTaskConfig",
        Ok(Kind::TaskRun) | Err(_) => "TaskRun",
    };
    let (kind, namespace, name): (&'static str, Option<&str>, Option<&str>) = match command {
        Command::Get {
            kind,
            name,
            namespace,
            ..
        } => (kind_of(kind), Some(namespace.as_str()), name.as_deref()),
        Command::Describe {
            kind,
            name,
            namespace,
            ..
        } => (kind_of(kind), Some(namespace.as_str()), Some(name.as_str())),
        Command::Run { config, namespace }
        | Command::Plan {
            config, namespace, ..
        } => (
            "MinionTaskConfig",
            Some(namespace.as_str()),
            Some(config.as_str()),
        ),
        Command::Segments { table, namespace }
        | Command::Push {
            table, namespace, ..
        } => ("Table", Some(namespace.as_str()), Some(table.as_str())),
        Command::Cancel { run, namespace }
        | Command::Retry { run, namespace }
        | Command::Logs { run, namespace, .. } => {
            ("TaskRun", Some(namespace.as_str()), Some(run.as_str()))
        }
        Command::Suspend { config, namespace } | Command::Resume { config, namespace } => (
            "MinionTaskConfig",
            Some(namespace.as_str()),
            Some(config.as_str()),
        ),
        _ => return Ok(()),
    };
    let checked = namespace
        .map_or(Ok(()), |ns| check_namespace(kind, ns))
        .and(name.map_or(Ok(()), |n| check_name(kind, n)));
    checked.map_err(|e| CliError::Invalid(vec![e.to_string()]))
}

/// Runs the CLI.
pub async fn main(cli: Cli, worker: WorkerMain) -> ExitCode {
    if let Err(e) = check_args(&cli.command) {
        eprintln!("error: {e}");
        return ExitCode::from(e.exit_code());
    }
    if let Command::Worker {
        command:
            WorkerCommand::Run {
                spec,
                exit_file,
                memory_budget,
                spill_dir,
            },
    } = cli.command
    {
        return worker(WorkerRun {
            spec,
            exit_file,
            memory_budget,
            spill_dir,
        })
        .await;
    }
    if let Command::Convert { command } = cli.command {
        return match convert_command(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    let target = match cli.state_dir {
        Some(state) => target::Target::Local(state),
        None if cli.cluster || run_as_kubectl_plugin() => match target::Target::cluster().await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(e.exit_code());
            }
        },
        None => target::Target::Local(PathBuf::from(crate::local::DEFAULT_STATE_DIR)),
    };
    let result = run_command(&target, cli.command).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `minion convert …`: reads files, prints manifests; needs no state directory or cluster.
fn convert_command(command: ConvertCommand) -> Result<(), CliError> {
    let ConvertCommand::Pinot {
        table_config,
        realtime_config,
        schema,
        namespace,
        uri_prefix,
        output,
    } = command;
    let read = |path: &PathBuf| -> Result<serde_json::Value, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Invalid(vec![format!("{}: {e}", path.display())]))?;
        serde_json::from_str(&text).map_err(|e| {
            CliError::Invalid(vec![format!(
                "{}: not JSON ({e}); give the JSON Pinot's controller returns",
                path.display()
            )])
        })
    };
    let input = convert::PinotConfigs {
        table_config: read(&table_config)?,
        realtime_config: realtime_config.as_ref().map(read).transpose()?,
        schema: schema.as_ref().map(read).transpose()?,
        namespace,
        uri_prefix,
    };
    let out = convert::convert(&input).map_err(|e| CliError::Invalid(vec![e]))?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    match output {
        Some(path) => std::fs::write(&path, &out.yaml)
            .map_err(|e| CliError::Failed(format!("{}: {e}", path.display()))),
        None => {
            print!("{}", out.yaml);
            Ok(())
        }
    }
}

/// Whether this process is the kubectl plugin (`kubectl minion …` runs `kubectl-minion`).
fn run_as_kubectl_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .is_some_and(|stem| stem == "kubectl-minion")
}

async fn run_command(target: &target::Target, command: Command) -> Result<(), CliError> {
    let local = |command: &str| target.local_only(command);
    match command {
        Command::Demo {
            dir,
            days,
            rows_per_segment,
        } => {
            let options = crate::demo::DemoOptions {
                dir,
                days,
                rows_per_segment,
                ..Default::default()
            };
            local("demo")?;
            crate::demo::run(&options)
                .await
                .map(|_| ())
                .map_err(CliError::failed)
        }
        Command::Apply { files, recursive } => apply::apply(local("apply")?, &files, recursive),
        Command::Execute { files, recursive } => {
            apply::execute(local("execute")?, &files, recursive)
        }
        Command::Push {
            table,
            files,
            namespace,
        } => push::push(local("push")?, &namespace, &table, &files).await,
        Command::Get {
            kind,
            name,
            namespace,
            all_namespaces,
            output,
        } => {
            let ns = (!all_namespaces).then_some(namespace.as_str());
            get::get(target, &kind, name.as_deref(), ns, output).await
        }
        Command::Describe {
            kind,
            name,
            namespace,
            output,
        } => describe::describe(target, &kind, &namespace, &name, output).await,
        Command::Run { config, namespace } => ops::run(target, &namespace, &config).await,
        Command::Plan {
            config,
            namespace,
            output,
        } => ops::plan(target, &namespace, &config, output).await,
        Command::Segments { table, namespace } => ops::segments(target, &namespace, &table).await,
        Command::Cancel { run, namespace } => ops::cancel(target, &namespace, &run).await,
        Command::Retry { run, namespace } => ops::retry(target, &namespace, &run).await,
        Command::Suspend { config, namespace } => {
            ops::suspend(target, &namespace, &config, true).await
        }
        Command::Resume { config, namespace } => {
            ops::suspend(target, &namespace, &config, false).await
        }
        Command::Logs {
            run,
            subtask,
            validity,
            namespace,
        } => ops::logs(target, &namespace, &run, subtask, validity).await,
        Command::Local {
            command:
                LocalCommand::Up {
                    until_idle,
                    now,
                    max_steps,
                    poll_ms,
                    watch,
                },
        } => {
            up::up(
                local("local up")?,
                until_idle,
                now,
                max_steps,
                poll_ms,
                watch,
            )
            .await
        }
        // Run by `main` itself: its exit code is the worker's.
        Command::Worker { .. } => Err(CliError::Failed("the worker runs from main".into())),
        Command::Convert { command } => convert_command(command),
    }
}

/// The object a lookup found, or `NotFound` naming its kind, name and namespace and how to
/// list them; a failed lookup is `Failed` with its error.
pub(crate) fn found<T: crate::local::Stored, E: std::fmt::Display>(
    got: Result<Option<T>, E>,
    namespace: &str,
    name: &str,
) -> Result<T, CliError> {
    got.map_err(CliError::failed)?.ok_or_else(|| {
        CliError::NotFound(format!(
            "{} {name:?} not found in namespace {namespace}; `minion get {}` lists them",
            T::KIND,
            T::PLURAL
        ))
    })
}

/// The three kinds, from the names and aliases users type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Table,
    TaskConfig,
    TaskRun,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Result<Kind, CliError> {
        match s.to_ascii_lowercase().as_str() {
            "table" | "tables" | "tbl" | "table.minion.dev" | "tables.minion.dev" => {
                Ok(Kind::Table)
            }
            "mtc"
            | "taskconfig"
            | "taskconfigs"
            | "miniontaskconfig"
            | "miniontaskconfigs"
            | "miniontaskconfigs.minion.dev" => Ok(Kind::TaskConfig),
            "tr" | "taskrun" | "taskruns" | "taskruns.minion.dev" => Ok(Kind::TaskRun),
            other => Err(CliError::Invalid(vec![format!(
                "unknown kind {other:?}; use tables (tbl), taskconfigs (mtc) or taskruns (tr)"
            )])),
        }
    }
}
