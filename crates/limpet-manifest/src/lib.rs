//! limpet-manifest
