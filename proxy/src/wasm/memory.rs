//! The memory cap of one instance (wasmtime's `StoreLimits`, trapping when
//! a growth is refused), and how far the instance's memory has grown, so a
//! pool can drop an idle instance that grew instead of keeping its peak:
//! Wasm memory never shrinks.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

pub struct MemoryCap {
    limits: StoreLimits,
    /// Largest size any memory of the instance was allowed to reach.
    peak: usize,
}

impl MemoryCap {
    pub fn new(memory_limit: usize) -> MemoryCap {
        MemoryCap {
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .trap_on_grow_failure(true)
                .build(),
            peak: 0,
        }
    }

    /// The largest memory size reached so far, in bytes.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak = self.peak.max(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
