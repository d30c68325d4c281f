//! `skipCorruptSegments`: input segments that cannot be read are left out of the subtask
//! instead of failing it, and reported in the manifest's `skippedSegments`.
//!
//! Footer-level damage (a truncated file, bad magic, a footer reaching past the end) is found
//! up front: every input's footer is read before any row is. Damage found later, in a page,
//! restarts the read from scratch without that segment: the outputs staged so far are
//! deleted and a fresh ledger counts the remaining inputs, so the ledger never holds a row of
//! a skipped segment and no output holds part of one.

use futures::{StreamExt, TryStreamExt};
use minion_contract::{SkippedSegment, SubtaskSpec};
use object_store::ObjectStoreExt;

use crate::error::{Result, WorkerError};
use crate::scan::{ParquetInput, check_footer};
use crate::store::Location;

/// Footers read at once.
const FOOTER_READS: usize = 8;

/// The inputs of `spec` whose Parquet footer cannot be read, with what is wrong.
///
/// # Errors
/// An input missing or the store unreachable (those are not corruption: the subtask fails).
pub(crate) async fn unreadable_footers(
    spec: &SubtaskSpec,
    source: &Location,
) -> Result<Vec<SkippedSegment>> {
    // Each check owns what it reads (a future borrowing across `buffered` is not `Send`).
    let checks: Vec<_> = spec
        .inputs
        .iter()
        .map(|seg| {
            let input = ParquetInput::segment(source, seg, None);
            let (source, path) = (source.clone(), seg.path.clone());
            async move {
                match check_footer(&source, &input).await {
                    Ok(()) => Ok(None),
                    Err(WorkerError::CorruptSegment { message, .. }) => Ok(Some(SkippedSegment {
                        path,
                        reason: message,
                    })),
                    Err(e) => Err(e),
                }
            }
        })
        .collect();
    let checks = futures::stream::iter(checks).buffered(FOOTER_READS);
    let found: Vec<Option<SkippedSegment>> = checks.try_collect().await?;
    let skipped: Vec<SkippedSegment> = found.into_iter().flatten().collect();
    for s in &skipped {
        tracing::warn!(segment = %s.path, reason = %s.reason, "skipping a corrupt segment");
    }
    Ok(skipped)
}

/// `spec` without the `skipped` inputs.
pub(crate) fn without(spec: &SubtaskSpec, skipped: &[SkippedSegment]) -> SubtaskSpec {
    let mut kept = spec.clone();
    kept.inputs
        .retain(|s| !skipped.iter().any(|k| k.path == s.path));
    kept
}

/// The input of `spec` that `e` found corrupt, when `e` is a corrupt segment among the inputs
/// (a context segment is not skipped: the rows it stands for decide what others keep).
pub(crate) fn corrupt_input(
    spec: &SubtaskSpec,
    source: &Location,
    e: &WorkerError,
) -> Option<SkippedSegment> {
    let WorkerError::CorruptSegment { file, message } = e else {
        return None;
    };
    let seg = spec
        .inputs
        .iter()
        .find(|s| source.child_uri(&s.path) == *file)?;
    tracing::warn!(segment = %seg.path, reason = %message, "a corrupt page: reading again without the segment");
    Some(SkippedSegment {
        path: seg.path.clone(),
        reason: message.clone(),
    })
}

/// Deletes every segment file staged so far under this attempt's staging prefix (finished
/// outputs and unfinished `_tmp` files), so a restarted read leaves none behind.
///
/// # Errors
/// The store cannot be listed or a file cannot be deleted.
pub(crate) async fn discard_outputs(dest: &Location, spec: &SubtaskSpec) -> Result<()> {
    let prefix = dest.child(spec.output.staging_prefix.trim_end_matches('/'));
    let uri = dest.display(&prefix);
    let files: Vec<object_store::path::Path> = dest
        .store
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| WorkerError::from_store(&uri, e))?;
    for f in files.iter().filter(|p| p.as_ref().ends_with(".parquet")) {
        match dest.store.delete(f).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(WorkerError::from_store(&dest.display(f), e)),
        }
    }
    Ok(())
}
