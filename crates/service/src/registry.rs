//! The one place where connectors are registered. To add a connector: create its crate
//! under `connectors/`, implement `ConnectorFactory`, and list it in `factories()`.

use crossdex_model::ConnectorFactory;

/// Every connector this build knows, by the `type` that selects it.
pub fn factories() -> Vec<Box<dyn ConnectorFactory>> {
    vec![
        Box::new(crossdex_connector_files::FilesFactory),
        Box::new(crossdex_connector_xnat::XnatFactory),
        Box::new(crossdex_connector_redcap::RedcapFactory),
        Box::new(crossdex_connector_omero::OmeroFactory),
        Box::new(crossdex_connector_transmart::TransmartFactory),
        Box::new(crossdex_connector_elabftw::ElabFactory),
    ]
}

/// The factory for `system`, if registered.
pub fn factory(system: &str) -> Option<Box<dyn ConnectorFactory>> {
    factories().into_iter().find(|f| f.system() == system)
}

/// The registered `type` values.
pub fn systems() -> Vec<&'static str> {
    factories().iter().map(|f| f.system()).collect()
}
