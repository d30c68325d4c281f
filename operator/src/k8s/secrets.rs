//! The storage Secrets Tables name in `spec.storageSecretRef`, as object-store options. The
//! operator may only get Secrets by name (it does not watch them), so each is read at most once
//! per [`SECRET_TTL`].
//!
//! A Secret is used as storage credentials only when it opts in with the label
//! [`STORAGE_CREDENTIALS_LABEL`]` = "true"`: a Table may not make the operator (and its worker
//! Jobs) read any Secret of its namespace. A Secret without it is refused with
//! `SecretNotAllowed`, the message naming `spec.storageSecretRef`, the Secret and the
//! `kubectl label` command that allows it.

use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::api::Table;
use crate::control::BackendError;

/// A Secret read: its options, or `None` when it does not carry the opt-in label.
pub(super) type SecretCache = std::collections::HashMap<
    String,
    (
        std::time::Instant,
        Option<std::collections::HashMap<String, String>>,
    ),
>;

/// The label a Secret carries (value `"true"`) to be usable as a Table's storage credentials.
pub const STORAGE_CREDENTIALS_LABEL: &str = "minion.dev/storage-credentials";

/// How long a storage Secret read is reused before it is read again.
pub(super) const SECRET_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Storage Secrets read lately, with when (`namespace/name`).
#[derive(Default)]
pub(super) struct StorageSecrets {
    read: Mutex<SecretCache>,
}

impl StorageSecrets {
    /// The Table's `storageSecretRef` Secret as object-store options (its keys, values
    /// decoded); a missing Secret names itself and the Table.
    pub(super) async fn options(
        &self,
        client: &Client,
        table: &Table,
    ) -> Result<Option<std::collections::HashMap<String, String>>, BackendError> {
        let Some(secret) = &table.spec.storage_secret_ref else {
            return Ok(None);
        };
        let ns = table.metadata.namespace.clone().unwrap_or_default();
        let key = format!("{ns}/{}", secret.name);
        let cached = self
            .read
            .lock()
            .expect("secret cache")
            .get(&key)
            .filter(|(at, _)| at.elapsed() < SECRET_TTL)
            .map(|(_, options)| options.clone());
        let options = match cached {
            Some(options) => options,
            None => {
                let options = self.read_secret(client, &ns, &secret.name).await?;
                self.read
                    .lock()
                    .expect("secret cache")
                    .insert(key, (std::time::Instant::now(), options.clone()));
                options
            }
        };
        match options {
            Some(options) => Ok(Some(options)),
            None => Err(not_allowed(&ns, &secret.name)),
        }
    }

    async fn read_secret(
        &self,
        client: &Client,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::collections::HashMap<String, String>>, BackendError> {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let found = api.get_opt(name).await.map_err(|e| {
            BackendError::io(format!("get Secret {ns}/{name} (storageSecretRef)"), e)
        })?;
        let Some(found) = found else {
            return Err(BackendError::io(
                format!("Secret {ns}/{name} named by spec.storageSecretRef"),
                "not found; create it with the object store's credentials (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) or remove storageSecretRef",
            ));
        };
        if !allows_storage(&found) {
            return Ok(None);
        }
        let mut options = std::collections::HashMap::new();
        for (k, v) in found.data.unwrap_or_default() {
            options.insert(k, String::from_utf8_lossy(&v.0).into_owned());
        }
        options.extend(found.string_data.unwrap_or_default());
        Ok(Some(options))
    }
}

/// Whether `secret` opts in to being storage credentials.
fn allows_storage(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(STORAGE_CREDENTIALS_LABEL))
        .is_some_and(|v| v == "true")
}

/// The refusal of a Secret without the opt-in label, naming the field, the Secret and the fix.
pub(super) fn not_allowed(ns: &str, name: &str) -> BackendError {
    BackendError::NotAllowed {
        reason: crate::control::Reason::SecretNotAllowed.as_str(),
        message: format!(
            "spec.storageSecretRef: Secret {ns}/{name} is not allowed as storage credentials: \
             it lacks the label {STORAGE_CREDENTIALS_LABEL}=true; if it is meant for this, run \
             `kubectl label secret {name} -n {ns} {STORAGE_CREDENTIALS_LABEL}=true`"
        ),
    }
}
