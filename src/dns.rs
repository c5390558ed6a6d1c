//! DNS forwarding (placeholder; being written).
