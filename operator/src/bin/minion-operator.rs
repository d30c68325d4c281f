//! The `minion-operator` binary.
//!
//! - `minion-operator crds` prints the three CustomResourceDefinitions as multi-document
//!   YAML; `minion-operator crds --out crds --out charts/minion-operator/files/crds` writes one file
//!   per CRD (`tables.minion.dev.yaml`, …) into each directory.
//!
//! The controller itself (`run`) is added by the control-loop work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
