//! Named connector factories.

use std::collections::BTreeMap;

use super::{Connector, ConnectorError, Secret, SecretSource};
use crate::model::SystemSpec;

/// What a factory gets to build a connector for one System.
pub struct SystemContext<'a> {
    pub name: &'a str,
    pub spec: &'a SystemSpec,
    /// The resolved secret, when the System names credentials.
    pub secret: Option<Secret>,
}

impl SystemContext<'_> {
    /// A string setting of `connection`.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.spec.connection.get(key).and_then(|v| v.as_str())
    }

    /// `connection` as the connector's typed settings (`validate` checks the same).
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConnectorError> {
        crate::model::connection::parse(&self.spec.connection).map_err(|e| {
            ConnectorError::config(format!(
                "{e} (System {}; docs/connectors.md lists the settings of type {})",
                self.name, self.spec.connector
            ))
        })
    }
}

type Factory = fn(&SystemContext<'_>) -> Result<Box<dyn Connector>, ConnectorError>;

/// Connector factories by type name.
pub struct Registry {
    factories: BTreeMap<&'static str, Factory>,
    secrets: SecretSource,
}

impl Registry {
    /// Every connector built into this binary.
    pub fn builtin(secrets: SecretSource) -> Registry {
        let mut r = Registry {
            factories: BTreeMap::new(),
            secrets,
        };
        r.register("sql", super::sql::connect);
        r.register("exec", super::exec::connect);
        r.register("kubernetes", super::kubernetes::connect);
        r.register("scim", super::scim::connect);
        r.register("postgres", super::postgres::connect);
        r.register("ldap", super::ldap::connect);
        r.register("wordpress", super::wordpress::connect);
        r
    }

    /// Adds or replaces a factory.
    pub fn register(&mut self, name: &'static str, factory: Factory) {
        self.factories.insert(name, factory);
    }

    /// Builds the connector for a System.
    /// Where the secrets come from (Notifiers resolve theirs the same way).
    pub fn secrets(&self) -> &SecretSource {
        &self.secrets
    }

    pub fn connect(
        &self,
        name: &str,
        spec: &SystemSpec,
    ) -> Result<Box<dyn Connector>, ConnectorError> {
        let factory = self.factories.get(spec.connector.as_str()).ok_or_else(|| {
            ConnectorError::config(format!(
                "connector type {:?} is not available in this build (available: {})",
                spec.connector,
                self.factories
                    .keys()
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let secret = match &spec.credentials {
            Some(c) => Some(self.secrets.resolve(c).map_err(ConnectorError::config)?),
            None => None,
        };
        factory(&SystemContext { name, spec, secret })
    }
}
