//! The storage Secrets Tables name in `spec.storageSecretRef`, as object-store options. The
//! operator may only get Secrets by name (it does not watch them), so each is read at most once
//! per [`SECRET_TTL`].

use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::api::Table;
use crate::control::BackendError;

pub(super) type SecretCache = std::collections::HashMap<
    String,
    (
        std::time::Instant,
        std::collections::HashMap<String, String>,
    ),
>;

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
        if let Some((at, options)) = self.read.lock().expect("secret cache").get(&key)
            && at.elapsed() < SECRET_TTL
        {
            return Ok(Some(options.clone()));
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let found = api.get_opt(&secret.name).await.map_err(|e| {
            BackendError::io(
                format!("get Secret {ns}/{} (storageSecretRef)", secret.name),
                e,
            )
        })?;
        let Some(found) = found else {
            return Err(BackendError::io(
                format!("Secret {ns}/{} named by spec.storageSecretRef", secret.name),
                "not found; create it with the object store's credentials (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) or remove storageSecretRef",
            ));
        };
        let mut options = std::collections::HashMap::new();
        for (k, v) in found.data.unwrap_or_default() {
            options.insert(k, String::from_utf8_lossy(&v.0).into_owned());
        }
        options.extend(found.string_data.unwrap_or_default());
        self.read
            .lock()
            .expect("secret cache")
            .insert(key, (std::time::Instant::now(), options.clone()));
        Ok(Some(options))
    }
}
