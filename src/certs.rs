//! Certificates (placeholder; being written).
